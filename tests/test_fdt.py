"""Fused depthwise tiling (memplan.geometry.fdt): FDT groups run their channel slices with
int32 partial sums and verify bit-exactly, with exact costs; the slice order changes no byte;
corrupted FDT plans are rejected by the validator and by the executor alone."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memplan.baselines import floor
from memplan.config import ConfigError, SolverConfig, load_profile
from memplan.cost.candidate import candidate_cost
from memplan.errors import PlanError, VerificationError
from memplan.execute import Prepared, execute_plan, prepare, verify_plan
from memplan.firmware.export import check_exportable
from memplan.frontend import load_model
from memplan.geometry.fdt import fdt_consumer
from memplan.geometry.group import Tiling, group_shape, tile_count, tiling_options
from memplan.ir.builder import GraphBuilder
from memplan.ir.graph import Graph
from memplan.plan.build import _commands, block_offsets, build_plan, crossing_tensors, resolve
from memplan.plan.model import BufferKind, Decisions, GroupDecision, Op, Operand, Plan
from memplan.plan.serialize import check_derived, plan_from_json, plan_to_json, schema
from memplan.solve.run import SolveResult
from memplan.plan.validate import validate_plan
from memplan.solve import UserConstraints, solve_cpsat
from memplan.solve.candidates import enumerate_candidates

MODELS = Path(__file__).resolve().parent.parent / "models"
MCU = load_profile("mcu-sram").with_tiling(fdt_slices=8)


# ---------------------------------------------------------------------------- graphs
def expand_dw_project() -> Graph:
    """MobileNetV2's inverted bottleneck: 1x1 expand -> 3x3 depthwise -> 1x1 project."""
    b = GraphBuilder("expand_dw_project", seed=1)
    x = b.input((1, 8, 6, 6))
    return b.build(b.conv(b.depthwise(b.conv(x, 32, 1)), 8, 1, activation=None))


def conv_fc() -> Graph:
    """A 3x3 convolution whose whole output feeds a fully connected layer."""
    b = GraphBuilder("conv_fc", seed=2)
    x = b.input((1, 3, 5, 5))
    return b.build(b.fc(b.conv(x, 12, 3), 10))


def dw_pw() -> Graph:
    """Depthwise then pointwise (the DS-CNN block), with an activation between."""
    b = GraphBuilder("dw_pw", seed=3)
    x = b.input((1, 16, 7, 5))
    return b.build(b.conv(b.depthwise(x, 3, activation=None), 12, 1))


def tiny() -> Graph:
    """The golden-cost chain: 4 -> 8 channels (1x1), depthwise 3x3, 8 -> 4 channels (1x1), 4x4."""
    b = GraphBuilder("tiny_fdt", seed=4)
    x = b.input((1, 4, 4, 4))
    return b.build(b.conv(b.depthwise(b.conv(x, 8, 1)), 4, 1, activation=None))


CHAINS = {"expand_dw_project": expand_dw_project, "conv_fc": conv_fc, "dw_pw": dw_pw}


def whole_group_plan(g: Graph, tiling: Tiling, slice_order: list[int] | None = None) -> Plan:
    """The graph as one FDT group (every feature map in SRAM on mcu-sram)."""
    n = len(g.layers)
    dec = Decisions((GroupDecision(0, n, tiling),), resident=frozenset({*g.inputs, *g.outputs}))
    plan = build_plan(g, MCU, dec)
    if slice_order is None:
        return plan
    r = resolve(g, MCU, dec)
    return dataclasses.replace(plan, commands=tuple(_commands(r, block_offsets(r, plan.buffers), slice_order)))


def fdt_plan(g: Graph, groups: list[tuple[int, int, Tiling]]) -> Plan:
    """One group per layer except the given FDT groups; every crossing tensor resident."""
    decided: list[GroupDecision] = []
    at = 0
    for start, stop, tiling in sorted(groups, key=lambda x: x[0]):
        decided += [GroupDecision(i, i + 1, _untiled(g, i)) for i in range(at, start)]
        decided.append(GroupDecision(start, stop, tiling))
        at = stop
    decided += [GroupDecision(i, i + 1, _untiled(g, i)) for i in range(at, len(g.layers))]
    dec = Decisions(tuple(decided))
    resident = crossing_tensors(g, dec) | set(g.inputs) | set(g.outputs)
    return build_plan(g, MCU, dataclasses.replace(dec, resident=frozenset(resident)))


