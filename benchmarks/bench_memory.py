"""tinyML memory: the smallest SRAM that runs each MLPerf Tiny model with no intermediate
feature-map traffic (``--objective memory --hardware mcu-sram``), next to TensorFlow Lite
Micro's non-persistent arena for the int8 models (greedy planner, measured by the project's
peers; ../shared/external/README.md). Every feature map, model input and output included,
lives in SRAM on this profile, as in TFLM's arena; weights stay in flash.

    python benchmarks/bench_memory.py
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from memplan.config import load_profile, load_solver_config
from memplan.frontend import load_model
from memplan.ir.stats import graph_stats
from memplan.solve import solve_cpsat

MODELS = Path(__file__).resolve().parents[1] / "models"
# model file, input shape override, TFLM arena (bytes) for the int8 original
CASES = [
    ("resnet8_float.onnx", None, 49_152),
    ("vww_mobilenetv1_96_float.onnx", None, 73_728),
    ("kws_dscnn_tf2onnx.onnx", {"input_1": (1, 49, 10, 1)}, 16_000),
    ("anomaly_autoencoder_float.onnx", None, 768),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=60.0)
    args = ap.parse_args()
    hw = load_profile("mcu-sram").with_sram(1 << 20)  # the upper end of the search
    config = replace(load_solver_config("default"), time_limit_s=args.time_limit)
    print(f"{'model':32} {'memplan SRAM':>12} {'status':>8} {'TFLM arena':>10} {'ratio':>6} {'largest fm':>10} {'MACs +%':>8}")
    for file, shapes, tflm in CASES:
        graph = load_model(MODELS / file, shapes)
        res = solve_cpsat(graph, hw, "memory", config)
        need = res.stats.extra["min_sram"]
        status = res.stats.extra["min_sram_status"]
        stats = graph_stats(graph)
        largest = max(graph.tensors[t].numel for t in graph.tensors if graph.tensors[t].is_feature_map)
        print(f"{file:32} {need:>12,} {status:>8} {tflm:>10,} {need / tflm:>6.2f} {largest:>10,} "
              f"{100 * res.plan.totals.recompute_macs / stats.total_macs:>7.1f}%")


if __name__ == "__main__":
    main()
