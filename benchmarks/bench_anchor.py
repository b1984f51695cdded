"""The Arm seed's anchor: "95 %+ of intermediate data traffic to DRAM eliminated (CNNs, 1 MB
SRAM, 299x299 input)".

For each model, resolution and SRAM size: the CP-SAT plan on generic-npu within the time limit,
and per plan

* intermediate feature-map traffic removed: 1 - (plan's feature-map DRAM bytes - the
  compulsory ones) / (the layer-by-layer plan's - the compulsory ones), where the compulsory
  feature-map bytes are the floor's (the model input read once, the output written once);
* total DRAM / the compulsory floor;
* status, gap, which path the plan came from and what proved it, wall time;
* how much CP-SAT improved on its best warm start (``SolverStats.warm_start_energy_fj`` vs the
  plan's energy).

Usage: ``python benchmarks/bench_anchor.py [--models mobilenetv2,resnet50,densenet121]
[--resolutions 224,299] [--sram 256,1024] [--time-limit 120] [--rolling off|on|both]
[--multi-output off|on|both]``; rows go
to ``benchmarks/results/anchor.csv`` (``--out``).
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import replace
from pathlib import Path

from memplan.baselines import floor
from memplan.config import load_profile, load_solver_config
from memplan.driver import plan_graph
from memplan.errors import InfeasibleError
from memplan.zoo import build_zoo_model

OUT = Path(__file__).resolve().parent / "results" / "anchor.csv"
FIELDS = ["model", "resolution", "sram_kib", "rolling", "multi_output", "status", "gap", "plan_source", "proof", "wall_s", "removed_pct",
          "dram_over_floor", "cpsat_gain_pct"]


def row(name: str, resolution: int, sram_kib: int, limit: float, rolling: bool = False,
        multi_output: bool = False) -> dict[str, object]:
    graph = build_zoo_model(name, resolution=resolution)
    hw = load_profile("generic-npu").with_sram(sram_kib * 1024).with_tiling(rolling_buffers=rolling,
                                                                            multi_output=multi_output)
    config = replace(load_solver_config("default"), time_limit_s=limit)
    t0 = time.perf_counter()
    try:
        result = plan_graph(graph, hw, config=config)
    except InfeasibleError as exc:  # a layer that cannot run in this SRAM at all: a row that says so
        return {"model": name, "resolution": resolution, "sram_kib": sram_kib, "rolling": rolling,
                "multi_output": multi_output, "status": "INFEASIBLE",
                "wall_s": round(time.perf_counter() - t0, 1), "proof": exc.message[:120]}
    wall = time.perf_counter() - t0
    solver = dict(result.plan.provenance.solver or {})
    fl = floor(graph, hw)
    compulsory = fl.dram_read_fm + fl.dram_write_fm

    def intermediate(t) -> int:  # type: ignore[no-untyped-def]
        return t.dram_read_fm + t.dram_write_fm - compulsory

    totals, layer = result.plan.totals, result.baselines["layer"].totals
    hint = result.stats.warm_start_energy_fj if result.stats is not None else None
    return {
        "model": name, "resolution": resolution, "sram_kib": sram_kib, "rolling": rolling, "multi_output": multi_output,
        "status": solver.get("status"),
        "gap": round(float(solver.get("gap") or 0.0), 5), "plan_source": solver.get("plan_source"),
        "proof": solver.get("proof"), "wall_s": round(wall, 1),
        "removed_pct": round(100 * (1 - intermediate(totals) / intermediate(layer)), 2) if intermediate(layer) else 100.0,
        "dram_over_floor": round(totals.dram_total / fl.dram_total, 3),
        "cpsat_gain_pct": None if hint is None else round(100 * (1 - totals.energy_fj / hint), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mobilenetv2,resnet50,densenet121")
    ap.add_argument("--resolutions", default="299")
    ap.add_argument("--sram", default="1024", help="SRAM sizes in KiB, comma-separated")
    ap.add_argument("--time-limit", type=float, default=120.0)
    ap.add_argument("--rolling", default="off", choices=["off", "on", "both"],
                    help="rolling buffers (the profile's tiling rule rolling_buffers): off, on, or a row for each")
    ap.add_argument("--multi-output", default="off", choices=["off", "on", "both"],
                    help="multi-output groups (the profile's tiling rule multi_output): off, on, or a row for each")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    modes = {"off": (False,), "on": (True,), "both": (False, True)}
    rolling_modes, multi_modes = modes[args.rolling], modes[args.multi_output]
    rows = []
    for name in args.models.split(","):
        for res in (int(r) for r in args.resolutions.split(",")):
            for kib in (int(s) for s in args.sram.split(",")):
                for rolling in rolling_modes:
                    for multi in multi_modes:
                        r = row(name, res, kib, args.time_limit, rolling, multi)
                        rows.append(r)
                        print(", ".join(f"{k}={r.get(k)}" for k in FIELDS), flush=True)
    args.out.parent.mkdir(exist_ok=True)
    with args.out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, restval="")
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
