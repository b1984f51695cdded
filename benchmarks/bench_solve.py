"""CP-SAT planner benchmark (issue: CP-SAT planner, performance).

For each model and SRAM size: the CP-SAT plan (objective energy) with its status, gap and
times, next to layer-by-layer, greedy and the floor, all measured in this run. ``wall_s`` is
the whole solve_cpsat call (candidates, baselines, DP bound, search, validation), which the
time limit budgets. Prints one line per run and writes ``benchmarks/results/solve.csv``.

    python benchmarks/bench_solve.py                      # mobilenetv2, resnet50, densenet121 @224
    python benchmarks/bench_solve.py --models mobilenetv2 --sizes 512KiB
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import replace
from pathlib import Path

from memplan.baselines import floor
from memplan.config import load_profile, load_solver_config, parse_size
from memplan.plan.model import Plan
from memplan.solve import solve_cpsat
from memplan.zoo import build_zoo_model

LIMITS = {"mobilenetv2": 60.0, "resnet50": 60.0, "densenet121": 120.0}


def intermediate_fm(plan: Plan, graph_io_bytes: tuple[int, int]) -> int:
    """Feature-map DRAM traffic beyond the compulsory input read and output write."""
    t = plan.totals
    return (t.dram_read_fm - graph_io_bytes[0]) + (t.dram_write_fm - graph_io_bytes[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=["mobilenetv2", "resnet50", "densenet121"])
    ap.add_argument("--sizes", nargs="*", default=["256KiB", "512KiB", "1MiB"])
    ap.add_argument("--hardware", default="generic-npu")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--time-limit", type=float, help="override the per-model limits (s)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "solve.csv"))
    args = ap.parse_args()
    rows = []
    for name in args.models:
        graph = build_zoo_model(name, resolution=args.resolution)
        for size in args.sizes:
            hw = load_profile(args.hardware).with_sram(parse_size(size))
            io = (sum(graph.tensors[t].numel for t in graph.inputs) * hw.elem_bytes,
                  sum(graph.tensors[t].numel for t in graph.outputs) * hw.elem_bytes)
            config = replace(load_solver_config("default"), time_limit_s=args.time_limit or LIMITS.get(name, 60.0))
            t0 = time.perf_counter()
            res = solve_cpsat(graph, hw, "energy", config)  # the baselines are computed inside, on the clock
            t_total = time.perf_counter() - t0
            lbl, gr = res.baselines["layer"], res.baselines["greedy"]
            extra = res.stats.extra
            fl = floor(graph, hw)
            p = res.plan
            removed = 1 - intermediate_fm(p, io) / max(intermediate_fm(lbl, io), 1)
            row = {
                "model": name, "sram": size, "status": res.stats.status, "gap_pct": round(100 * res.stats.gap, 3),
                "time_limit_s": config.time_limit_s, "wall_s": round(t_total, 1),
                "prepare_s": round(sum(v for k, v in res.timings.items() if k in ("layer", "greedy", "candidates")), 3),
                "dp_s": res.timings.get("dp_bound"), "search_s": res.timings.get("search_limit"),
                "candidates": res.stats.candidates,
                "bound_uJ": round(res.stats.bound / 1e9, 3), "dp_bound_uJ": extra.get("dp_bound_fj", 0) / 1e9,
                "hint": res.stats.hint, "hint_uJ": (res.stats.warm_start_energy_fj or 0) / 1e9,
                "energy_uJ": p.totals.energy_fj / 1e9, "greedy_energy_uJ": gr.totals.energy_fj / 1e9,
                "layer_energy_uJ": lbl.totals.energy_fj / 1e9, "floor_energy_uJ": fl.energy_fj / 1e9,
                "dram_total": p.totals.dram_total, "greedy_dram_total": gr.totals.dram_total,
                "layer_dram_total": lbl.totals.dram_total, "floor_dram_total": fl.dram_total,
                "fm_read": p.totals.dram_read_fm, "fm_write": p.totals.dram_write_fm, "w_read": p.totals.dram_read_weights,
                "intermediate_fm": intermediate_fm(p, io), "layer_intermediate_fm": intermediate_fm(lbl, io),
                "intermediate_removed_pct": round(100 * removed, 2),
                "recompute_macs_pct": round(100 * p.totals.recompute_macs / fl.macs, 2),
                "strictly_less_dram_than_greedy": p.totals.dram_total < gr.totals.dram_total,
            }
            rows.append(row)
            print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
