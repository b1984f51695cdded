"""Exact costs of one candidate: a group with a tiling, on a hardware profile.

Everything here is summed over the real tiles (edge tiles included), using the per-axis spans
of :mod:`memplan.geometry.group`: a tensor's region bytes summed over all tiles factorise into
(sum of channel spans) x (sum of row spans) x (sum of column spans). The numbers are the
coefficients the CP-SAT model and the baselines choose among; :mod:`memplan.plan.build` derives
the same totals again command by command, and tests hold the two equal.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from memplan.alloc import Block, align_up, extent, first_fit
from memplan.config import HardwareProfile
from memplan.cost.cycles import command_work, group_compute_cycles, is_mac_layer
from memplan.cost.weights import INT8, WeightFormat, slice_bytes, spans_bytes
from memplan.geometry.backprop import region_macs
from memplan.geometry.group import (
    HOST_TILING,
    GroupGeometry,
    GroupShape,
    SpanCache,
    Tiling,
    group_geometry,
    group_shape,
    is_host,
    tiling_options,
)
from memplan.geometry.region import Region
from memplan.ir.graph import Graph, Layer
from memplan.ir.ops import WEIGHTED, ConvTransposeAttrs, OpKind, transpose_taps


@dataclass(frozen=True, slots=True)
class InputCost:
    """An external input of the group: DMA bytes if it is loaded tile by tile from DRAM, and
    the staging buffer that holds one tile of it (times the staging slots).

    In a rolling group (Tiling.rolling) a stripe loads only the rows the previous one did not,
    and ``copy_bytes`` (summed over the stripes) are copied from the other staging slot: the
    DMA engine moves them SRAM to SRAM. None of it happens when the input is resident."""

    tensor: str
    load_bytes: int
    stage_bytes: int
    last_use: int  # index of the last layer in the group that reads it
    copy_bytes: int = 0

    @property
    def dma_bytes(self) -> int:
        """What the DMA engine moves for the input when it is staged: loads and copies."""
        return self.load_bytes + self.copy_bytes

    @property
    def sram_bytes(self) -> int:
        """SRAM bytes accessed for the input when it is staged: loads written, copies read and
        written."""
        return self.load_bytes + 2 * self.copy_bytes

    def stage_end(self, stop: int, hw: HardwareProfile) -> int:
        """The step its staging buffer is live until, in a group ending at ``stop``: the whole
        group when DMA overlaps compute (the next tile's load runs during this one) or when the
        kept rows wait in it for the next stripe; else until its last reader has run."""
        return stop if hw.dma_overlaps_compute or self.copy_bytes else self.last_use + 1


@dataclass(frozen=True, slots=True)
class WeightCost:
    """A weighted layer of the group. Weights and bias of an output-channel slice travel
    together; ``slice_bytes`` is the largest slice (the buffer size)."""

    layer: str
    index: int
    total_bytes: int  # whole layer, every slice once: what keeping costs in DMA bytes
    reload_bytes: int  # the slice of every tile: what reloading per tile costs
    slice_bytes: int
    #: the first slice's bytes (output channels ``chans[0]``): the group's first LOAD_WEIGHTS of
    #: the layer, kept or reloaded, which a prefetched buffer loads during the previous group
    first_bytes: int
    #: the group's channel tiles: a kept layer's loads (one slice each); reloaded, it loads
    #: once per tile (Candidate.n_tiles)
    slices: int = 1


def weight_loads(c: Candidate, w: WeightCost, keep: bool) -> int:
    """LOAD_WEIGHTS commands of the layer in its group: one per channel slice when kept, one
    per tile when reloaded."""
    return w.slices if keep else c.n_tiles


def doublable(c: Candidate, w: WeightCost, keep: bool) -> bool:
    """Whether a second slot can change anything: the layer loads more than once."""
    return weight_loads(c, w, keep) > 1


def weight_buffer_t1(c: Candidate, w: WeightCost, keep: bool, double: bool) -> int:
    """The step the layer's weight buffer is live until: its group's end when kept or
    double-buffered (the other slot is filled while the group runs), else its own step's end."""
    return c.stop if keep or double else w.index + 1


def weight_buffer_bytes(w: WeightCost, double: bool) -> int:
    """The weight buffer's size: one slot of the largest slice, two when double-buffered."""
    return 2 * w.slice_bytes if double else w.slice_bytes


def weight_buffer_t0(c: Candidate, w: WeightCost, keep: bool, prefetch: bool) -> int:
    """The first step the layer's weight buffer is live: its group's start when kept, its own
    step when reloaded, one step earlier when it is prefetched (:func:`prefetchable`)."""
    t0 = c.start if keep else w.index
    return t0 - 1 if prefetch and prefetchable(c, w, keep) else t0


def prefetchable(c: Candidate, w: WeightCost, keep: bool) -> bool:
    """Whether prefetching changes the layer's weight buffer: it does when the buffer would
    start at the layer's own step (reloaded, or kept by the group's first layer) and a step
    precedes it. A kept buffer of a later layer is live from its group's start anyway."""
    return w.index > 0 and (not keep or w.index == c.start)


def early_weight_bytes(c: Candidate, w: WeightCost, keep: bool, prefetch: bool) -> int:
    """Weight DMA bytes of the layer that run during the previous group: the first load of a
    prefetched buffer of the group's first layer. The previous group's DMA engine moves them
    (:func:`memplan.plan.build.group_timing`)."""
    return w.first_bytes if w.index == c.start and weight_buffer_t0(c, w, keep, prefetch) < w.index else 0


def serial_weight_bytes(c: Candidate, w: WeightCost, keep: bool, prefetch: bool, double: bool = False) -> int:
    """Weight DMA bytes of the layer that compute must wait for. A LOAD_WEIGHTS overlaps
    compute when its buffer is live at the step before the layer's and that step runs before
    it: in the same tile (the step is in the group), or, for the group's first load, in the
    previous group; or, double-buffered, when it fills the slot the previous load did not (the
    compute of that slice runs meanwhile). So the first load waits unless the buffer starts
    before the layer's step; the later ones wait unless the buffer is live at an earlier step
    of the group or has two slots. The validator and the executor derive the same from the
    command stream (:class:`memplan.plan.build.WeightTiming`)."""
    moved = w.total_bytes if keep else w.reload_bytes
    first, later = _overlapped(c, w, keep, prefetch, double)
    return (0 if first else w.first_bytes) + (0 if later else moved - w.first_bytes)


def serial_weight_loads(c: Candidate, w: WeightCost, keep: bool, prefetch: bool, double: bool = False) -> int:
    """How many of the layer's loads compute waits for (each waits the DRAM read latency too:
    :func:`memplan.plan.build.group_cycles`); the same rule as :func:`serial_weight_bytes`."""
    first, later = _overlapped(c, w, keep, prefetch, double)
    return (0 if first else 1) + (0 if later else weight_loads(c, w, keep) - 1)


def _overlapped(c: Candidate, w: WeightCost, keep: bool, prefetch: bool, double: bool) -> tuple[bool, bool]:
    """Whether the layer's first load, and its later ones, overlap compute (serial_weight_bytes)."""
    first = weight_buffer_t0(c, w, keep, prefetch) < w.index
    return first, (first and w.index > c.start) or double


@dataclass(frozen=True, slots=True)
class CoreBuffer:
    """A tile buffer of a tensor produced and consumed inside the group, at a fixed offset
    inside the group's core workspace, live over layer steps [t0, t1).

    ``slot``: 0 for a buffer of one tile region. A two-slot buffer has two slots of ``slot``
    bytes each (``size == 2 * slot``), the even tiles' and the odd ones', and lives over the
    whole group. A rolling buffer (Tiling.rolling, whose tiles are its row stripes) is one:
    stripe ``j`` copies the rows it shares with stripe ``j - 1`` from the other slot and
    computes the rest into its own. So is an escaping tensor's (GroupShape.escapes) when DMA
    overlaps compute: tile ``k``'s part is stored while tile ``k + 1`` computes into the
    other slot, as an anchor's staging buffer."""

    tensor: str
    offset: int
    size: int
    t0: int
    t1: int
    slot: int = 0

    def slot_offset(self, tile: int) -> int:
        """Offset inside the core workspace of the slot that tile ``tile`` (in execution order)
        uses."""
        return self.offset + (tile % 2) * self.slot


@dataclass(frozen=True, slots=True)
class Candidate:
    """A (group, tiling) with every exact cost the planner needs."""

    start: int
    stop: int
    tiling: Tiling
    n_tiles: int
    anchor: str
    inputs: tuple[InputCost, ...]
    store_bytes: int  # anchor bytes written when the anchor is spilled (the whole tensor)
    out_stage_bytes: int  # anchor staging buffer (times slots) when it is spilled
    core: tuple[CoreBuffer, ...]
    core_bytes: int
    macs: int
    compute_sram_bytes: int  # bytes compute commands read and write in SRAM (feature maps)
    weights: tuple[WeightCost, ...]
    #: compute cycles of the group: memplan.cost.cycles.command_work summed over the compute
    #: commands of every tile, then group_compute_cycles
    compute_cycles: int = 0
    #: bytes of the rolling buffers of tensors produced inside the group, copied by the DMA
    #: engine from one slot to the other (SRAM to SRAM; read and written: twice in
    #: compute_sram_bytes); inputs' copies are in InputCost.copy_bytes
    copy_bytes: int = 0
    #: an FDT group's int32 accumulator (memplan.geometry.fdt): one anchor tile, inside the
    #: core workspace (``core_bytes`` includes it), live over the whole group; None otherwise
    #: (left out of the repr, as None: reprs of candidates without FDT are unchanged)
    acc: CoreBuffer | None = field(default=None, repr=False)
    #: a multi-output group's escaping tensors (GroupShape.escapes), stored from their core
    #: buffers tile by tile, and the bytes that writes (each tensor whole, once); left out of
    #: the repr, as ``acc``
    escapes: tuple[str, ...] = field(default=(), repr=False)
    escape_bytes: int = field(default=0, repr=False)

    @property
    def key(self) -> tuple[int, int, Tiling]:
        return (self.start, self.stop, self.tiling)

    @property
    def name(self) -> str:
        t = self.tiling
        fdt = f"f{t.fdt_c}" if t.fdt_c else ""
        return f"g{self.start}_{self.stop}_t{t.tile_h}x{t.tile_w}x{t.tile_c}{fdt}{'r' if t.rolling else ''}"


def staging_slots(hw: HardwareProfile) -> int:
    """Tile buffers that DMA fills or drains are double-buffered when DMA overlaps compute."""
    return 2 if hw.dma_overlaps_compute else 1


def stage_slots(geo: GroupGeometry, tensor: str, hw: HardwareProfile) -> int:
    """Slots of an input's staging buffer: :func:`staging_slots`, and always two for an input
    kept from stripe to stripe in a rolling group (the stripe's own, and the previous one's
    it copies the kept rows from)."""
    return max(staging_slots(hw), 2) if geo.rolled(tensor) else staging_slots(hw)


def bricked(channels: int, hw: HardwareProfile) -> int:
    """Channels a feature-map SRAM buffer reserves for ``channels``: rounded up to the
    profile's ``channel_brick`` (16 on Ethos-U: NHCWB16 bricks)."""
    return -(-channels // hw.channel_brick) * hw.channel_brick


def tile_buffer_elems(geo: GroupGeometry, tensor: str, hw: HardwareProfile) -> int:
    """Elements a tile buffer (or one slot of it) of ``tensor`` reserves: its largest region
    over the tiles, the channels rounded up to the brick. The one place SRAM tile buffers are
    sized: core buffers, staging slots and rolling slots."""
    return bricked(geo.chan_axis.largest[tensor], hw) * geo.row_axis.largest[tensor] * geo.col_axis.largest[tensor]


def resident_bytes(graph: Graph, tensor: str, hw: HardwareProfile) -> int:
    """Bytes a whole tensor kept in SRAM holds (channels rounded up to the brick): the size of
    its resident buffer; it reserves that rounded up to the SRAM alignment."""
    shape = graph.tensors[tensor].shape
    if len(shape) != 4:  # not a feature map in NCHW (never resident): its bytes
        return graph.tensors[tensor].numel * hw.elem_bytes
    _, c, h, w = shape
    return bricked(c, hw) * h * w * hw.elem_bytes


def resident_reserved_bytes(graph: Graph, tensor: str, hw: HardwareProfile) -> int:
    """SRAM bytes a resident tensor reserves: :func:`resident_bytes` rounded up to the SRAM
    alignment (memplan.alloc)."""
    return align_up(resident_bytes(graph, tensor, hw), hw.sram_alignment)


def stage_slot_bytes(geo: GroupGeometry, tensor: str, hw: HardwareProfile) -> int:
    """Bytes of one slot of a tile buffer of ``tensor`` (:func:`tile_buffer_elems`): rounded up
    to the SRAM alignment, so that every slot starts at an aligned offset."""
    return align_up(tile_buffer_elems(geo, tensor, hw) * hw.elem_bytes, hw.sram_alignment)


#: bytes of one partial sum in an FDT group's accumulator (an int32)
ACC_BYTES = 4


def accumulator_bytes(geo: GroupGeometry) -> int:
    """Bytes of an FDT group's int32 accumulator: its largest anchor tile, 4 bytes an element
    (the anchor spans all its channels in every slice)."""
    return geo.max_elems(geo.shape.anchor) * ACC_BYTES


def weight_slice_bytes(graph: Graph, layer: Layer, channels: int, hw: HardwareProfile) -> int:
    """Bytes of the unencoded (int8) weights and bias that produce ``channels`` output
    channels of ``layer``. Encoded weights are not linear in the channels: candidates size
    them per slice (:func:`memplan.cost.weights.spans_bytes`)."""
    return slice_bytes(graph, layer, 0, channels, WeightFormat(INT8, hw.elem_bytes, hw.bias_bytes))


@dataclass(frozen=True)
class LayerFacts:
    """What costing a layer of a group needs that no tiling changes."""

    index: int
    layer: Layer
    unit_macs: int | None  # MACs per output element; None for a ConvTranspose (see _transpose_macs)
    channel_weight_bytes: int | None  # weight and bias bytes per output channel; None if unweighted


@dataclass(frozen=True)
class GroupFacts:
    """What costing a group needs that no tiling changes (one per group and profile)."""

    shape: GroupShape
    inputs: tuple[tuple[str, int], ...]  # external input, index of the last layer reading it
    internal: tuple[tuple[str, int, int], ...]  # internal tensor, steps [producer, last reader + 1)
    layers: tuple[LayerFacts, ...]


def group_facts(graph: Graph, shape: GroupShape, hw: HardwareProfile) -> GroupFacts:
    """Live ranges, MACs per output element and weight bytes per channel of the group."""
    last: dict[str, int] = {}
    for i in shape.layer_range:
        for t in graph.layers[i].inputs:
            last[t] = i
    layers = []
    for i in shape.layer_range:
        layer = graph.layers[i]
        unit = None if layer.op is OpKind.CONV_TRANSPOSE else region_macs(graph, layer, Region(0, 1, 0, 1, 0, 1))
        per_channel = weight_slice_bytes(graph, layer, 1, hw) if layer.op in WEIGHTED else None
        layers.append(LayerFacts(i, layer, unit, per_channel))
    return GroupFacts(shape, tuple((t, last[t]) for t in shape.external_inputs),
                      tuple((t, graph.producer[t], last[t] + 1) for t in shape.internal), tuple(layers))


def _transpose_macs(graph: Graph, geo: GroupGeometry, layer: Layer) -> int:
    """MACs of a ConvTranspose summed over all tiles. Separable too: the taps landing in a
    row span do not depend on the columns, and vice versa."""
    t = layer.output
    a = layer.attrs
    assert isinstance(a, ConvTransposeAttrs)
    n, c_in, h_in, w_in = graph.shape(layer.inputs[0])
    ty = sum(transpose_taps(y0, y1, a.kernel[0], a.stride[0], a.pads[0], a.dilation[0], h_in)
             for y0, y1 in geo.row_axis.computed_spans(t))
    tx = sum(transpose_taps(x0, x1, a.kernel[1], a.stride[1], a.pads[1], a.dilation[1], w_in) for x0, x1 in geo.cols[t])
    return n * ty * tx * (c_in // a.groups) * geo.chan_axis.total[t]


def host_candidate(shape: GroupShape) -> Candidate:
    """A host layer's group: it costs the accelerator nothing. Its inputs are in DRAM already
    (a tensor a host layer reads is never resident, so its producer stores it) and the host
    writes its output there: that traffic is the host's, reported apart (``host_totals``)."""
    return Candidate(shape.start, shape.stop, HOST_TILING, 1, shape.anchor, (), 0, 0, (), 0, 0, 0, ())


def candidate_cost(graph: Graph, shape: GroupShape, tiling: Tiling, hw: HardwareProfile,
                   cache: SpanCache | None = None) -> Candidate:
    """Every exact cost of the group with this tiling. A ``cache`` shared across the calls
    for one graph saves recomputing spans (see group_geometry)."""
    if is_host(graph, shape):
        return host_candidate(shape)
    return _candidate(group_facts(graph, shape, hw), group_geometry(graph, shape, tiling, cache), hw)


def _candidate(facts: GroupFacts, geo: GroupGeometry, hw: HardwareProfile) -> Candidate:
    shape = facts.shape
    eb = hw.elem_bytes
    slots = staging_slots(hw)
    align = hw.sram_alignment  # SRAM sizes below are reserved sizes: rounded up to it (memplan.alloc)
    wfmt = WeightFormat.of(hw)
    inputs = tuple(InputCost(t, geo.computed_elems(t) * eb, stage_slot_bytes(geo, t, hw) * stage_slots(geo, t, hw),
                             last, geo.cached_elems(t) * eb)
                   for t, last in facts.inputs)
    # two-slot core buffers (slot bytes): rolling ones, and escaping tensors' when their stores
    # overlap the next tile's compute
    two = hw.dma_overlaps_compute and geo.n_tiles > 1
    rolled = {t: stage_slot_bytes(geo, t, hw) for t, _, _ in facts.internal
              if geo.rolled(t) or (two and t in shape.escapes)}
    blocks = [Block(t, 2 * rolled[t], shape.start, shape.stop) if t in rolled
              else Block(t, tile_buffer_elems(geo, t, hw) * eb, t0, _escape_end(t, t1, shape, hw))
              for t, t0, t1 in facts.internal]
    fdt = geo.tiling.fdt_c > 0
    if fdt:  # the accumulator outlives every slice: live over the whole group
        blocks.append(Block(_ACC, accumulator_bytes(geo), shape.start, shape.stop))
    offsets = first_fit(blocks, align)
    core = tuple(CoreBuffer(b.name, offsets[b.name], b.size, b.t0, b.t1, rolled.get(b.name, 0))
                 for b in blocks if b.name != _ACC)
    acc = CoreBuffer(shape.anchor, offsets[_ACC], blocks[-1].size, shape.start, shape.stop) if fdt else None
    rows, cols, chans = geo.row_axis, geo.col_axis, geo.chan_axis
    spatial = rows.count * cols.count
    macs = 0
    compute_sram = copy_bytes = 0
    elems = npu = 0
    weights = []
    for f in facts.layers:
        out = f.layer.output
        e, n = _layer_work(geo, f.layer, hw)
        elems += e
        npu += n
        if fdt and out == shape.anchor:  # the consumer: partial sums per slice, then requantize
            assert f.unit_macs is not None and f.channel_weight_bytes is not None
            c_out = geo.graph.shape(out)[1]
            anchor_elems = c_out * rows.total[out] * cols.total[out]  # over the spatial tiles
            macs += f.unit_macs * anchor_elems  # the slices of each output element sum to its reduction
            # partial sums: the first slice writes 4 B, every other reads and writes them; the
            # requantize reads them and writes the int8 output
            compute_sram += geo.read_elems(f.index) * eb + anchor_elems * (ACC_BYTES * (2 * chans.count - 1) + ACC_BYTES + eb)
            total = f.channel_weight_bytes * c_out  # every (output, input) channel pair once per spatial tile
            largest = geo.graph.weight_elems(f.layer) // geo.graph.shape(f.layer.inputs[0])[1] * chans.largest[f.layer.inputs[0]]
            weights.append(WeightCost(f.layer.id, f.index, total, spatial * total, align_up(largest * eb, align), total))
            continue
        if f.unit_macs is None:
            macs += _transpose_macs(geo.graph, geo, f.layer)
        else:
            macs += f.unit_macs * geo.computed_elems(out)
        copied = geo.cached_elems(out)  # a rolling buffer's rows, read from one slot and written to the other
        copy_bytes += copied * eb
        compute_sram += (geo.computed_elems(out) + geo.read_elems(f.index) + 2 * copied) * eb
        if f.channel_weight_bytes is not None:
            # one slice per channel split, each sized (encoded) on its own: their sum is what
            # loading every slice once moves, the largest is the buffer
            total, largest = spans_bytes(geo.graph, f.layer, geo.chans[out], wfmt)
            first = slice_bytes(geo.graph, f.layer, *geo.chans[out][0], wfmt)
            weights.append(WeightCost(f.layer.id, f.index, total, spatial * total, align_up(largest, align), first,
                                      len(geo.chans[out])))
    anchor = shape.anchor
    return Candidate(
        start=shape.start,
        stop=shape.stop,
        tiling=geo.tiling,
        n_tiles=geo.n_tiles,
        anchor=anchor,
        inputs=inputs,
        store_bytes=geo.sum_elems(anchor) * eb,
        out_stage_bytes=stage_slot_bytes(geo, anchor, hw) * slots,
        core=core,
        core_bytes=align_up(extent(blocks, offsets), align),
        macs=macs,
        compute_sram_bytes=compute_sram,
        weights=tuple(weights),
        compute_cycles=group_compute_cycles(hw, macs, elems, npu),
        copy_bytes=copy_bytes,
        acc=acc,
        escapes=shape.escapes,
        escape_bytes=sum(geo.graph.tensors[t].numel for t in shape.escapes) * eb,
    )


def _escape_end(tensor: str, t1: int, shape: GroupShape, hw: HardwareProfile) -> int:
    """The step a one-slot core buffer is live until: its last reader's end, or, for an
    escaping tensor whose store overlaps compute, the group's (the store drains meanwhile)."""
    return shape.stop if hw.dma_overlaps_compute and tensor in shape.escapes else t1


#: the accumulator's block name inside the core (no tensor has it: ids never contain '#')
_ACC = "#acc"


def _layer_work(geo: GroupGeometry, layer: Layer, hw: HardwareProfile) -> tuple[int, int]:
    """:func:`memplan.cost.cycles.command_work` summed over the layer's compute commands, one
    per tile: the work depends on the output region's size only, so the sum runs over the
    distinct (channels, rows, cols) sizes of the per-axis spans, each weighted by its count."""
    out = layer.output
    if hw.cycle_model == "simple":
        if is_mac_layer(layer):
            return 0, 0
        return geo.computed_elems(out), 0
    rows = geo.row_axis.computed_spans(out)
    sizes = [Counter(b - a for a, b in spans) for spans in (geo.chans[out], rows, geo.cols[out])]
    elems = npu = 0
    for c, nc in sizes[0].items():
        for h, nh in sizes[1].items():
            for w, nw in sizes[2].items():
                e, n = command_work(geo.graph, layer, (c, h, w), hw)
                elems += e * nc * nh * nw
                npu += n * nc * nh * nw
    return elems, npu


# ---------------------------------------------------------------------------- fitting
def group_blocks(c: Candidate, keep: bool, hw: HardwareProfile) -> list[Block]:
    """SRAM blocks of one candidate when nothing is resident (same rules as plan_blocks)."""
    overlap = hw.dma_overlaps_compute
    blocks = [Block("core", c.core_bytes, c.start, c.stop)] if c.core_bytes else []
    blocks += [Block(f"in.{i.tensor}", i.stage_bytes, c.start, i.stage_end(c.stop, hw)) for i in c.inputs]
    blocks.append(Block("out", c.out_stage_bytes, c.start if overlap else c.stop - 1, c.stop))
    if not hw.weights_in_place:
        for w in c.weights:
            if keep:
                blocks.append(Block(f"w.{w.layer}", w.slice_bytes, c.start, c.stop))
            else:
                blocks.append(Block(f"w.{w.layer}", w.slice_bytes, w.index, w.index + 1))
    return blocks


def footprint(c: Candidate, keep: bool, hw: HardwareProfile) -> int:
    """SRAM bytes the candidate needs when it runs alone (first-fit offsets of its blocks)."""
    blocks = group_blocks(c, keep, hw)
    return extent(blocks, first_fit(blocks, hw.sram_alignment))


# ---------------------------------------------------------------------------- memo
class CostCache:
    """Everything costed for one graph on one hardware profile, computed once.

    The feasibility check, the baselines and the candidate enumeration cost the same groups
    and (group, tiling) pairs; sharing one cache between them computes each once. Results
    are the same as without a cache: the cache only remembers pure functions of its keys."""

    def __init__(self, graph: Graph, hw: HardwareProfile) -> None:
        self.graph = graph
        self.hw = hw
        self.spans: SpanCache = {}
        self._shapes: dict[tuple[int, int], GroupShape | None] = {}
        self._tilings: dict[tuple[int, int], tuple[Tiling, ...]] = {}
        self._facts: dict[tuple[int, int], GroupFacts] = {}
        self._candidates: dict[tuple[int, int, Tiling], Candidate] = {}
        self._footprints: dict[tuple[int, int, Tiling, bool], int] = {}

    def check(self, graph: Graph, hw: HardwareProfile) -> None:
        """Raise ValueError if the cache belongs to another graph or profile."""
        if graph is not self.graph or hw != self.hw:
            raise ValueError("this CostCache was made for another graph or hardware profile")

    def shape(self, start: int, stop: int) -> GroupShape | None:
        """:func:`group_shape` of [start, stop)."""
        key = (start, stop)
        if key not in self._shapes:
            self._shapes[key] = group_shape(self.graph, start, stop, self.hw.tiling.multi_output)
        return self._shapes[key]

    def tilings(self, shape: GroupShape) -> tuple[Tiling, ...]:
        """:func:`tiling_options` of the group, in their order."""
        key = (shape.start, shape.stop)
        found = self._tilings.get(key)
        if found is None:
            found = self._tilings[key] = tuple(tiling_options(self.graph, shape, self.hw.tiling, self.spans))
        return found

    def candidate(self, shape: GroupShape, tiling: Tiling) -> Candidate:
        """:func:`candidate_cost` of the group with this tiling."""
        key = (shape.start, shape.stop, tiling)
        found = self._candidates.get(key)
        if found is None and is_host(self.graph, shape):
            found = self._candidates[key] = host_candidate(shape)
        if found is None:
            facts = self._facts.get(key[:2])
            if facts is None:
                facts = self._facts[key[:2]] = group_facts(self.graph, shape, self.hw)
            geo = group_geometry(self.graph, shape, tiling, self.spans)
            found = self._candidates[key] = _candidate(facts, geo, self.hw)
        return found

    def footprint(self, c: Candidate, keep: bool) -> int:
        """:func:`footprint` of a candidate of this graph and profile."""
        key = (c.start, c.stop, c.tiling, keep)
        found = self._footprints.get(key)
        if found is None:
            found = self._footprints[key] = footprint(c, keep, self.hw)
        return found
