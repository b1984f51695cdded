"""The Samsung seed's toy: a chain of identical 3x3 convs on a feature map ~10x the SRAM.

Part 1 (the seed's table): for n = 1..8 convs fused as one group, the cheapest tiling that
fits (weights kept when they fit), relative to no forwarding (each conv alone with its
cheapest fitting tiling): bandwidth, bandwidth per conv, MACs per conv, energy per conv.
Part 2: CP-SAT plans a chain of 12 such convs and chooses the fusion depths itself; the
depths it picks should sit at the bottom of the energy-per-conv U curve of part 1.

    python benchmarks/bench_toy.py [--h 112 --w 112 --c 32 --sram 40KiB]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from memplan.baselines import footprint, spilled_energy
from memplan.config import load_profile, load_solver_config, parse_size
from memplan.cost.candidate import candidate_cost
from memplan.geometry.group import group_shape, tiling_options
from memplan.solve import solve_cpsat
from memplan.zoo import build_zoo_model

SEED = {  # Samsung, Embedded Vision Summit 2020: relative to no forwarding
    2: ("3x4", "+6%", "-47%", "+5%", "-30%"),
    3: ("3x4", "+12%", "-63%", "+10%", "-39%"),
    4: ("3x4", "+17%", "-71%", "+16%", "-43%"),
    5: ("4x4", "+29%", "-74%", "+26%", "-42%"),
}


def best_fused(n: int, h: int, w: int, c: int, hw):  # type: ignore[no-untyped-def]
    graph = build_zoo_model("toy_chain", n=n, h=h, w=w, c=c)
    shape = group_shape(graph, 0, n)
    assert shape is not None
    best = None
    for tiling in tiling_options(graph, shape, hw.tiling):
        cand = candidate_cost(graph, shape, tiling, hw)
        for keep in (True, False):
            if footprint(cand, keep, hw) <= hw.sram_bytes:
                e = spilled_energy(cand, keep, hw)
                dram = sum(i.load_bytes for i in cand.inputs) + cand.store_bytes + sum(
                    x.total_bytes if keep else x.reload_bytes for x in cand.weights)
                if best is None or e < best[0]:
                    best = (e, dram, cand.macs, cand)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--h", type=int, default=112)
    ap.add_argument("--w", type=int, default=112)
    ap.add_argument("--c", type=int, default=32)
    ap.add_argument("--sram", default="40KiB", help="default: ~1/10 of the 392 KiB feature map")
    ap.add_argument("--max-n", type=int, default=8)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--hardware", default="generic-npu")
    ap.add_argument("--single-buffer", action="store_true",
                    help="no double-buffered staging (the seed's single core that waits for its DMA)")
    args = ap.parse_args()
    hw = load_profile(args.hardware).with_sram(parse_size(args.sram)).with_tiling(max_tiles=256)
    if args.single_buffer:
        hw = replace(hw, dma_overlaps_compute=False)
    print(f"profile {hw.name}: {float(hw.mac_pj)} pJ/MAC, {float(hw.dram_pj_per_byte)} pJ/B DRAM, "
          f"{float(hw.sram_pj_per_byte)} pJ/B SRAM, {'double' if hw.dma_overlaps_compute else 'single'}-buffered staging")
    fm = args.h * args.w * args.c
    print(f"toy: {args.h}x{args.w}x{args.c} int8 = {fm} B feature map, SRAM {hw.sram_bytes} B ({fm / hw.sram_bytes:.1f}x)")
    one = best_fused(1, args.h, args.w, args.c, hw)
    assert one is not None
    e1, d1, m1, _ = one
    print(f"{'convs':>5} {'tiling':>8} {'bandwidth':>10} {'bw/conv':>8} {'ops/conv':>9} {'E/conv':>8}   seed (tiling, bw, bw/conv, ops/conv, E/conv)")
    per_conv = {}
    for n in range(1, args.max_n + 1):
        r = best_fused(n, args.h, args.w, args.c, hw)
        if r is None:
            print(f"{n:>5} does not fit")
            continue
        e, d, m, cand = r
        t = cand.tiling
        grid = f"{-(-args.h // t.tile_h)}x{-(-args.w // t.tile_w)}"
        per_conv[n] = e / n
        rel = lambda a, b: f"{100 * (a / b - 1):+.0f}%"  # noqa: E731
        print(f"{n:>5} {grid:>8} {rel(d, d1):>10} {rel(d / n, d1):>8} {rel(m / n, m1):>9} {rel(e / n, e1):>8}   "
              f"{' '.join(SEED.get(n, ()))}")
    best_n = min(per_conv, key=per_conv.get)  # type: ignore[arg-type]
    print(f"bottom of the U curve (energy per conv): {best_n} convs")
    chain = build_zoo_model("toy_chain", n=12, h=args.h, w=args.w, c=args.c)
    config = replace(load_solver_config("default"), time_limit_s=args.time_limit, max_fuse_depth=args.max_n)
    res = solve_cpsat(chain, hw, "energy", config)
    depths = [g.stop - g.start for g in res.plan.decisions.groups]
    print(f"CP-SAT on a 12-conv chain: {res.stats.status}, gap {100 * res.stats.gap:.2f}%, group depths {depths}, "
          f"energy per conv {res.plan.totals.energy_fj / 12 / e1 - 1:+.0%} vs no forwarding")


if __name__ == "__main__":
    main()
