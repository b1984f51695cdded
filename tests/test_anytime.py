"""Anytime solving: whatever the limit, the best valid plan in hand comes back with an honest
status and gap; a warm start that meets the DP bound is OPTIMAL without a search; CP-SAT's
UNKNOWN falls back to the warm start; Ctrl-C during the search returns the plan so far."""

from __future__ import annotations

import os
import signal
import threading

import pytest
from ortools.sat.python import cp_model

from memplan.baselines import greedy, layer_by_layer
from memplan.config import SolverConfig, load_profile
from memplan.ir.graph import Graph
from memplan.plan.validate import validate_plan
from memplan.solve import run, solve_cpsat
from memplan.solve.run import SolveResult
from memplan.zoo import build_zoo_model
from test_solve import skip_block

HW = load_profile("generic-npu")
WALL = SolverConfig(time_limit_s=20.0, workers=2)  # wall-clock limit, as the default config
DET = SolverConfig(time_limit_s=20.0, workers=2, deterministic=True, max_fuse_depth=6)




@pytest.fixture(scope="module")
def resnet8() -> Graph:
    return build_zoo_model("resnet8")  # at 8 KiB its warm start is above the DP bound: CP-SAT must search


def _check_consistent(r: SolveResult, g: Graph, hw) -> None:  # type: ignore[no-untyped-def]
    """Status, objective, bound and gap agree with each other and with the plan."""
    s = r.stats
    validate_plan(r.plan, g, hw)
    assert s.status in ("OPTIMAL", "FEASIBLE")
    assert s.objective == r.plan.totals.energy_fj
    assert 0 <= s.bound <= s.objective
    assert s.gap >= 0
    if s.status == "OPTIMAL":
        assert s.proof in ("cpsat", "dp_bound", "floor") and s.gap == 0 and s.objective <= s.bound
    else:
        assert s.proof is None
        assert s.gap == pytest.approx((s.objective - s.bound) / s.objective)
    assert r.plan.provenance.solver["status"] == s.status and "wall_time_s" not in r.plan.provenance.solver


@pytest.mark.parametrize("limit", [1e-3, 0.05, 0.3])
def test_tiny_limit_still_returns_a_valid_plan(resnet8: Graph, limit: float) -> None:
    hw = HW.with_sram(8 << 10)
    r = solve_cpsat(resnet8, hw, "energy", SolverConfig(time_limit_s=limit))
    _check_consistent(r, resnet8, hw)
    assert r.stats.plan_source in ("layer", "greedy", "greedy_partial", "dp0", "cpsat")
    if limit == 1e-3:
        # nothing but the layer-by-layer plan fits in a millisecond: said so, with the floor as bound
        assert r.stats.plan_source == "layer" and r.stats.status == "FEASIBLE"
        assert "greedy" in r.stats.cut_short and "candidates" in r.stats.cut_short
        assert r.stats.bound > 0
        assert r.stats.extra["limit_too_short"] is True  # said so: even this plan overran the limit
    if r.stats.extra.get("limit_too_short"):  # machine-speed dependent: when said, nothing else was tried
        assert r.stats.plan_source in ("layer", "greedy_partial") and "candidates" in r.stats.cut_short
    assert r.plan.totals.energy_fj <= r.baselines["layer"].totals.energy_fj


def test_greedy_cut_short_finishes_layer_by_layer(resnet8: Graph) -> None:
    """Greedy under a time limit: stopped before its first group it is the layer-by-layer
    plan; stopped after some groups, a valid plan between the two; either way marked partial."""
    hw = HW.with_sram(8 << 10)
    full, layer = greedy(resnet8, hw), layer_by_layer(resnet8, hw)
    assert not full.provenance.partial
    at_once = greedy(resnet8, hw, halt=lambda: True)
    assert at_once.provenance.partial is True and at_once.decisions == layer.decisions
    asked = iter(range(100))
    halfway = greedy(resnet8, hw, halt=lambda: next(asked) >= 3)  # three groups, then layer by layer
    validate_plan(halfway, resnet8, hw)
    assert halfway.provenance.partial is True
    assert halfway.decisions.groups[:3] == full.decisions.groups[:3]
    assert all(g.stop - g.start == 1 for g in halfway.decisions.groups[3:])
    assert full.totals.energy_fj <= halfway.totals.energy_fj <= layer.totals.energy_fj


