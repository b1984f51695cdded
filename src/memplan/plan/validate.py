"""A validator that trusts nothing in the plan but the graph it was made for.

It replays the command stream symbolically: every SRAM byte carries a tag naming the tensor
element (or weight channel) it holds. Loads write tags, computes check that every input cell
they need carries the right tag and then tag their output cells, stores check the tags they
copy out. That catches overlapping live buffers (a later write clobbers a tag still needed),
wrong offsets, a tensor read before it is written, a halo one row short, and regions out of
bounds. Then it recomputes every total from the commands and compares.

Alignment: every buffer offset must be a multiple of the profile's ``sram_alignment``, and
every buffer's reserved bytes (its size rounded up to it) must lie within the SRAM; the SRAM
peak is the highest reserved byte (:func:`memplan.plan.build.sram_peak`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields

import numpy as np

from memplan.config import HardwareProfile
from memplan.cost.cycles import command_work, group_compute_cycles
from memplan.cost.weights import WeightFormat, slice_bytes
from memplan.errors import PlanError
from memplan.geometry.backprop import input_regions, region_macs
from memplan.geometry.region import Region
from memplan.ir.graph import Graph
from memplan.host import tensor_bytes
from memplan.ir.ops import WEIGHTED, OpKind
from memplan.plan.build import block_offsets, build_plan, energy_fj, group_cycles, resolve, sram_peak
from memplan.plan.model import Buffer, Command, HostTotals, Op, Operand, Plan, Totals

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
            need = graph.tensors[t].numel * plan.elem_bytes
            if b.size != need or b.t0 != 0:
                raise PlanError(f"resident buffer {b.name} of model input {t!r} is {b.size} B live from step {b.t0}: "
                                f"the input needs {need} B from step 0; re-run memplan solve")
            st.tags[b.offset:b.offset + b.size] = _element_tags(st, t, Region.full(graph.shape(t)))
        else:
            st.dram_valid[t][...] = True
    buffers = list(plan.buffers)
    fm_read = fm_write = w_read = macs = sram_access = 0
    group_macs: dict[int, int] = {}
    group_work: dict[int, tuple[int, int]] = {}  # vector elements, NPU cycles
    group_dma: dict[int, int] = {}
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
            if _buffer_at(buffers, cmd.step, cmd.offset, cmd.offset + n) is None:
                raise _fail(k, cmd, f"SRAM [{cmd.offset}, {cmd.offset + n}) is not inside a buffer live at step {cmd.step}")
            sl = slice(cmd.offset, cmd.offset + n)
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
            if _buffer_at(buffers, cmd.step, cmd.offset, cmd.offset + wt.size) is None:
                raise _fail(k, cmd, f"weights [{cmd.offset}, {cmd.offset + wt.size}) are not inside a buffer live at step {cmd.step}")
            st.tags[cmd.offset:cmd.offset + wt.size] = wt
            w_read += wt.size
            dma = wt.size
        else:
            dma_w, n_macs, n_sram = _compute(st, buffers, k, cmd)
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
        if not (cmd.op is Op.COMPUTE and hw.weights_in_place):
            sram_access += dma
    for t in graph.outputs:
        if t in resident:
            b = resident[t]
            if not np.array_equal(st.tags[b.offset:b.end], _element_tags(st, t, Region.full(graph.shape(t)))):
                raise PlanError(f"model output {t} is not complete in its resident buffer at the end")
        elif not st.dram_valid[t].all():
            raise PlanError(f"model output {t} is never completely written to DRAM")
    groups = sorted(set(group_macs) | set(group_dma))
    cycles = sum(group_cycles(hw, group_compute_cycles(hw, group_macs.get(g, 0), *group_work.get(g, (0, 0))),
                              group_dma.get(g, 0)) for g in groups)
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
        _check_operand(st, buffers, k, cmd, op)
        if not op.region.contains(want):
            raise _fail(k, cmd, f"input {op.tensor} holds {op.region.as_list()} but the layer needs {want.as_list()}")
        addr = _sub_offsets(op.region, want, op.offset, eb)
        if not np.array_equal(st.tags[addr], _element_tags(st, op.tensor, want)):
            raise _fail(k, cmd, f"input {op.tensor} {want.as_list()} is not in SRAM at offset {op.offset} (never written, or overwritten)")
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


def _check_operand(st: _State, buffers: list[Buffer], k: int, cmd: Command, op: Operand) -> None:
    if not _in_bounds(st.graph, op.tensor, op.region):
        raise _fail(k, cmd, f"operand {op.tensor} region {op.region.as_list()} is out of bounds")
    n = op.region.numel * st.hw.elem_bytes
    if _buffer_at(buffers, cmd.step, op.offset, op.offset + n) is None:
        raise _fail(k, cmd, f"operand {op.tensor} [{op.offset}, {op.offset + n}) is not inside a buffer live at step {cmd.step}")
