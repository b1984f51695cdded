"""The tiled executor and verify: plans run bit-exactly with exact counts, and broken plans
(built directly, never shown to the validator: ``static_checks=False``) are caught by
execution alone."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memplan.baselines import greedy, layer_by_layer
from memplan.config import HardwareProfile, SolverConfig, load_profile
from memplan.errors import InfeasibleError, VerificationError
from memplan.execute import Prepared, execute_plan, prepare, verify_plan
from memplan.execute import tiled
from memplan.frontend import load_model
from memplan.geometry.region import Region
from memplan.ir.builder import GraphBuilder
from memplan.ir.graph import Graph
from memplan.ir.ops import ConvTransposeAttrs, OpKind
from memplan.plan.build import build_plan
from memplan.plan.model import Buffer, BufferKind, Op, Operand, Plan
from memplan.solve import solve_cpsat
from memplan.zoo import build_zoo_model
from test_geometry import random_cnn

MODELS = Path(__file__).resolve().parent.parent / "models"
NPU = load_profile("generic-npu")
MCU = load_profile("mcu-sram")
CPSAT = SolverConfig(time_limit_s=5, deterministic=True, max_fuse_depth=6)
Planner = Callable[[Graph, HardwareProfile], Plan]


def _cpsat(g: Graph, hw: HardwareProfile) -> Plan:
    return solve_cpsat(g, hw, "energy", CPSAT).plan


PLANNERS: dict[str, Planner] = {"layer": layer_by_layer, "greedy": greedy, "cpsat": _cpsat}


def _verify(g: Graph, plan: Plan, hw: HardwareProfile, prepared: Prepared) -> None:
    report = verify_plan(g, plan, hw, prepared=prepared)
    assert report.passed and report.bit_exact and report.counts_match
    assert report.measured.macs == plan.totals.macs and report.measured.dram_total == plan.totals.dram_total
    assert report.sram_peak <= plan.totals.sram_peak <= hw.sram_bytes
    spilled = {c.tensor for c in plan.commands if c.op is Op.STORE}
    assert spilled | set(g.outputs) == set(report.tensors)


# ---------------------------------------------------------------------------- graphs
def toy() -> Graph:
    return build_zoo_model("toy_chain", n=3, h=24, w=24, c=8)


def mixed() -> Graph:
    """Every weighted-layer flavour (grouped conv, depthwise, grouped and padded ConvTranspose,
    fully connected) and the other kernels, wide enough that small SRAMs split channels."""
    b = GraphBuilder("mixed", seed=3)
    x = b.input((1, 8, 12, 12))
    x = b.conv(x, 32, 3)
    x = b.conv(x, 32, 3, groups=4)
    x = b.depthwise(x, 3, 2)
    x = b.lrn(x, 5)
    w = b.rng.normal(0.0, 0.2, size=(32, 8, 3, 3)).astype(np.float32)  # (C_in, C_out/g, kh, kw), 2 groups
    y = b.add_layer(OpKind.CONV_TRANSPOSE, (x,), ConvTransposeAttrs((3, 3), (2, 2), (1, 1, 0, 0), groups=2), 16, w,
                    b.rng.normal(0.0, 0.05, size=16).astype(np.float32))
    y = b.conv_transpose(y, 8, kernel=3, stride=2, pads=(1, 1, 1, 1))
    y = b.channel_shuffle(y, 2)
    y = b.avg_pool(y, 3, 1, pads=(1, 1, 1, 1))
    z = b.resize(b.max_pool(b.concat(y, b.conv(y, 8, 1)), 2), 2, "linear")
    return b.build(b.softmax(b.fc(b.global_avg_pool(z), 10)))


@pytest.fixture(scope="module")
def toy_case() -> tuple[Graph, HardwareProfile, Plan, Prepared]:
    g = toy()
    hw = NPU.with_sram(6 * 1024)
    plan = greedy(g, hw)  # a fused group and a single-layer one, 2x4 tiles each, weights kept
    sizes = sorted(gd.stop - gd.start for gd in plan.decisions.groups)
    assert sizes[0] == 1 and sizes[-1] > 1 and plan.decisions.keep
    assert max(c.tile for c in plan.commands) >= 3
    return g, hw, plan, prepare(g)


@pytest.fixture(scope="module")
def reload_case(toy_case: tuple[Graph, HardwareProfile, Plan, Prepared]) -> tuple[Graph, HardwareProfile, Plan, Prepared]:
    """The toy plan rebuilt with every layer's weights reloaded per tile."""
    g, hw, plan, prepared = toy_case
    p2 = build_plan(g, hw, dataclasses.replace(plan.decisions, keep=frozenset()))
    return g, hw, p2, prepared


