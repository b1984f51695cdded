"""The C99 reference runtime against memplan's numpy tiled executor, per model and strategy.

For each model and planner (layer by layer, greedy, CP-SAT) at one SRAM size: export the plan
(``memplan.firmware.export_c``), build ``memplan_run`` with the export's Makefile (``cc -std=c99
-O2``), run it, and report

* ``output_identical``: the C output bytes equal the numpy tiled executor's and the untiled
  reference's;
* ``counters_equal``: the runtime's DRAM feature-map reads and writes, weight reads and MACs
  equal the plan's totals (``memplan_run`` exits 0 only then);
* ``c_ms``: processor time of one run of the command stream in C (``memplan_run DIR REPEAT``,
  repeated to at least ~0.3 s), ``numpy_ms``: wall time of ``execute_plan`` (median of 3, no
  per-tile comparison), and ``speedup`` = numpy_ms / c_ms.

Models: the MLPerf Tiny ResNet-8 (ONNX), a zoo U-Net (ConvTranspose and concat; one with
bilinear resizes), DS-CNN (ONNX), the QDQ MobileNetV2 0.35, the int8 TFLite files of
``models/`` (keyword spotting, visual wake words, MobileNetV2/V3, selfie segmentation), and the
two test graphs that hold every kernel flavour (``mixed`` and ``others``, imported from
``tests/``).

Run: ``python benchmarks/bench_c_runtime.py [--models a,b] [--time-limit 5]``; writes
``benchmarks/results/c_runtime.csv`` and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from memplan.baselines import greedy, layer_by_layer
from memplan.config import SolverConfig, load_profile
from memplan.errors import MemplanError
from memplan.execute import execute_plan, prepare
from memplan.firmware import export_c
from memplan.frontend import load_model
from memplan.solve import solve_cpsat
from memplan.zoo import build_zoo_model

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
sys.path.insert(0, str(ROOT / "tests"))  # the every-kernel test graphs

KIB = 1024
CASES = {
    "resnet8_float.onnx": (lambda: load_model(MODELS / "resnet8_float.onnx"), 16 * KIB),
    "unet (zoo, transpose)": (lambda: build_zoo_model("unet", resolution=32, base=4, levels=2), 16 * KIB),
    "unet (zoo, bilinear)": (lambda: build_zoo_model("unet", resolution=32, base=4, levels=2, up="bilinear"), 16 * KIB),
    "kws_dscnn_tf2onnx.onnx": (lambda: load_model(MODELS / "kws_dscnn_tf2onnx.onnx"), 16 * KIB),
    "mobilenetv2_035_96_qdq.onnx": (lambda: load_model(MODELS / "keras_mobilenetv2_035_96_int8_qdq.onnx"), 64 * KIB),
    "kws_ref_model.tflite": (lambda: load_model(MODELS / "kws_ref_model.tflite"), 16 * KIB),
    "vww_96_int8.tflite": (lambda: load_model(MODELS / "vww_96_int8.tflite"), 64 * KIB),
    "mobilenetv2_035_96_int8.tflite": (lambda: load_model(MODELS / "keras_mobilenetv2_035_96_int8.tflite"), 64 * KIB),
    "mobilenetv3small_int8.tflite": (lambda: load_model(MODELS / "keras_mobilenetv3small_int8.tflite"), 128 * KIB),
    "selfie_segmentation.tflite": (lambda: load_model(MODELS / "selfie_segmentation.tflite"), 128 * KIB),
    "mixed (test graph)": (lambda: __import__("test_tiled").mixed(), 6 * KIB),
    "others (test graph)": (lambda: __import__("test_c_runtime").others(), 4 * KIB),
}
FIELDS = ["model", "strategy", "sram_kib", "commands", "output_identical", "counters_equal", "c_ms", "numpy_ms",
          "speedup", "error"]


def _c_run(out: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run memplan_run once to check it, then repeated to time it: (first run, ms per run)."""
    first = subprocess.run([str(out / "memplan_run"), str(out)], capture_output=True, text=True)
    per = int(re.search(r"time_us_per_run (\d+)", first.stdout).group(1)) if "time_us_per_run" in first.stdout else 0
    repeat = max(1, min(1000, int(300_000 / max(per, 1))))
    timed = subprocess.run([str(out / "memplan_run"), str(out), str(repeat)], capture_output=True, text=True)
    m = re.search(r"time_us_per_run (\d+)", timed.stdout)
    return first, (int(m.group(1)) / 1000 if m else float("nan"))


