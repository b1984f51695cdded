"""Plans: baselines build valid plans whose totals equal the command stream's; the JSON
round-trips and matches the schema; the validator catches broken plans."""

from __future__ import annotations

import dataclasses
import json

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memplan.baselines import floor, greedy, layer_by_layer
from memplan.config import load_profile
from memplan.errors import InfeasibleError, PlanError
from memplan.ir.builder import GraphBuilder
from memplan.ir.graph import Graph
from memplan.plan.build import build_plan
from memplan.plan.model import Command, Op, Operand
from memplan.solve.run import SolveResult
from memplan.plan.serialize import check_derived, plan_from_json, plan_to_json, schema
from memplan.plan.validate import validate_plan
from test_geometry import random_cnn

HW = load_profile("generic-npu")


def toy(n: int = 4, c: int = 16, hw: int = 48) -> Graph:
    b = GraphBuilder("toy")
    x = b.input((1, c, hw, hw))
    for _ in range(n):
        x = b.conv(x, c, 3)
    return b.build(x)


def resnet_like() -> Graph:
    b = GraphBuilder("resnet_like")
    x = b.input((1, 3, 32, 32))
    x = b.conv(x, 16, 3, stride=2)
    for _ in range(2):
        y = b.conv(x, 16, 3)
        y = b.conv(y, 16, 3, activation=None)
        x = b.add(y, x)
    p = b.global_avg_pool(x)
    return b.build(b.softmax(b.fc(p, 10)))


def _json_roundtrip(plan, g, hw):  # type: ignore[no-untyped-def]
    """The plan as ``memplan solve`` writes it: schema-valid, parsed back, and exactly the
    document the parsed plan serialises to."""
    outcome = SolveResult(g, hw, dataclasses.replace(plan, provenance=dataclasses.replace(plan.provenance, objective="energy")),
                          floor(g, hw), {"layer": layer_by_layer(g, hw), "greedy": greedy(g, hw)})
    doc = outcome.to_json("0" * 64)
    jsonschema.validate(doc, schema())
    back, _ = plan_from_json(doc)
    check_derived(doc, back, hw, g)
    assert plan_to_json(back, hw, g) == {k: v for k, v in doc.items() if k not in ("floor", "baselines", "settings")}
    text = json.dumps(doc)
    back, hw2 = plan_from_json(json.loads(text))
    assert hw2 == hw
    return back


@pytest.mark.parametrize("sram", [8 * 1024, 32 * 1024, 256 * 1024])
@pytest.mark.parametrize("make", [toy, resnet_like])
def test_baselines_valid_and_schema(make, sram: int) -> None:  # type: ignore[no-untyped-def]
    g = make()
    hw = HW.with_sram(sram)
    fl = floor(g, hw)
    for strategy in (layer_by_layer, greedy):
        plan = strategy(g, hw)
        totals = validate_plan(plan, g, hw)
        assert totals == plan.totals
        assert plan.totals.dram_total >= fl.dram_total
        assert plan.totals.macs >= fl.macs
        assert plan.totals.sram_peak <= sram
        back = _json_roundtrip(plan, g, hw)
        assert validate_plan(back, g, hw) == plan.totals


def test_layer_by_layer_has_no_recompute_and_reads_weights_once() -> None:
    g = toy()
    plan = layer_by_layer(g, HW.with_sram(64 * 1024))
    assert plan.totals.recompute_macs == 0
    assert plan.totals.dram_read_weights == floor(g, HW).dram_read_weights
    # every intermediate goes to DRAM and back: 3 intermediates written + read
    fm = 16 * 48 * 48
    assert plan.totals.dram_write_fm == 4 * fm
    assert plan.totals.dram_read_fm > 4 * fm  # halos of column/row tiles


def test_greedy_beats_layer_by_layer_on_the_toy_chain() -> None:
    g = toy()
    hw = HW.with_sram(64 * 1024)
    lbl, gr = layer_by_layer(g, hw), greedy(g, hw)
    assert len(gr.decisions.groups) < len(lbl.decisions.groups)
    assert gr.totals.energy_fj < lbl.totals.energy_fj


def test_infeasible_names_layer_and_sram() -> None:
    g = toy(c=64, hw=16)
    with pytest.raises(InfeasibleError, match=r"layer 'conv_1'.*needs at least (\d+) B"):
        layer_by_layer(g, HW.with_sram(512))


def test_infeasible_threshold_is_tight() -> None:
    import re

    g = toy(n=1, c=8, hw=16)
    with pytest.raises(InfeasibleError) as exc:
        layer_by_layer(g, HW.with_sram(256))
    need = int(re.search(r"needs at least (\d+) B", str(exc.value)).group(1))  # type: ignore[union-attr]
    validate_plan(layer_by_layer(g, HW.with_sram(need)), g, HW.with_sram(need))
    with pytest.raises(InfeasibleError):
        layer_by_layer(g, HW.with_sram(need - 1))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_cnn(), st.sampled_from([2048, 16384, 1 << 20]))
def test_random_graphs_baselines_validate(g: Graph, sram: int) -> None:
    hw = HW.with_sram(sram)
    for strategy in (layer_by_layer, greedy):
        try:
            plan = strategy(g, hw)
        except InfeasibleError:
            assert sram == 2048  # only the tiny SRAM may be too small
            return
        assert validate_plan(plan, g, hw) == plan.totals


