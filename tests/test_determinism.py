"""Plan files are reproducible: the same model, config, profile and seed give the same plan
bytes, with the default (wall-clock) config too; timings go to the summary, not the plan."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from memplan.plan.serialize import schema


def _memplan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memplan.cli", *args], capture_output=True, text=True, check=True,
                          timeout=120)


@pytest.fixture(scope="module")
def resnet8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "resnet8.onnx"
    _memplan("zoo", "resnet8", "-o", str(path))
    return path


# 8 KiB: CP-SAT searches and proves the warm start optimal; 16 KiB: the DP bound proves it
# (test_solve.py checks deterministic configs on a search in-process)
@pytest.mark.parametrize("sram,config", [("8KiB", "default"), ("16KiB", "default"), ("16KiB", "fast")])
def test_two_solves_write_identical_plan_bytes(resnet8: Path, tmp_path: Path, sram: str, config: str) -> None:
    outs = []
    for run in ("a", "b"):
        out = tmp_path / f"{run}.json"
        summary = json.loads(_memplan("solve", str(resnet8), "--sram", sram, "--config", config, "-o", str(out),
                                      "--json").stdout)
        assert summary["status"] == "OPTIMAL"
        assert summary["timings"]["total"] > 0  # timings are reported in the summary...
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    solver = json.loads(outs[0])["solver"]
    # ... and never written into the plan
    assert not any(k.endswith("_s") for k in solver), solver
    jsonschema.validate(solver, schema()["properties"]["solver"])
    # search counters only from a search bounded by deterministic time (none ran here at 16 KiB)
    assert "conflicts" not in solver and "deterministic_time" not in solver
    assert solver["proof"] == ("cpsat" if sram == "8KiB" else "dp_bound")


def test_human_summary_shows_source_proof_and_time(resnet8: Path) -> None:
    text = _memplan("solve", str(resnet8), "--sram", "16KiB").stdout
    assert "OPTIMAL" in text and "proven by the DP bound" in text
    assert " s" in text.splitlines()[-1]
