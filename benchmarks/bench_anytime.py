"""Anytime solving under a time limit: does ``memplan solve`` return a plan, and within the limit?

For each model and limit, one ``memplan solve --time-limit L --json -o plan.json`` process,
timed from outside (Python start-up, imports, model load, the solve, writing the plan): its
status, objective, bound, gap, where the plan came from, what the limit cut short, and
whether wall <= limit + 2 s. The ONNX files are written beforehand (not timed).

    python benchmarks/bench_anytime.py [--models mobilenetv2 densenet121] [--limits 2 5 10 20]

Writes benchmarks/results/anytime.txt (the table) and anytime.csv.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SLACK_S = 2.0


def _memplan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memplan.cli", *args], capture_output=True, text=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=["mobilenetv2", "densenet121"])
    ap.add_argument("--limits", nargs="*", type=float, default=[2.0, 5.0, 10.0, 20.0])
    ap.add_argument("--sram", default="256KiB")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--config", default="default")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "anytime"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model = os.path.join(tmp, f"{name}.onnx")
            made = _memplan("zoo", name, "-o", model, "--resolution", str(args.resolution))
            if made.returncode:
                raise SystemExit(made.stderr)
            for limit in args.limits:
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                proc = _memplan("solve", model, "--sram", args.sram, "--config", args.config, "--time-limit", f"{limit:g}",
                                "--json", "-o", os.path.join(tmp, "plan.json"))
                wall = time.perf_counter() - t0
                row: dict[str, object] = {"model": name, "limit_s": limit, "wall_s": round(wall, 2),
                                          "within": wall <= limit + SLACK_S, "load1": round(load, 2)}
                if proc.returncode:
                    row.update(status=f"exit {proc.returncode}: {proc.stderr.strip()[-120:]}")
                else:
                    s = json.loads(proc.stdout)
                    t = s["timings"]
                    row.update(status=s["status"], objective_uJ=round(s["objective_value"] / 1e9, 3),
                               bound_uJ=round(s["bound"] / 1e9, 3), gap_pct=round(100 * s["gap"], 3),
                               source=s["plan_source"], proof=s["proof"] or "", cut_short=" ".join(s["cut_short"]) or "-",
                               solve_s=t.get("total"), outside_s=round(wall - t.get("total", 0.0), 2),
                               search_s=t.get("search", ""))
                rows.append(row)
                print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    cols = ["model", "limit_s", "status", "objective_uJ", "bound_uJ", "gap_pct", "source", "proof", "cut_short",
            "search_s", "solve_s", "outside_s", "wall_s", "within", "load1"]
    table = [cols] + [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    text = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in table)
    header = (f"memplan solve --config {args.config} --sram {args.sram} at {args.resolution}, wall time around the "
              f"whole process (start-up, imports, model load, solve, plan write); within = wall <= limit + {SLACK_S:g} s; "
              f"load1 = 1-minute load average before the run ({os.cpu_count()} cores)\n")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".txt").write_text(header + text + "\n")
    with out.with_suffix(".csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    print(header + text)
    print(f"wrote {out.with_suffix('.txt')} and {out.with_suffix('.csv')}")


if __name__ == "__main__":
    main()
