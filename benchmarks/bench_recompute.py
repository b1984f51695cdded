"""The memory objective with a MAC budget: for each MLPerf Tiny model in models/ on ``mcu-sram``
(every feature map in SRAM, weights in flash), the smallest SRAM whose plan recomputes at most
``--max-recompute`` of the untiled network's MACs (0, 5, 10, 25, 100 % and unlimited), next to
TensorFlow Lite Micro's non-persistent arena for the int8 original (the figures of
benchmarks/bench_memory.py, measured by the project's peers; ../shared/external/README.md).
Every plan is checked by ``memplan verify`` (claims, including the budget it records, and a
bit-exact tiled execution whose MAC count is measured). The rows ``W=...`` are the weighted
variant: no budget, the solver config's ``recompute_weight`` W (SRAM bytes one recomputed MAC
is worth), so the first phase minimises SRAM bytes + W x recompute MACs.

    python benchmarks/bench_recompute.py [--time-limit 60]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from memplan import api
from memplan.config import load_profile, load_solver_config
from memplan.execute.verify import prepare, verify_document
from memplan.frontend import load_model
from memplan.solve.budget import parse_recompute, untiled_macs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory import CASES, MODELS  # noqa: E402 - one list of the models and their TFLM arenas
BUDGETS = ("0%", "5%", "10%", "25%", "100%", None)
WEIGHTS = (0.001, 0.01, 0.1)  # SRAM bytes per recomputed MAC
SHA = "00" * 32


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--no-verify", action="store_true", help="skip memplan verify of each plan")
    args = ap.parse_args()
    hw = load_profile("mcu-sram").with_sram(1 << 20)  # the upper end of the search
    config = replace(load_solver_config("default"), time_limit_s=args.time_limit)
    print(f"{'model':31} {'budget':>9} {'SRAM (B)':>9} {'status':>8} {'TFLM':>7} {'ratio':>6} {'MACs +%':>8} "
          f"{'recompute':>11} {'limit':>11} {'verify':>6} {'s':>5}")
    for file, shapes, tflm in CASES:
        graph = load_model(MODELS / file, shapes)
        base = untiled_macs(graph)
        prepared = None if args.no_verify else prepare(graph)
        runs = [(b, 0.0) for b in BUDGETS] + [(None, w) for w in WEIGHTS]
        for budget, weight in runs:
            t = time.perf_counter()
            result = api.solve(graph, hw, objective="memory", config=replace(config, recompute_weight=weight),
                               max_recompute=budget)
            seconds = time.perf_counter() - t
            extra = result.outcome.stats.extra
            need, status = extra["min_sram"], extra["min_sram_status"]
            rc = result.plan.totals.recompute_macs
            parsed = parse_recompute(budget)
            limit = None if parsed is None else parsed.limit(base)
            assert limit is None or rc <= limit, (file, budget, rc, limit)
            checked = "-"
            if prepared is not None:
                doc = json.loads(json.dumps(result.outcome.to_json(SHA)))
                checked = "ok" if verify_document(graph, doc, SHA, prepared=prepared).passed else "FAIL"
            label = f"W={weight:g}" if weight else budget or "unlimited"
            print(f"{file:31} {label:>9} {need:>9,} {status:>8} {tflm:>7,} {need / tflm:>6.2f} "
                  f"{100 * rc / base:>7.1f}% {rc:>11,} {'-' if limit is None else f'{limit:,}':>11} {checked:>6} "
                  f"{seconds:>5.1f}", flush=True)


if __name__ == "__main__":
    main()
