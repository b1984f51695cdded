"""TensorFlow Lite Micro's offline memory plan from memplan's untiled memory plan
(``memplan export --tflm-offsets``): the interpreter computes the same outputs with it, uses
the offsets (a plan that overlaps live tensors changes the outputs), and its arena's planned
section is what memplan planned."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from memplan.cli import main
from memplan.config import SolverConfig, load_profile
from memplan.driver import plan_graph
from memplan.execute.verify import prepare
from memplan.firmware.tflm_offsets import (
    export_tflm_offsets,
    offline_offsets,
    read_offline_offsets,
    with_offline_offsets,
)
from memplan.frontend import load_model
from memplan.execute.tflm import tflm_reference
from memplan.frontend.tflite import import_tflite, read_tflite

MODELS = Path(__file__).resolve().parent.parent / "models"
INT8 = ["kws_ref_model", "vww_96_int8", "pretrainedResnet_quant", "ad01_int8"]
UNTILED = SolverConfig(time_limit_s=30, deterministic=True, max_fuse_depth=1)


def _untiled_plan(path: Path):  # type: ignore[no-untyped-def]
    graph = load_model(path)
    hw = load_profile("mcu-sram").with_tiling(max_tiles=1)
    return graph, plan_graph(graph, hw, objective="memory", config=UNTILED).plan


@pytest.mark.parametrize("name", INT8)
def test_offline_plan_keeps_tflm_outputs_and_is_used(name: str, tmp_path: Path) -> None:
    path = MODELS / f"{name}.tflite"
    graph, plan = _untiled_plan(path)
    prepared = prepare(graph)
    out = tmp_path / f"{name}_planned.tflite"
    r = export_tflm_offsets(path, graph, plan, dict(prepared.inputs), out)
    assert r.outputs_identical and out.exists()
    assert read_offline_offsets(out.read_bytes()) == r.plan.offsets
    n = len(read_tflite(path).tensors)
    assert len(r.plan.offsets) == n and r.plan.planned >= len(graph.layers)
    # the planned section holds at least memplan's buffers; every offset lies in it
    assert r.arena_offline.head >= r.plan.head_bytes == plan.totals.sram_peak
    print(f"\n{name}: TFLM head {r.arena_offline.head} B offline vs {r.arena_default.head} B default")
    # the interpreter really uses the offsets: everything at 0 overlaps live tensors
    bad = tmp_path / "overlapping.tflite"
    bad.write_bytes(with_offline_offsets(path.read_bytes(), tuple(0 if o >= 0 else -1 for o in r.plan.offsets)))
    ours, theirs = tflm_reference(path, prepared.inputs), tflm_reference(bad, prepared.inputs)
    assert any(not np.array_equal(ours[k], theirs[k]) for k in ours)


def test_offsets_are_the_resident_buffers(tmp_path: Path) -> None:
    path = MODELS / "vww_96_int8.tflite"
    graph, plan = _untiled_plan(path)
    views = import_tflite(path).tensor_views
    offline = offline_offsets(graph, plan, views, len(read_tflite(path).tensors))
    resident = {b.tensor: b.offset for b in plan.buffers}
    for name, (ti, _) in views.items():
        assert offline.offsets[ti] == resident[name]
    assert sorted(o for o in offline.offsets if o >= 0) == sorted(resident[n] for n in views if n in resident)


def test_cli_writes_offsets_and_refuses_a_tiled_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = MODELS / "kws_ref_model.tflite"
    untiled, fused = tmp_path / "untiled.json", tmp_path / "fused.json"
    assert main(["solve", str(model), "--hardware", "mcu-sram", "--objective", "memory", "--max-fuse-depth", "1",
                 "--max-tiles", "1", "-o", str(untiled)]) == 0
    assert main(["solve", str(model), "--sram", "64KiB", "--strategy", "greedy", "-o", str(fused)]) == 0
    capsys.readouterr()
    out = tmp_path / "kws_planned.tflite"
    assert main(["export", str(model), str(untiled), "--tflm-offsets", str(out)]) == 0
    assert "outputs identical" in capsys.readouterr().out and out.exists()
    assert main(["export", str(model), str(fused), "--tflm-offsets", str(tmp_path / "no.tflite")]) == 2
    err = capsys.readouterr().err.strip()
    assert "fuses layers" in err and "--max-fuse-depth 1" in err and "\n" not in err
    assert not (tmp_path / "no.tflite").exists()
    assert main(["export", str(model), str(untiled)]) == 2
    assert "say what to export" in capsys.readouterr().err
    doc = json.loads(untiled.read_text())
    assert doc["solver"]["status"] == "OPTIMAL"