def _untiled(g: Graph, i: int) -> Tiling:
    _, c, h, w = g.shape(g.layers[i].output)
    return Tiling(h, w, c)


def fdt_tilings(g: Graph, start: int, stop: int) -> list[Tiling]:
    shape = group_shape(g, start, stop)
    assert shape is not None
    return [t for t in tiling_options(g, shape, MCU.tiling) if t.fdt_c]


@pytest.fixture(scope="module")
def prepared() -> dict[str, Prepared]:
    return {name: prepare(make()) for name, make in {**CHAINS, "tiny": tiny}.items()}


def _check(g: Graph, plan: Plan, prep: Prepared) -> None:
    report = verify_plan(g, plan, MCU, prepared=prep)
    assert report.passed and report.bit_exact and report.counts_match
    assert report.measured.macs == plan.totals.macs
    assert report.sram_peak <= plan.totals.sram_peak


# ---------------------------------------------------------------------------- synthetic chains
@pytest.mark.parametrize("name", sorted(CHAINS))
def test_every_fdt_tiling_of_a_chain_verifies_bit_exactly(name: str, prepared: dict[str, Prepared]) -> None:
    g = CHAINS[name]()
    tilings = fdt_tilings(g, 0, len(g.layers))
    assert len({t.fdt_c for t in tilings}) >= 3  # several slice counts, with and without spatial tiles
    for t in tilings:
        plan = whole_group_plan(g, t)
        assert {b.kind for b in plan.buffers} >= {BufferKind.ACCUMULATOR}
        _check(g, plan, prepared[name])
        if t.tile_h == g.shape(g.outputs[0])[2] and t.tile_w == g.shape(g.outputs[0])[3]:
            assert plan.totals.recompute_macs == 0  # pure FDT: not one MAC more than untiled


def test_fdt_is_offered_only_for_channel_partitioned_chains() -> None:
    g = expand_dw_project()
    assert fdt_consumer(g, 0, 3, group_shape(g, 0, 3).internal) is not None  # type: ignore[union-attr]
    assert fdt_consumer(g, 0, 2, group_shape(g, 0, 2).internal) is None  # ends in a depthwise conv
    assert fdt_consumer(g, 2, 3, ()) is None  # a single layer
    off = load_profile("mcu-sram")
    assert not [t for t in tiling_options(g, group_shape(g, 0, 3), off.tiling) if t.fdt_c]  # type: ignore[arg-type]
    # two 3x3 convs then a 1x1: the first conv's output is needed whole in every slice (recompute): no FDT
    b = GraphBuilder("no_partition", seed=5)
    x = b.conv(b.conv(b.input((1, 4, 5, 5)), 8, 3), 8, 3)
    g2 = b.build(b.conv(x, 4, 1))
    assert fdt_tilings(g2, 0, 3) == []
    assert fdt_tilings(g2, 1, 3)


def test_fdt_needs_weights_read_in_place() -> None:
    from memplan import api

    with pytest.raises(ConfigError, match="in place"):
        load_profile("generic-npu").with_tiling(fdt_slices=4)
    with pytest.raises(ConfigError, match="in place"):  # as the TOML loader checks a profile file
        api.hardware("generic-npu", fdt_slices=4)
    assert api.hardware("mcu-sram", fdt_slices=4).tiling.fdt_slices == 4
    assert load_profile("mcu-sram").tiling.fdt_slices == 0  # off by default


