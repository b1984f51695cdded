"""Slow tier (``pytest -m slow``): every real model in models/ is planned by greedy and by
CP-SAT and verified bit-exactly, with exact traffic and MACs, by the tiled executor."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from memplan.config import SolverConfig, load_profile
from memplan.driver import plan_graph
from memplan.execute.verify import verify_plan
from memplan.frontend import load_model

MODELS = Path(__file__).resolve().parents[1] / "models"
SHAPES = {"kws_dscnn_tf2onnx.onnx": {"input_1": (1, 49, 10, 1)}}
CONFIG = SolverConfig(time_limit_s=15.0, deterministic=True, max_fuse_depth=8)


@pytest.mark.slow
@pytest.mark.parametrize("file", sorted(p.name for p in MODELS.glob("*.onnx")))
@pytest.mark.parametrize("strategy", ["greedy", "cpsat"])
def test_real_model_plans_verify(file: str, strategy: str) -> None:
    graph = load_model(MODELS / file, SHAPES.get(file))
    hw = load_profile("generic-npu").with_sram(256 * 1024)
    plan = plan_graph(graph, hw, strategy, "energy", replace(CONFIG)).plan
    report = verify_plan(graph, plan, hw)
    assert report.bit_exact and report.counts_match, report.failure
