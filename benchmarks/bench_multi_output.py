"""Multi-output groups (docs/multi-output.md): the same CP-SAT solve with the tiling rule
``multi_output`` off and on, in the same run.

Per model and SRAM size, and per setting: candidates (and how many have an escaping tensor),
status and gap, energy, feature-map DRAM bytes, the number of escaping tensors the plan stores
from inside a group and the bytes those stores write, wall time; then the ratios on / off. Every
plan is validated when it is built (memplan.plan.validate: the byte-exact static check); ``--verify``
also executes each plan bit-exactly against the untiled reference (slow on the large models).

Usage: ``python benchmarks/bench_multi_output.py [--models unet,selfie_segmentation,densenet121]
[--sram 256,1024] [--time-limit 60] [--verify]``; the table goes to stdout and to
``benchmarks/results/multi_output.txt`` (``--out``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from memplan.config import load_profile, load_solver_config
from memplan.driver import plan_graph
from memplan.errors import InfeasibleError
from memplan.execute.verify import verify_plan
from memplan.frontend import load_model
from memplan.ir.graph import Graph
from memplan.plan.model import Op, Plan
from memplan.zoo import ZOO, build_zoo_model

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "multi_output.txt"
RESOLUTION = {"densenet121": 224, "resnet50": 224, "mobilenetv2": 224}


def model(name: str) -> Graph:
    if name in ZOO:
        return build_zoo_model(name, resolution=RESOLUTION.get(name))
    found = sorted((ROOT / "models").glob(f"{name}.*"))
    if not found:
        raise SystemExit(f"no zoo model or models/{name}.* file")
    return load_model(found[0])


def escapes(plan: Plan) -> tuple[int, int]:
    """Escaping tensors the plan stores from inside a group, and the bytes those stores write."""
    stores = [c for c in plan.commands if c.op is Op.STORE and c.output is not None]
    return len({c.tensor for c in stores}), sum(c.region.numel for c in stores if c.region is not None) * plan.elem_bytes


def run(graph: Graph, kib: int, limit: float, multi: bool, verify: bool) -> dict[str, object]:
    hw = load_profile("generic-npu").with_sram(kib * 1024).with_tiling(multi_output=multi)
    config = replace(load_solver_config("default"), time_limit_s=limit)
    t0 = time.perf_counter()
    try:
        result = plan_graph(graph, hw, config=config)
    except InfeasibleError as exc:
        return {"status": "INFEASIBLE", "why": exc.message[:100]}
    wall = time.perf_counter() - t0
    plan, stats = result.plan, result.stats
    n_esc, esc_bytes = escapes(plan)
    out: dict[str, object] = {
        "status": stats.status if stats else "-", "gap": stats.gap if stats else 0.0,
        "cands": stats.candidates if stats else 0, "energy": plan.totals.energy_fj,
        "fm": plan.totals.dram_read_fm + plan.totals.dram_write_fm, "escapes": n_esc, "escape_bytes": esc_bytes,
        "wall": wall,
    }
    if verify:
        out["bit_exact"] = verify_plan(graph, plan, hw).bit_exact
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="unet,selfie_segmentation,densenet121")
    ap.add_argument("--sram", default="256,1024", help="SRAM sizes in KiB, comma-separated")
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--verify", action="store_true", help="also execute every plan bit-exactly")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    lines = [f"multi-output groups off vs on: generic-npu, CP-SAT, {args.time_limit:g} s, default solver config",
             f"{'model':22} {'SRAM':>6} {'mo':>3} {'status':>10} {'gap':>7} {'cands':>7} {'energy uJ':>11} "
             f"{'fm DRAM B':>11} {'esc':>4} {'esc B':>9} {'wall s':>7}  ratio on/off (energy, fm)"]
    print("\n".join(lines), flush=True)
    for name in args.models.split(","):
        graph = model(name)
        for kib in (int(s) for s in args.sram.split(",")):
            rows = {multi: run(graph, kib, args.time_limit, multi, args.verify) for multi in (False, True)}
            for multi, r in rows.items():
                if r["status"] == "INFEASIBLE":
                    line = f"{name:22} {kib:>5}K {'on' if multi else 'off':>3} INFEASIBLE {r['why']}"
                else:
                    ratio = ""
                    off = rows[False]
                    if multi and off["status"] != "INFEASIBLE":
                        ratio = f"  {r['energy'] / off['energy']:.4f}, {r['fm'] / off['fm']:.4f}"  # type: ignore[operator]
                    exact = "" if "bit_exact" not in r else f"  bit-exact {'yes' if r['bit_exact'] else 'NO'}"
                    line = (f"{name:22} {kib:>5}K {'on' if multi else 'off':>3} {r['status']:>10} {r['gap']:>7.4f} "
                            f"{r['cands']:>7,} {r['energy'] / 1e9:>11.3f} {r['fm']:>11,} {r['escapes']:>4} "
                            f"{r['escape_bytes']:>9,} {r['wall']:>7.1f}{ratio}{exact}")
                lines.append(line)
                print(line, flush=True)
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
