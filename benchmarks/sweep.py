"""Sweep: every zoo model and every real model in models/, at several SRAM sizes, with the
chosen strategies; each plan is validated and (unless --no-verify) verified bit-exactly by
the tiled executor against the untiled int8 reference, with exact traffic and MAC counts.

Writes one CSV row per (model, SRAM, strategy) to benchmarks/results/sweep.csv.

    python benchmarks/sweep.py --strategies layer greedy                 # the baselines' sweep
    python benchmarks/sweep.py --strategies cpsat --time-limit 20        # CP-SAT with a short limit
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import replace
from pathlib import Path

from memplan.config import load_profile, load_solver_config, parse_size
from memplan.driver import plan_graph
from memplan.errors import MemplanError
from memplan.execute.verify import verify_plan
from memplan.frontend import load_model
from memplan.ir.graph import Graph
from memplan.zoo import build_zoo_model

ROOT = Path(__file__).resolve().parents[1]
ZOO = {"resnet18": 224, "resnet50": 224, "mobilenetv2": 224, "densenet121": 224, "unet": 256, "resnet8": None,
       "dscnn": None, "toy_chain": None}
REAL = {
    "resnet8_float.onnx": None, "cifar10_float.onnx": None, "vww_mobilenetv1_96_float.onnx": None,
    "mobilenet_v1_0_25_128_tf2onnx.onnx": None, "anomaly_autoencoder_float.onnx": None,
    "kws_dscnn_tf2onnx.onnx": {"input_1": (1, 49, 10, 1)}, "micro_kws_m_static_fp32.onnx": None,
    "SqueezeNet_fp16.onnx": None,
}


def models(selected: list[str] | None) -> list[tuple[str, Graph]]:
    out = []
    for name, res in ZOO.items():
        if not selected or name in selected:
            out.append((f"zoo:{name}", build_zoo_model(name, resolution=res)))
    for file, shapes in REAL.items():
        if not selected or file in selected:
            out.append((file, load_model(ROOT / "models" / file, shapes)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", help="zoo names or model files (default: all)")
    ap.add_argument("--sizes", nargs="*", default=["256KiB", "512KiB", "1MiB"])
    ap.add_argument("--strategies", nargs="*", default=["layer", "greedy", "cpsat"])
    ap.add_argument("--time-limit", type=float, default=20.0, help="CP-SAT limit per solve (s)")
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sweep.csv"))
    args = ap.parse_args()
    config = replace(load_solver_config("default"), time_limit_s=args.time_limit)
    rows = []
    for label, graph in models(args.models):
        for size in args.sizes:
            hw = load_profile("generic-npu").with_sram(parse_size(size))
            for strategy in args.strategies:
                row: dict[str, object] = {"model": label, "sram": size, "strategy": strategy}
                t0 = time.perf_counter()
                try:
                    outcome = plan_graph(graph, hw, strategy, "energy", config)  # validated inside
                    plan = outcome.plan
                    row.update(plan_s=round(time.perf_counter() - t0, 1), status=(plan.provenance.solver or {}).get("status", "-"),
                               energy_uJ=plan.totals.energy_fj / 1e9, dram_total=plan.totals.dram_total,
                               macs=plan.totals.macs, valid=True)
                    if not args.no_verify:
                        t1 = time.perf_counter()
                        rep = verify_plan(graph, plan, hw)
                        row.update(verified=rep.bit_exact and rep.counts_match, verify_s=round(time.perf_counter() - t1, 1))
                except MemplanError as exc:
                    row.update(error=str(exc)[:200])
                rows.append(row)
                print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for r in rows for k in r}, key=lambda k: list(rows[0]).index(k) if k in rows[0] else 99)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {out}: {sum(1 for r in rows if r.get('verified') or (args.no_verify and r.get('valid')))} of {len(rows)} passed")


if __name__ == "__main__":
    main()
