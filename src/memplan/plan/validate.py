"""A validator that trusts nothing in the plan but the graph it was made for.

It replays the command stream symbolically: every SRAM byte carries a tag naming the tensor
element (or weight channel) it holds. Loads write tags, computes check that every input cell
they need carries the right tag and then tag their output cells, stores check the tags they
copy out. That catches overlapping live buffers (a later write clobbers a tag still needed),
wrong offsets, a tensor read before it is written, a halo one row short, and regions out of
bounds. Then it recomputes every total from the commands and compares.

FDT groups (:mod:`memplan.geometry.fdt`): an accumulator's bytes carry the tags of the anchor
elements whose partial sums they hold (flagged apart from int8 elements), and the validator
keeps, per accumulator and tile, the input-channel slices added: a slice that adds must find
partial sums of the same tile written (first write before read) and disjoint from its own; a
requantize must find every input channel added exactly once, and consumes them.

Alignment: every buffer offset must be a multiple of the profile's ``sram_alignment``, and
every buffer's reserved bytes (its size rounded up to it) must lie within the SRAM; the SRAM
peak is the highest reserved byte (:func:`memplan.plan.build.sram_peak`).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, fields

import numpy as np

from memplan.config import HardwareProfile
from memplan.cost.candidate import ACC_BYTES, resident_bytes
from memplan.cost.cycles import command_work, group_compute_cycles
from memplan.cost.weights import WeightFormat, slice_bytes
from memplan.errors import PlanError
from memplan.geometry.backprop import input_regions, region_macs
from memplan.geometry.fdt import reduces_over_channels
from memplan.geometry.region import Region
from memplan.ir.graph import Graph, Layer
from memplan.host import tensor_bytes
from memplan.ir.ops import WEIGHTED, OpKind
from memplan.plan.build import WeightTiming, block_offsets, build_plan, energy_fj, resolve, sram_peak
from memplan.plan.model import Buffer, BufferKind, Command, HostTotals, Op, Operand, Plan, Totals

_EMPTY = 0


@dataclass
class _State:
    graph: Graph
    hw: HardwareProfile
    plan: Plan
    tags: np.ndarray
    tensor_ids: dict[str, int]
    layer_ids: dict[str, int]
    dram_valid: dict[str, np.ndarray]
    #: FDT accumulators being filled: (SRAM offset, anchor tile) -> input-channel slices added
    acc_slices: dict[tuple[int, Region], list[tuple[int, int]]] = dataclasses.field(default_factory=dict)


def _fail(cmd_index: int, cmd: Command, msg: str) -> PlanError:
    what = cmd.layer or cmd.tensor
    return PlanError(f"command {cmd_index} ({cmd.op.value} {what}, group {cmd.group}, tile {cmd.tile}): {msg}")


def _element_tags(st: _State, tensor: str, region: Region) -> np.ndarray:
    _, c, h, w = st.graph.shape(tensor)
    cc, yy, xx = np.ix_(np.arange(region.c0, region.c1), np.arange(region.y0, region.y1), np.arange(region.x0, region.x1))
    flat = ((cc * h + yy) * w + xx).ravel().astype(np.int64)
    ids = (np.int64(st.tensor_ids[tensor]) << 36) + flat + 1
    return np.repeat(ids, st.hw.elem_bytes) if st.hw.elem_bytes > 1 else ids


def _weight_tags(st: _State, layer_id: str, c0: int, c1: int) -> np.ndarray:
    """Tags of the bytes of the weight slice ``[c0, c1)``, as many as it has
    (:func:`memplan.cost.weights.slice_bytes`): per output channel for int8 weights, one tag
    for the whole slice when it is encoded (its bytes belong to no single channel)."""
    layer = st.graph.layer(layer_id)
    fmt = WeightFormat(st.plan.weight_encoding, st.hw.elem_bytes, st.hw.bias_bytes)
    if not fmt.linear:
        tag = -((np.int64(st.layer_ids[layer_id]) << 42) + (np.int64(c0) << 21) + c1 + 1)
        return np.full(slice_bytes(st.graph, layer, c0, c1, fmt), tag, dtype=np.int64)
    per_w = st.graph.weight_elems(layer) // st.graph.out_channels(layer) * st.hw.elem_bytes
    chan = -((np.int64(st.layer_ids[layer_id]) << 20) + np.arange(c0, c1, dtype=np.int64) + 1)
    parts = [np.repeat(chan, per_w)]
    if layer.bias:
        parts.append(np.repeat(chan, st.hw.bias_bytes))
    return np.concatenate(parts)


def _sub_offsets(held: Region, want: Region, base: int, elem_bytes: int) -> np.ndarray:
    """SRAM byte addresses of region ``want`` inside a buffer holding ``held`` at ``base``."""
    cc, yy, xx = np.ix_(np.arange(want.c0 - held.c0, want.c1 - held.c0), np.arange(want.y0 - held.y0, want.y1 - held.y0),
                        np.arange(want.x0 - held.x0, want.x1 - held.x0))
    elem = ((cc * held.rows + yy) * held.cols + xx).ravel().astype(np.int64)
    if elem_bytes == 1:
        return base + elem
    return (base + elem[:, None] * elem_bytes + np.arange(elem_bytes)).ravel()


def _buffer_at(buffers: list[Buffer], step: int, lo: int, hi: int) -> Buffer | None:
    for b in buffers:
        if b.t0 <= step < b.t1 and b.offset <= lo and hi <= b.end:
            return b
    return None


def _check_buffers(plan: Plan, alignment: int) -> None:
    for b in plan.buffers:
        if b.offset < 0 or b.end > plan.sram_bytes:
            raise PlanError(f"buffer {b.name} [{b.offset}, {b.end}) lies outside the SRAM of {plan.sram_bytes} B")
        if b.offset % alignment:
            raise PlanError(f"buffer {b.name} is at offset {b.offset}, not a multiple of the profile's SRAM "
                            f"alignment of {alignment} B")
        if sram_peak([b], alignment) > plan.sram_bytes:
            raise PlanError(f"buffer {b.name} [{b.offset}, {b.end}) reserves up to {sram_peak([b], alignment)} B "
                            f"(its size rounded up to the {alignment}-B alignment), beyond the SRAM of {plan.sram_bytes} B")
        if b.size < 0 or b.t0 >= b.t1:
            raise PlanError(f"buffer {b.name} has an empty or negative extent")
    bufs = sorted(plan.buffers, key=lambda b: b.t0)
    for i, a in enumerate(bufs):
        for b in bufs[i + 1:]:
            if b.t0 >= a.t1:
                continue
            if a.offset < b.end and b.offset < a.end and a.size and b.size:
                raise PlanError(f"buffers {a.name} and {b.name} overlap in SRAM while both are live")


def _in_bounds(graph: Graph, tensor: str, region: Region) -> bool:
    return tensor in graph.tensors and len(graph.tensors[tensor].shape) == 4 and region.within(graph.shape(tensor)) and not region.empty


def validate_plan(plan: Plan, graph: Graph, hw: HardwareProfile) -> Totals:
    """Raise :class:`PlanError` naming the first violation; return the recomputed totals."""
    for field, ours in (("sram_bytes", plan.sram_bytes), ("elem_bytes", plan.elem_bytes), ("bias_bytes", plan.bias_bytes)):
        theirs = getattr(hw, field)
        if ours != theirs:
            raise PlanError(f"the plan's {field} is {ours}, but its hardware profile {hw.name!r} gives {theirs}: "
                            "re-run memplan solve")
    if plan.weight_encoding != hw.weight_encoding:
        raise PlanError(f"the plan's weights are encoded {plan.weight_encoding!r}, but its hardware profile "
                        f"{hw.name!r} gives {hw.weight_encoding!r}: re-run memplan solve")
    _check_buffers(plan, hw.sram_alignment)
    st = _State(
        graph, hw, plan,
        # only the extent the buffers use: every access is checked to lie in a buffer
        tags=np.zeros(max((b.end for b in plan.buffers), default=0), dtype=np.int64),
        tensor_ids={t: i + 1 for i, t in enumerate(sorted(graph.tensors))},
        layer_ids={layer.id: i + 1 for i, layer in enumerate(graph.layers)},
        dram_valid={t: np.zeros(graph.tensors[t].shape[1:], dtype=bool) for t in graph.tensors
                    if graph.tensors[t].is_feature_map},
    )
    resident = {b.tensor: b for b in plan.buffers if b.kind.value == "resident"}
    for t in graph.inputs:
        if t in resident:  # the host writes a resident model input before the run
            b = resident[t]
            need = resident_bytes(graph, t, hw)  # the input's bytes, channel-major, channels bricked
            if b.size != need or b.t0 != 0:
                raise PlanError(f"resident buffer {b.name} of model input {t!r} is {b.size} B live from step {b.t0}: "
                                f"the input needs {need} B from step 0; re-run memplan solve")
            n = graph.tensors[t].numel * plan.elem_bytes
            st.tags[b.offset:b.offset + n] = _element_tags(st, t, Region.full(graph.shape(t)))
        else:
            st.dram_valid[t][...] = True
    buffers = list(plan.buffers)
    fm_read = fm_write = w_read = macs = sram_access = 0
    group_macs: dict[int, int] = {}
    group_work: dict[int, tuple[int, int]] = {}  # vector elements, NPU cycles
    group_dma: dict[int, int] = {}
    timing = WeightTiming(plan.commands)  # how the weight loads overlap compute
    eb = hw.elem_bytes
    host_read = host_write = host_layers = 0
    for k, cmd in enumerate(plan.commands):
        dma = 0
        if cmd.op is Op.HOST:
            read, written = _host(st, k, cmd)
            host_read += read
            host_write += written
            host_layers += 1
            continue
        if cmd.op in (Op.LOAD, Op.STORE):
            assert cmd.tensor is not None and cmd.region is not None and cmd.offset is not None
            if not _in_bounds(graph, cmd.tensor, cmd.region):
                raise _fail(k, cmd, f"region {cmd.region.as_list()} is out of bounds of {cmd.tensor}")
            n = cmd.region.numel * eb
            # a load into (or a store from) a view of a larger region: a rolling buffer's slot,
            # the tile buffer of a multi-output group's escaping tensor
            view = cmd.output
            if view is not None and (view.tensor != cmd.tensor or view.offset != cmd.offset
                                     or not view.region.contains(cmd.region)):
                raise _fail(k, cmd, "its view does not hold the region it moves at its offset")
            held = view.region.numel * eb if view is not None else n
            if _buffer_at(buffers, cmd.step, cmd.offset, cmd.offset + held) is None:
                raise _fail(k, cmd, f"SRAM [{cmd.offset}, {cmd.offset + held}) is not inside a buffer live at step {cmd.step}")
            sl = (_sub_offsets(view.region, cmd.region, cmd.offset, eb) if view is not None
                  else slice(cmd.offset, cmd.offset + n))
            c, y, x = cmd.region.slices()
            if cmd.op is Op.LOAD:
                if not st.dram_valid[cmd.tensor][c, y, x].all():
                    raise _fail(k, cmd, f"reads {cmd.tensor} from DRAM before it is written there")
                st.tags[sl] = _element_tags(st, cmd.tensor, cmd.region)
                fm_read += n
            else:
                if not np.array_equal(st.tags[sl], _element_tags(st, cmd.tensor, cmd.region)):
                    raise _fail(k, cmd, f"stores SRAM that does not hold {cmd.tensor} {cmd.region.as_list()}")
                st.dram_valid[cmd.tensor][c, y, x] = True
                fm_write += n
            dma = n
        elif cmd.op is Op.LOAD_WEIGHTS:
            assert cmd.layer is not None and cmd.channels is not None and cmd.offset is not None
            if cmd.layer not in graph.layer_index or graph.layer(cmd.layer).op not in WEIGHTED:
                raise _fail(k, cmd, "loads weights of no weighted layer of the graph")
            c_out = graph.out_channels(graph.layer(cmd.layer))
            if not 0 <= cmd.channels[0] < cmd.channels[1] <= c_out:
                raise _fail(k, cmd, f"channels {list(cmd.channels)} are not a slice of the layer's {c_out} output channels")
            wt = _weight_tags(st, cmd.layer, *cmd.channels)
            into = _buffer_at(buffers, cmd.step, cmd.offset, cmd.offset + wt.size)
            if into is None:
                raise _fail(k, cmd, f"weights [{cmd.offset}, {cmd.offset + wt.size}) are not inside a buffer live at step {cmd.step}")
            st.tags[cmd.offset:cmd.offset + wt.size] = wt
            w_read += wt.size
            dma = wt.size
            timing.load(cmd, into, graph.layer_index[cmd.layer], wt.size)
        elif cmd.op is Op.COPY:  # SRAM -> SRAM by the DMA engine: read once, written once
            dma = _copy(st, buffers, k, cmd) * eb
            sram_access += dma
        elif cmd.op is Op.REQUANTIZE:
            dma_w, n_sram = _requantize(st, buffers, k, cmd)
            w_read += dma_w
            dma = dma_w
            sram_access += n_sram
        else:
            dma_w, n_macs, n_sram = (_accumulate if cmd.accumulate is not None else _compute)(st, buffers, k, cmd)
            w_read += dma_w
            dma = dma_w
            macs += n_macs
            sram_access += n_sram
            group_macs[cmd.group] = group_macs.get(cmd.group, 0) + n_macs
            assert cmd.layer is not None and cmd.region is not None
            e, n = command_work(graph, graph.layer(cmd.layer), (cmd.region.channels, cmd.region.rows, cmd.region.cols), hw)
            e0, n0 = group_work.get(cmd.group, (0, 0))
            group_work[cmd.group] = (e0 + e, n0 + n)
        group_dma[cmd.group] = group_dma.get(cmd.group, 0) + dma
        if not (cmd.op in (Op.COMPUTE, Op.REQUANTIZE) and hw.weights_in_place):
            sram_access += dma
    for t in graph.outputs:
        if t in resident:
            b = resident[t]
            n = graph.tensors[t].numel * plan.elem_bytes
            if b.size != resident_bytes(graph, t, hw) or not np.array_equal(
                    st.tags[b.offset:b.offset + n], _element_tags(st, t, Region.full(graph.shape(t)))):
                raise PlanError(f"model output {t} is not complete in its resident buffer at the end")
        elif not st.dram_valid[t].all():
            raise PlanError(f"model output {t} is never completely written to DRAM")
    groups = sorted(set(group_macs) | set(group_dma))
    cycles = timing.cycles(hw, {g: group_compute_cycles(hw, group_macs.get(g, 0), *group_work.get(g, (0, 0)))
                                for g in groups}, group_dma)
    base = sum(graph.layer_macs(layer) for layer in graph.layers)
    totals = Totals(fm_read, fm_write, w_read, macs, macs - base, sram_peak(plan.buffers, hw.sram_alignment),
                    sram_access, energy_fj(hw, macs, fm_read + fm_write + w_read, sram_access), cycles)
    for field in ("dram_read_fm", "dram_write_fm", "dram_read_weights", "macs", "recompute_macs", "sram_peak",
                  "sram_access", "energy_fj", "cycles"):
        got, want = getattr(plan.totals, field), getattr(totals, field)
        if got != want:
            raise PlanError(f"plan total {field} = {got} but the commands give {want}")
    host = HostTotals(host_layers, host_read, host_write)
    if host != plan.host:
        field = next(f.name for f in fields(host) if getattr(host, f.name) != getattr(plan.host, f.name))
        raise PlanError(f"plan host total {field} = {getattr(plan.host, field)} but the commands give {getattr(host, field)}")
    return totals


def _host(st: _State, k: int, cmd: Command) -> tuple[int, int]:
    """Check a host command: a host layer of the graph, reading exactly its inputs, each wholly
    written to DRAM before, and writing its output there. Returns (DRAM bytes read, written)."""
    graph = st.graph
    if cmd.layer not in graph.layer_index or graph.layer(cmd.layer).op is not OpKind.HOST:
        raise _fail(k, cmd, "names no host layer of the graph")
    layer = graph.layer(cmd.layer)
    if cmd.host_inputs != tuple(dict.fromkeys(layer.inputs)) or cmd.host_outputs != (layer.output,):
        raise _fail(k, cmd, "its inputs and outputs are not the host layer's")
    if cmd.step != graph.layer_index[layer.id]:
        raise _fail(k, cmd, f"runs at step {cmd.step}, but the layer is step {graph.layer_index[layer.id]}")
    for t in cmd.host_inputs:
        if not st.dram_valid[t].all():
            raise _fail(k, cmd, f"reads {t} from DRAM before it is completely written there")
    st.dram_valid[layer.output][...] = True
    eb = st.hw.elem_bytes
    return sum(tensor_bytes(graph, t, eb) for t in cmd.host_inputs), tensor_bytes(graph, layer.output, eb)


def check_against_decisions(plan: Plan, graph: Graph, hw: HardwareProfile) -> None:
    """Raise :class:`PlanError` unless the plan's buffers, commands and totals are exactly what
    its decisions and buffer offsets expand to (:func:`memplan.plan.build.build_plan`).

    The symbolic replay proves that the commands compute the network; this proves that the
    decisions a plan states (groups, tilings, kept weights, resident tensors) are the ones its
    commands carry out, so that nothing a reader takes from the decisions is false."""
    try:
        r = resolve(graph, hw, plan.decisions)
        rebuilt = build_plan(graph, hw, plan.decisions, block_offsets(r, plan.buffers))
    except PlanError as exc:
        raise PlanError(f"the plan's decisions do not expand to a plan: {exc}") from None
    for what, ours, theirs in (("buffer", plan.buffers, rebuilt.buffers), ("command", plan.commands, rebuilt.commands)):
        for i in range(max(len(ours), len(theirs))):
            a = ours[i] if i < len(ours) else None
            b = theirs[i] if i < len(theirs) else None
            if a == b:
                continue
            if a is None or b is None:
                raise PlanError(f"the plan has {len(ours)} {what}s, but its decisions give {len(theirs)}")
            field = next(f.name for f in fields(a) if getattr(a, f.name) != getattr(b, f.name))
            raise PlanError(f"{what} {i} ({_label(a)}): its {field} is {_brief(getattr(a, field))}, but the plan's "
                            f"decisions give {_brief(getattr(b, field))}")
    if plan.host != rebuilt.host:
        raise PlanError(f"plan host totals {plan.host.to_json()} but the decisions give {rebuilt.host.to_json()}")
    for field in Totals.__dataclass_fields__:
        if getattr(plan.totals, field) != getattr(rebuilt.totals, field):
            raise PlanError(f"plan total {field} = {getattr(plan.totals, field)} but the decisions give "
                            f"{getattr(rebuilt.totals, field)}")


def _label(x: Buffer | Command) -> str:
    if isinstance(x, Buffer):
        return x.name
    return f"{x.op.value} {x.layer or x.tensor}, group {x.group}, tile {x.tile}"


def _brief(value: object) -> str:
    if isinstance(value, Region):
        return str(value.as_list())
    if isinstance(value, enum.Enum):
        return str(value.value)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _compute(st: _State, buffers: list[Buffer], k: int, cmd: Command) -> tuple[int, int, int]:
    """Check one compute command; return (weight DRAM bytes read in place, MACs, SRAM bytes)."""
    graph, hw = st.graph, st.hw
    eb = hw.elem_bytes
    assert cmd.layer is not None and cmd.region is not None and cmd.output is not None
    if cmd.layer not in graph.layer_index:
        raise _fail(k, cmd, "names no layer of the graph")
    layer = graph.layer(cmd.layer)
    if not _in_bounds(graph, layer.output, cmd.region):
        raise _fail(k, cmd, f"output region {cmd.region.as_list()} is out of bounds")
    if len(cmd.inputs) != len(layer.inputs) or any(op.tensor != t for op, t in zip(cmd.inputs, layer.inputs)):
        raise _fail(k, cmd, "input operands do not match the layer's inputs")
    sram = 0
    need = input_regions(graph, layer, cmd.region)
    seen: set[str] = set()
    for op, region in zip(cmd.inputs, need):
        want = region.clip(graph.shape(op.tensor))
        if want.empty:  # the output reads only padding of this input
            continue
        _check_input(st, buffers, k, cmd, op, want, "the layer")
        if op.tensor not in seen:
            sram += want.numel * eb
            seen.add(op.tensor)
    w_dram = 0
    if layer.op in WEIGHTED:
        if hw.weights_in_place:
            if cmd.weights_offset is not None:
                raise _fail(k, cmd, "weights are read in place on this profile, yet the command names an SRAM copy")
            w_dram = _weight_tags(st, layer.id, cmd.region.c0, cmd.region.c1).size
        else:
            if cmd.weights_offset is None:
                raise _fail(k, cmd, "a weighted layer without a weight buffer")
            wt = _weight_tags(st, layer.id, cmd.region.c0, cmd.region.c1)
            if not np.array_equal(st.tags[cmd.weights_offset:cmd.weights_offset + wt.size], wt):
                raise _fail(k, cmd, f"weights of channels {cmd.region.c0}..{cmd.region.c1} are not at offset {cmd.weights_offset}")
    out = cmd.output
    if out.tensor != layer.output:
        raise _fail(k, cmd, "output operand names another tensor")
    _check_operand(st, buffers, k, cmd, out)
    if not out.region.contains(cmd.region):
        raise _fail(k, cmd, f"output buffer holds {out.region.as_list()}, cannot take {cmd.region.as_list()}")
    st.tags[_sub_offsets(out.region, cmd.region, out.offset, eb)] = _element_tags(st, layer.output, cmd.region)
    sram += cmd.region.numel * eb
    return w_dram, region_macs(graph, layer, cmd.region), sram


def _copy(st: _State, buffers: list[Buffer], k: int, cmd: Command) -> int:
    """Check a copy between two views of one tensor in SRAM (a rolling buffer's rows): both
    views lie in live buffers and hold the region, and the source cells carry the tensor's
    tags. Returns the elements copied."""
    graph = st.graph
    if cmd.tensor is None or cmd.region is None or cmd.output is None or len(cmd.inputs) != 1:
        raise _fail(k, cmd, "a copy needs a tensor, a region, one source operand and a destination operand")
    src, dst = cmd.inputs[0], cmd.output
    if not _in_bounds(graph, cmd.tensor, cmd.region):
        raise _fail(k, cmd, f"region {cmd.region.as_list()} is out of bounds of {cmd.tensor}")
    for what, op in (("source", src), ("destination", dst)):
        if op.tensor != cmd.tensor:
            raise _fail(k, cmd, f"its {what} operand holds {op.tensor}, not {cmd.tensor}")
        _check_operand(st, buffers, k, cmd, op)
        if not op.region.contains(cmd.region):
            raise _fail(k, cmd, f"its {what} holds {op.region.as_list()}, not all of {cmd.region.as_list()}")
    eb = st.hw.elem_bytes
    want = _element_tags(st, cmd.tensor, cmd.region)
    if not np.array_equal(st.tags[_sub_offsets(src.region, cmd.region, src.offset, eb)], want):
        raise _fail(k, cmd, f"copies {cmd.tensor} {cmd.region.as_list()} from SRAM offset {src.offset}, which does not "
                            "hold it (never written, or overwritten)")
    st.tags[_sub_offsets(dst.region, cmd.region, dst.offset, eb)] = want
    return cmd.region.numel


def _check_input(st: _State, buffers: list[Buffer], k: int, cmd: Command, op: Operand, want: Region, who: str) -> None:
    """An input operand lies in a live buffer of its tensor, holds ``want`` (what ``who``
    reads of it) and every cell of ``want`` carries the tensor's tag there."""
    _check_operand(st, buffers, k, cmd, op)
    if not op.region.contains(want):
        raise _fail(k, cmd, f"input {op.tensor} holds {op.region.as_list()} but {who} needs {want.as_list()}")
    addr = _sub_offsets(op.region, want, op.offset, st.hw.elem_bytes)
    if not np.array_equal(st.tags[addr], _element_tags(st, op.tensor, want)):
        raise _fail(k, cmd, f"input {op.tensor} {want.as_list()} is not in SRAM at offset {op.offset} (never written, "
                            "or overwritten)")


def _check_operand(st: _State, buffers: list[Buffer], k: int, cmd: Command, op: Operand) -> None:
    if not _in_bounds(st.graph, op.tensor, op.region):
        raise _fail(k, cmd, f"operand {op.tensor} region {op.region.as_list()} is out of bounds")
    n = op.region.numel * st.hw.elem_bytes
    if _buffer_at(buffers, cmd.step, op.offset, op.offset + n) is None:
        raise _fail(k, cmd, f"operand {op.tensor} [{op.offset}, {op.offset + n}) is not inside a buffer live at step {cmd.step}")


# ---------------------------------------------------------------------------- FDT
_ACC_TAG = np.int64(1) << 60  # partial sums of a tensor element: its tag plus this flag


def _acc_tags(st: _State, tensor: str, region: Region) -> np.ndarray:
    """Tags of an accumulator holding ``region`` of ``tensor``: 4 bytes an element."""
    one = st.hw.elem_bytes
    ids = _element_tags(st, tensor, region)[::one] + _ACC_TAG
    return np.repeat(ids, ACC_BYTES)


def _acc_buffer(st: _State, buffers: list[Buffer], k: int, cmd: Command, op: Operand, layer_id: str) -> np.ndarray:
    """Byte addresses of the accumulator operand, checked to lie in an accumulator buffer of
    the layer, live at the command's step."""
    if not _in_bounds(st.graph, op.tensor, op.region):
        raise _fail(k, cmd, f"accumulator region {op.region.as_list()} is out of bounds of {op.tensor}")
    n = op.region.numel * ACC_BYTES
    buf = _buffer_at(buffers, cmd.step, op.offset, op.offset + n)
    if buf is None or buf.kind is not BufferKind.ACCUMULATOR or buf.layer != layer_id:
        raise _fail(k, cmd, f"accumulator [{op.offset}, {op.offset + n}) is not inside an accumulator buffer of "
                            f"{layer_id} live at step {cmd.step}")
    return np.arange(op.offset, op.offset + n)


def _fdt_layer(st: _State, k: int, cmd: Command) -> Layer:
    graph = st.graph
    if cmd.layer not in graph.layer_index:
        raise _fail(k, cmd, "names no layer of the graph")
    layer = graph.layer(cmd.layer)
    if not reduces_over_channels(layer):
        raise _fail(k, cmd, "accumulates partial sums of a layer that does not reduce over input channels")
    if not st.hw.weights_in_place or cmd.weights_offset is not None:
        raise _fail(k, cmd, "FDT slices read their weights in place; this profile or command names an SRAM copy")
    if cmd.region is None or cmd.output is None or len(cmd.inputs) != 1:
        raise _fail(k, cmd, "needs a region, one input operand and an output operand")
    if not _in_bounds(graph, layer.output, cmd.region):
        raise _fail(k, cmd, f"output region {cmd.region.as_list()} is out of bounds")
    acc = cmd.output if cmd.op is Op.COMPUTE else cmd.inputs[0]
    if acc.tensor != layer.output or acc.region != cmd.region:
        raise _fail(k, cmd, "the accumulator operand must hold exactly the command's region of the layer's output")
    return layer


def _accumulate(st: _State, buffers: list[Buffer], k: int, cmd: Command) -> tuple[int, int, int]:
    """Check an FDT slice: the consumer multiplies input channels ``in_channels`` into the int32
    accumulator, writing it (first slice) or adding to partial sums of other, disjoint slices
    of the same tile. Returns (weight bytes read in place, MACs, SRAM bytes)."""
    graph, eb = st.graph, st.hw.elem_bytes
    layer = _fdt_layer(st, k, cmd)
    assert cmd.region is not None and cmd.output is not None
    c_in = graph.shape(layer.inputs[0])[1]
    if cmd.op is not Op.COMPUTE:
        raise _fail(k, cmd, "only a compute accumulates")
    if cmd.in_channels is None or not 0 <= cmd.in_channels[0] < cmd.in_channels[1] <= c_in:
        raise _fail(k, cmd, f"input channels {cmd.in_channels} are not a slice of the layer's {c_in}")
    a, b = cmd.in_channels
    if len(cmd.inputs) != 1 or cmd.inputs[0].tensor != layer.inputs[0]:
        raise _fail(k, cmd, "input operands do not match the layer's inputs")
    op = cmd.inputs[0]
    full = input_regions(graph, layer, cmd.region)[0].clip(graph.shape(op.tensor))
    want = Region(a, b, full.y0, full.y1, full.x0, full.x1)
    sram = 0
    if not want.empty:
        _check_input(st, buffers, k, cmd, op, want, "the slice")
        sram += want.numel * eb
    addr = _acc_buffer(st, buffers, k, cmd, cmd.output, layer.id)
    tags = _acc_tags(st, layer.output, cmd.region)
    key = (cmd.output.offset, cmd.region)
    if cmd.accumulate:
        done = st.acc_slices.get(key)
        if done is None or not np.array_equal(st.tags[addr], tags):
            raise _fail(k, cmd, "adds to partial sums that were never written (or were overwritten) in the accumulator")
        if any(lo < b and a < hi for lo, hi in done):
            raise _fail(k, cmd, f"input channels {a}..{b} were already accumulated into this tile")
        done.append((a, b))
    else:
        st.tags[addr] = tags
        st.acc_slices[key] = [(a, b)]
    sram += cmd.region.numel * ACC_BYTES * (2 if cmd.accumulate else 1)
    per_pair = graph.weight_elems(layer) // (graph.out_channels(layer) * c_in)  # kernel taps (conv), H*W (FC)
    macs = cmd.region.numel * per_pair * (b - a)
    return cmd.region.channels * per_pair * (b - a) * eb, macs, sram


def _requantize(st: _State, buffers: list[Buffer], k: int, cmd: Command) -> tuple[int, int]:
    """Check an FDT requantize: the accumulator holds the partial sums of every input channel
    exactly once; the int8 tile is written to the output operand. Returns (bias bytes read in
    place, SRAM bytes)."""
    graph, eb = st.graph, st.hw.elem_bytes
    layer = _fdt_layer(st, k, cmd)
    acc, out = cmd.inputs[0], cmd.output
    assert out is not None and cmd.region is not None
    addr = _acc_buffer(st, buffers, k, cmd, acc, layer.id)
    done = st.acc_slices.pop((acc.offset, cmd.region), None)
    if done is None or not np.array_equal(st.tags[addr], _acc_tags(st, layer.output, cmd.region)):
        raise _fail(k, cmd, "reads an accumulator that holds no partial sums of this tile (never written, or overwritten)")
    c_in = graph.shape(layer.inputs[0])[1]
    covered = sorted(done)
    if covered[0][0] != 0 or covered[-1][1] != c_in or any(x[1] != y[0] for x, y in zip(covered, covered[1:])):
        raise _fail(k, cmd, f"requantizes before every input channel is accumulated: slices {covered} of {c_in} channels")
    _check_operand(st, buffers, k, cmd, out)
    if not out.region.contains(cmd.region):
        raise _fail(k, cmd, f"output buffer holds {out.region.as_list()}, cannot take {cmd.region.as_list()}")
    st.tags[addr] = _EMPTY  # the partial sums are consumed
    st.tags[_sub_offsets(out.region, cmd.region, out.offset, eb)] = _element_tags(st, layer.output, cmd.region)
    bias = cmd.region.channels * st.hw.bias_bytes if layer.bias else 0
    return bias, cmd.region.numel * (ACC_BYTES + eb)