# ---------------------------------------------------------------------------- exact costs
def test_golden_costs_of_a_tiny_chain() -> None:
    """Hand-derived: 4x4 pixels, 1x1 4->8, 3x3 depthwise on 8, 1x1 8->4, two slices of 4."""
    g = tiny()
    shape = group_shape(g, 0, 3)
    assert shape is not None
    c = candidate_cost(g, shape, Tiling(4, 4, 4, 4), MCU)
    assert c.n_tiles == tile_count(g, shape, c.tiling) == 2
    w = {x.layer: (x.total_bytes, x.reload_bytes) for x in c.weights}
    # 1x1 4->8: 8*4 weights + 8 int32 biases; depthwise: 8*9 + 8*4; 1x1 8->4: 4*8 + 4*4
    assert w == {"conv_1": (64, 64), "conv_2": (104, 104), "conv_3": (48, 48)}
    assert c.acc is not None and c.acc.size == 4 * 4 * 4 * 4  # 4 channels x 4x4 pixels x int32
    # the slices of conv_1's and the depthwise's outputs (4x4x4 int8 each) and the accumulator
    assert c.core_bytes == 64 + 64 + 256
    assert c.macs == 8 * 16 * 4 + 8 * 16 * 9 + 4 * 16 * 8 == 2176  # = the untiled network
    assert sum(g.layer_macs(layer) for layer in g.layers) == 2176
    # two row tiles: the accumulator holds one tile; conv_1's rows are recomputed for the 3x3 halo
    c2 = candidate_cost(g, shape, Tiling(2, 4, 4, 4), MCU)
    assert c2.acc is not None and c2.acc.size == 4 * 2 * 4 * 4 and c2.n_tiles == tile_count(g, shape, c2.tiling) == 4
    assert {x.layer: x.reload_bytes for x in c2.weights} == {"conv_1": 128, "conv_2": 208, "conv_3": 96}
    assert c2.macs == 8 * (3 * 4) * 2 * 4 + 8 * 16 * 9 + 4 * 16 * 8  # conv_1 computes rows 0..2 and 1..3
    plan = whole_group_plan(g, Tiling(4, 4, 4, 4))
    assert plan.totals.macs == 2176 and plan.totals.recompute_macs == 0
    assert plan.totals.dram_read_weights == 64 + 104 + 48  # read in place from flash, once
    ops = [(cmd.op, cmd.layer, cmd.in_channels, cmd.accumulate) for cmd in plan.commands]
    assert ops == [(Op.COMPUTE, "conv_1", None, None), (Op.COMPUTE, "conv_2", None, None),
                   (Op.COMPUTE, "conv_3", (0, 4), False),
                   (Op.COMPUTE, "conv_1", None, None), (Op.COMPUTE, "conv_2", None, None),
                   (Op.COMPUTE, "conv_3", (4, 8), True), (Op.REQUANTIZE, "conv_3", None, None)]


def test_golden_plan_verifies(prepared: dict[str, Prepared]) -> None:
    g = tiny()
    for t in fdt_tilings(g, 0, 3):
        _check(g, whole_group_plan(g, t), prepared["tiny"])


# ---------------------------------------------------------------------------- slice order
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(CHAINS)), data=st.data())
def test_slice_order_changes_no_byte(name: str, prepared: dict[str, Prepared], data: st.DataObject) -> None:
    """int32 accumulation is exact and associative: any slice order gives the same bytes (the
    permuted stream is validated and run; only the decisions' canonical order differs)."""
    g = CHAINS[name]()
    t = data.draw(st.sampled_from(fdt_tilings(g, 0, len(g.layers))))
    k = len(range(0, g.shape(g.layers[-1].inputs[0])[1], t.fdt_c))
    order = data.draw(st.permutations(list(range(k))))
    prep = prepared[name]
    base = whole_group_plan(g, t)
    perm = whole_group_plan(g, t, list(order))
    assert validate_plan(perm, g, MCU) == validate_plan(base, g, MCU)
    runs = [execute_plan(p, prep.qgraph, MCU, prep.inputs, expect=prep.reference) for p in (base, perm)]
    for out in g.outputs:
        assert runs[0].outputs[out].tobytes() == runs[1].outputs[out].tobytes() == prep.reference[out].tobytes()
    assert runs[0].counts == runs[1].counts


# ---------------------------------------------------------------------------- corrupted plans
def _fdt_case() -> tuple[Graph, Plan]:
    g = expand_dw_project()
    return g, whole_group_plan(g, Tiling(3, 6, 8, 8))  # 2 row tiles x 4 slices


def _rejected(g: Graph, plan: Plan, prep: Prepared, match: str) -> None:
    with pytest.raises(VerificationError, match=match):  # the validator
        verify_plan(g, plan, MCU, prepared=prep)
    with pytest.raises(VerificationError):  # execution alone
        verify_plan(g, plan, MCU, prepared=prep, static_checks=False)


def test_requantize_before_the_last_slice_is_rejected(prepared: dict[str, Prepared]) -> None:
    g, plan = _fdt_case()
    cmds = list(plan.commands)
    rq = next(i for i, c in enumerate(cmds) if c.op is Op.REQUANTIZE)
    last = max(i for i in range(rq) if cmds[i].accumulate)
    cmds.insert(last, cmds.pop(rq))  # the requantize now runs before the tile's last slice
    _rejected(g, dataclasses.replace(plan, commands=tuple(cmds)), prepared["expand_dw_project"], "before every input channel")