def run_case(name: str, graph, prepared, sram: int, strategy: str, config: SolverConfig) -> dict[str, object]:  # type: ignore[no-untyped-def]
    hw = load_profile("generic-npu").with_sram(sram)
    row: dict[str, object] = {"model": name, "strategy": strategy, "sram_kib": sram // KIB}
    try:
        if strategy == "cpsat":
            plan = solve_cpsat(graph, hw, "energy", config).plan
        else:
            plan = (layer_by_layer if strategy == "layer" else greedy)(graph, hw)
    except MemplanError as exc:
        return {**row, "error": exc.message}
    row["commands"] = len(plan.commands)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        tiled = execute_plan(plan, prepared.qgraph, hw, prepared.inputs)
        times.append(time.perf_counter() - t0)
    numpy_ms = statistics.median(times) * 1000
    want = b"".join(np.ascontiguousarray(tiled.outputs[o]).tobytes() for o in graph.outputs)
    ref = b"".join(np.ascontiguousarray(prepared.reference[o]).tobytes() for o in graph.outputs)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fw"
        export_c(graph, plan, hw, prepared, out)
        build = subprocess.run(["make", "-s", "-C", str(out)], capture_output=True, text=True)
        if build.returncode:
            return {**row, "error": f"build failed: {build.stderr.strip().splitlines()[-1:]}"}
        first, c_ms = _c_run(out)
        got = (out / "output.bin").read_bytes() if (out / "output.bin").exists() else b""
    counters = dict(re.findall(r"^counter (\w+)\s+\d+\s+\d+ (ok|DIFFERS)$", first.stdout, re.M))
    t = plan.totals
    measured = {k: int(v) for k, v in re.findall(r"^counter (\w+)\s+(\d+)\s+\d+ ", first.stdout, re.M)}
    equal = (bool(counters) and all(v == "ok" for v in counters.values())
             and [measured.get(k) for k in ("dram_read_fm", "dram_write_fm", "dram_read_weights", "macs")]
             == [t.dram_read_fm, t.dram_write_fm, t.dram_read_weights, t.macs])
    row.update(output_identical="yes" if got == want == ref and first.returncode in (0, 2) else "no",
               counters_equal="yes" if equal else "no", c_ms=round(c_ms, 3), numpy_ms=round(numpy_ms, 1),
               speedup=round(numpy_ms / c_ms, 1) if c_ms > 0 else "", error="" if first.returncode == 0 else
               f"memplan_run exit {first.returncode}: {first.stderr.strip()[:200]}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated subset of the model names")
    parser.add_argument("--time-limit", type=float, default=5.0, help="CP-SAT seconds per plan (default 5)")
    parser.add_argument("-o", "--output", default=str(ROOT / "benchmarks" / "results" / "c_runtime.csv"))
    args = parser.parse_args()
    names = list(CASES) if not args.models else [n for n in CASES if any(s in n for s in args.models.split(","))]
    config = SolverConfig(time_limit_s=args.time_limit, deterministic=True, max_fuse_depth=6, workers=1)
    rows = []
    for name in names:
        make, sram = CASES[name]
        graph = make()
        prepared = prepare(graph)
        for strategy in ("layer", "greedy", "cpsat"):
            row = run_case(name, graph, prepared, sram, strategy, config)
            rows.append(row)
            print(" | ".join(str(row.get(f, "")) for f in FIELDS), flush=True)
    with open(args.output, "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    widths = {f: max(len(f), *(len(str(r.get(f, ""))) for r in rows)) for f in FIELDS[:-1]}
    print()
    print("| " + " | ".join(f.ljust(widths[f]) for f in FIELDS[:-1]) + " |")
    print("|" + "|".join("-" * (widths[f] + 2) for f in FIELDS[:-1]) + "|")
    for r in rows:
        print("| " + " | ".join(str(r.get(f, "")).ljust(widths[f]) for f in FIELDS[:-1]) + " |")
    bad = [r for r in rows if r.get("output_identical") != "yes" or r.get("counters_equal") != "yes"]
    print(f"\n{len(rows) - len(bad)}/{len(rows)} plans bit-identical with equal counters; wrote {args.output}")


if __name__ == "__main__":
    main()