# ---------------------------------------------------------------------------- plans that verify
def test_toy_plans_verify(toy_case, reload_case) -> None:  # type: ignore[no-untyped-def]
    for g, hw, plan, prepared in (toy_case, reload_case):
        _verify(g, plan, hw, prepared)


@pytest.mark.parametrize("sram", [6 * 1024, 24 * 1024])
def test_mixed_ops_verify_with_channel_splits(sram: int) -> None:
    g = mixed()
    hw = NPU.with_sram(sram)
    prepared = prepare(g)
    split = False
    for planner in (layer_by_layer, greedy):
        plan = planner(g, hw)
        _verify(g, plan, hw, prepared)
        split |= any(c.op is Op.COMPUTE and c.region.channels < g.shape(c.output.tensor)[1]
                     for c in plan.commands if c.layer in {"conv_2", "conv_transpose_5"})
    if sram == 6 * 1024:
        assert split  # grouped conv / ConvTranspose computed a slice of their output channels


@pytest.fixture(scope="module")
def mcu_case() -> tuple[Graph, HardwareProfile, Plan, Prepared]:
    """Feature maps resident in SRAM, weights executed in place from flash."""
    g = mixed()
    hw = MCU.with_sram(64 * 1024)
    return g, hw, _cpsat(g, hw), prepare(g)


def test_mcu_profile_resident_maps_and_weights_in_place(mcu_case) -> None:  # type: ignore[no-untyped-def]
    g, hw, plan, prepared = mcu_case
    assert not any(c.op in (Op.LOAD, Op.STORE, Op.LOAD_WEIGHTS) for c in plan.commands)
    assert plan.totals.dram_read_weights > 0
    _verify(g, plan, hw, prepared)


# ---------------------------------------------------------------------------- counting
def test_landed_taps_match_brute_force() -> None:
    for k, s, pad, d, n_in in [(3, 2, 1, 1, 5), (2, 2, 0, 1, 4), (4, 3, 2, 2, 6), (1, 1, 0, 1, 3)]:
        out = s * (n_in - 1) + d * (k - 1) + 1 - 2 * pad
        for lo in range(out):
            for hi in range(lo + 1, out + 1):
                brute = sum(1 for o in range(lo, hi) for j in range(k) for i in range(n_in) if o == i * s - pad + j * d)
                assert tiled._landed_taps(lo, hi, k, s, pad, d, n_in) == brute


def test_refuses_wide_feature_map_elements(toy_case) -> None:  # type: ignore[no-untyped-def]
    g, hw, plan, prepared = toy_case
    with pytest.raises(VerificationError, match="int8 feature maps"):
        execute_plan(dataclasses.replace(plan, elem_bytes=2), prepared.qgraph, hw, prepared.inputs)