def test_row_only_and_no_overlap_profile() -> None:
    g = resnet_like()
    hw = dataclasses.replace(HW.with_sram(16 * 1024), dma_overlaps_compute=False).with_tiling(row_only=True)
    for strategy in (layer_by_layer, greedy):
        plan = strategy(g, hw)
        validate_plan(plan, g, hw)
        assert all(gd.tiling.tile_w == g.shape(g.layers[gd.stop - 1].output)[3] for gd in plan.decisions.groups)


# ---------------------------------------------------------------------------- mutations
def _mutate(plan, index: int, **changes):  # type: ignore[no-untyped-def]
    cmds = list(plan.commands)
    cmds[index] = dataclasses.replace(cmds[index], **changes)
    return dataclasses.replace(plan, commands=tuple(cmds))


@pytest.fixture(scope="module")
def fused() -> tuple[Graph, object]:
    g = toy(n=3, c=8, hw=24)
    hw = HW.with_sram(16 * 1024)
    plan = greedy(g, hw)
    assert any(gd.stop - gd.start > 1 for gd in plan.decisions.groups)
    return g, plan


def _first(plan, op: Op) -> int:  # type: ignore[no-untyped-def]
    return next(i for i, c in enumerate(plan.commands) if c.op is op)


def test_validator_catches_missing_load(fused) -> None:  # type: ignore[no-untyped-def]
    g, plan = fused
    i = _first(plan, Op.LOAD)
    broken = dataclasses.replace(plan, commands=plan.commands[:i] + plan.commands[i + 1:])
    with pytest.raises(PlanError, match="not in SRAM|never written"):
        validate_plan(broken, g, HW.with_sram(16 * 1024))


def test_validator_catches_short_halo(fused) -> None:  # type: ignore[no-untyped-def]
    g, plan = fused
    i = next(i for i, c in enumerate(plan.commands) if c.op is Op.LOAD and c.region.y1 - c.region.y0 > 1)
    r = plan.commands[i].region
    broken = _mutate(plan, i, region=dataclasses.replace(r, y1=r.y1 - 1))
    with pytest.raises(PlanError):
        validate_plan(broken, g, HW.with_sram(16 * 1024))


def test_validator_catches_wrong_offset(fused) -> None:  # type: ignore[no-untyped-def]
    g, plan = fused
    i = _first(plan, Op.COMPUTE)
    c = plan.commands[i]
    bad_in = (Operand(c.inputs[0].tensor, c.inputs[0].region, c.inputs[0].offset + 1),)
    with pytest.raises(PlanError):
        validate_plan(_mutate(plan, i, inputs=bad_in), g, HW.with_sram(16 * 1024))


def test_validator_catches_overlapping_buffers(fused) -> None:  # type: ignore[no-untyped-def]
    g, plan = fused
    bufs = list(plan.buffers)
    a = next(b for b in bufs if b.kind.value == "in_stage")
    j = next(j for j, b in enumerate(bufs) if b is not a and b.t0 < a.t1 and a.t0 < b.t1 and b.size)
    bufs[j] = dataclasses.replace(bufs[j], offset=a.offset)
    with pytest.raises(PlanError, match="overlap"):
        validate_plan(dataclasses.replace(plan, buffers=tuple(bufs)), g, HW.with_sram(16 * 1024))


def test_validator_catches_wrong_totals_and_capacity(fused) -> None:  # type: ignore[no-untyped-def]
    g, plan = fused
    hw = HW.with_sram(16 * 1024)
    wrong = dataclasses.replace(plan, totals=dataclasses.replace(plan.totals, dram_read_fm=plan.totals.dram_read_fm - 1))
    with pytest.raises(PlanError, match="dram_read_fm"):
        validate_plan(wrong, g, hw)
    big = dataclasses.replace(plan, buffers=(dataclasses.replace(plan.buffers[0], offset=hw.sram_bytes - 1),) + plan.buffers[1:])
    with pytest.raises(PlanError, match="outside the SRAM"):
        validate_plan(big, g, hw)


def test_validator_catches_dropped_weight_reload(fused) -> None:  # type: ignore[no-untyped-def]
    g, plan = fused
    hw = HW.with_sram(16 * 1024)
    # force reloading: rebuild with nothing kept, then drop one reload of a later tile
    dec = dataclasses.replace(plan.decisions, keep=frozenset())
    p2 = build_plan(g, hw, dec)
    validate_plan(p2, g, hw)
    loads = [i for i, c in enumerate(p2.commands) if c.op is Op.LOAD_WEIGHTS]
    assert len(loads) > len(g.layers)  # reloaded per tile
    i = loads[1]
    broken = dataclasses.replace(p2, commands=p2.commands[:i] + p2.commands[i + 1:])
    with pytest.raises(PlanError):
        validate_plan(broken, g, hw)


def test_validator_catches_store_before_compute(fused) -> None:  # type: ignore[no-untyped-def]
    g, plan = fused
    i = _first(plan, Op.STORE)
    cmds = list(plan.commands)
    store = cmds.pop(i)
    cmds.insert(0, Command(Op.STORE, store.step, store.group, store.tile, tensor=store.tensor, region=store.region,
                           offset=store.offset))
    with pytest.raises(PlanError, match="does not hold"):
        validate_plan(dataclasses.replace(plan, commands=tuple(cmds)), g, HW.with_sram(16 * 1024))
