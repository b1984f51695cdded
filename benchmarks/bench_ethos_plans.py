"""CP-SAT plans with every Ethos-U rule on, next to Vela 5.2's figures for the same .tflite.

The profile as shipped: row stripes, 16-byte alignment, 16-channel bricks, Vela-compressed
weights (``ethos-u-vela``'s codec), rolling buffers. Per model and SRAM size: the solver's
status, SRAM used, DRAM feature-map and weight bytes, cycles, whether the plan verifies
bit-exactly, and Vela's cycles and feature-map bytes from ``benchmarks/results/vela.csv``
(``bench_vela.py``, the same file and SRAM size). The two tools count feature-map bytes in
different units: memplan the bytes its DMA moves, Vela what its NPU fetches (its NPU reads the
model input straight from DRAM, with re-reads per OFM block, in 16-channel bricks). Both are
printed in both units (``bench_vela.fm_bytes_in_vela_units``, ``vela_fm_in_memplan_units``):
"fm B" / "Vela fm B" in memplan's units (DMA bytes, raw), "fm V" / "Vela fm V" in Vela's.

    python benchmarks/bench_ethos_plans.py [--models keras_mobilenetv2_035_96_int8,...] [--sram 256,512,1024]
        [--objective latency]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from dataclasses import replace
from pathlib import Path

from memplan import api
from memplan.config import load_solver_config
from memplan.driver import plan_graph
from memplan.execute import verify_plan

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vela import fm_bytes_in_vela_units  # noqa: E402 - a sibling script: one place for the restating rule

ROOT = Path(__file__).resolve().parents[1]
VELA = ROOT / "benchmarks" / "results" / "vela.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="keras_mobilenetv2_035_96_int8")
    ap.add_argument("--sram", default="256,512,1024", help="KiB, comma-separated")
    ap.add_argument("--hardware", default="ethos-u65-256")
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--objective", default="energy", help="energy (default), latency, balanced, memory")
    args = ap.parse_args()
    vela = {(r["model"], int(r["sram_kib"])): r for r in csv.DictReader(VELA.open())} if VELA.is_file() else {}
    config = replace(load_solver_config("default"), time_limit_s=args.time_limit, deterministic=True)
    print(f"{'model':>30} {'SRAM':>5} | {'status':>8} {'used B':>8} {'fm B':>8} {'weights B':>10} {'cycles':>9} "
          f"{'exact':>5} {'s':>5} | {'Vela cycles':>11} {'x':>5} {'Vela fm B':>10} | {'fm V':>8} {'Vela fm V':>10} "
          f"{'x':>6}")
    for stem in args.models.split(","):
        graph = api.load_model(ROOT / "models" / f"{stem}.tflite")
        for kib in (int(k) for k in args.sram.split(",")):
            hw = api.hardware(args.hardware, sram=f"{kib}KiB")
            t0 = time.perf_counter()
            result = plan_graph(graph, hw, objective=args.objective, config=config)
            report = verify_plan(graph, result.plan, hw)
            t = result.plan.totals
            v = vela.get((stem, kib))
            vela_cycles = int(v["vela_cycles"]) if v else None
            vela_fm_v = int(v["vela_fm_read"]) + int(v["vela_fm_write"]) if v else None
            vela_fm = (int(v["vela_fm_read_memplan_units"]) + int(v["vela_fm_write_memplan_units"])
                       if v and v.get("vela_fm_read_memplan_units") else None)
            _, _, mp_vr, mp_vw = fm_bytes_in_vela_units(result.plan, graph)
            ratio_v = f"{(mp_vr + mp_vw) / vela_fm_v:.3f}" if vela_fm_v else "-"
            ratio = f"{t.cycles / vela_cycles:.2f}" if vela_cycles else "-"
            print(f"{stem:>30} {kib:>5} | {result.plan.provenance.solver['status']:>8} {t.sram_peak:>8,} "
                  f"{t.dram_read_fm + t.dram_write_fm:>8,} {t.dram_read_weights:>10,} {t.cycles:>9,} "
                  f"{str(report.bit_exact):>5} {time.perf_counter() - t0:>5.1f} | {vela_cycles or '-':>11} {ratio:>5} "
                  f"{vela_fm or '-':>10} | {mp_vr + mp_vw:>8,} {vela_fm_v or '-':>10} {ratio_v:>6}", flush=True)


if __name__ == "__main__":
    main()
