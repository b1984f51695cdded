"""Rolling (line) buffers: a fused group that runs in row stripes and keeps the rows the next
stripe needs again in SRAM (Tiling.rolling) instead of recomputing them.

Golden numbers are derived by hand for Samsung's toy chain; properties run random CNNs through
rolling plans and hold the cost model, the validator, the executor and the C runtime to the
same bytes; corrupted rolling plans are rejected by the validator and, separately, by the
executor alone.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings

from memplan.config import SolverConfig, load_profile
from memplan.cost.candidate import candidate_cost
from memplan.errors import PlanError, VerificationError
from memplan.execute import prepare, verify_plan
from memplan.geometry.group import Tiling, group_geometry, group_shape, roll, tiling_options
from memplan.ir.graph import Graph
from memplan.plan.build import build_plan
from memplan.plan.model import Command, Decisions, GroupDecision, Op, Plan
from memplan.plan.validate import validate_plan
from memplan.solve.run import solve_cpsat
from memplan.zoo import build_zoo_model
from test_geometry import random_cnn

NPU = load_profile("generic-npu")
ROLLING = NPU.with_tiling(rolling_buffers=True)
CPSAT = SolverConfig(time_limit_s=20, deterministic=True, max_fuse_depth=6, workers=1, random_seed=0)


def _toy(n: int = 3, h: int = 12, w: int = 12, c: int = 4) -> Graph:
    return build_zoo_model("toy_chain", n=n, h=h, w=w, c=c)


def _plan(graph: Graph, tile_h: int, rolling: bool, sram: int = 64 * 1024) -> Plan:
    _, c, _, w = graph.shape(graph.layers[-1].output)
    hw = ROLLING.with_sram(sram)
    return build_plan(graph, hw, Decisions((GroupDecision(0, len(graph.layers), Tiling(tile_h, w, c, rolling=rolling)),)))


# ---------------------------------------------------------------------------- roll
def test_roll_splits_each_stripe_into_kept_and_computed_rows() -> None:
    need = ((0, 5), (3, 8), (6, 11), (9, 12))
    computed, cached = roll(need)
    assert computed == ((0, 5), (5, 8), (8, 11), (11, 12))
    assert cached == ((0, 0), (3, 5), (6, 8), (9, 11))


def test_roll_recomputes_what_the_previous_slot_does_not_hold_as_a_prefix() -> None:
    # stripe 1 starts before stripe 0's rows, stripe 2 holds nothing, stripe 3 follows an empty one,
    # stripe 4 lies inside stripe 3 (all of it copied, nothing computed)
    computed, cached = roll(((2, 6), (0, 4), (4, 4), (5, 9), (6, 8)))
    assert computed == ((2, 6), (0, 4), (4, 4), (5, 9), (8, 8))
    assert cached == ((2, 2), (0, 0), (4, 4), (5, 5), (6, 8))


# ---------------------------------------------------------------------------- golden numbers
def test_toy_chain_golden_numbers() -> None:
    """Three 3x3 convs (stride 1, pad 1) on 12x12x4, four stripes of 3 output rows.

    Recompute: conv2 holds rows (0,4) (2,7) (5,10) (8,12) = 4+5+5+4 = 18 rows, conv1 (0,5) (1,8)
    (4,11) (7,12) = 24 rows, conv3 12: 54 rows x 12 x 4 x 36 MACs = 93,312; the input stripes
    (0,6) (0,9) (3,12) (6,12) are 30 rows: 1,440 B loaded. Rolling computes every row once:
    3 x 12 rows = 62,208 MACs; the input stripes shrink to (0,6) (4,9) (7,12) (10,12), of which
    only the new rows (0,6) (6,9) (9,12) are loaded: the input once, 576 B. Copied rows: input
    2+2+2, conv1 2+2+2, conv2 2+2+2 = 18 rows x 48 B = 864 B, read and written by the DMA."""
    g = _toy()
    plain, rolled = _plan(g, 3, False), _plan(g, 3, True)
    assert (plain.totals.macs, plain.totals.recompute_macs, plain.totals.dram_read_fm) == (93_312, 31_104, 1_440)
    assert (rolled.totals.macs, rolled.totals.recompute_macs, rolled.totals.dram_read_fm) == (62_208, 0, 576)
    copies = [c for c in rolled.commands if c.op is Op.COPY]
    assert [(c.tensor, c.region.y0, c.region.y1) for c in copies] == [
        ("input", 4, 6), ("conv1.out", 3, 5), ("conv2.out", 2, 4), ("input", 7, 9), ("conv1.out", 6, 8),
        ("conv2.out", 5, 7), ("input", 10, 12), ("conv1.out", 9, 11), ("conv2.out", 8, 10)]
    assert sum(c.region.numel for c in copies) == 864
    loads = [(c.region.y0, c.region.y1) for c in rolled.commands if c.op is Op.LOAD]
    assert loads == [(0, 6), (6, 9), (9, 12)]  # the last stripe needs no new input row
    # sram access: writes of computed cells + reads of needed input cells + loads/stores + 2 x copies
    computed = 3 * 12 * 12 * 4
    # each conv reads the clipped 3-row windows of the rows it computes: conv1 (0,6) (4,9) (7,12)
    # (10,12) = 18 input rows; conv2 computes (0,4) (4,7) (7,10) (10,12) and reads (0,5) (3,8)
    # (6,11) (9,12) = 18; conv3 computes (0,3) ... (9,12) and reads (0,4) (2,7) (5,10) (8,12) = 18
    reads = (18 + 18 + 18) * 12 * 4
    assert rolled.totals.sram_access == computed + reads + 576 + 576 + 2 * 864 + rolled.totals.dram_read_weights
    # two slots of the largest stripe of conv1 (5 rows) and conv2 (5 rows), live over the group
    core = {b.tensor: b for b in rolled.buffers if b.kind.value == "core"}
    assert {t: b.size for t, b in core.items()} == {"conv1.out": 2 * 5 * 48, "conv2.out": 2 * 5 * 48}
    assert all((b.t0, b.t1) == (0, 3) for b in core.values())
    stage = next(b for b in rolled.buffers if b.kind.value == "in_stage")
    assert stage.size == 2 * 6 * 48  # two staging slots of the largest input stripe


def test_a_profile_without_dma_overlap_still_gets_two_staging_slots_for_a_rolled_input() -> None:
    g = _toy()
    hw = dataclasses.replace(ROLLING.with_sram(64 * 1024), dma_overlaps_compute=False)
    plan = build_plan(g, hw, Decisions((GroupDecision(0, 3, Tiling(3, 12, 4, rolling=True)),)))
    stage = next(b for b in plan.buffers if b.kind.value == "in_stage")
    assert stage.size == 2 * 6 * 48
    assert verify_plan(g, plan, hw).bit_exact


def test_rolling_tilings_are_offered_only_where_they_apply() -> None:
    g = _toy(n=3, h=12, w=12, c=4)
    rules = dataclasses.replace(ROLLING.tiling, max_tiles=16)
    fused = tiling_options(g, group_shape(g, 0, 3), rules)
    rolling = [t for t in fused if t.rolling]
    assert rolling and all(t.tile_w == 12 and t.tile_c == 4 and t.tile_h < 12 for t in rolling)
    assert {t.tile_h for t in rolling} == {t.tile_h for t in fused if not t.rolling and t.tile_w == 12
                                           and t.tile_c == 4 and t.tile_h < 12}
    assert not any(t.rolling for t in tiling_options(g, group_shape(g, 0, 1), rules))  # nothing to keep
    assert not any(t.rolling for t in tiling_options(g, group_shape(g, 0, 3), NPU.tiling))  # rule off


def test_a_stripe_keeps_exactly_the_rows_it_shares_with_the_last() -> None:
    g = _toy(n=4, h=20, w=9, c=3)
    geo = group_geometry(g, group_shape(g, 0, 4), Tiling(4, 9, 3, rolling=True))
    for t in geo.shape.internal:
        held, comp, kept = geo.rows[t], geo.row_axis.computed_spans(t), geo.row_axis.cached[t]
        covered = set()
        for j, ((lo, hi), (c0, c1), (k0, k1)) in enumerate(zip(held, comp, kept)):
            assert (k0, k1 if k1 > k0 else k0) == (lo, c0) and c1 == hi  # kept rows, then computed rows
            if j:
                assert set(range(k0, k1)) <= set(range(*held[j - 1]))
            assert not covered & set(range(c0, c1))  # no row computed twice
            covered |= set(range(c0, c1))


# ---------------------------------------------------------------------------- exactness
def _rolling_decisions(graph: Graph) -> Decisions | None:
    """Every layer in one group where the graph allows it, else runs of fusable layers; each
    multi-layer group in rolling stripes of 2-3 rows."""
    groups = []
    start = 0
    n = len(graph.layers)
    while start < n:
        stop = next(s for s in range(n, start, -1) if group_shape(graph, start, s) is not None)
        shape = group_shape(graph, start, stop)
        options = tiling_options(graph, shape, ROLLING.tiling)
        rolling = [t for t in options if t.rolling and t.tile_h <= 3]
        groups.append(GroupDecision(start, stop, rolling[0] if rolling else options[0]))
        start = stop
    if not any(gd.tiling.rolling for gd in groups):
        return None
    return Decisions(tuple(groups))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(g=random_cnn())
def test_random_rolling_plans_are_bit_exact_and_counted_exactly(g: Graph) -> None:
    """Any CNN (strides, dilations, padding, pools, adds, concats, resizes, ConvTranspose) in
    rolling stripes: the executor's bytes equal the reference's, and the cost model, the
    validator and the executor count the same totals (verify_plan checks both)."""
    dec = _rolling_decisions(g)
    if dec is None:
        return
    hw = ROLLING.with_sram(1 << 20)
    plan = build_plan(g, hw, dec)
    assert validate_plan(plan, g, hw) == plan.totals
    report = verify_plan(g, plan, hw)
    assert report.bit_exact and report.measured == report.predicted
    # never more MACs than recomputing: a rolled stripe computes a subset of the rows
    plain = build_plan(g, hw, Decisions(tuple(dataclasses.replace(gd, tiling=dataclasses.replace(gd.tiling, rolling=False))
                                              for gd in dec.groups)))
    assert plan.totals.macs <= plain.totals.macs


def test_rolling_candidate_costs_equal_the_commands() -> None:
    g = build_zoo_model("unet", resolution=32, base=4, levels=2)
    hw = ROLLING.with_sram(1 << 20)
    checked = 0
    for start in range(len(g.layers)):
        for stop in range(start + 2, min(start + 6, len(g.layers)) + 1):
            shape = group_shape(g, start, stop)
            if shape is None:
                continue
            for t in tiling_options(g, shape, hw.tiling):
                if not t.rolling:
                    continue
                c = candidate_cost(g, shape, t, hw)
                cmds = build_plan_for_group(g, hw, start, stop, t)
                if cmds is None:
                    continue
                assert c.macs == sum(_macs(g, x) for x in cmds)
                checked += 1
    assert checked >= 10


def build_plan_for_group(g: Graph, hw, start: int, stop: int, t: Tiling) -> list[Command] | None:  # type: ignore[no-untyped-def]
    """The compute commands of group [start, stop) with tiling ``t`` inside a plan that runs
    every other layer alone, untiled."""
    groups = [GroupDecision(i, i + 1, Tiling(*g.shape(g.layers[i].output)[2:], g.shape(g.layers[i].output)[1]))
              for i in range(start)]
    groups.append(GroupDecision(start, stop, t))
    groups += [GroupDecision(i, i + 1, Tiling(*g.shape(g.layers[i].output)[2:], g.shape(g.layers[i].output)[1]))
               for i in range(stop, len(g.layers))]
    if any(group_shape(g, gd.start, gd.stop) is None for gd in groups):
        return None
    plan = build_plan(g, hw, Decisions(tuple(groups)))
    gi = len(groups[:start])
    return [c for c in plan.commands if c.group == gi and c.op is Op.COMPUTE]


def _macs(g: Graph, cmd: Command) -> int:
    from memplan.geometry.backprop import region_macs

    return region_macs(g, g.layer(cmd.layer), cmd.region)


# ---------------------------------------------------------------------------- the planner
def test_cpsat_chooses_rolling_buffers_where_they_pay() -> None:
    """Toy chain 5 x (3x3 conv) on 56x56x16 in 24 KiB: the untiled group does not fit, and
    recomputing the halos of every stripe costs more than copying the kept rows."""
    g = _toy(n=5, h=56, w=56, c=16)
    hw_off, hw_on = NPU.with_sram(24 * 1024), ROLLING.with_sram(24 * 1024)
    off = solve_cpsat(g, hw_off, "energy", CPSAT)
    on = solve_cpsat(g, hw_on, "energy", CPSAT)
    assert any(gd.tiling.rolling for gd in on.plan.decisions.groups)
    assert on.plan.totals.energy_fj < off.plan.totals.energy_fj
    assert on.plan.totals.recompute_macs < off.plan.totals.recompute_macs
    report = verify_plan(g, on.plan, hw_on)
    assert report.bit_exact


# ---------------------------------------------------------------------------- corruptions
def _with(plan: Plan, index: int, cmd: Command) -> Plan:
    cmds = list(plan.commands)
    cmds[index] = cmd
    return dataclasses.replace(plan, commands=tuple(cmds))


def _corruptions(plan: Plan) -> list[tuple[str, Plan]]:
    k = next(i for i, c in enumerate(plan.commands) if c.op is Op.COPY)
    cmd = plan.commands[k]
    src, dst = cmd.inputs[0], cmd.output
    assert dst is not None
    r = cmd.region
    rest = plan.commands[:k] + plan.commands[k + 1:]
    dropped = dataclasses.replace(plan, commands=rest)
    reader = next(i for i in range(k, len(rest)) if rest[i].op is Op.COMPUTE and any(o.tensor == cmd.tensor for o in rest[i].inputs))
    return [
        ("copy dropped", dropped),
        ("copy from its own slot", _with(plan, k, dataclasses.replace(cmd, inputs=(dataclasses.replace(src, offset=dst.offset),)))),
        ("copy into the other slot", _with(plan, k, dataclasses.replace(cmd, output=dataclasses.replace(dst, offset=src.offset)))),
        ("copy a row short", _with(plan, k, dataclasses.replace(cmd, region=dataclasses.replace(r, y1=r.y1 - 1)))),
        ("copy moved after its reader", dataclasses.replace(plan, commands=(*rest[:reader + 1], cmd, *rest[reader + 1:]))),
    ]


@pytest.mark.parametrize("what", ["copy dropped", "copy from its own slot", "copy into the other slot",
                                  "copy a row short", "copy moved after its reader"])
def test_corrupted_rolling_plans_are_rejected(what: str) -> None:
    g = _toy()
    plan = _plan(g, 3, True)
    bad = dict(_corruptions(plan))[what]
    hw = ROLLING.with_sram(64 * 1024)
    with pytest.raises(PlanError):
        validate_plan(bad, g, hw)
    # the executor alone, without the static checks, catches it too
    with pytest.raises(VerificationError):
        verify_plan(g, bad, hw, prepared=prepare(g), static_checks=False)
