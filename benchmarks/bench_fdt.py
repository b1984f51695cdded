"""The seed's fused depthwise tiling table, with what memplan has (issue 14, item 2).

The seed (TU Munich, tinyML 2023, "fused depthwise tiling"; /work/shared/seeds) reports, per
model, the memory of the untiled network, of fused feature-map tiling (FFMT, spatial tiles) and
of fused depthwise tiling (FDT), and the MACs each adds. memplan plans every model here on
``mcu-sram`` (every feature map in SRAM, weights read in place from flash, the seed's setting:
an MCU) with the memory objective, which gives the smallest SRAM any plan needs:

* ``untiled``: no tiles and no fusion (``max_tiles = 1``, ``max_fuse_depth = 1``): each layer
  runs whole, its inputs and output in SRAM; the peak of the best buffer layout;
* ``FFMT``: memplan without FDT (spatial and channel tiles of fused groups, as before FDT);
* ``FFMT+FDT``: the same with FDT candidates too (``fdt_slices = 8``) in the same CP-SAT model.

FFMT and FFMT+FDT are solved twice: within 0 % extra MACs (``--max-recompute 0%``: no halo
recompute at all) and unlimited. ``MACs +%`` is the plan's MACs beyond the untiled network.
Every plan that uses an FDT group is verified bit-exactly (tiled int8 execution against the
untiled reference, every count measured). The seed's column "FDT" is FDT alone, without spatial
tiles; memplan reports FFMT+FDT (the solver may pick either kind for each group). The seed's
models and memplan's differ (compare the untiled MACs, column ``MACs M``), and its memory is the
compiled binary's RAM sections; memplan's is the activation arena: compare reductions, not kB.

Solve time and candidates: for each model and each of the two budgets, the candidates CP-SAT
chooses among and the wall time of the solve, without and with FDT.

    python benchmarks/bench_fdt.py [--time-limit 60] [--models kws cifar ...] [--out benchmarks/results/fdt.txt]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from memplan.config import HardwareProfile, load_profile, load_solver_config
from memplan.errors import MemplanError
from memplan.execute import verify_plan
from memplan.frontend import load_model
from memplan.ir.graph import Graph
from memplan.solve import UserConstraints, solve_cpsat
from memplan.solve.budget import untiled_macs
from memplan.solve.candidates import enumerate_candidates

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"

#: name, file, pinned input shapes, the seed's row (or None)
CASES = [
    ("KWS dscnn", "kws_dscnn_tf2onnx.onnx", {"input_1": (1, 49, 10, 1)}, "KWS"),
    ("KWS micro_kws", "micro_kws_m_static_fp32.onnx", None, "KWS"),
    ("KWS ref (tflite)", "kws_ref_model.tflite", None, "KWS"),
    ("CIF cifar10", "cifar10_float.onnx", None, "CIF"),
    ("VWW mobilenetv1", "vww_mobilenetv1_96_float.onnx", None, None),
    ("VWW (tflite)", "vww_96_int8.tflite", None, None),
    ("ResNet-8", "resnet8_float.onnx", None, None),
    ("ResNet-8 (tflite)", "pretrainedResnet_quant.tflite", None, None),
    ("anomaly AE", "anomaly_autoencoder_float.onnx", None, None),
    ("anomaly AE (tflite)", "ad01_int8.tflite", None, None),
    ("MobileNetV2 0.35 96", "keras_mobilenetv2_035_96_int8.tflite", None, None),
    ("MobileNetV1 0.25 128", "mobilenet_v1_0_25_128_tf2onnx.onnx", None, None),
    ("MobileNetV3 small", "keras_mobilenetv3small_int8.tflite", None, None),
]

#: the seed's table as printed: Mem [kB] untiled / FFMT / FDT, savings [%] FFMT / FDT, MACs [M]
#: untiled / FFMT / FDT, overhead [%] FFMT / FDT (RISC-V RV32GC, Apache TVM)
SEED = {
    "KWS": ("65.6", "65.6", "53.7", "0.0", "18.1", "2.66", "2.66", "2.66", "0.0", "0.0"),
    "TXT": ("18.6", "18.6", "4.43", "0.0", "76.2", "0.00", "0.00", "0.00", "0.0", "0.0"),
    "MW": ("17.6", "7.04", "11.3", "60.9", "35.5", "0.06", "0.06", "0.06", "0.0", "0.0"),
    "POS": ("9.35k", "5.11k", "8.94k", "45.3", "4.4", "837", "1215", "837", "45.1", "0.0"),
    "SSD": ("14.3k", "8.66k", "12.2k", "39.4", "14.6", "313", "314", "313", "0.2", "0.0"),
    "CIF": ("179", "76.7", "170", "57.1", "5.0", "5.52", "6.02", "5.52", "9.0", "0.0"),
    "RAD": ("36.2", "26.7", "29.4", "26.3", "18.8", "0.09", "0.09", "0.09", "0.0", "0.0"),
    "Avg.": ("", "", "", "32.7", "24.7", "", "", "", "7.8", "0.0"),
}
FDT_SLICES = 8


def _solve(graph: Graph, hw: HardwareProfile, time_limit: float, budget: int | None, fuse: int | None = None):
    config = replace(load_solver_config("default"), time_limit_s=time_limit)
    if fuse is not None:
        config = replace(config, max_fuse_depth=fuse)
    user = UserConstraints(max_recompute_macs=budget)
    t = time.perf_counter()
    res = solve_cpsat(graph, hw, "memory", config, user)
    seconds = time.perf_counter() - t
    n = len(enumerate_candidates(graph, hw, config.max_fuse_depth).candidates)
    return res, seconds, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--models", nargs="*", help="substrings of the model names to run (default: all)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fdt.txt"))
    ap.add_argument("--no-verify", action="store_true")
    args = ap.parse_args()
    base = load_profile("mcu-sram").with_sram(1 << 20)  # the upper end of the search
    fdt = base.with_tiling(fdt_slices=FDT_SLICES)
    untiled = base.with_tiling(max_tiles=1)
    lines: list[str] = []

    def out(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    head = (f"{'model':22} {'MACs M':>7} {'untiled B':>10} {'FFMT 0%':>9} {'+FDT 0%':>9} {'saved':>6} {'FFMT':>9} {'MACs+%':>7} "
            f"{'+FDT':>9} {'MACs+%':>7} {'FDT groups (0% / unl.)':>22} {'verify':>6}")
    out(f"memplan on mcu-sram, memory objective, {args.time_limit:g} s per solve; smallest SRAM in bytes")
    out(head)
    timing: list[str] = []
    for name, file, shapes, seed in CASES:
        if args.models and not any(m.lower() in name.lower() for m in args.models):
            continue
        graph = load_model(MODELS / file, shapes)
        macs0 = untiled_macs(graph)
        row: dict[str, object] = {}
        try:
            row["untiled"] = _solve(graph, untiled, args.time_limit, None, fuse=1)[0].stats.extra["min_sram"]
        except MemplanError:
            row["untiled"] = 0
        verified = []
        for label, hw in (("ffmt", base), ("fdt", fdt)):
            for budget in (0, None):
                try:
                    res, seconds, n = _solve(graph, hw, args.time_limit, budget)
                except MemplanError as exc:  # no plan within the time limit: say so, go on
                    row[(label, budget)] = (0, "NONE", 0.0, 0)
                    timing.append(f"{name:22} {label:5} {'0%' if budget == 0 else 'unl.':>5} no plan: {exc.message}")
                    continue
                plan = res.plan
                groups = [g for g in plan.decisions.groups if g.tiling.fdt_c]
                row[(label, budget)] = (res.stats.extra["min_sram"], res.stats.extra["min_sram_status"],
                                        100 * plan.totals.recompute_macs / macs0, len(groups))
                timing.append(f"{name:22} {label:5} {'0%' if budget == 0 else 'unl.':>5} candidates {n:>6,} "
                              f"solve {seconds:6.1f} s  status {res.stats.extra['min_sram_status']}")
                if groups and not args.no_verify:
                    rep = verify_plan(graph, plan, hw)
                    verified.append(rep.passed and rep.bit_exact and rep.counts_match)
        f0, f1 = row[("ffmt", 0)], row[("fdt", 0)]
        fu, du = row[("ffmt", None)], row[("fdt", None)]
        saved = 100 * (f0[0] - f1[0]) / f0[0] if f0[0] and f1[0] else float("nan")  # type: ignore[index,operator]
        check = "-" if not verified else ("ok" if all(verified) else "FAIL")
        out(f"{name:22} {macs0 / 1e6:>7.2f} {row['untiled']:>10,} {f0[0]:>9,} {f1[0]:>9,} {saved:>5.1f}% {fu[0]:>9,} {fu[2]:>6.1f}% "  # type: ignore[index]
            f"{du[0]:>9,} {du[2]:>6.1f}% {f'{f1[3]} / {du[3]}':>22} {check:>6}")  # type: ignore[index]
        statuses = {v[1] for k, v in row.items() if isinstance(k, tuple)}  # type: ignore[index]
        if statuses != {"OPTIMAL"}:
            out(f"{'':22} (statuses: {sorted(statuses)})")
    out()
    out("the seed, as printed (Mem [kB]: the binary's RAM sections; MACs [M]; FDT without spatial tiles)")
    out(f"{'seed':5} {'untiled':>8} {'FFMT':>6} {'FDT':>6} {'FFMT sav%':>9} {'FDT sav%':>8} {'MACs':>5} {'FFMT':>5} "
        f"{'FDT':>5} {'FFMT +%':>7} {'FDT +%':>6}")
    for key, v in SEED.items():
        out(f"{key:5} {v[0]:>8} {v[1]:>6} {v[2]:>6} {v[3]:>9} {v[4]:>8} {v[5]:>5} {v[6]:>5} {v[7]:>5} {v[8]:>7} {v[9]:>6}")
    out()
    out("candidates and solve wall time (2 shared cores), without (ffmt) and with (fdt) FDT candidates")
    for t in timing:
        out(t)
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
