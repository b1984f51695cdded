"""CP-SAT planner: brute force confirms the optimum on small graphs; each constraint group has
a feasible and an infeasible case; the hint is feasible; runs are deterministic."""

from __future__ import annotations

import itertools
import json

import pytest
from ortools.sat.python import cp_model

from memplan.alloc import extent, first_fit
from memplan.baselines import floor, greedy, layer_by_layer
from memplan.config import SolverConfig, load_profile
from memplan.errors import InfeasibleError, PlanError, UsageError
from memplan.geometry.group import group_shape, tiling_options
from memplan.ir.builder import GraphBuilder
from memplan.ir.graph import Graph
from memplan.plan.build import build_plan, crossing_tensors, plan_blocks, resolve
from memplan.plan.model import Decisions, GroupDecision
from memplan.plan.validate import validate_plan
from memplan.solve import UserConstraints, solve_cpsat
from memplan.solve.candidates import enumerate_candidates
from memplan.solve.dp import BoundaryDP, dp_bound, dp_plan
from memplan.solve.run import _build, _hint, _warm_start

HW = load_profile("generic-npu")
FAST = SolverConfig(time_limit_s=20.0, workers=2, deterministic=True, max_fuse_depth=6)


def chain(n: int = 3, c: int = 4, hw: int = 8) -> Graph:
    b = GraphBuilder("chain")
    x = b.input((1, c, hw, hw))
    for _ in range(n):
        x = b.conv(x, c, 3)
    return b.build(x)


def skip_block(c: int = 4, hw: int = 8) -> Graph:
    b = GraphBuilder("skip")
    x = b.input((1, c, hw, hw))
    a = b.conv(x, c, 3)
    y = b.conv(a, c, 3)
    z = b.conv(y, c, 1, activation=None)
    return b.build(b.add(z, a))


# ---------------------------------------------------------------------------- brute force
def _all_decisions(g: Graph, hw):  # type: ignore[no-untyped-def]
    n = len(g.layers)
    weighted = [layer.id for layer in g.layers if layer.weight]
    for cuts in itertools.product([False, True], repeat=n - 1):
        bounds = [0] + [i + 1 for i, c in enumerate(cuts) if c] + [n]
        ranges = list(zip(bounds, bounds[1:]))
        shapes = [group_shape(g, a, b) for a, b in ranges]
        if any(s is None for s in shapes):
            continue
        options = [tiling_options(g, s, hw.tiling) for s in shapes]
        for tilings in itertools.product(*options):
            groups = tuple(GroupDecision(a, b, t) for (a, b), t in zip(ranges, tilings))
            base = Decisions(groups)
            crossing = sorted(crossing_tensors(g, base) - set(g.inputs) - set(g.outputs))
            for keep_bits in itertools.product([False, True], repeat=len(weighted)):
                keep = frozenset(w for w, k in zip(weighted, keep_bits) if k)
                for res_bits in itertools.product([False, True], repeat=len(crossing)):
                    res = frozenset(t for t, r in zip(crossing, res_bits) if r)
                    yield Decisions(groups, keep, res)


def _brute_force(g: Graph, hw):  # type: ignore[no-untyped-def]
    """(lowest energy over decisions whose per-step live bytes fit; lowest energy over
    decisions that first fit can actually place)."""
    relaxed = placed = None
    for dec in _all_decisions(g, hw):
        r = resolve(g, hw, dec)
        blocks = plan_blocks(r)
        n = len(g.layers)
        peak = max(sum(b.size for b in blocks if b.t0 <= t < b.t1) for t in range(n))
        if peak > hw.sram_bytes:
            continue
        from memplan.plan.build import cost_totals

        e = cost_totals(r, 0).energy_fj
        relaxed = e if relaxed is None else min(relaxed, e)
        if extent(blocks, first_fit(blocks)) <= hw.sram_bytes:
            placed = e if placed is None else min(placed, e)
    return relaxed, placed