@pytest.mark.parametrize("case", ["toy_case", "mcu_case"])
def test_weights_come_from_memory(case: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Flip one weight byte in DRAM: the kernel must see it, whether it runs on what
    LOAD_WEIGHTS copied into SRAM or reads the weights in place, and not on the quantised
    graph's own weights."""
    g, hw, plan, prepared = request.getfixturevalue(case)
    layer = g.layers[0].id
    original = tiled.weight_image

    def corrupted(ql):  # type: ignore[no-untyped-def]
        image = original(ql)
        if ql.layer.id != layer:
            return image
        weights = image.weights.copy()
        weights[0] ^= 0x40
        return dataclasses.replace(image, weights=weights)

    monkeypatch.setattr(tiled, "weight_image", corrupted)
    with pytest.raises(VerificationError, match=rf"compute {layer}, .*differs from the reference"):
        verify_plan(g, plan, hw, prepared=prepared)


# ---------------------------------------------------------------------------- mutations
def _replace_command(plan: Plan, index: int, **changes: object) -> Plan:
    cmds = list(plan.commands)
    cmds[index] = dataclasses.replace(cmds[index], **changes)  # type: ignore[arg-type]
    return dataclasses.replace(plan, commands=tuple(cmds))


def _drop(plan: Plan, index: int) -> Plan:
    return dataclasses.replace(plan, commands=plan.commands[:index] + plan.commands[index + 1:])


def _fails(g: Graph, hw: HardwareProfile, plan: Plan, prepared: Prepared, match: str) -> str:
    with pytest.raises(VerificationError, match=match) as exc:
        verify_plan(g, plan, hw, prepared=prepared, static_checks=False)
    return str(exc.value)


def _relocate(plan: Plan, buf: Buffer, offset: int) -> Plan:
    """Move a buffer and every address the commands use inside it while it is live."""
    delta = offset - buf.offset

    def moved(addr: int | None, step: int) -> int | None:
        inside = addr is not None and buf.offset <= addr < buf.end and buf.t0 <= step < buf.t1
        return addr + delta if inside and addr is not None else addr

    cmds = []
    for c in plan.commands:
        cmds.append(dataclasses.replace(
            c, offset=moved(c.offset, c.step), weights_offset=moved(c.weights_offset, c.step),
            inputs=tuple(dataclasses.replace(o, offset=moved(o.offset, c.step)) for o in c.inputs),
            output=None if c.output is None else dataclasses.replace(c.output, offset=moved(c.output.offset, c.step))))
    bufs = tuple(dataclasses.replace(b, offset=offset) if b is buf else b for b in plan.buffers)
    return dataclasses.replace(plan, buffers=bufs, commands=tuple(cmds))


def _overlapping_pair(plan: Plan) -> tuple[Buffer, Buffer]:
    a = next(b for b in plan.buffers if b.kind is BufferKind.IN_STAGE)
    b = next(b for b in plan.buffers if b is not a and b.size and b.t0 < a.t1 and a.t0 < b.t1)
    return a, b


def test_overlapping_buffers_caught_with_consistent_commands(toy_case) -> None:  # type: ignore[no-untyped-def]
    g, hw, plan, prepared = toy_case
    a, b = _overlapping_pair(plan)
    msg = _fails(g, hw, _relocate(plan, b, a.offset), prepared, "at once")
    assert a.name in msg and b.name in msg and "command" in msg


def test_overlapping_buffer_list_caught(toy_case) -> None:  # type: ignore[no-untyped-def]
    g, hw, plan, prepared = toy_case
    a, b = _overlapping_pair(plan)
    bufs = tuple(dataclasses.replace(x, offset=a.offset) if x is b else x for x in plan.buffers)
    _fails(g, hw, dataclasses.replace(plan, buffers=bufs), prepared, "at once|no buffer")


@pytest.mark.parametrize("delta", [1, -1])
def test_wrong_compute_operand_offset(toy_case, delta: int) -> None:  # type: ignore[no-untyped-def]
    g, hw, plan, prepared = toy_case
    i = next(i for i, c in enumerate(plan.commands) if c.op is Op.COMPUTE and c.tile == 1)
    c = plan.commands[i]
    op = c.inputs[0]
    bad = _replace_command(plan, i, inputs=(dataclasses.replace(op, offset=op.offset + delta),))
    msg = _fails(g, hw, bad, prepared, "differs from the reference|no buffer|belongs to|nothing has written")
    assert f"command {i} " in msg


def test_missing_first_load(toy_case) -> None:  # type: ignore[no-untyped-def]
    g, hw, plan, prepared = toy_case
    i = next(i for i, c in enumerate(plan.commands) if c.op is Op.LOAD)
    _fails(g, hw, _drop(plan, i), prepared, "nothing has written")


def test_missing_later_load_reads_stale_tile(toy_case) -> None:  # type: ignore[no-untyped-def]
    """The slot still holds an older tile: only the values give it away."""
    g, hw, plan, prepared = toy_case
    loads = [(i, c) for i, c in enumerate(plan.commands) if c.op is Op.LOAD]
    i = next(i for n, (i, c) in enumerate(loads)
             if any(p.offset == c.offset and p.region.numel >= c.region.numel for _, p in loads[:n]))  # type: ignore[union-attr]
    msg = _fails(g, hw, _drop(plan, i), prepared, "differs from the reference")
    assert f"tile {plan.commands[i].tile})" in msg


def test_missing_store(toy_case) -> None:  # type: ignore[no-untyped-def]
    g, hw, plan, prepared = toy_case
    i = next(i for i, c in enumerate(plan.commands) if c.op is Op.STORE and c.tensor in g.outputs)
    _fails(g, hw, _drop(plan, i), prepared, "never written")


def test_halo_one_row_short(toy_case) -> None:  # type: ignore[no-untyped-def]
    g, hw, plan, prepared = toy_case
    i = next(i for i, c in enumerate(plan.commands)
             if c.op is Op.LOAD and c.tile >= 1 and c.region is not None and c.region.rows > 1)
    load = plan.commands[i]
    assert load.region is not None
    short = dataclasses.replace(load, region=dataclasses.replace(load.region, y1=load.region.y1 - 1))
    cmds = list(plan.commands)
    cmds[i] = short
    for j, c in enumerate(cmds):
        if c.op is Op.COMPUTE and c.group == load.group and c.tile == load.tile:
            cmds[j] = dataclasses.replace(c, inputs=tuple(
                Operand(o.tensor, short.region, o.offset) if (o.tensor, o.offset) == (load.tensor, load.offset) else o
                for o in c.inputs))
    msg = _fails(g, hw, dataclasses.replace(plan, commands=tuple(cmds)), prepared, "halo too short")
    assert f"tile {load.tile})" in msg


def _single_layer_groups(plan: Plan) -> set[int]:
    return {gi for gi, gd in enumerate(plan.decisions.groups) if gd.stop - gd.start == 1}


def test_dropped_weight_reload_caught_by_count(reload_case) -> None:  # type: ignore[no-untyped-def]
    """In a one-layer group, dropping a later tile's reload leaves the same slice in SRAM: the
    results stay right, but the weight traffic no longer matches the plan."""
    g, hw, plan, prepared = reload_case
    loads = [i for i, c in enumerate(plan.commands) if c.op is Op.LOAD_WEIGHTS]
    assert len(loads) > len(g.layers)
    later = next(i for i in loads if plan.commands[i].tile >= 1 and plan.commands[i].group in _single_layer_groups(plan))
    _fails(g, hw, _drop(plan, later), prepared, "bit-exact but the counts differ: dram_read_weights")


def test_dropped_weight_reload_in_fused_group_reads_other_weights(reload_case) -> None:  # type: ignore[no-untyped-def]
    """In a fused group the reload buffers of consecutive layers share SRAM: a dropped reload
    leaves another layer's weights there."""
    g, hw, plan, prepared = reload_case
    i = next(i for i, c in enumerate(plan.commands)
             if c.op is Op.LOAD_WEIGHTS and c.tile >= 1 and c.group not in _single_layer_groups(plan))
    _fails(g, hw, _drop(plan, i), prepared, "differs from the reference")


def test_dropped_first_weight_load(toy_case, reload_case) -> None:  # type: ignore[no-untyped-def]
    for g, hw, plan, prepared in (toy_case, reload_case):
        i = next(i for i, c in enumerate(plan.commands) if c.op is Op.LOAD_WEIGHTS)
        _fails(g, hw, _drop(plan, i), prepared, "nothing has written")


def test_reload_turned_into_keep_caught_by_count(reload_case) -> None:  # type: ignore[no-untyped-def]
    """Keep only the first reload of every layer (a wrong keep/reload decision)."""
    g, hw, plan, prepared = reload_case
    seen: set[str | None] = set()
    kept = []
    for c in plan.commands:
        if c.op is Op.LOAD_WEIGHTS:
            if c.layer in seen:
                continue
            seen.add(c.layer)
        kept.append(c)
    _fails(g, hw, dataclasses.replace(plan, commands=tuple(kept)), prepared,
           "dram_read_weights|differs from the reference")


def test_extra_weight_load_and_wrong_totals(toy_case) -> None:  # type: ignore[no-untyped-def]
    g, hw, plan, prepared = toy_case
    i = next(i for i, c in enumerate(plan.commands) if c.op is Op.LOAD_WEIGHTS)
    doubled = dataclasses.replace(plan, commands=plan.commands[:i + 1] + plan.commands[i:])
    _fails(g, hw, doubled, prepared, "dram_read_weights")
    wrong = dataclasses.replace(plan, totals=dataclasses.replace(plan.totals, macs=plan.totals.macs + 1))
    _fails(g, hw, wrong, prepared, "macs measured")


def test_wrong_buffer_owner(toy_case) -> None:  # type: ignore[no-untyped-def]
    """A LOAD into another tensor's live buffer (inside it, so only ownership is wrong)."""
    g, hw, plan, prepared = toy_case
    i = next(i for i, c in enumerate(plan.commands) if c.op is Op.LOAD)
    load = plan.commands[i]
    other = next(b for b in plan.buffers if b.tensor not in (None, load.tensor) and b.t0 <= load.step < b.t1
                 and b.size >= load.region.numel)  # type: ignore[union-attr]
    _fails(g, hw, _replace_command(plan, i, offset=other.offset), prepared, "belongs to")


def test_out_of_bounds_region(toy_case) -> None:  # type: ignore[no-untyped-def]
    g, hw, plan, prepared = toy_case
    i = next(i for i, c in enumerate(plan.commands) if c.op is Op.LOAD)
    r = plan.commands[i].region
    assert r is not None
    bad = _replace_command(plan, i, region=Region(r.c0, r.c1, r.y0, 10_000, r.x0, r.x1))
    _fails(g, hw, bad, prepared, "out of bounds")


def test_non_strict_reports_instead_of_raising(toy_case) -> None:  # type: ignore[no-untyped-def]
    g, hw, plan, prepared = toy_case
    wrong = dataclasses.replace(plan, totals=dataclasses.replace(plan.totals, dram_read_fm=plan.totals.dram_read_fm + 1))
    report = verify_plan(g, wrong, hw, prepared=prepared, strict=False, static_checks=False)
    assert report.bit_exact and not report.counts_match and not report.passed
    assert report.failure is not None and "dram_read_fm" in report.failure
    assert report.to_json()["verified"] is False


def test_first_difference_names_tensor_tile_and_command(toy_case) -> None:  # type: ignore[no-untyped-def]
    """A STORE from the wrong slot: every computed tile is right, the stored tensor is not."""
    g, hw, plan, prepared = toy_case
    stores = [i for i, c in enumerate(plan.commands) if c.op is Op.STORE and c.tensor in g.outputs]
    i, j = stores[0], stores[1]
    assert plan.commands[i].offset != plan.commands[j].offset
    bad = _replace_command(plan, j, offset=plan.commands[i].offset)
    cmd = plan.commands[j]
    _fails(g, hw, bad, prepared, rf"tensor {cmd.tensor} differs .* command {j} \(store {cmd.tensor}, "
                                 rf"group {cmd.group}, tile {cmd.tile}\)")


# ---------------------------------------------------------------------------- property
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_cnn(), st.sampled_from([4096, 32768]))
def test_random_graphs_verify(g: Graph, sram: int) -> None:
    hw = NPU.with_sram(sram)
    prepared = prepare(g)
    for name, planner in PLANNERS.items():
        try:
            plan = planner(g, hw)
        except InfeasibleError:
            assert sram == 4096
            return
        _verify(g, plan, hw, prepared)


# ---------------------------------------------------------------------------- models
def _models() -> dict[str, Callable[[], Graph]]:
    return {
        "toy_chain": toy,
        "resnet8": lambda: build_zoo_model("resnet8"),
        "resnet8_float.onnx": lambda: load_model(MODELS / "resnet8_float.onnx"),
        "cifar10_float.onnx": lambda: load_model(MODELS / "cifar10_float.onnx"),
    }


@pytest.mark.parametrize("model", list(_models()))
def test_models_verify(model: str) -> None:
    g = _models()[model]()
    prepared = prepare(g)
    heavy = model.startswith("resnet8")
    for sram in (16 * 1024, 64 * 1024, 256 * 1024):
        hw = NPU.with_sram(sram)
        for name, planner in PLANNERS.items():
            if name == "cpsat" and heavy and sram == 256 * 1024:
                continue  # keep the run short: CP-SAT on ResNet-8 at two sizes is enough
            _verify(g, planner(g, hw), hw, prepared)