def test_accumulator_overlapping_a_live_buffer_is_rejected(prepared: dict[str, Prepared]) -> None:
    g, plan = _fdt_case()
    acc = next(b for b in plan.buffers if b.kind is BufferKind.ACCUMULATOR)
    other = next(b for b in plan.buffers if b.kind is BufferKind.CORE)
    moved = dataclasses.replace(acc, offset=other.offset)

    def move(op: Operand) -> Operand:
        return dataclasses.replace(op, offset=other.offset + op.offset - acc.offset) if op.offset >= acc.offset and op.offset < acc.end and op.tensor == acc.tensor else op

    cmds = []
    for c in plan.commands:
        if c.op is Op.REQUANTIZE:
            c = dataclasses.replace(c, inputs=tuple(move(o) for o in c.inputs))
        elif c.accumulate is not None:
            assert c.output is not None
            c = dataclasses.replace(c, output=move(c.output))
        cmds.append(c)
    bad = dataclasses.replace(plan, buffers=tuple(moved if b is acc else b for b in plan.buffers), commands=tuple(cmds))
    _rejected(g, bad, prepared["expand_dw_project"], "overlap")


@pytest.mark.parametrize("fault", ["first_adds", "slice_twice", "wrong_channels"])
def test_broken_accumulation_is_rejected(fault: str, prepared: dict[str, Prepared]) -> None:
    g, plan = _fdt_case()
    cmds = list(plan.commands)
    slices = [i for i, c in enumerate(cmds) if c.accumulate is not None]
    if fault == "first_adds":  # the first slice adds to garbage
        cmds[slices[0]] = dataclasses.replace(cmds[slices[0]], accumulate=True)
        match = "never written"
    elif fault == "slice_twice":  # slice 0 added a second time, right after itself
        cmds.insert(slices[0] + 1, dataclasses.replace(cmds[slices[0]], accumulate=True))
        match = "already accumulated"
    else:  # a slice the operand does not hold
        cmds[slices[1]] = dataclasses.replace(cmds[slices[1]], in_channels=(0, 32))
        match = "holds"
    _rejected(g, dataclasses.replace(plan, commands=tuple(cmds)), prepared["expand_dw_project"], match)


# ---------------------------------------------------------------------------- plan format, C export
def test_fdt_plan_round_trips_through_json() -> None:
    """The plan as ``memplan solve`` writes it: schema-valid, parsed back equal, derived fields
    (buffer ids, waits_for) consistent."""
    g, plan = _fdt_case()
    plan = dataclasses.replace(plan, provenance=dataclasses.replace(plan.provenance, strategy="cpsat", objective="memory"))
    outcome = SolveResult(g, MCU, plan, floor(g, MCU), {})
    doc = json.loads(json.dumps(outcome.to_json("0" * 64)))
    jsonschema.validate(doc, schema())
    assert doc["decisions"]["groups"][0]["tiling"] == [3, 6, 8, 8]
    assert doc["hardware"]["tiling"]["fdt_slices"] == 8
    assert {c["op"] for c in doc["commands"]} == {"compute", "requantize"}
    assert {c.get("accumulate") for c in doc["commands"]} == {None, False, True}
    back, hw = plan_from_json(doc)
    check_derived(doc, back, hw, g)
    assert back == plan and hw == MCU
    plain = load_profile("mcu-sram")
    assert "fdt_slices" not in plan_to_json(fdt_plan(g, []), plain, g)["hardware"]["tiling"]


def test_c_export_refuses_fdt_plans_in_one_line() -> None:
    g, plan = _fdt_case()
    with pytest.raises(PlanError, match="fused depthwise tiling") as exc:
        check_exportable(g, plan)
    assert "\n" not in str(exc.value)


# ---------------------------------------------------------------------------- real models
def _real_fdt_groups(g: Graph, limit: int) -> list[tuple[int, int, Tiling]]:
    """Disjoint FDT groups of 2 or 3 layers, first found first, cycling the slice counts and
    spatial tilings offered so that several kinds are run."""
    out: list[tuple[int, int, Tiling]] = []
    at = 0
    while at < len(g.layers) and len(out) < limit:
        for stop in (at + 3, at + 2):
            if stop <= len(g.layers) and group_shape(g, at, stop) is not None and (opts := fdt_tilings(g, at, stop)):
                out.append((at, stop, opts[(7 * len(out)) % len(opts)]))
                at = stop
                break
        else:
            at += 1
    return out


