"""The recompute budget (``--max-recompute``): every plan returned recomputes at most the budget,
exactly (checked by ``memplan verify``, which executes the plan and counts its MACs); the memory
objective's smallest SRAM does not grow as the budget grows; 0 % recomputes nothing; a budget
no plan fits is a one-line error naming what to relax; the plan records its budget and verify
rejects a plan over it."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

from memplan import api
from memplan.cli import main
from memplan.config import SolverConfig, load_profile
from memplan.errors import ConfigError, InfeasibleError, MemplanError, UsageError, VerificationError
from memplan.execute.verify import prepare, verify_document, verify_plan
from memplan.frontend import load_model
from memplan.frontend.export import save_onnx
from memplan.ir.graph import Graph
from memplan.solve import UserConstraints, solve_cpsat
from memplan.solve.budget import RecomputeBudget, budget_macs, parse_recompute, untiled_macs
from memplan.zoo import build_zoo_model
from test_tiled import MODELS

SHA = "ab" * 32
CONFIG = SolverConfig(time_limit_s=20.0, workers=2)
BUDGETS = ("0%", "5%", "25%", None)  # None: unlimited
MCU = load_profile("mcu-sram").with_sram(1 << 20)


@cache
def _graph(name: str) -> Graph:
    if name == "toy_chain":
        return build_zoo_model("toy_chain", n=4, h=32, w=32, c=8)
    if name == "resnet8":
        return load_model(MODELS / "resnet8_float.onnx")
    return load_model(MODELS / "kws_dscnn_tf2onnx.onnx", {"input_1": (1, 49, 10, 1)})


@cache
def _prepared(name: str):  # type: ignore[no-untyped-def]
    return prepare(_graph(name))


def _limit(graph: Graph, budget: str | None) -> int | None:
    parsed = parse_recompute(budget)
    return None if parsed is None else budget_macs(parsed, graph)


def _checked(name: str, result: api.Result, budget: str | None) -> None:
    """The plan verifies (claims and execution) and recomputes at most the budget."""
    graph = _graph(name)
    doc = json.loads(json.dumps(result.outcome.to_json(SHA)))
    limit = _limit(graph, budget)
    assert doc["settings"].get("max_recompute_macs") == limit
    verify_document(graph, doc, SHA, prepared=_prepared(name))
    report = verify_plan(graph, result.plan, result.outcome.hw, prepared=_prepared(name))
    assert report.passed
    assert report.measured.recompute_macs == result.plan.totals.recompute_macs
    if limit is not None:
        assert result.plan.totals.recompute_macs <= limit
    if budget == "0%":
        assert result.plan.totals.recompute_macs <= 0
        assert result.plan.totals.macs <= untiled_macs(graph)


@pytest.mark.parametrize("name", ["toy_chain", "resnet8", "kws"])
def test_memory_objective_within_budget(name: str) -> None:
    graph = _graph(name)
    previous: int | None = None
    sizes = []
    for budget in BUDGETS:
        result = api.solve(graph, MCU, objective="memory", config=CONFIG, max_recompute=budget)
        _checked(name, result, budget)
        extra = result.outcome.stats.extra
        need = extra["min_sram"]
        assert result.plan.totals.sram_peak <= need
        sizes.append((budget, need, extra["min_sram_status"]))
        if extra["min_sram_status"] == "OPTIMAL":
            if previous is not None:
                assert need <= previous, sizes  # a larger budget never needs more SRAM
            previous = need
    assert all(status == "OPTIMAL" for _, _, status in sizes), sizes


def test_budget_trades_sram_for_recompute_on_resnet8() -> None:
    """ResNet-8 on mcu-sram: no recompute needs TFLite Micro's arena (48 KiB); each budget buys
    less SRAM, and the unlimited plan recomputes far more than 25 %."""
    graph = _graph("resnet8")
    need = {b: api.solve(graph, MCU, objective="memory", config=CONFIG, max_recompute=b).outcome.stats.extra["min_sram"]
            for b in ("0%", "25%", None)}
    assert need["0%"] > need["25%"] > need[None]
    free = api.solve(graph, MCU, objective="memory", config=CONFIG)
    assert free.plan.totals.recompute_macs > untiled_macs(graph) // 4


@pytest.mark.parametrize("name", ["toy_chain", "resnet8"])
def test_energy_objective_within_budget(name: str) -> None:
    """With the energy objective the budget is a hard constraint: warm starts (greedy, the DP
    path) over it are not returned, but the baselines stay reported."""
    graph = _graph(name)
    hw = load_profile("generic-npu").with_sram(16 * 1024 if name == "toy_chain" else 64 * 1024)
    energies = []
    for budget in BUDGETS:
        result = api.solve(graph, hw, config=CONFIG, max_recompute=budget)
        _checked(name, result, budget)
        assert set(result.baselines) == {"layer", "greedy"}
        limit = _limit(graph, budget)
        for source in result.outcome.stats.extra.get("over_budget", []):
            assert source != result.plan_source
        if limit is not None and result.baselines["greedy"].recompute_macs > limit:
            assert result.plan_source != "greedy"
        energies.append((budget, result.plan.totals.energy_fj, result.status))
    optimal = [e for _, e, status in energies if status == "OPTIMAL"]
    assert optimal == sorted(optimal, reverse=True), energies  # more budget never costs more energy
    # somewhere the budget binds: the unlimited plan recomputes more than the 0 % one may
    assert energies[0][1] >= energies[-1][1]


def test_over_budget_warm_starts_are_dropped() -> None:
    """The greedy plan of the toy chain tiles (recomputes); at 0 % it is neither hinted nor
    returned."""
    graph = _graph("toy_chain")
    hw = load_profile("generic-npu").with_sram(16 * 1024)
    free = api.solve(graph, hw, config=CONFIG)
    assert free.baselines["greedy"].recompute_macs > 0
    result = api.solve(graph, hw, config=CONFIG, max_recompute="0%")
    assert "greedy" in result.outcome.stats.extra["over_budget"]
    assert result.plan.totals.recompute_macs <= 0
    assert result.outcome.stats.hint != "greedy"


def test_infeasible_budget_is_one_line_naming_the_budget() -> None:
    graph = _graph("resnet8")
    zero = api.solve(graph, MCU, objective="memory", config=CONFIG, max_recompute="0%").outcome.stats.extra["min_sram"]
    free = api.solve(graph, MCU, objective="memory", config=CONFIG).outcome.stats.extra["min_sram"]
    assert free < zero
    hw = MCU.with_sram((free + zero) // 2)  # plans fit, but only with recompute
    with pytest.raises(InfeasibleError) as err:
        api.solve(graph, hw, objective="memory", config=CONFIG, max_recompute="0%")
    message = err.value.message
    assert "\n" not in message and "--max-recompute" in message and "recompute MACs" in message, message
    # the same with the energy objective (mcu-sram keeps every feature map in SRAM)
    with pytest.raises(InfeasibleError, match="--max-recompute"):
        api.solve(graph, hw, config=CONFIG, max_recompute=0)
    # below what any plan needs, the budget is not what to relax
    with pytest.raises(InfeasibleError) as err:
        api.solve(graph, MCU.with_sram(free - 1), objective="memory", config=CONFIG, max_recompute="0%")
    assert "\n" not in err.value.message and "--max-recompute" not in err.value.message, err.value.message


def test_verify_rejects_a_plan_over_its_budget() -> None:
    graph = _graph("toy_chain")
    result = api.solve(graph, load_profile("generic-npu").with_sram(16 * 1024), strategy="greedy")
    recompute = result.plan.totals.recompute_macs
    assert recompute > 0
    doc = json.loads(json.dumps(result.outcome.to_json(SHA)))
    doc["settings"]["max_recompute_macs"] = recompute
    verify_document(graph, doc, SHA, prepared=_prepared("toy_chain"))  # exactly at the budget: honoured
    doc["settings"]["max_recompute_macs"] = recompute - 1
    with pytest.raises(VerificationError, match="max_recompute_macs"):
        verify_document(graph, doc, SHA, prepared=_prepared("toy_chain"))


def test_parse_budget() -> None:
    assert parse_recompute("10%") == RecomputeBudget(percent=10)
    assert parse_recompute(" 2.5 % ") == RecomputeBudget(percent=parse_recompute("2.5%").percent)
    assert parse_recompute("250000") == RecomputeBudget(macs=250000)
    assert parse_recompute(0) == RecomputeBudget(macs=0)
    assert parse_recompute("unlimited") is None and parse_recompute(None) is None
    graph = _graph("toy_chain")
    base = untiled_macs(graph)
    assert budget_macs(parse_recompute("10%"), graph) == base // 10  # a share rounds down
    assert budget_macs(parse_recompute("100%"), graph) == base
    for bad in ("-5%", "abc", "5 MACs", "%", 0.1, True, -1):
        with pytest.raises(UsageError, match="--max-recompute"):
            parse_recompute(bad)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="--strategy cpsat"):
        api.solve_settings(strategy="greedy", max_recompute="5%")
    with pytest.raises(UsageError, match="recompute budget"):
        solve_cpsat(graph, MCU, "memory", CONFIG, UserConstraints(max_recompute_macs=-1))


def test_cli_records_and_verifies_the_budget(tmp_path: Path) -> None:
    model, plan = tmp_path / "toy.onnx", tmp_path / "plan.json"
    save_onnx(_graph("toy_chain"), model)
    assert main(["solve", str(model), "--hardware", "mcu-sram", "--sram", "1MiB", "--objective", "memory",
                 "--max-recompute", "5%", "--time-limit", "20", "--json", "-o", str(plan)]) == 0
    doc = json.loads(plan.read_text())
    limit = budget_macs(parse_recompute("5%"), load_model(model))
    assert doc["settings"]["max_recompute_macs"] == limit
    assert doc["totals"]["recompute_macs"] <= limit
    assert main(["verify", str(model), str(plan)]) == 0
    assert main(["solve", str(model), "--max-recompute", "ten percent"]) == UsageError.exit_code



# ---------------------------------------------------------------------------- the solver-config key
def test_a_solver_config_budget_is_honoured_and_the_flag_replaces_it(tmp_path: Path) -> None:
    """``max_recompute = "5%"`` in a solver config TOML bounds every CP-SAT plan made with it
    (through api.solve and through solve_cpsat directly); ``--max-recompute`` (here
    ``unlimited``) replaces it; the baselines, which do not choose their recompute, ignore it."""
    toml = tmp_path / "budgeted.toml"
    toml.write_text('time_limit_s = 20.0\nmax_recompute = "5%"\n')
    graph = _graph("resnet8")
    hw = MCU.with_sram(64 * 1024)
    limit = budget_macs(parse_recompute("5%"), graph)
    via_api = api.solve(graph, hw, objective="memory", config=str(toml))
    assert via_api.plan.totals.recompute_macs <= limit
    direct = solve_cpsat(graph, hw, "memory", SolverConfig(time_limit_s=20.0, max_recompute="5%"))
    assert direct.plan.totals.recompute_macs <= limit
    assert direct.plan.totals.sram_peak == via_api.plan.totals.sram_peak
    free = api.solve(graph, hw, objective="memory", config=str(toml), max_recompute="unlimited")
    assert free.plan.totals.recompute_macs > limit  # the config's budget was binding
    lifted = api.solve_settings(config=str(toml), max_recompute="unlimited")
    assert lifted.max_recompute is None and lifted.config.max_recompute is None
    assert api.solve_settings(config=str(toml)).max_recompute == RecomputeBudget(percent=5)
    assert api.solve_settings(strategy="greedy", config=str(toml)).max_recompute is None


@pytest.mark.parametrize("value", ['"ten percent"', '"-5%"', "true", '"5%%"'])
def test_a_bad_solver_config_budget_is_one_line_naming_the_key(tmp_path: Path, value: str) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text(f"max_recompute = {value}\n")
    with pytest.raises(ConfigError, match="max_recompute") as err:
        api.solve_settings(config=str(toml))
    assert "\n" not in err.value.message and "bad.toml" in err.value.message


def test_weighted_memory_objective_prices_recompute_on_resnet8() -> None:
    """The weighted variant (solver config ``recompute_weight``, SRAM bytes per recomputed
    MAC): priced so high that any recompute costs more than all of SRAM, the smallest plan
    recomputes nothing and needs exactly the 0 % budget's SRAM; priced at a small weight it
    recomputes no more than the unweighted memory plan and needs no more SRAM than the 0 %
    plan. Every plan verifies."""
    graph = _graph("resnet8")
    zero = api.solve(graph, MCU, objective="memory", config=CONFIG, max_recompute="0%").outcome.stats
    free = api.solve(graph, MCU, objective="memory", config=CONFIG)
    dear = api.solve(graph, MCU, objective="memory", config=SolverConfig(time_limit_s=20.0, workers=2,
                                                                         recompute_weight=1_000_000))
    _checked("resnet8", dear, None)
    s = dear.outcome.stats
    assert zero.status == s.status == "OPTIMAL"
    assert dear.plan.totals.recompute_macs == 0 == s.extra["min_sram_recompute_macs"]
    assert s.extra["min_sram"] == zero.extra["min_sram"]
    assert s.objective == s.extra["min_sram"]  # bytes + 1e6 x 0 MACs
    cheap = api.solve(graph, MCU, objective="memory", config=SolverConfig(time_limit_s=20.0, workers=2,
                                                                          recompute_weight=0.01))
    _checked("resnet8", cheap, None)
    c = cheap.outcome.stats
    assert c.extra["recompute_weight"] == "1/100"
    assert cheap.plan.totals.recompute_macs <= c.extra["min_sram_recompute_macs"]
    assert cheap.plan.totals.recompute_macs <= free.plan.totals.recompute_macs
    assert free.outcome.stats.extra["min_sram"] <= c.extra["min_sram"] <= zero.extra["min_sram"]
    # phase 2 may trade some recompute away at the same SRAM: the plan costs no more than claimed
    assert c.objective >= cheap.plan.totals.sram_peak + cheap.plan.totals.recompute_macs / 100 - 1e-6


def test_recompute_weight_out_of_range_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="recompute_weight must be a finite number from 0"):
        SolverConfig(recompute_weight=-1)


def test_verify_checks_the_weighted_memory_claim() -> None:
    """verify recomputes the weighted objective from the plan: a claim below SRAM peak + weight x
    recompute MACs, a plan recomputing more than its phase-1 figure, or bytes as the units are
    each rejected in one line."""
    graph = _graph("resnet8")
    result = api.solve(graph, MCU, objective="memory", config=SolverConfig(time_limit_s=20.0, workers=2,
                                                                           recompute_weight=0.01))
    doc = json.loads(json.dumps(result.outcome.to_json(SHA)))
    verify_document(graph, doc, SHA, prepared=_prepared("resnet8"))
    t = result.plan.totals
    assert t.recompute_macs > 0  # the weight leaves some recompute, so each claim below can be wrong
    for field, value, message in (
            ("objective", t.sram_peak + t.recompute_macs / 100 - 1, "below the plan's SRAM peak"),
            ("min_sram_recompute_macs", t.recompute_macs - 1, "more than the"),
            ("objective_units", "bytes", "objective_units")):
        bad = json.loads(json.dumps(doc))
        bad["solver"][field] = value
        with pytest.raises(VerificationError, match=message):
            verify_document(graph, bad, SHA, prepared=_prepared("resnet8"))