@pytest.mark.parametrize("make,sram", [(chain, 1 << 20), (chain, 700), (skip_block, 1 << 20), (skip_block, 900)])
def test_cpsat_optimum_matches_brute_force(make, sram: int) -> None:  # type: ignore[no-untyped-def]
    g = make()
    hw = HW.with_sram(sram).with_tiling(row_only=True, max_tiles=3)  # keeps the enumeration to ~10^4 plans
    relaxed, placed = _brute_force(g, hw)
    assert relaxed is not None
    result = solve_cpsat(g, hw, "energy", FAST)
    assert result.stats.status == "OPTIMAL"
    e = result.plan.totals.energy_fj
    # CP-SAT places exactly: never worse than a first-fit placeable plan, never better than
    # the capacity relaxation; with ample SRAM the two coincide and the optimum is exact.
    assert relaxed <= e
    if placed is not None:
        assert e <= placed
    if sram == 1 << 20:
        assert e == relaxed == placed
    validate_plan(result.plan, g, hw)
    # the DP relaxation's bound never exceeds the true optimum of the per-step relaxation,
    # and its path (with a keep set that fits every step) is a plan the validator accepts
    cs = enumerate_candidates(g, hw, 6)
    dp = dp_bound(g, hw, cs.candidates)
    assert dp is not None and dp.bound_fj <= relaxed
    path = dp_plan(g, hw, cs.candidates, 0.0)
    assert path is not None
    assert build_plan(g, hw, path.decisions).totals.energy_fj == path.bound_fj


# ---------------------------------------------------------------------------- per-module cases
def test_cover_and_fusion_depth() -> None:
    g = chain(4)
    r = solve_cpsat(g, HW.with_sram(1 << 16), "energy", SolverConfig(time_limit_s=10, deterministic=True, max_fuse_depth=1))
    assert all(gd.stop - gd.start == 1 for gd in r.plan.decisions.groups)
    r2 = solve_cpsat(g, HW.with_sram(1 << 16), "energy", FAST)
    assert r2.plan.totals.energy_fj <= r.plan.totals.energy_fj


def test_forced_keep_feasible_and_infeasible() -> None:
    """Keeping weights costs SRAM only inside a fused group (a single-layer group holds the
    same slice either way). Here fusion is forced: the 32 KiB intermediate cannot stay in SRAM
    and spills are forbidden (memory objective), so keeping both layers' weights needs more
    SRAM than reloading them, and forcing keep at the reload minimum is infeasible."""
    b = GraphBuilder("forced")
    x = b.input((1, 16, 32, 32))
    y = b.conv(x, 32, 3)
    g = b.build(b.conv(y, 64, 3))
    ids = frozenset(layer.id for layer in g.layers)
    hw = HW.with_sram(30 * 1024)
    free = solve_cpsat(g, hw, "memory", FAST)
    kept = solve_cpsat(g, hw, "memory", FAST, UserConstraints(force_keep=ids))
    assert kept.plan.decisions.keep == ids
    assert free.stats.extra["min_sram_status"] == kept.stats.extra["min_sram_status"] == "OPTIMAL"
    need_free, need_kept = free.stats.extra["min_sram"], kept.stats.extra["min_sram"]
    assert need_kept > need_free
    with pytest.raises(InfeasibleError):
        solve_cpsat(g, HW.with_sram(need_free), "memory", FAST, UserConstraints(force_keep=ids))
    reloaded = solve_cpsat(g, HW.with_sram(need_free), "memory", FAST, UserConstraints(force_reload=ids))
    assert not (reloaded.plan.decisions.keep & ids)


def test_unknown_or_conflicting_forced_layers() -> None:
    g = chain(2)
    with pytest.raises(UsageError, match="not a layer"):
        solve_cpsat(g, HW, "energy", FAST, UserConstraints(force_keep=frozenset({"nope"})))
    lid = g.layers[0].id
    with pytest.raises(UsageError, match="in place"):
        solve_cpsat(g, load_profile("mcu-sram"), "energy", FAST, UserConstraints(force_keep=frozenset({lid})))
    with pytest.raises(UsageError, match="both"):
        solve_cpsat(g, HW, "energy", FAST, UserConstraints(frozenset({lid}), frozenset({lid})))


def test_residency_keeps_skip_tensor_in_sram() -> None:
    g = skip_block(c=8, hw=16)
    r = solve_cpsat(g, HW.with_sram(64 * 1024), "energy", FAST)
    # with ample SRAM nothing intermediate touches DRAM: the floor is reached
    assert r.plan.totals.dram_read_fm == 8 * 16 * 16
    assert r.plan.totals.dram_write_fm == 8 * 16 * 16


