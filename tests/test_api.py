"""The Python API (memplan.api, re-exported by memplan): load -> hardware -> solve -> save ->
verify, the same checks and messages as the command line, notebook rendering."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import memplan
from memplan.errors import ConfigError, MemplanError, PlanError, UsageError, VerificationError

MODEL = Path(__file__).resolve().parents[1] / "models" / "resnet8_float.onnx"


@pytest.fixture(scope="module")
def graph() -> memplan.api.Graph:  # type: ignore[name-defined]
    return memplan.load_model(MODEL)


@pytest.fixture(scope="module", params=["greedy", "cpsat"])
def solved(request: pytest.FixtureRequest, graph, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    hw = memplan.hardware("generic-npu", sram="32KiB")
    result = memplan.solve(graph, hw, strategy=request.param, time_limit=10)
    path = tmp_path_factory.mktemp("api") / "plan.json"
    result.save(path)
    return result, path


def test_round_trip_verifies(solved, graph) -> None:  # type: ignore[no-untyped-def]
    result, path = solved
    assert result.plan.sram_bytes == 32 * 1024
    for plan in (path, str(path), result, json.loads(path.read_text())):
        report = memplan.verify(MODEL, plan)
        assert isinstance(report, memplan.Verification) and report.passed
    assert memplan.verify(graph, result).passed  # a graph: no file read again, its sha256 still checked


def test_saved_plan_is_the_documents_bytes(solved) -> None:  # type: ignore[no-untyped-def]
    result, path = solved
    assert json.loads(path.read_text()) == result.to_json()
    assert result.to_json()["model"]["sha256"] == result.model_sha256 is not None
    plan, hw = memplan.load_plan(path)
    assert isinstance(plan, memplan.Plan) and plan == result.plan and hw == result.hardware


def test_result_fields_are_the_solver_record(solved) -> None:  # type: ignore[no-untyped-def]
    result, path = solved
    doc = json.loads(path.read_text())
    solver = doc["solver"]
    if doc["strategy"] == "cpsat":
        fields = ("status", "objective", "bound", "gap", "objective_units", "plan_source", "proof")
        assert {k: getattr(result, k) for k in fields} == {k: solver[k] for k in fields}
    else:
        assert solver is None and result.status == "HEURISTIC" and result.bound is None and result.gap is None
        assert result.objective == doc["totals"]["energy_fj"]
    assert {k: t.to_json() for k, t in result.baselines.items()} == doc["baselines"]
    assert result.floor.to_json() == doc["floor"]
    assert "total" in result.timings


def test_result_renders_in_a_notebook(solved) -> None:  # type: ignore[no-untyped-def]
    result, path = solved
    page = result._repr_html_()
    assert result.status in page and f"{result.plan.totals.energy_pj:,.0f}" in page
    assert "floor" in page and all(name in page for name in result.baselines)
    assert result.status in repr(result) and len(repr(result)) < 300
    assert "verified" in memplan.verify(MODEL, path)._repr_html_()


def test_same_plan_as_the_command_line(tmp_path: Path, graph) -> None:  # type: ignore[no-untyped-def]
    from memplan.cli import main

    out = tmp_path / "cli.json"
    assert main(["solve", str(MODEL), "--strategy", "greedy", "--sram", "32KiB", "-o", str(out)]) == 0
    memplan.solve(graph, memplan.hardware(sram=32768), strategy="greedy").save(tmp_path / "api.json")
    assert (tmp_path / "api.json").read_bytes() == out.read_bytes()


def test_hardware_overrides() -> None:
    hw = memplan.hardware("generic-npu", sram=65536, clock_mhz=500, row_only=True, max_tiles=16)
    assert (hw.sram_bytes, hw.clock_hz, hw.tiling.row_only, hw.tiling.max_tiles) == (65536, 500_000_000, True, 16)
    assert memplan.hardware(tiling={"tile_multiple": 4}).tiling.tile_multiple == 4
    assert memplan.hardware() == memplan.hardware("generic-npu", name="generic-npu")


@pytest.mark.parametrize(("kwargs", "error", "words"), [
    ({"foo": 1}, ConfigError, "unknown key 'foo'"),
    ({"mac_pj": "x"}, ConfigError, "key 'mac_pj' must be int/float"),
    ({"mac_pj": 0.0001}, ConfigError, "more than three decimals"),
    ({"elem_bytes": True}, ConfigError, "key 'elem_bytes' must be int"),
    ({"max_tiles": 10**6}, ConfigError, "tiling.max_tiles' must be from 1 to 4,096"),
    ({"tile_multiple": 0}, ConfigError, "must be >= 1"),
    ({"sram": "lots"}, UsageError, "is not a byte count"),
    ({"sram": 0}, UsageError, "must be positive"),
    ({"name_or_path": "tpu"}, ConfigError, "unknown hardware profile 'tpu'"),
])
def test_hardware_refused_in_one_line(kwargs: dict, error: type[MemplanError], words: str) -> None:
    with pytest.raises(error) as exc:
        memplan.hardware(**kwargs)
    assert words in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize(("kwargs", "error", "words"), [
    ({"strategy": "fast"}, UsageError, "unknown strategy 'fast'"),
    ({"objective": "speed"}, UsageError, "unknown objective 'speed'"),
    ({"time_limit": -1}, ConfigError, "time_limit_s must be a positive number"),
    ({"seed": -1}, ConfigError, "random_seed must be an integer"),
    ({"max_fuse_depth": 0}, ConfigError, "max_fuse_depth must be an integer from 1"),
    ({"config": "quick"}, ConfigError, "unknown solver config 'quick'"),
    ({"weights": {"power": 1}}, UsageError, "not energy=W,latency=W"),
    ({"weights": {"energy": 0, "latency": 0}}, UsageError, "positive weight"),
    ({"weights": "energy=inf"}, UsageError, "must be a finite number"),
    ({"weights": {"energy": 1}, "objective": "latency"}, UsageError, "custom objective"),
    ({"objective": "custom"}, UsageError, "needs weights"),
    ({"keep": ["conv1"], "strategy": "greedy"}, UsageError, "apply to --strategy cpsat only"),
    ({"keep": ["nope"]}, UsageError, "'nope', which is not a layer"),
    ({"objective": "latency", "strategy": "layer"}, UsageError, "no objective to choose"),
])
def test_solve_refused_in_one_line(graph, kwargs: dict, error: type[MemplanError], words: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error) as exc:
        memplan.solve(graph, memplan.hardware(sram="32KiB"), **{"time_limit": 5, **kwargs})
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_verify_refuses_another_models_plan(solved, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result, _ = solved
    other = tmp_path / "other.onnx"
    other.write_bytes(MODEL.read_bytes() + b"\0")  # other bytes, so another sha256
    with pytest.raises(VerificationError, match="made for a model with sha256"):
        memplan.verify(other, result)
    doc = result.to_json()
    doc["totals"] = {**doc["totals"], "dram_total": 1}
    with pytest.raises(PlanError, match="dram_total"):
        memplan.verify(MODEL, doc)
    with pytest.raises(PlanError, match="does not exist"):
        memplan.verify(MODEL, tmp_path / "missing.json")


def test_memplan_solve_stays_callable_after_the_subpackage_is_imported() -> None:
    import memplan.solve.run  # noqa: F401 - binds memplan.solve to the subpackage

    assert callable(memplan.solve) and memplan.solve.run.SolverStats is not None
    from memplan import solve

    assert solve is memplan.solve


def test_import_memplan_stays_light() -> None:
    code = "import sys, memplan; print(sorted(m for m in ('numpy', 'onnx', 'ortools', 'rich') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
