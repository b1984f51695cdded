"""Exact costs of one candidate: a group with a tiling, on a hardware profile.

Everything here is summed over the real tiles (edge tiles included), using the per-axis spans
of :mod:`memplan.geometry.group`: a tensor's region bytes summed over all tiles factorise into
(sum of channel spans) x (sum of row spans) x (sum of column spans). The numbers are the
coefficients the CP-SAT model and the baselines choose among; :mod:`memplan.plan.build` derives
the same totals again command by command, and tests hold the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass

from memplan.config import HardwareProfile
from memplan.geometry.backprop import region_macs, transpose_taps
from memplan.geometry.group import (
    GroupGeometry,
    GroupShape,
    SpanCache,
    Tiling,
    group_geometry,
    group_shape,
    tiling_options,
)
from memplan.geometry.region import Region
from memplan.ir.graph import Graph, Layer
from memplan.ir.ops import WEIGHTED, ConvTransposeAttrs, OpKind
from memplan.plan.alloc import Block, extent, first_fit


@dataclass(frozen=True)
class InputCost:
    """An external input of the group: DMA bytes if it is loaded tile by tile from DRAM, and
    the staging buffer that holds one tile of it (times the staging slots)."""

    tensor: str
    load_bytes: int
    stage_bytes: int
    last_use: int  # index of the last layer in the group that reads it


@dataclass(frozen=True)
class WeightCost:
    """A weighted layer of the group. Weights and bias of an output-channel slice travel
    together; ``slice_bytes`` is the largest slice (the buffer size)."""

    layer: str
    index: int
    total_bytes: int  # whole layer, every slice once: what keeping costs in DMA bytes
    reload_bytes: int  # the slice of every tile: what reloading per tile costs
    slice_bytes: int


@dataclass(frozen=True)
class CoreBuffer:
    """A tile buffer of a tensor produced and consumed inside the group, at a fixed offset
    inside the group's core workspace, live over layer steps [t0, t1)."""

    tensor: str
    offset: int
    size: int
    t0: int
    t1: int


@dataclass(frozen=True)
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

    @property
    def key(self) -> tuple[int, int, Tiling]:
        return (self.start, self.stop, self.tiling)

    @property
    def name(self) -> str:
        t = self.tiling
        return f"g{self.start}_{self.stop}_t{t.tile_h}x{t.tile_w}x{t.tile_c}"


def staging_slots(hw: HardwareProfile) -> int:
    """Tile buffers that DMA fills or drains are double-buffered when DMA overlaps compute."""
    return 2 if hw.dma_overlaps_compute else 1


def weight_slice_bytes(graph: Graph, layer: Layer, channels: int, hw: HardwareProfile) -> int:
    """Bytes of the weights and bias that produce ``channels`` output channels of ``layer``."""
    if layer.op not in WEIGHTED:
        return 0
    per_channel = graph.weight_elems(layer) // graph.out_channels(layer)
    bias = hw.bias_bytes if layer.bias else 0
    return channels * (per_channel * hw.elem_bytes + bias)


def _core_layout(graph: Graph, geo: GroupGeometry, hw: HardwareProfile) -> tuple[tuple[CoreBuffer, ...], int]:
    shape = geo.shape
    blocks = []
    for t in shape.internal:
        p = graph.producer[t]
        q = max(c for c in graph.consumers[t] if c < shape.stop)
        blocks.append(Block(t, geo.max_elems(t) * hw.elem_bytes, p, q + 1))
    offsets = first_fit(blocks)
    core = tuple(CoreBuffer(b.name, offsets[b.name], b.size, b.t0, b.t1) for b in blocks)
    return core, extent(blocks, offsets)