def test_row_only_and_tile_multiple_respected() -> None:
    g = chain(3, c=4, hw=16)
    hw = HW.with_sram(1500).with_tiling(row_only=True, tile_multiple=4)
    r = solve_cpsat(g, hw, "energy", FAST)
    for gd in r.plan.decisions.groups:
        assert gd.tiling.tile_w == 16 and (gd.tiling.tile_h % 4 == 0 or gd.tiling.tile_h == 16)
    validate_plan(r.plan, g, hw)


def test_memory_objective_finds_smallest_sram_without_spills() -> None:
    g = chain(3, c=4, hw=16)
    hw = HW.with_sram(64 * 1024)
    r = solve_cpsat(g, hw, "memory", FAST)
    stats = r.stats.extra
    assert stats["min_sram_status"] == "OPTIMAL"
    need = stats["min_sram"]
    assert r.plan.totals.sram_peak <= need
    # no intermediate feature-map traffic
    assert r.plan.totals.dram_write_fm == 4 * 16 * 16 and r.plan.totals.dram_read_fm == 4 * 16 * 16 or \
        all(t in r.plan.decisions.resident for t in crossing_tensors(g, r.plan.decisions) - set(g.inputs))
    with pytest.raises(InfeasibleError):
        solve_cpsat(g, HW.with_sram(need - 1), "memory", FAST)


def test_mcu_profile_keeps_every_feature_map_in_sram() -> None:
    g = chain(3, c=4, hw=16)
    mcu = load_profile("mcu-sram")
    r = solve_cpsat(g, mcu.with_sram(8 * 1024), "energy", FAST)
    assert r.plan.totals.dram_read_fm == r.plan.totals.dram_write_fm == 0
    assert set(g.inputs) | set(g.outputs) <= r.plan.decisions.resident
    validate_plan(r.plan, g, mcu.with_sram(8 * 1024))
    with pytest.raises(InfeasibleError):
        solve_cpsat(g, mcu.with_sram(1024), "energy", FAST)


def test_latency_and_custom_objectives() -> None:
    g = chain(3, c=8, hw=16)
    hw = HW.with_sram(4 * 1024)
    e = solve_cpsat(g, hw, "energy", FAST).plan
    lat = solve_cpsat(g, hw, "latency", FAST).plan
    assert lat.totals.cycles <= e.totals.cycles
    assert lat.totals.cycles <= greedy(g, hw).totals.cycles
    mix = solve_cpsat(g, hw, "custom", FAST, weights={"energy": 0.5, "latency": 0.5}).plan
    validate_plan(mix, g, hw)


# ---------------------------------------------------------------------------- solver practice
@pytest.mark.parametrize("timed", [False, True], ids=["energy", "with-prefetch"])
def test_greedy_hint_is_feasible(timed: bool) -> None:
    """The hint is a complete solution; with prefetch literals (objectives that count cycles),
    the warm start prefetched as its plan would be, its weight buffers in their prefetch slots."""
    g = skip_block(c=8, hw=16)
    hw = HW.with_sram(3 * 1024)
    cs = enumerate_candidates(g, hw, 6)
    b = _build(g, hw, cs, UserConstraints(), False, timed=timed)
    assert bool(b.vars.prefetch) == timed
    gr = greedy(g, hw, 6)
    warm = _warm_start(cs, g, hw, gr.decisions)
    assert warm is not None and warm.energy_fj == gr.totals.energy_fj
    _hint(b, g, hw, warm)
    b.vars.model.minimize(b.terms.energy)
    solver = cp_model.CpSolver()
    solver.parameters.fix_variables_to_their_hinted_value = True
    solver.parameters.max_time_in_seconds = 20
    status = solver.solve(b.vars.model)
    assert status in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    assert round(solver.ObjectiveValue() * b.terms.energy_scale) == gr.totals.energy_fj


@pytest.mark.parametrize("sram", [2 * 1024, 8 * 1024])
def test_plans_never_worse_than_baselines(sram: int) -> None:
    g = skip_block(c=8, hw=16)
    hw = HW.with_sram(sram)
    r = solve_cpsat(g, hw, "energy", FAST)
    assert r.plan.totals.energy_fj <= greedy(g, hw, 6).totals.energy_fj
    assert r.plan.totals.energy_fj <= layer_by_layer(g, hw).totals.energy_fj
    assert r.stats.bound <= r.stats.objective


