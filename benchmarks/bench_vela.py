"""MobileNetV2 224 on Ethos-U65-256: memplan's DRAM traffic next to Arm Vela 5.2.0's.

Vela's figures (int8 MobileNetV2 from tflite-micro, --optimise Performance, Dedicated_Sram,
--arena-cache-size N) were measured by the project's peers and are copied from
../shared/external/README.md. Vela's weights are compressed; ours are raw int8 (3,532,480 B
plus int32 biases), so compare feature-map traffic, and weights only with that in mind.

    python benchmarks/bench_vela.py
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from memplan.baselines import greedy
from memplan.config import load_profile, load_solver_config, parse_size
from memplan.solve import solve_cpsat
from memplan.zoo import build_zoo_model

VELA = {  # SRAM: (fm read, fm write, weights read compressed)
    "256KiB": (5_125_184, 2_052_672, 3_402_608),
    "512KiB": (4_791_872, 1_826_880, 3_576_400),
    "1MiB": (1_304_640, 710_464, 3_412_464),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=60.0)
    args = ap.parse_args()
    graph = build_zoo_model("mobilenetv2", resolution=224)
    config = replace(load_solver_config("default"), time_limit_s=args.time_limit)
    print(f"{'SRAM':>7} {'status':>8} {'gap':>6} | {'fm read':>10} {'Vela':>10} | {'fm write':>10} {'Vela':>10} | "
          f"{'weights':>10} {'Vela(c)':>10} | {'greedy fm':>10}")
    for size, (v_read, v_write, v_w) in VELA.items():
        hw = load_profile("ethos-u65-256").with_sram(parse_size(size))
        res = solve_cpsat(graph, hw, "energy", config)
        t = res.plan.totals
        g = greedy(graph, hw, config.max_fuse_depth).totals
        print(f"{size:>7} {res.stats.status:>8} {100 * res.stats.gap:>5.2f}% | {t.dram_read_fm:>10,} {v_read:>10,} | "
              f"{t.dram_write_fm:>10,} {v_write:>10,} | {t.dram_read_weights:>10,} {v_w:>10,} | "
              f"{g.dram_read_fm + g.dram_write_fm:>10,}")


if __name__ == "__main__":
    main()
