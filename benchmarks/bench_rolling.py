"""Rolling (line) buffers against recomputing the halos: recompute MACs, energy and the U curve.

Part 1, the Samsung seed's toy (n identical 3x3 convs on a 112x112x32 map, SRAM ~1/10 of it):
for each depth n the cheapest fitting tiling of the n convs as one group, recomputing its halos
(memplan without rolling buffers) next to the cheapest with rolling buffers allowed, relative to
no forwarding; and where the bottom of the energy-per-conv U curve sits in each case.
Part 2: CP-SAT on a 12-conv chain, with and without rolling buffers: the depths it picks.
Part 3: CP-SAT plans of MobileNetV2 and the U-Net at two SRAM sizes on two profiles, with and
without rolling buffers: recompute MACs, DRAM bytes, energy, status and gap; every plan verified.

    python benchmarks/bench_rolling.py [--sram 96KiB] [--time-limit 60] [--skip-models] [--models mobilenetv2,unet]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_toy import best_fused  # noqa: E402

from memplan.config import load_profile, load_solver_config, parse_size  # noqa: E402
from memplan.execute import verify_plan  # noqa: E402
from memplan.solve import solve_cpsat  # noqa: E402
from memplan.zoo import build_zoo_model  # noqa: E402


def _rel(a: float, b: float) -> str:
    return f"{100 * (a / b - 1):+.0f}%"


def toy(args: argparse.Namespace) -> None:
    base = load_profile(args.hardware).with_sram(parse_size(args.sram)).with_tiling(max_tiles=256)
    profiles = {"recompute": base, "rolling": base.with_tiling(rolling_buffers=True)}
    fm = args.h * args.w * args.c
    print(f"toy: {args.h}x{args.w}x{args.c} int8 = {fm} B feature map, SRAM {base.sram_bytes} B "
          f"({fm / base.sram_bytes:.1f}x), profile {base.name}")
    one = best_fused(1, args.h, args.w, args.c, base)
    assert one is not None
    e1, d1, m1, _ = one
    print(f"{'convs':>5} | {'recompute: tiling':>17} {'bw/conv':>8} {'MACs/conv':>9} {'E/conv':>7} | "
          f"{'rolling: tiling':>15} {'bw/conv':>8} {'MACs/conv':>9} {'E/conv':>7} {'2-slot B':>9}")
    per_conv: dict[str, dict[int, float]] = {k: {} for k in profiles}
    for n in range(1, args.max_n + 1):
        cells = []
        for kind, hw in profiles.items():
            r = best_fused(n, args.h, args.w, args.c, hw)
            if r is None:
                cells.append(f"{'does not fit':>45}")
                continue
            e, d, m, cand = r
            t = cand.tiling
            grid = f"{-(-args.h // t.tile_h)}x{-(-args.w // t.tile_w)}{' rolling' if t.rolling else ''}"
            per_conv[kind][n] = e / n
            copied = sum(b.size for b in cand.core if b.slot)  # SRAM of the two-slot rolling buffers
            cells.append(f"{grid:>17} {_rel(d / n, d1):>8} {_rel(m / n, m1):>9} {_rel(e / n, e1):>7}"
                         + (f" {copied:>9}" if kind == "rolling" else ""))
        print(f"{n:>5} | {cells[0]} | {cells[1]}")
    for kind, curve in per_conv.items():
        best = min(curve, key=curve.__getitem__)
        print(f"bottom of the U curve ({kind}): {best} convs, energy per conv {_rel(curve[best], e1)} vs no forwarding")
    chain = build_zoo_model("toy_chain", n=12, h=args.h, w=args.w, c=args.c)
    config = replace(load_solver_config("default"), time_limit_s=args.time_limit, max_fuse_depth=args.max_n)
    for kind, hw in profiles.items():
        res = solve_cpsat(chain, hw, "energy", config)
        depths = [g.stop - g.start for g in res.plan.decisions.groups]
        rolled = sum(g.tiling.rolling for g in res.plan.decisions.groups)
        t = res.plan.totals
        print(f"CP-SAT, 12-conv chain, {kind}: {res.stats.status}, gap {100 * res.stats.gap:.2f}%, depths {depths}, "
              f"{rolled} rolling groups, recompute {t.recompute_macs / (t.macs - t.recompute_macs):+.1%} MACs, "
              f"energy per conv {_rel(t.energy_fj / 12, e1)} vs no forwarding")


MODELS = {
    "mobilenetv2": lambda: build_zoo_model("mobilenetv2"),
    "unet": lambda: build_zoo_model("unet", resolution=128),
}
PROFILES = ("generic-npu", "ethos-u65-256")
SIZES = ("256KiB", "1MiB")


def models(args: argparse.Namespace) -> None:
    config = replace(load_solver_config("default"), time_limit_s=args.time_limit, deterministic=True)
    print(f"\nCP-SAT plans, time limit {args.time_limit:g} s; every plan verified bit-exactly")
    print(f"{'model':>12} {'profile':>14} {'SRAM':>8} {'mode':>9} | {'status':>8} {'gap':>6} {'rolling':>7} "
          f"{'recompute MACs':>15} {'DRAM B':>11} {'energy uJ':>10} {'cycles':>11} {'wall s':>7}")
    for name in args.models.split(","):
        graph = MODELS[name]()
        for profile in PROFILES:
            for sram in SIZES:
                base = load_profile(profile).with_sram(parse_size(sram))
                for kind, rolling in (("recompute", False), ("rolling", True)):
                    hw = base.with_tiling(rolling_buffers=rolling)
                    t0 = time.perf_counter()
                    try:
                        res = solve_cpsat(graph, hw, "energy", config)
                    except Exception as exc:  # noqa: BLE001 - an infeasible size is a row of the table
                        print(f"{name:>12} {profile:>14} {sram:>8} {kind:>9} | {type(exc).__name__}: {exc}")
                        continue
                    wall = time.perf_counter() - t0
                    report = verify_plan(graph, res.plan, hw)
                    assert report.bit_exact, (name, profile, sram, kind)
                    t = res.plan.totals
                    rolled = sum(g.tiling.rolling for g in res.plan.decisions.groups)
                    print(f"{name:>12} {profile:>14} {sram:>8} {kind:>9} | {res.stats.status:>8} "
                          f"{100 * res.stats.gap:>5.2f}% {rolled:>7} {t.recompute_macs:>15,} {t.dram_total:>11,} "
                          f"{t.energy_fj / 1e9:>10.1f} {t.cycles:>11,} {wall:>7.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--h", type=int, default=112)
    ap.add_argument("--w", type=int, default=112)
    ap.add_argument("--c", type=int, default=32)
    ap.add_argument("--sram", default="40KiB")
    ap.add_argument("--max-n", type=int, default=8)
    ap.add_argument("--hardware", default="generic-npu")
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--skip-models", action="store_true")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    args = ap.parse_args()
    toy(args)
    if not args.skip_models:
        models(args)


if __name__ == "__main__":
    main()