def test_deterministic_mode_gives_identical_plan_bytes() -> None:
    from memplan.driver import plan_graph

    from memplan.zoo import build_zoo_model

    g = build_zoo_model("resnet8")  # at 8 KiB CP-SAT searches (the DP bound is below the optimum)
    hw = HW.with_sram(8 * 1024)
    outcomes = [plan_graph(g, hw, "cpsat", "energy", FAST) for _ in range(2)]
    assert outcomes[0].plan.provenance.solver["conflicts"] > 0  # the search ran; its counters are in the plan
    docs = [json.dumps(o.to_json(None), sort_keys=True) for o in outcomes]
    assert docs[0] == docs[1]


def test_decisions_outside_candidates_are_refused() -> None:
    g = chain(2)
    bad = Decisions((GroupDecision(0, 2, tiling_options(g, group_shape(g, 0, 2), HW.tiling)[0]),), resident=frozenset({"input"}))
    with pytest.raises(PlanError, match="cannot be resident"):
        build_plan(g, HW, bad)


def dense_block(depth: int = 4, c: int = 8, growth: int = 4, hw: int = 8) -> Graph:
    """A DenseNet block: every layer reads the concat of all earlier features."""
    b = GraphBuilder("dense")
    features = [b.conv(b.input((1, 3, hw, hw)), c, 3)]
    for _ in range(depth):
        y = features[0] if len(features) == 1 else b.concat(*features)
        y = b.conv(y, 2 * growth, 1)
        features.append(b.conv(y, growth, 3, activation=None))
    return b.build(b.concat(*features))


@pytest.mark.parametrize("sram", [4 << 10, 6 << 10, 12 << 10])
def test_dp_equivalent_states_are_exact(sram: int) -> None:
    """Merging interchangeable tensors (same size, same death, same reads by every later
    candidate) changes neither the bound nor the best path's cost: with the merge off, the
    DP keys states by tensor names and explores every subset."""
    g = dense_block(depth=4, c=8, growth=8, hw=16)  # 2 KiB feature maps: the SRAM binds up to ~16 KiB
    hw = HW.with_sram(sram)
    cs = enumerate_candidates(g, hw, 4)
    merged, named = BoundaryDP(g, hw, cs.candidates), BoundaryDP(g, hw, cs.candidates, merge_equivalent=False)
    b1, b2 = merged.bound(), named.bound()
    assert b1 is not None and b2 is not None
    assert b1.bound_fj == b2.bound_fj
    assert b1.peak_states < b2.peak_states
    assert b1.bound_fj > floor(g, hw).energy_fj  # the SRAM binds: residency decides the cost
    p1, p2 = merged.plan(0.0, max_states=10**6), named.plan(0.0, max_states=10**6)
    assert p1 is not None and p2 is not None
    assert build_plan(g, hw, p1.decisions).totals.energy_fj == p1.bound_fj
    # the relaxation stays below the optimum CP-SAT proves
    result = solve_cpsat(g, hw, "energy", FAST)
    assert result.stats.status == "OPTIMAL"
    assert b1.bound_fj <= result.plan.totals.energy_fj


def test_progress_reports_stages_then_search() -> None:
    """A listener sees the preparation stages in order, then the search starting from the warm
    start and the DP bound; every reported bound is below every reported objective, and the
    last report is the plan's energy."""

    class Recorder:
        def __init__(self) -> None:
            self.events: list[tuple[str, object]] = []

        def stage(self, text: str) -> None:
            self.events.append(("stage", text))

        def search(self, objective: float, bound: float, seconds: float) -> None:
            self.events.append(("search", (objective, bound, seconds)))

    from memplan.zoo import build_zoo_model

    g = build_zoo_model("resnet8")  # at 8 KiB the warm start is above the DP bound: CP-SAT searches
    rec = Recorder()
    result = solve_cpsat(g, HW.with_sram(8 << 10), "energy", FAST, progress=rec)
    stages = [text for kind, text in rec.events if kind == "stage"]
    assert stages[0].startswith("checking") and stages[-2:] == ["CP-SAT search", "rebuilding and validating the plan"]
    assert any(s.startswith("DP bound") for s in stages)
    searches = [v for kind, v in rec.events if kind == "search"]
    assert searches and rec.events.index(("stage", "CP-SAT search")) < rec.events.index(("search", searches[0]))
    for objective, bound, seconds in searches:  # type: ignore[misc]
        assert bound <= objective and seconds >= 0
    assert searches[0][0] == result.stats.warm_start_energy_fj  # type: ignore[index]
    assert searches[-1][0] == result.plan.totals.energy_fj  # type: ignore[index]
