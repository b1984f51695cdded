"""Baselines and the floor (issue: geometry, cost model, plan format and baselines).

Feature-map and weight DRAM bytes, MACs and energy of the layer-by-layer and greedy plans and
of the compulsory floor, on the zoo resnet50, mobilenetv2 and densenet121 at 224, at 256 KiB,
512 KiB and 1 MiB (generic-npu). Every plan is checked by the validator.

    python benchmarks/bench_baselines.py
"""

from __future__ import annotations

import argparse
import time

from memplan.baselines import floor, greedy, layer_by_layer
from memplan.config import load_profile, parse_size
from memplan.plan.validate import validate_plan
from memplan.zoo import build_zoo_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=["resnet50", "mobilenetv2", "densenet121"])
    ap.add_argument("--sizes", nargs="*", default=["256KiB", "512KiB", "1MiB"])
    args = ap.parse_args()
    print(f"| model | SRAM | plan | fm read | fm write | weights read | MACs | energy (uJ) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        graph = build_zoo_model(name, resolution=224)
        for size in args.sizes:
            hw = load_profile("generic-npu").with_sram(parse_size(size))
            t0 = time.perf_counter()
            plans = {"layer": layer_by_layer(graph, hw), "greedy": greedy(graph, hw)}
            for plan in plans.values():
                validate_plan(plan, graph, hw)
            fl = floor(graph, hw)
            for label, p in plans.items():
                t = p.totals
                print(f"| {name} | {size} | {label} | {t.dram_read_fm:,} | {t.dram_write_fm:,} | {t.dram_read_weights:,} | "
                      f"{t.macs:,} | {t.energy_fj / 1e9:,.1f} |")
            print(f"| {name} | {size} | floor | {fl.dram_read_fm:,} | {fl.dram_write_fm:,} | {fl.dram_read_weights:,} | "
                  f"{fl.macs:,} | {fl.energy_fj / 1e9:,.1f} |", flush=True)
            del t0


if __name__ == "__main__":
    main()
