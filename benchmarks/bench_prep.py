"""Preprocessing of the planner: the feasibility check, the candidate enumeration and the two
baselines, which ``memplan solve`` runs one after the other.

Times each stage on its own (``separate``: no cache passed, so each stage costs its candidates
afresh, as every call site did before the CostCache) and the stages with one shared
:class:`memplan.cost.candidate.CostCache`: ``shared`` in solve_cpsat's order (check_feasible,
enumerate_candidates, layer_by_layer, greedy) and ``shared-baselines`` without the enumeration
(driver.py's layer/greedy strategies). Checks that all give identical results and prints the
speed-up measured in this run. With ``--repeat N`` each figure is the fastest of N runs.

    python benchmarks/bench_prep.py --model densenet121 --sram 256KiB [--resolution 224]

Run against a checkout without CostCache (PYTHONPATH=<old>/src) it times the separate stages
only: that is the "before" figure.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from typing import Any

from memplan.baselines import check_feasible, greedy, layer_by_layer
from memplan.config import load_profile, parse_size
from memplan.solve.candidates import enumerate_candidates
from memplan.zoo import build_zoo_model

try:
    from memplan.cost.candidate import CostCache
except ImportError:  # a version from before the cache
    CostCache = None  # type: ignore[assignment,misc]

STAGES = ("check_feasible", "enumerate_candidates", "layer_by_layer", "greedy")
BASELINE_STAGES = ("check_feasible", "layer_by_layer", "greedy")


def _stage(name: str, graph: Any, hw: Any, max_len: int, cache: Any) -> Callable[[], Any]:
    kw = {} if cache is None else {"cache": cache}
    return {
        "check_feasible": lambda: check_feasible(graph, hw, **kw),
        "enumerate_candidates": lambda: enumerate_candidates(graph, hw, max_len, **kw),
        "layer_by_layer": lambda: layer_by_layer(graph, hw, **kw),
        "greedy": lambda: greedy(graph, hw, max_len, **kw),
    }[name]


def _run(graph: Any, hw: Any, max_len: int, stages: tuple[str, ...], shared: bool) -> tuple[dict[str, float], dict[str, Any]]:
    """Seconds and result of each stage; one CostCache for all stages if ``shared``."""
    cache = CostCache(graph, hw) if shared else None
    times, results = {}, {}
    for name in stages:
        fn = _stage(name, graph, hw, max_len, cache)
        t0 = time.perf_counter()
        r = fn()
        times[name] = time.perf_counter() - t0
        if name in ("layer_by_layer", "greedy"):
            r = (r.decisions, r.totals, r.buffers)
        results[name] = r
    return times, results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="densenet121")
    ap.add_argument("--sram", default="256KiB")
    ap.add_argument("--resolution", type=int, default=None, help="default: the zoo model's own")
    ap.add_argument("--hardware", default="generic-npu")
    ap.add_argument("--max-len", type=int, default=12, help="max_fuse_depth")
    ap.add_argument("--repeat", type=int, default=1, help="keep the fastest of N runs of each variant")
    args = ap.parse_args()

    graph = build_zoo_model(args.model, resolution=args.resolution)
    hw = load_profile(args.hardware).with_sram(parse_size(args.sram))
    res = graph.shape(graph.inputs[0])[2:]
    print(f"{args.model} {res[0]}x{res[1]}, {len(graph.layers)} layers, {args.hardware} @ {args.sram}, "
          f"max_len {args.max_len}, fastest of {args.repeat}")

    variants = {"separate": (STAGES, False)}
    if CostCache is not None:
        variants |= {"shared": (STAGES, True), "shared-baselines": (BASELINE_STAGES, True)}
    times: dict[str, dict[str, float]] = {}
    results: dict[str, dict[str, Any]] = {}
    for _ in range(args.repeat):
        for label, (stages, shared) in variants.items():
            t, r = _run(graph, hw, args.max_len, stages, shared)
            best = times.setdefault(label, t)
            for name in stages:
                best[name] = min(best[name], t[name])
            assert results.setdefault(label, r) == r

    labels = list(variants)
    print(f"| stage | {' | '.join(f'{k} (s)' for k in labels)} |")
    print(f"|---|{'---|' * len(labels)}")
    for name in STAGES:
        cells = [f"{times[k][name]:.2f}" if name in times[k] else "-" for k in labels]
        print(f"| {name} | {' | '.join(cells)} |")
    totals = {k: sum(times[k].values()) for k in labels}
    print(f"| total | {' | '.join(f'{totals[k]:.2f}' for k in labels)} |")

    cs = results["separate"]["enumerate_candidates"]
    print(f"candidates: {cs.generated} generated, {len(cs.candidates)} kept "
          f"({cs.pruned_sram} pruned by SRAM, {cs.pruned_dominated} dominated)")
    if len(labels) > 1:
        same = all(results[k][n] == results["separate"][n] for k in labels[1:] for n in variants[k][0])
        print(f"identical results separate vs shared: {same}")
        sep_baselines = sum(times["separate"][n] for n in BASELINE_STAGES)
        print(f"speed-up shared vs separate: {totals['separate'] / totals['shared']:.1f}x (all four stages), "
              f"{sep_baselines / totals['shared-baselines']:.1f}x (check_feasible + baselines)")
        assert same, "the shared cache changed a result"
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