@pytest.mark.parametrize("file,shapes", [("kws_dscnn_tf2onnx.onnx", {"input_1": (1, 49, 10, 1)}),
                                         ("vww_mobilenetv1_96_float.onnx", None)])
def test_real_model_with_fdt_groups_verifies_bit_exactly(file: str, shapes: dict[str, tuple[int, ...]] | None) -> None:
    g = load_model(MODELS / file, shapes)
    groups = _real_fdt_groups(g, 6)
    assert len(groups) >= 3
    plan = fdt_plan(g, groups)
    report = verify_plan(g, plan, MCU, prepared=prepare(g))
    assert report.passed and report.bit_exact and report.counts_match


def test_solver_takes_fdt_candidates_on_mobilenetv2() -> None:
    """The seed's headline, in memplan: the inverted bottleneck's expanded tensor needs no
    halo to be sliced by channels, so FDT lowers the smallest SRAM at 0 % extra MACs."""
    g = load_model(MODELS / "keras_mobilenetv2_035_96_int8.tflite")
    config = SolverConfig(time_limit_s=60, deterministic=True)
    user = UserConstraints(max_recompute_macs=0)
    hw = MCU.with_sram(1 << 20)
    off = solve_cpsat(g, load_profile("mcu-sram").with_sram(1 << 20), "memory", config, user)
    on = solve_cpsat(g, hw, "memory", config, user)
    assert on.plan.totals.recompute_macs == off.plan.totals.recompute_macs == 0
    assert on.plan.totals.sram_peak < off.plan.totals.sram_peak
    assert any(gd.tiling.fdt_c for gd in on.plan.decisions.groups)
    cands = enumerate_candidates(g, hw, config.max_fuse_depth)
    assert any(c.tiling.fdt_c for c in cands.candidates)
    report = verify_plan(g, on.plan, hw)
    assert report.passed and report.bit_exact and report.counts_match
    assert np.isfinite(report.wall_time_s)


# ---------------------------------------------------------------------------- mutation corpus
def _bottlenecks() -> Graph:
    """Two inverted bottlenecks (the second strided): CP-SAT picks FDT groups at 0 % recompute."""
    b = GraphBuilder("bottlenecks", seed=7)
    x = b.input((1, 8, 12, 12))
    y = b.conv(b.depthwise(b.conv(x, 48, 1)), 8, 1, activation=None)
    return b.build(b.conv(b.depthwise(b.conv(y, 48, 1), stride=2), 16, 1, activation=None))


#: the fields of a command an FDT slice or requantize gives meaning to
FDT_FIELDS = {"op", "layer", "region", "inputs", "output", "in_channels", "accumulate", "weights_offset", "weights_buffer"}


