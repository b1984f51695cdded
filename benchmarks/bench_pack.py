"""Offsets at MiniMalloc strength (issue 14 item 4): memplan.pack on MiniMalloc's eleven
"challenging" instances, against first fit and memplan's placement-only CP-SAT model.

Per instance: buffers, the peak load, first fit's extent vs the capacity, memplan.pack's status,
method, search nodes and time (limit 60 s), and the CP-SAT placement model's (solve/place.py,
the fallback of the warm-start placement today; 2 workers, same limit). Every packing is checked
by this script's own overlap test. One instance at a time; prints a table and writes
benchmarks/results/pack.csv.

    python benchmarks/bench_pack.py [--dir ../shared/external/minimalloc/benchmarks/challenging]
                                    [--time-limit 60] [--no-cpsat] [--only A B]
"""

from __future__ import annotations

import argparse
import csv
import re
import time
from pathlib import Path

import numpy as np

from memplan.alloc import Block, extent, first_fit
from memplan.pack import pack_result, read_buffers_csv

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = ROOT.parent / "shared" / "external" / "minimalloc" / "benchmarks" / "challenging"


def overlap_free(blocks: list[Block], offsets: dict[str, int], capacity: int) -> bool:
    """Independent check: all offsets within [0, capacity - size], and no pair of blocks both
    live and sharing an address (all pairs, numpy)."""
    lo = np.array([b.t0 for b in blocks])
    hi = np.array([b.t1 for b in blocks])
    size = np.array([b.size for b in blocks])
    off = np.array([offsets[b.name] for b in blocks])
    if (off < 0).any() or (off + size > capacity).any():
        return False
    time_overlap = (lo[:, None] < hi[None, :]) & (lo[None, :] < hi[:, None])
    addr_overlap = (off[:, None] < (off + size)[None, :]) & (off[None, :] < (off + size)[:, None])
    both = time_overlap & addr_overlap & (size[:, None] > 0) & (size[None, :] > 0)
    np.fill_diagonal(both, False)
    return not both.any()


def peak(blocks: list[Block]) -> int:
    points = sorted({b.t0 for b in blocks})
    return max(sum(b.size for b in blocks if b.t0 <= t < b.t1) for t in points)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--no-cpsat", action="store_true", help="skip the CP-SAT placement model")
    ap.add_argument("--only", nargs="*", help="instance letters (default: all files in --dir)")
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "benchmarks" / "results" / "pack.csv")
    args = ap.parse_args()
    files = sorted(args.dir.glob("*.csv"))
    if args.only:
        files = [f for f in files if f.name.split(".")[0] in args.only]
    if not files:
        raise SystemExit(f"no instances in {args.dir}")
    rows = []
    print("| instance | buffers | capacity | peak | first fit extent | pack | method | nodes | time (s) | "
          "CP-SAT place | time (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for f in files:
        m = re.match(r"(.+)\.(\d+)\.csv$", f.name)
        name, capacity = (m.group(1), int(m.group(2))) if m else (f.stem, 1 << 20)
        blocks = read_buffers_csv(f)
        ff = extent(blocks, first_fit(blocks))
        res = pack_result(blocks, capacity, time_limit_s=args.time_limit)
        ok = res.offsets is not None and overlap_free(blocks, dict(res.offsets), capacity)
        if res.offsets is not None and not ok:
            raise SystemExit(f"{name}: memplan.pack returned an invalid packing")
        cp_status, cp_time = "", ""
        if not args.no_cpsat:
            from memplan.solve.place import place

            t0 = time.perf_counter()
            placed = place(blocks, capacity, time_limit_s=args.time_limit, workers=2)
            cp_time = f"{time.perf_counter() - t0:.1f}"
            if placed is not None and not overlap_free(blocks, placed, capacity):
                raise SystemExit(f"{name}: the CP-SAT placement returned an invalid packing")
            cp_status = "packed" if placed is not None else "none"
        row = {"instance": name, "buffers": len(blocks), "capacity": capacity, "peak": peak(blocks),
               "first_fit_extent": ff, "first_fit_over": f"{ff / capacity - 1:.3f}", "status": res.status,
               "method": res.method, "nodes": res.nodes, "seconds": f"{res.seconds:.2f}", "verified": ok,
               "cpsat_status": cp_status, "cpsat_seconds": cp_time}
        rows.append(row)
        print(f"| {name} | {len(blocks)} | {capacity:,} | {row['peak']:,} | {ff:,} (+{ff / capacity - 1:.1%}) | "
              f"{res.status} | {res.method} | {res.nodes:,} | {res.seconds:.2f} | {cp_status or '-'} | "
              f"{cp_time or '-'} |", flush=True)
    solved = sum(r["status"] == "packed" for r in rows)
    total = sum(float(r["seconds"]) for r in rows)
    line = f"memplan.pack: {solved}/{len(rows)} packed, total {total:.1f} s"
    if not args.no_cpsat:
        line += f"; CP-SAT placement: {sum(r['cpsat_status'] == 'packed' for r in rows)}/{len(rows)}"
    print(line)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
