"""How long ``memplan verify`` takes on ResNet-50 at 224x224, next to onnxruntime.

Builds the zoo ResNet-50, writes it as ONNX, plans it (greedy at 512 KiB by default, or
CP-SAT with ``--cpsat SECONDS``), writes the plan JSON, then times

* ``memplan.execute.verify``: load the model, quantise, untiled int8 reference, tiled
  execution of the command stream, comparison (end to end, as ``memplan verify`` runs it);
* onnxruntime's untiled float32 inference of the same ONNX file (median of a few runs after a
  warm-up).

Run: ``python benchmarks/bench_verify.py [--sram 512KiB] [--cpsat 60] [--resolution 224]``.
The goal is verify <= 30 s on two cores.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from memplan.config import SolverConfig, load_profile, parse_size
from memplan.driver import model_sha256, plan_graph
from memplan.driver import verify_files as verify
from memplan.frontend import load_model
from memplan.frontend.export import save_onnx
from memplan.plan.serialize import write_json_atomic
from memplan.zoo import build_zoo_model

GOAL_S = 30.0


def _onnxruntime_seconds(model: Path, shape: tuple[int, ...], runs: int) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    session.run(None, {name: x})  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, {name: x})
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50", help="zoo model (default resnet50)")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--sram", default="512KiB")
    parser.add_argument("--cpsat", type=float, metavar="SECONDS", help="plan with CP-SAT under this time limit")
    parser.add_argument("--ort-runs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / f"{args.model}.onnx"
        plan_path = Path(tmp) / "plan.json"
        save_onnx(build_zoo_model(args.model, resolution=args.resolution), onnx_path)
        graph = load_model(onnx_path)
        hw = load_profile("generic-npu").with_sram(parse_size(args.sram))
        strategy = "cpsat" if args.cpsat else "greedy"
        config = SolverConfig(time_limit_s=args.cpsat or 60.0, deterministic=True)
        t0 = time.perf_counter()
        outcome = plan_graph(graph, hw, strategy=strategy, config=config)
        plan_s = time.perf_counter() - t0
        write_json_atomic(plan_path, outcome.to_json(model_sha256(onnx_path)))
        plan = outcome.plan
        print(f"{graph.name} @ {args.resolution}: {len(graph.layers)} layers, {strategy} plan at {args.sram}: "
              f"{len(plan.decisions.groups)} groups, {len(plan.commands):,} commands ({plan_s:.1f} s to plan)")

        report = verify(onnx_path, plan_path)
        ort_s = _onnxruntime_seconds(onnx_path, graph.shape(graph.inputs[0]), args.ort_runs)

    stages = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in report.times.items())
    print(f"verify: {'verified' if report.passed else 'FAILED'}, {report.wall_time_s:.2f} s ({stages})")
    print(f"  measured = planned: DRAM {report.measured.dram_total:,} B, MACs {report.measured.macs:,}")
    print(f"onnxruntime float32, untiled: {ort_s * 1000:.1f} ms (median of {args.ort_runs})")
    print(f"ratio verify / onnxruntime: {report.wall_time_s / ort_s:,.0f}x")
    print(f"goal verify <= {GOAL_S:.0f} s: {'met' if report.wall_time_s <= GOAL_S else 'NOT met'}")


if __name__ == "__main__":
    main()