def _layer_macs(graph: Graph, geo: GroupGeometry, layer: Layer) -> int:
    """MACs of one layer summed over all tiles. Separable for every op: for a ConvTranspose
    the taps landing in a row span do not depend on the columns, and vice versa."""
    t = layer.output
    c_sum = geo.chan_axis.total[t]
    if layer.op is OpKind.CONV_TRANSPOSE:
        a = layer.attrs
        assert isinstance(a, ConvTransposeAttrs)
        n, c_in, h_in, w_in = graph.shape(layer.inputs[0])
        ty = sum(transpose_taps(y0, y1, a.kernel[0], a.stride[0], a.pads[0], a.dilation[0], h_in) for y0, y1 in geo.rows[t])
        tx = sum(transpose_taps(x0, x1, a.kernel[1], a.stride[1], a.pads[1], a.dilation[1], w_in) for x0, x1 in geo.cols[t])
        return n * ty * tx * (c_in // a.groups) * c_sum
    per = region_macs(graph, layer, Region(0, 1, 0, 1, 0, 1))
    return per * c_sum * geo.row_axis.total[t] * geo.col_axis.total[t]


def candidate_cost(graph: Graph, shape: GroupShape, tiling: Tiling, hw: HardwareProfile,
                   cache: SpanCache | None = None) -> Candidate:
    geo = group_geometry(graph, shape, tiling, cache)
    eb = hw.elem_bytes
    slots = staging_slots(hw)
    inputs = []
    for t in shape.external_inputs:
        last = max(c for c in graph.consumers[t] if shape.start <= c < shape.stop)
        inputs.append(InputCost(t, geo.sum_elems(t) * eb, geo.max_elems(t) * eb * slots, last))
    anchor = shape.anchor
    core, core_bytes = _core_layout(graph, geo, hw)
    macs = 0
    compute_sram = 0
    weights = []
    for i in shape.layer_range:
        layer = graph.layers[i]
        macs += _layer_macs(graph, geo, layer)
        compute_sram += (geo.sum_elems(layer.output) + geo.read_elems(i)) * eb
        if layer.op in WEIGHTED:
            # slice bytes are linear in the channels: the sum over splits is the bytes of the
            # summed channels (the whole layer, or more if splits overlap)
            chans = geo.chan_axis
            total = weight_slice_bytes(graph, layer, chans.total[layer.output], hw)
            spatial = geo.n_rows * geo.n_cols
            weights.append(WeightCost(layer.id, i, total, spatial * total,
                                      weight_slice_bytes(graph, layer, chans.largest[layer.output], hw)))
    return Candidate(
        start=shape.start,
        stop=shape.stop,
        tiling=tiling,
        n_tiles=geo.n_tiles,
        anchor=anchor,
        inputs=tuple(inputs),
        store_bytes=geo.sum_elems(anchor) * eb,
        out_stage_bytes=geo.max_elems(anchor) * eb * slots,
        core=core,
        core_bytes=core_bytes,
        macs=macs,
        compute_sram_bytes=compute_sram,
        weights=tuple(weights),
    )


# ---------------------------------------------------------------------------- fitting
def group_blocks(c: Candidate, keep: bool, hw: HardwareProfile) -> list[Block]:
    """SRAM blocks of one candidate when nothing is resident (same rules as plan_blocks)."""
    overlap = hw.dma_overlaps_compute
    blocks = [Block("core", c.core_bytes, c.start, c.stop)] if c.core_bytes else []
    blocks += [Block(f"in.{i.tensor}", i.stage_bytes, c.start, c.stop if overlap else i.last_use + 1) for i in c.inputs]
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
    return extent(blocks, first_fit(blocks))


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
            self._shapes[key] = group_shape(self.graph, start, stop)
        return self._shapes[key]

    def tilings(self, shape: GroupShape) -> tuple[Tiling, ...]:
        """:func:`tiling_options` of the group, in their order."""
        key = (shape.start, shape.stop)
        found = self._tilings.get(key)
        if found is None:
            found = self._tilings[key] = tuple(tiling_options(self.graph, shape, self.hw.tiling))
        return found

    def candidate(self, shape: GroupShape, tiling: Tiling) -> Candidate:
        """:func:`candidate_cost` of the group with this tiling."""
        key = (shape.start, shape.stop, tiling)
        found = self._candidates.get(key)
        if found is None:
            found = self._candidates[key] = candidate_cost(self.graph, shape, tiling, self.hw, self.spans)
        return found

    def footprint(self, c: Candidate, keep: bool) -> int:
        """:func:`footprint` of the candidate."""
        key = (c.start, c.stop, c.tiling, keep)
        found = self._footprints.get(key)
        if found is None:
            found = self._footprints[key] = footprint(c, keep, self.hw)
        return found
