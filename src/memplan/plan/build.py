"""Decisions -> SRAM blocks -> offsets -> buffers, command stream and totals.

Each planner (baselines, CP-SAT) produces :class:`Decisions`; :func:`plan_blocks` lists the
SRAM blocks those decisions need (with sizes and live intervals), the planner gives each an
offset, and :func:`build_plan` expands everything into a :class:`Plan`. Totals come from the
per-candidate cost model (:mod:`memplan.cost.candidate`); the validator recomputes them from
the command stream alone, and tests hold the two equal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

from memplan.alloc import Block, align_up, first_fit
from memplan.config import HardwareProfile
from memplan.cost.candidate import (Candidate, candidate_cost, doublable, early_weight_bytes, prefetchable,
                                    resident_bytes, resident_reserved_bytes, serial_weight_bytes, serial_weight_loads,
                                    stage_slot_bytes,
                                    stage_slots, staging_slots, weight_buffer_bytes, weight_buffer_t0,
                                    weight_buffer_t1)
from memplan.errors import PlanError
from memplan.geometry.group import HOST_TILING, group_geometry, group_shape, is_host, tiling_options
from memplan.geometry.region import Region
from memplan.ir.graph import Graph
from memplan.ir.ops import WEIGHTED
from memplan.host import tensor_bytes
from memplan.plan.model import Buffer, BufferKind, Command, Decisions, HostTotals, Op, Operand, Plan, Provenance, Totals


# ---------------------------------------------------------------------------- context
@dataclass(frozen=True)
class Resolved:
    """Decisions checked against the graph, with their candidates and residency facts."""

    graph: Graph
    hw: HardwareProfile
    decisions: Decisions
    candidates: tuple[Candidate, ...]

    @cached_property
    def group_of_layer(self) -> tuple[int, ...]:
        out = [0] * len(self.graph.layers)
        for gi, c in enumerate(self.candidates):
            for i in range(c.start, c.stop):
                out[i] = gi
        return tuple(out)

    def live_range(self, tensor: str) -> tuple[int, int]:
        """Steps over which a resident tensor occupies SRAM: from the start of its producer's
        group (0 for a model input) to the end of its last consumer's group (the end of the
        schedule for a model output)."""
        g = self.graph
        n = len(g.layers)
        t0 = self.candidates[self.group_of_layer[g.producer[tensor]]].start if tensor in g.producer else 0
        cons = g.consumers.get(tensor, ())
        t1 = self.candidates[self.group_of_layer[max(cons)]].stop if cons else n
        if tensor in g.outputs:
            t1 = n
        return t0, t1


def crossing_tensors(graph: Graph, decisions: Decisions) -> set[str]:
    """Tensors read by a group other than the one producing them (model inputs included)."""
    out: set[str] = set()
    for gd in decisions.groups:
        shape = group_shape(graph, gd.start, gd.stop, multi_output=True)
        if shape is not None:
            out.update(shape.external_inputs)
    return out


def resolve(graph: Graph, hw: HardwareProfile, decisions: Decisions) -> Resolved:
    """Check that decisions are complete and legal; compute their candidates."""
    if any(graph.shape(t)[0] != 1 for t in graph.inputs):
        raise PlanError("memplan plans batch 1: pin the batch dimension with --input-shape NAME=1x...")
    expected = 0
    cands = []
    for gd in decisions.groups:
        if gd.start != expected or not gd.start < gd.stop <= len(graph.layers):
            raise PlanError(f"groups must cover layers 0..{len(graph.layers) - 1} in order; group [{gd.start}, {gd.stop}) breaks it")
        shape = group_shape(graph, gd.start, gd.stop, hw.tiling.multi_output)
        if shape is None:
            hint = ("" if hw.tiling.multi_output or group_shape(graph, gd.start, gd.stop, multi_output=True) is None
                    else " (a multi-output group: the profile's tiling rules do not allow them; solve with --multi-output)")
            raise PlanError(f"group [{gd.start}, {gd.stop}) is not fusable: a tensor other than its last output is used "
                            f"after it{hint}")
        if gd.tiling not in tiling_options(graph, shape, hw.tiling):
            raise PlanError(f"group [{gd.start}, {gd.stop}): tiling {gd.tiling} is not allowed by the profile's tiling rules")
        cands.append(candidate_cost(graph, shape, gd.tiling, hw))
        expected = gd.stop
    if expected != len(graph.layers):
        raise PlanError(f"groups cover layers 0..{expected - 1} of {len(graph.layers)}")
    crossing = crossing_tensors(graph, decisions)
    if hw.feature_maps_in_sram:
        allowed = crossing | set(graph.inputs) | set(graph.outputs)
    else:  # model inputs come from DRAM and model outputs must end there
        allowed = crossing - set(graph.inputs) - set(graph.outputs)
    bad = sorted(decisions.resident - allowed)
    if bad:
        raise PlanError(f"tensor {bad[0]!r} cannot be resident: it does not cross a group boundary, or it is a "
                        "model input or output, which live in DRAM on this profile")
    if hw.feature_maps_in_sram:
        must = crossing | set(graph.inputs) | set(graph.outputs)
        missing = sorted(must - decisions.resident)
        if missing:
            raise PlanError(f"profile {hw.name} keeps feature maps in SRAM, but {missing[0]!r} is not resident")
    stored = sorted(decisions.resident & {t for c in cands for t in c.escapes})
    if stored:
        raise PlanError(f"tensor {stored[0]!r} cannot be resident: a multi-output group stores it to DRAM from inside")
    on_host = sorted(decisions.resident & graph.dram_only)
    if on_host:
        raise PlanError(f"tensor {on_host[0]!r} cannot be resident: a host layer reads or writes it, in DRAM")
    weighted = {layer.id for layer in graph.layers if layer.op in WEIGHTED}
    if decisions.keep - weighted:
        raise PlanError(f"keep names a layer without weights: {sorted(decisions.keep - weighted)[0]!r}")
    if decisions.prefetch or decisions.double:
        _check_prefetch(hw, decisions, cands)
    return Resolved(graph, hw, decisions, tuple(cands))


def _check_prefetch(hw: HardwareProfile, decisions: Decisions, cands: list[Candidate]) -> None:
    """Prefetch and double name only layers whose weight buffer they change (so decisions stay
    canonical)."""
    if hw.weights_in_place or not hw.dma_overlaps_compute:
        why = "reads weights in place" if hw.weights_in_place else "does not overlap DMA with compute"
        field, names = ("prefetch", decisions.prefetch) if decisions.prefetch else ("double", decisions.double)
        raise PlanError(f"profile {hw.name} {why}: its plans prefetch and double-buffer no weights, but {field} "
                        f"names {sorted(names)[0]!r}")
    can = {w.layer for c in cands for w in c.weights if prefetchable(c, w, w.layer in decisions.keep)}
    bad = sorted(decisions.prefetch - can)
    if bad:
        raise PlanError(f"prefetch names {bad[0]!r}, whose weight buffer it cannot change: the layer has no weights "
                        "in SRAM, is the first layer, or its kept weights are live from its group's start already")
    can = {w.layer for c in cands for w in c.weights if doublable(c, w, w.layer in decisions.keep)}
    bad = sorted(decisions.double - can)
    if bad:
        raise PlanError(f"double names {bad[0]!r}, whose weights are loaded once in their group (or are not in "
                        "SRAM): a second slot would never be used")


# ---------------------------------------------------------------------------- blocks
def _weights_in_sram(hw: HardwareProfile) -> bool:
    return not hw.weights_in_place


def plan_blocks(r: Resolved) -> list[Block]:
    """The SRAM blocks the decisions need. Names are stable: ``g<i>.core``,
    ``g<i>.in.<tensor>``, ``g<i>.out``, ``w.<layer>.keep``, ``w.<layer>.reload``,
    ``res.<tensor>``."""
    hw, dec = r.hw, r.decisions
    overlap = hw.dma_overlaps_compute
    blocks: list[Block] = []
    for gi, c in enumerate(r.candidates):
        if c.tiling == HOST_TILING and c.start in r.graph.host_layers:
            continue  # a host layer uses no SRAM
        if c.core_bytes:
            blocks.append(Block(f"g{gi}.core", c.core_bytes, c.start, c.stop))
        for inp in c.inputs:
            if inp.tensor not in dec.resident:
                blocks.append(Block(f"g{gi}.in.{inp.tensor}", inp.stage_bytes, c.start, inp.stage_end(c.stop, hw)))
        if c.anchor not in dec.resident:
            blocks.append(Block(f"g{gi}.out", c.out_stage_bytes, c.start if overlap else c.stop - 1, c.stop))
        if _weights_in_sram(hw):
            for w in c.weights:
                keep, double = w.layer in dec.keep, w.layer in dec.double
                t0 = weight_buffer_t0(c, w, keep, w.layer in dec.prefetch)
                name = f"w.{w.layer}.keep" if keep else f"w.{w.layer}.reload"
                blocks.append(Block(name, weight_buffer_bytes(w, double), t0, weight_buffer_t1(c, w, keep, double)))
    for t in sorted(dec.resident):
        t0, t1 = r.live_range(t)
        # reserved size (memplan.alloc); the buffer itself holds the tensor's bytes exactly
        blocks.append(Block(f"res.{t}", resident_reserved_bytes(r.graph, t, hw), t0, t1))
    return blocks


# ---------------------------------------------------------------------------- totals
def cost_totals(r: Resolved, sram_peak: int) -> Totals:
    """Totals from the per-candidate cost model."""
    hw, dec, g = r.hw, r.decisions, r.graph
    fm_read = fm_write = w_read = macs = sram = 0
    for c in r.candidates:
        dma = 0
        for inp in c.inputs:
            if inp.tensor not in dec.resident:
                fm_read += inp.load_bytes
                dma += inp.load_bytes
                sram += 2 * inp.copy_bytes
        if c.anchor not in dec.resident:
            fm_write += c.store_bytes
            dma += c.store_bytes
        fm_write += c.escape_bytes
        dma += c.escape_bytes
        for w in c.weights:
            b = w.total_bytes if (w.layer in dec.keep and _weights_in_sram(hw)) else w.reload_bytes
            w_read += b
            dma += b
        macs += c.macs
        sram += c.compute_sram_bytes + (dma if _weights_in_sram(hw) else dma - sum(w.reload_bytes for w in c.weights))
    cycles = sum(timeline(hw, group_timing(r)))
    base_macs = sum(g.layer_macs(layer) for layer in g.layers)
    return Totals(fm_read, fm_write, w_read, macs, macs - base_macs, sram_peak, sram,
                  energy_fj(hw, macs, fm_read + fm_write + w_read, sram), cycles)


@dataclass(frozen=True)
class GroupTiming:
    """What the latency model needs of one group: compute cycles, the bytes its DMA engine
    moves while it runs, the weight bytes its compute waits for, and the weight bytes loaded
    for it while the group before runs (prefetched: :func:`memplan.cost.candidate.early_weight_bytes`)."""

    compute: int
    dma_bytes: int
    serial_bytes: int
    early_bytes: int = 0
    serial_loads: int = 0  # weight loads compute waits for (each waits the DRAM read latency)
    early_loads: int = 0  # weight loads during the group before (likewise)


def group_timing(r: Resolved) -> list[GroupTiming]:
    """Per group (in order): its compute cycles; the DMA bytes moved while it runs (its loads,
    stores, copies and weights, less its prefetched early loads); the weight bytes its compute
    waits for (:func:`~memplan.cost.candidate.serial_weight_bytes`); its early loads."""
    hw, dec = r.hw, r.decisions
    out = []
    for c in r.candidates:
        dma = c.copy_bytes + sum(inp.dma_bytes for inp in c.inputs if inp.tensor not in dec.resident)
        dma += (c.store_bytes if c.anchor not in dec.resident else 0) + c.escape_bytes
        serial = early = serial_loads = early_loads = 0
        for w in c.weights:
            keep, pre, double = w.layer in dec.keep and _weights_in_sram(hw), w.layer in dec.prefetch, w.layer in dec.double
            dma += w.total_bytes if keep else w.reload_bytes
            if _weights_in_sram(hw):
                serial += serial_weight_bytes(c, w, keep, pre, double)
                serial_loads += serial_weight_loads(c, w, keep, pre, double)
                e = early_weight_bytes(c, w, keep, pre)
                early += e
                early_loads += 1 if e else 0
        out.append(GroupTiming(c.compute_cycles, dma - early, serial, early, serial_loads, early_loads))
    return out


def timeline(hw: HardwareProfile, groups: Sequence[GroupTiming]) -> list[int]:
    """Cycles of each group, run in order. A group takes :func:`group_cycles` of its own work,
    after the part of its early weight loads that the DMA engine could not fit in the group
    before: the engine is idle there for that group's cycles less its own DMA cycles (its
    slack), and the loads start as soon as it is (Vela counts the weight DMA the previous op
    does not hide the same way)."""
    rate = hw.dram_bytes_per_cycle
    out = []
    slack = 0
    for t in groups:
        own = int(-(-Fraction(t.dma_bytes) // rate))
        base = group_cycles(hw, t.compute, t.dma_bytes, t.serial_bytes, t.serial_loads)
        late = max(0, int(-(-Fraction(t.early_bytes) // rate)) + t.early_loads * hw.dram_read_latency - slack)
        out.append(late + base)
        slack = base - own
    return out


def group_cycles(hw: HardwareProfile, compute: int, dma_bytes: int, serial_bytes: int = 0, serial_loads: int = 0) -> int:
    """Latency model of one group: compute and DMA engines each busy for their work; with
    double-buffered staging they overlap (the longer one dominates), otherwise they add.
    ``compute`` is the group's compute cycles (:func:`memplan.cost.cycles.group_compute_cycles`
    of its commands' work), ``dma_bytes`` what its DMA commands move: DRAM loads and stores,
    weights, and the rolling buffers' SRAM-to-SRAM copies (counted at the DRAM rate: an
    SRAM-to-SRAM move is never slower than a DRAM transfer, so this never flatters a plan).
    ``serial_bytes``: the part of the weight DMA that compute waits for, because no buffer is
    free to load it into earlier (:func:`memplan.cost.candidate.serial_weight_bytes`), in
    ``serial_loads`` loads that each wait the profile's DRAM read latency first; with overlap,
    compute and that DMA add, and the DMA engine's whole work still bounds the group (the
    engine keeps reads in flight, so latency does not add to its own busy time)."""
    rate = hw.dram_bytes_per_cycle
    dma = int(-(-Fraction(dma_bytes) // rate))
    if not hw.dma_overlaps_compute:
        return compute + dma
    return max(compute + int(-(-Fraction(serial_bytes) // rate)) + serial_loads * hw.dram_read_latency, dma)


class WeightTiming:
    """How a command stream's weight loads overlap compute, per group, from the stream alone
    (how the validator and the executor count what :func:`memplan.cost.candidate.serial_weight_bytes`
    and :func:`~memplan.cost.candidate.early_weight_bytes` predict). A LOAD_WEIGHTS overlaps
    compute only if its buffer is live at the step before its layer's and that step runs before
    it: in the same tile (a step of the group), or, for the group's first load of the layer, in
    the group before (an early load, :func:`timeline`); or, for a later load, when its buffer is
    live over the whole group and it writes none of the bytes the layer's previous load wrote
    (a second slot: the previous slice's compute runs meanwhile). Feed every LOAD_WEIGHTS in
    order."""

    def __init__(self, commands: Sequence[Command]) -> None:
        self.start: dict[int, int] = {}  # a group's first step: the least step of its commands
        self.end: dict[int, int] = {}  # and one past its last
        for cmd in commands:
            self.start[cmd.group] = min(cmd.step, self.start.get(cmd.group, cmd.step))
            self.end[cmd.group] = max(cmd.step + 1, self.end.get(cmd.group, cmd.step + 1))
        self.last: dict[tuple[int, str], tuple[int, int]] = {}  # the bytes of a layer's previous load
        self.serial: dict[int, int] = {}  # weight DMA bytes compute waits for
        self.early: dict[int, int] = {}  # weight DMA bytes loaded while the group before runs
        self.serial_loads: dict[int, int] = {}  # and the loads they come in
        self.early_loads: dict[int, int] = {}

    def load(self, cmd: Command, buffer: Buffer, layer_index: int, size: int) -> None:
        assert cmd.layer is not None and cmd.offset is not None
        g, before = cmd.group, layer_index - 1
        prev = self.last.get((g, cmd.layer))
        self.last[(g, cmd.layer)] = lo, hi = cmd.offset, cmd.offset + size
        live_before = buffer.t0 <= before < buffer.t1
        if prev is None:  # the group's first load of the layer
            if not live_before:
                self._add(self.serial, g, size)
            elif self.start[g] > before:  # the step before is the previous group's
                self._add(self.early, g, size)
            return
        other_slot = buffer.t0 <= self.start[g] and self.end[g] <= buffer.t1 and (hi <= prev[0] or prev[1] <= lo)
        if not ((live_before and self.start[g] <= before) or other_slot):
            self._add(self.serial, g, size)

    def _add(self, table: dict[int, int], group: int, size: int) -> None:
        table[group] = table.get(group, 0) + size
        counts = self.serial_loads if table is self.serial else self.early_loads
        counts[group] = counts.get(group, 0) + 1

    def cycles(self, hw: HardwareProfile, compute: Mapping[int, int], dma: Mapping[int, int]) -> int:
        """The plan's cycles (:func:`timeline`), given each group's compute cycles and the DMA
        bytes of its commands (early loads included: they are taken out here)."""
        last = max([*compute, *dma, *self.early, -1])
        return sum(timeline(hw, [GroupTiming(compute.get(g, 0), dma.get(g, 0) - self.early.get(g, 0),
                                             self.serial.get(g, 0), self.early.get(g, 0), self.serial_loads.get(g, 0),
                                             self.early_loads.get(g, 0)) for g in range(last + 1)]))


def energy_fj(hw: HardwareProfile, macs: int, dram_bytes: int, sram_bytes: int) -> int:
    e = (hw.mac_pj * macs + hw.dram_pj_per_byte * dram_bytes + hw.sram_pj_per_byte * sram_bytes) * 1000
    if e.denominator != 1:
        raise PlanError(f"profile {hw.name}: energies must have at most three decimals of pJ")
    return int(e)


# ---------------------------------------------------------------------------- plan
def build_plan(graph: Graph, hw: HardwareProfile, decisions: Decisions,
               offsets: Mapping[str, int] | None = None, provenance: Provenance = Provenance()) -> Plan:
    """Expand decisions into a plan. Offsets default to first fit (baselines)."""
    r = resolve(graph, hw, decisions)
    blocks = plan_blocks(r)
    if offsets is None:
        offsets = first_fit(blocks, hw.sram_alignment)
    missing = [b.name for b in blocks if b.name not in offsets]
    if missing:
        raise PlanError(f"no offset for SRAM block {missing[0]!r}")
    buffers = _buffers(r, blocks, offsets)
    peak = sram_peak(buffers, hw.sram_alignment)
    commands = _commands(r, offsets)
    return Plan(graph.name, hw.sram_bytes, hw.elem_bytes, hw.bias_bytes, decisions, tuple(buffers),
                tuple(commands), cost_totals(r, peak), provenance, host_totals(graph, hw), hw.weight_encoding)


def sram_peak(buffers: Sequence[Buffer], alignment: int) -> int:
    """The highest SRAM byte the buffers reserve: each reserves its size rounded up to the
    alignment (memplan.alloc), at an aligned offset."""
    return align_up(max((b.end for b in buffers), default=0), alignment)


def host_totals(graph: Graph, hw: HardwareProfile) -> HostTotals:
    """DRAM traffic of the host layers: each reads its inputs and writes its output once."""
    read = write = 0
    for i in graph.host_layers:
        layer = graph.layers[i]
        read += sum(tensor_bytes(graph, t, hw.elem_bytes) for t in dict.fromkeys(layer.inputs))
        write += tensor_bytes(graph, layer.output, hw.elem_bytes)
    return HostTotals(len(graph.host_layers), read, write)


def _buffers(r: Resolved, blocks: list[Block], offsets: Mapping[str, int]) -> list[Buffer]:
    kinds = {"in": BufferKind.IN_STAGE, "out": BufferKind.OUT_STAGE}
    out: list[Buffer] = []
    by_name = {c_idx: c for c_idx, c in enumerate(r.candidates)}
    for b in blocks:
        off = offsets[b.name]
        head, _, rest = b.name.partition(".")
        if head == "res":
            size = resident_bytes(r.graph, rest, r.hw)
            out.append(Buffer(b.name, BufferKind.RESIDENT, off, size, b.t0, b.t1, tensor=rest))
        elif head == "w":
            layer, _, kind = rest.rpartition(".")
            k = BufferKind.WEIGHT_KEEP if kind == "keep" else BufferKind.WEIGHT_RELOAD
            out.append(Buffer(b.name, k, off, b.size, b.t0, b.t1, layer=layer))
        else:
            gi = int(head[1:])
            part, _, tensor = rest.partition(".")
            if part == "core":
                for cb in by_name[gi].core:
                    out.append(Buffer(f"g{gi}.core.{cb.tensor}", BufferKind.CORE, off + cb.offset, cb.size, cb.t0, cb.t1, tensor=cb.tensor))
                acc = by_name[gi].acc
                if acc is not None:  # an FDT group's partial sums (memplan.geometry.fdt)
                    out.append(Buffer(f"g{gi}.acc", BufferKind.ACCUMULATOR, off + acc.offset, acc.size, acc.t0, acc.t1,
                                      tensor=acc.tensor, layer=r.graph.layers[by_name[gi].stop - 1].id))
            else:
                t = tensor if part == "in" else by_name[gi].anchor
                out.append(Buffer(b.name, kinds[part], off, b.size, b.t0, b.t1, tensor=t))
    return sorted(out, key=lambda b: (b.t0, b.offset, b.name))


def block_offsets(r: Resolved, buffers: Sequence[Buffer]) -> dict[str, int]:
    """The offset of each SRAM block that :func:`_buffers` turned into ``buffers`` (its
    inverse): a group's core block is where its first core buffer sits, less that buffer's
    offset inside the core. Blocks without a buffer of their name are left out."""
    by_name = {b.name: b for b in buffers}
    out: dict[str, int] = {}
    for blk in plan_blocks(r):
        if blk.name in by_name:
            out[blk.name] = by_name[blk.name].offset
            continue
        head, _, part = blk.name.partition(".")
        if part == "core":
            first = r.candidates[int(head[1:])].core[0]
            buf = by_name.get(f"{blk.name}.{first.tensor}")
            if buf is not None:
                out[blk.name] = buf.offset - first.offset
    return out


def _commands(r: Resolved, offsets: Mapping[str, int], slice_order: Sequence[int] | None = None) -> list[Command]:
    """The command stream. ``slice_order`` (tests only) runs the slices of every FDT group in
    that order instead of 0, 1, ...: the int32 accumulation makes the result independent of it."""
    g, hw, dec = r.graph, r.hw, r.decisions
    slots = staging_slots(hw)
    cmds: list[Command] = []
    for gi, c in enumerate(r.candidates):
        shape = group_shape(g, c.start, c.stop, hw.tiling.multi_output)
        assert shape is not None
        if is_host(g, shape):
            layer = g.layers[c.start]
            cmds.append(Command(Op.HOST, c.start, gi, 0, layer=layer.id, host_inputs=tuple(dict.fromkeys(layer.inputs)),
                                host_outputs=(layer.output,)))
            continue
        geo = group_geometry(g, shape, c.tiling)
        base = offsets.get(f"g{gi}.core", 0)
        core = {cb.tensor: cb for cb in c.core}
        spatial = geo.n_rows * geo.n_cols
        fdt = c.acc is not None
        acc_off = offsets[f"g{gi}.core"] + c.acc.offset if c.acc is not None else 0
        order = list(range(geo.n_chans)) if slice_order is None or not fdt else list(slice_order)
        slot_bytes = {w.layer: w.slice_bytes for w in c.weights if w.layer in dec.double}

        def weight_slot(layer_id: str, load: int) -> int:
            """Where the layer's ``load``-th load of the group goes: its buffer, or, double-buffered,
            the buffer's two slots in turn."""
            kind = "keep" if layer_id in dec.keep else "reload"
            return offsets[f"w.{layer_id}.{kind}"] + (load % 2) * slot_bytes.get(layer_id, 0)

        if sorted(order) != list(range(geo.n_chans)):
            raise PlanError(f"slice order {order} is not a permutation of the {geo.n_chans} slices of group {gi}")
        for k, (pos, ri, xi) in enumerate(geo.tiles()):
            ci = order[pos] if fdt else pos  # an FDT group's slices are innermost: pos is the slice's place

            def staged(name: str, tensor: str, tile: int = k) -> int:
                n = stage_slots(geo, tensor, hw) if tensor != c.anchor else slots
                return offsets[name] + (tile % n) * stage_slot_bytes(geo, tensor, hw)

            def operand(t: str) -> Operand:
                if t in dec.resident:
                    return Operand(t, Region.full(g.shape(t)), offsets[f"res.{t}"])
                if t in core:
                    return Operand(t, geo.region(t, ci, ri, xi), base + core[t].slot_offset(k))
                return Operand(t, geo.region(t, ci, ri, xi), staged(f"g{gi}.in.{t}", t))

            if k % spatial == 0 and _weights_in_sram(hw):
                for w in c.weights:
                    if w.layer in dec.keep:
                        ch = geo.chans[g.layers[w.index].output][ci]
                        cmds.append(Command(Op.LOAD_WEIGHTS, c.start, gi, k, layer=w.layer, channels=ch,
                                            offset=weight_slot(w.layer, pos)))
            for t in shape.external_inputs:
                if t not in dec.resident:
                    op = operand(t)
                    if op.region.empty:  # the tile reads only padding of this input
                        continue
                    if not geo.rolled(t):
                        cmds.append(Command(Op.LOAD, c.start, gi, k, tensor=t, region=op.region, offset=op.offset))
                        continue
                    # rolling: rows kept from the previous stripe's slot, then the new rows into this one's view
                    kept, new = geo.cached_region(t, ci, ri, xi), geo.computed_region(t, ci, ri, xi)
                    if not kept.empty:
                        prev = Operand(t, geo.region(t, ci, ri - 1, xi), staged(f"g{gi}.in.{t}", t, k - 1))
                        cmds.append(Command(Op.COPY, c.start, gi, k, tensor=t, region=kept, inputs=(prev,), output=op))
                    if not new.empty:
                        cmds.append(Command(Op.LOAD, c.start, gi, k, tensor=t, region=new, offset=op.offset, output=op))
            for i in shape.layer_range:
                layer = g.layers[i]
                out_region = geo.computed_region(layer.output, ci, ri, xi)
                cb = core.get(layer.output)
                kept = geo.cached_region(layer.output, ci, ri, xi)
                if cb is not None and cb.slot and not kept.empty:  # rolling buffer: rows from the previous stripe
                    # a rolling group's tiles are its row stripes: tile k - 1 is stripe ri - 1
                    prev = Operand(layer.output, geo.region(layer.output, ci, ri - 1, xi), base + cb.slot_offset(k - 1))
                    cmds.append(Command(Op.COPY, i, gi, k, tensor=layer.output, region=kept, inputs=(prev,),
                                        output=operand(layer.output)))
                w_off = None
                if layer.op in WEIGHTED and _weights_in_sram(hw):
                    if layer.id in dec.keep:
                        w_off = weight_slot(layer.id, pos)
                    else:
                        w_off = weight_slot(layer.id, k)
                        cmds.append(Command(Op.LOAD_WEIGHTS, i, gi, k, layer=layer.id,
                                            channels=(out_region.c0, out_region.c1), offset=w_off))
                if out_region.empty:  # nothing of this layer is needed by this tile
                    continue
                if layer.output == c.anchor and layer.output not in dec.resident:
                    out = Operand(layer.output, out_region, staged(f"g{gi}.out", layer.output))
                else:
                    out = operand(layer.output)
                if fdt and layer.output == c.anchor:  # partial sums of the slice into the accumulator
                    src = layer.inputs[0]
                    cmds.append(Command(Op.COMPUTE, i, gi, k, layer=layer.id, region=out_region,
                                        inputs=(operand(src),), output=Operand(c.anchor, out_region, acc_off),
                                        weights_offset=w_off, in_channels=geo.chans[src][ci], accumulate=pos > 0))
                    if pos == geo.n_chans - 1:  # the last slice: requantize into the int8 anchor tile
                        cmds.append(Command(Op.REQUANTIZE, i, gi, k, layer=layer.id, region=out_region,
                                            inputs=(Operand(c.anchor, out_region, acc_off),), output=out))
                    continue
                cmds.append(Command(Op.COMPUTE, i, gi, k, layer=layer.id, region=out_region,
                                    inputs=tuple(operand(t) for t in layer.inputs), output=out, weights_offset=w_off))
                if layer.output in shape.escapes:  # a multi-output group: store what no earlier tile stored
                    part = geo.store_region(layer.output, ci, ri, xi)
                    if not part.empty:
                        cmds.append(Command(Op.STORE, i, gi, k, tensor=layer.output, region=part, offset=out.offset,
                                            output=out))
            if fdt and pos != geo.n_chans - 1:
                continue  # the anchor tile is complete after the last slice only
            if c.anchor not in dec.resident:
                region = geo.region(c.anchor, ci, ri, xi)
                cmds.append(Command(Op.STORE, c.stop - 1, gi, k, tensor=c.anchor, region=region,
                                    offset=staged(f"g{gi}.out", c.anchor)))
    return cmds


__all__ = ["GroupTiming", "Resolved", "WeightTiming", "block_offsets", "group_timing", "timeline", "build_plan", "cost_totals", "crossing_tensors", "energy_fj", "group_cycles",
           "host_totals", "plan_blocks", "sram_peak",
           "resolve"]