def test_warm_start_at_the_dp_bound_is_optimal_without_search(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_search(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("CP-SAT must not run when the warm start meets the DP bound")

    monkeypatch.setattr(run, "_search", no_search)
    g = skip_block(8, 16)
    hw = HW.with_sram(6 << 10)
    for config in (DET, WALL):
        r = solve_cpsat(g, hw, "energy", config)
        _check_consistent(r, g, hw)
        assert r.stats.status == "OPTIMAL" and r.stats.proof == "dp_bound"
        assert r.stats.objective == r.stats.bound == r.stats.extra["dp_bound_fj"]
        assert r.stats.booleans == 0 and "search" not in r.timings and "model" not in r.timings


def test_cpsat_unknown_returns_the_warm_start(resnet8: Graph, monkeypatch: pytest.MonkeyPatch) -> None:
    def presolve_only(solver: cp_model.CpSolver, model: cp_model.CpModel, cb: object) -> tuple[int, bool]:
        solver.parameters.stop_after_presolve = True  # a real UNKNOWN: CP-SAT stops before any solution
        return solver.solve(model), False

    monkeypatch.setattr(run, "_solve_interruptible", presolve_only)
    hw = HW.with_sram(8 << 10)
    r = solve_cpsat(resnet8, hw, "energy", DET)
    _check_consistent(r, resnet8, hw)
    s = r.stats
    assert s.status == "FEASIBLE" and s.extra["search_status"] == "UNKNOWN"
    assert s.plan_source.startswith("dp") and s.objective == s.warm_start_energy_fj
    assert s.bound == s.extra["dp_bound_fj"] < s.objective  # the gap comes from the DP bound


def test_optimal_only_when_proven(resnet8: Graph) -> None:
    """With the search, CP-SAT proves resnet8 at 8 KiB; the DP alone cannot (its bound is
    below the optimum), so a limit that leaves no time to search gives FEASIBLE."""
    hw = HW.with_sram(8 << 10)
    r = solve_cpsat(resnet8, hw, "energy", DET)
    _check_consistent(r, resnet8, hw)
    assert r.stats.status == "OPTIMAL" and r.stats.proof == "cpsat"
    assert r.stats.extra["dp_bound_fj"] < r.stats.objective
    # the warm start is the optimum here: it is returned (tie), proven by CP-SAT's bound
    assert r.stats.plan_source == "dp0" and r.stats.objective == r.stats.warm_start_energy_fj


def test_interrupt_before_any_plan_is_a_keyboard_interrupt(monkeypatch: pytest.MonkeyPatch) -> None:
    """The memory objective has no fallback plan (baselines spill): Ctrl-C before CP-SAT's
    first solution ends like a Ctrl-C anywhere else, not with a plan or a solver error."""

    def interrupted_in_presolve(solver: cp_model.CpSolver, model: cp_model.CpModel, cb: object) -> tuple[int, bool]:
        solver.parameters.stop_after_presolve = True
        return solver.solve(model), True

    monkeypatch.setattr(run, "_solve_interruptible", interrupted_in_presolve)
    with pytest.raises(KeyboardInterrupt):
        solve_cpsat(skip_block(8, 16), HW.with_sram(64 << 10), "memory", DET)


class _InterruptOnFirstReport:
    """A progress listener that sends this process SIGINT the first time CP-SAT reports a
    solution or a bound from its own threads, i.e. during the search."""

    def __init__(self) -> None:
        self.sent = False

    def stage(self, text: str) -> None:
        pass

    def search(self, objective: float, bound: float, seconds: float) -> None:
        if not self.sent and threading.current_thread() is not threading.main_thread():
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)


def test_sigint_during_search_returns_the_plan_so_far(resnet8: Graph) -> None:
    hw = HW.with_sram(8 << 10)
    before = signal.getsignal(signal.SIGINT)
    listener = _InterruptOnFirstReport()
    # no warm start: the search starts from scratch and cannot finish before the interrupt
    config = SolverConfig(time_limit_s=60.0, warm_start=False)
    r = solve_cpsat(resnet8, hw, "energy", config, progress=listener)
    assert listener.sent
    assert r.stats.interrupted and r.plan.provenance.solver["interrupted"] is True
    assert r.timings["search"] < 30  # stopped, not run to the limit
    _check_consistent(r, resnet8, hw)
    assert signal.getsignal(signal.SIGINT) is before  # the handler lives only during the search


def test_not_interrupted_by_default(resnet8: Graph) -> None:
    r = solve_cpsat(resnet8, HW.with_sram(16 << 10), "energy", WALL)
    assert r.stats.interrupted is False and r.plan.provenance.solver["interrupted"] is False
    _check_consistent(r, resnet8, HW.with_sram(16 << 10))


def test_ctrl_c_outside_the_search_exits_130_and_writes_nothing(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from memplan.cli import main

    model, out = tmp_path / "resnet8.onnx", tmp_path / "plan.json"
    assert main(["zoo", "resnet8", "-o", str(model)]) == 0

    def ctrl_c(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt  # as a SIGINT during the candidate enumeration would

    monkeypatch.setattr(run, "_candidates", ctrl_c)
    assert main(["solve", str(model), "--sram", "8KiB", "-o", str(out)]) == 130
    assert "memplan: interrupted" in capsys.readouterr().err
    assert not out.exists()