def _fdt_mutants(doc: dict[str, object]) -> list[tuple[str, dict[str, object]]]:
    """Every field of the FDT commands (the middle one of: first slices, adding slices,
    requantizes) and of the accumulator buffers mutated as test_mutations mutates fields; those
    commands deleted, duplicated and swapped with their neighbour; their op swapped between
    compute and requantize; and each FDT group's fdt_c +-1."""
    import test_mutations as M

    cmds, bufs = doc["commands"], doc["buffers"]
    assert isinstance(cmds, list) and isinstance(bufs, list)
    names = M._names(doc)
    names["op"] = [*names["op"], "requantize"]
    names["kind"] = [*names["kind"], "accumulator"]
    kinds = {"first": [i for i, c in enumerate(cmds) if c.get("accumulate") is False],
             "adds": [i for i, c in enumerate(cmds) if c.get("accumulate") is True],
             "requantize": [i for i, c in enumerate(cmds) if c["op"] == "requantize"]}
    picked = sorted({ix[len(ix) // 2] for ix in kinds.values()})  # the middle one of each
    label = {ix[len(ix) // 2]: kind for kind, ix in kinds.items()}
    roots = [(label[i], ("commands", i), cmds[i]) for i in picked]
    roots += [("accumulator", ("buffers", i), b) for i, b in enumerate(bufs) if b["kind"] == "accumulator"][:1]
    out = []
    for kind, root, node in roots:
        for path, value in M._leaves(node, root):
            if root[0] == "commands" and not set(map(str, path)) & FDT_FIELDS:
                continue  # id, step, group, tile, waits_for: the general corpus (test_mutations) covers them
            where = f"{kind} " + ".".join(map(str, path))
            for what, new in M._value_mutations(value, path, names):
                out.append((f"{where} {what}", M._set(doc, path, new)))
            if isinstance(path[-1], str):
                out.append((f"{where} deleted", M._delete(doc, path)))
    for i in picked:
        out.append((f"commands[{i}] deleted", M._delete(doc, ("commands", i))))
        out.append((f"commands[{i}] duplicated", M._set(doc, ("commands",), [*cmds[:i + 1], cmds[i], *cmds[i + 1:]])))
        if i + 1 < len(cmds):
            out.append((f"commands[{i}] swapped", M._set(doc, ("commands",), [*cmds[:i], cmds[i + 1], cmds[i], *cmds[i + 2:]])))
        other = "compute" if cmds[i]["op"] == "requantize" else "requantize"
        out.append((f"commands[{i}] op {other}", M._set(doc, ("commands", i, "op"), other)))
    groups = doc["decisions"]["groups"]  # type: ignore[index]
    for i, g in enumerate(groups):
        if len(g["tiling"]) == 4:
            for d in (1, -1):
                out.append((f"group {i} fdt_c {d:+}", M._set(doc, ("decisions", "groups", i, "tiling", 3), g["tiling"][3] + d)))
    # one mutant per (command kind, field, mutation): commands[3].inputs[0].region[2] +1 stands
    # for every region entry +1 of that operand (as test_mutations.representatives)
    seen: dict[str, tuple[str, dict[str, object]]] = {}
    for what, mutant in out:
        if mutant != doc:
            seen.setdefault(re.sub(r"\d+", "#", what), (what, mutant))
    return list(seen.values())


def test_every_fdt_mutant_is_rejected() -> None:
    import test_mutations as M
    from memplan.driver import plan_graph

    g = _bottlenecks()
    hw = MCU.with_sram(1 << 20)
    outcome = plan_graph(g, hw, "cpsat", "memory", SolverConfig(time_limit_s=10, deterministic=True, max_fuse_depth=6),
                         UserConstraints(max_recompute_macs=0))
    assert sum(1 for gd in outcome.plan.decisions.groups if gd.tiling.fdt_c) >= 2
    doc = json.loads(json.dumps(outcome.to_json(M.SHA)))
    prep = prepare(g)
    assert M._reject_reason(g, prep, doc) is None
    corpus = _fdt_mutants(doc)
    assert len(corpus) >= 100
    accepted = []
    for what, mutant in corpus:
        reason = M._reject_reason(g, prep, mutant)
        if reason is None:
            accepted.append(what)
        else:
            assert "\n" not in reason and reason.strip(), (what, reason)
    assert not accepted, f"{len(accepted)} of {len(corpus)} FDT mutants accepted, e.g. {accepted[:5]}"


def test_plots_count_fdt_groups_exactly() -> None:
    """The per-group traffic plot counts an FDT slice's share of the consumer's MACs (and none
    for the requantize); the memory map draws the accumulator."""
    from memplan import plot

    g, plan = _fdt_case()
    rows = plot.group_traffic(plan, g)
    assert sum(r.macs or 0 for r in rows) == plan.totals.macs
    fig = plot.plot_memory_map(plan)
    assert fig is not None


# ---------------------------------------------------------------------------- command line
def test_cli_solve_verify_and_export_refusal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """memplan solve --fdt-slices writes an FDT plan that memplan verify accepts; memplan export
    --c refuses it in one line; --fdt-slices on a profile that copies weights is a usage error."""
    from memplan.cli import main
    from memplan.frontend.export import save_onnx

    model = tmp_path / "bottlenecks.onnx"
    save_onnx(_bottlenecks(), model)
    plan = tmp_path / "plan.json"
    assert main(["solve", str(model), "--hardware", "mcu-sram", "--fdt-slices", "8", "--objective", "memory",
                 "--max-recompute", "0%", "--time-limit", "20", "--max-fuse-depth", "6", "-o", str(plan)]) == 0
    doc = json.loads(plan.read_text())
    assert any(len(g["tiling"]) == 4 for g in doc["decisions"]["groups"])
    assert main(["verify", str(model), str(plan)]) == 0
    assert "bit-exact yes" in capsys.readouterr().out
    assert main(["export", str(model), str(plan), "--c", str(tmp_path / "c")]) != 0
    err = capsys.readouterr().err.strip()
    assert "fused depthwise tiling" in err and "\n" not in err
    assert main(["solve", str(model), "--hardware", "generic-npu", "--fdt-slices", "8", "-o", str(plan)]) != 0
    err = capsys.readouterr().err.strip()
    assert "in place" in err and "\n" not in err


# ---------------------------------------------------------------------------- property test
@st.composite
def fdt_chains(draw: st.DrawFn) -> Graph:
    """A random producer -> channel-wise layers -> consumer chain: a conv (1x1 or 3x3, stride 1
    or 2), then any of depthwise 3x3 (stride 1 or 2), max pool 2x2, an add of the tensor to
    itself, then a 1x1 or 3x3 conv or a fully connected layer."""
    b = GraphBuilder("random_fdt", seed=draw(st.integers(0, 2**16)))
    h, w = draw(st.integers(4, 9)), draw(st.integers(4, 9))
    x = b.input((1, draw(st.integers(1, 6)), h, w))
    x = b.conv(x, draw(st.integers(2, 24)), draw(st.sampled_from([1, 3])), stride=draw(st.sampled_from([1, 2])))
    for step in draw(st.lists(st.sampled_from(["dw", "dw2", "pool", "add"]), max_size=3)):
        if step.startswith("dw"):
            x = b.depthwise(x, 3, 2 if step == "dw2" and min(b.shape(x)[2:]) >= 3 else 1)
        elif step == "pool" and min(b.shape(x)[2:]) >= 2:
            x = b.max_pool(x, 2)
        elif step == "add":
            x = b.add(x, x)
    consumer = draw(st.sampled_from(["pw", "conv3", "fc"]))
    out = draw(st.integers(1, 12))
    if consumer == "fc":
        return b.build(b.fc(x, out))
    return b.build(b.conv(x, out, 1 if consumer == "pw" else 3, activation=None))


@settings(max_examples=60, deadline=None)
@given(g=fdt_chains(), data=st.data())
def test_random_fdt_chains_verify_bit_exactly(g: Graph, data: st.DataObject) -> None:
    """Every random chain with FDT tilings: a drawn one (slices, and spatial tiles where the
    anchor has them) verifies bit-exactly with every count as planned; pure FDT adds no MAC."""
    tilings = fdt_tilings(g, 0, len(g.layers))
    if not tilings:  # a chain the slices do not partition (the max pool keeps them; x + x too)
        assert g.shape(g.layers[-1].inputs[0])[1] < 2
        return
    t = data.draw(st.sampled_from(tilings))
    plan = whole_group_plan(g, t)
    report = verify_plan(g, plan, MCU)
    assert report.passed and report.bit_exact and report.counts_match
    _, _, h, w = g.shape(g.outputs[0])
    if (t.tile_h, t.tile_w) == (h, w):
        assert plan.totals.recompute_macs <= 0


def test_partial_sums_outside_the_accumulator_are_rejected(prepared: dict[str, Prepared]) -> None:
    """Partial sums pointed into the anchor's own resident buffer (large enough for them): the
    bytes exist and belong to the right tensor, but they are not an accumulator."""
    g = dw_pw()
    plan = whole_group_plan(g, Tiling(1, 5, 12, 4))  # one-row tiles: 12 x 5 partial sums, 240 B
    res = next(b for b in plan.buffers if b.kind is BufferKind.RESIDENT and b.tensor == g.outputs[0])
    acc = next(b for b in plan.buffers if b.kind is BufferKind.ACCUMULATOR)
    assert acc.size == 240 < res.size == 12 * 7 * 5
    cmds = []
    for c in plan.commands:
        if c.accumulate is not None:
            assert c.output is not None
            c = dataclasses.replace(c, output=dataclasses.replace(c.output, offset=res.offset))
        elif c.op is Op.REQUANTIZE:
            c = dataclasses.replace(c, inputs=(dataclasses.replace(c.inputs[0], offset=res.offset),))
        cmds.append(c)
    bad = dataclasses.replace(plan, commands=tuple(cmds))
    with pytest.raises(VerificationError, match="accumulator"):
        verify_plan(g, bad, MCU, prepared=prepared["dw_pw"])
    with pytest.raises(VerificationError, match="not an accumulator"):
        verify_plan(g, bad, MCU, prepared=prepared["dw_pw"], static_checks=False)
