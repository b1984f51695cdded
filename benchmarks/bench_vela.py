"""memplan next to Arm Vela 5.2 on the same int8 .tflite files: cycles per layer and totals.

For each model in ``models/`` (MLPerf Tiny: kws_ref_model, vww_96_int8, pretrainedResnet_quant,
ad01_int8; and keras_mobilenetv2_035_96_int8) and SRAM size (256 KiB, 512 KiB, 1 MiB, and 32,
64, 128 KiB for MLPerf Tiny) this runs

* Vela (``pip install "memplan[ethosu]"``): ``vela M.tflite --accelerator-config ethos-u65-256
  --system-config Ethos_U65_High_End --memory-mode Dedicated_Sram --optimise Performance
  --arena-cache-size N --verbose-performance``, reading its per-layer CSV and summary CSV;
* memplan on the profile ``ethos-u65-256`` (Vela's Ethos_U65_High_End figures) at N bytes: the
  layer-by-layer plan (one group per layer, whole tensors) and, with ``--cpsat S``, a CP-SAT
  energy plan in S seconds.

Per layer it prints the layer plan's cycles (compute, DMA, the group's max of the two) next to
Vela's estimate for the same operator (its ``NPU`` column and its ``Op Cycles``, the max of
NPU and memory-access cycles); Vela's rows are matched to memplan's layers by name (Vela names an
operator after its output tensor, as memplan names layers; rows of an operator Vela decomposes,
softmax into ~29 NPU ops, are summed into the layer whose output they end at). Then the
distribution of the ratio memplan/Vela per layer (how many within +-20 %) and per model total
(within +-10 %): the Done-when of issue 12.

Totals, in each tool's own units (they differ: compare like with like):

* feature-map bytes: memplan counts the DMA bytes it moves between DRAM and SRAM, each tensor
  region once per tile; Vela's ``dram_feature_map_read/write_bytes`` count what the NPU fetches
  from DRAM, the IFM again per OFM block with its halo, in 16-channel bricks.
* weights: memplan raw int8 + int32 bias per channel (no compression yet, issue 12 item 6);
  Vela's ``dram_weight_read_bytes`` its compressed stream plus 10 B/channel of scale and bias.
* SRAM used: memplan's buffer peak; Vela's ``sram_memory_used``.
* cycles: memplan's plan total (sum over groups of max(compute, DMA)); Vela's ``cycles_total``.

Writes every row to ``benchmarks/results/vela.csv``.

    python benchmarks/bench_vela.py [--models kws_ref_model,...] [--cpsat 20] [--per-layer]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from memplan.baselines import layer_by_layer
from memplan.config import HardwareProfile, load_profile, load_solver_config
from memplan.frontend import load_model
from memplan.ir.graph import Graph
from memplan.plan.build import _weights_in_sram, group_cycles, resolve
from memplan.plan.model import Plan

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
RESULTS = ROOT / "benchmarks" / "results" / "vela.csv"
TINY = ("kws_ref_model", "vww_96_int8", "pretrainedResnet_quant", "ad01_int8")
ALL = (*TINY, "keras_mobilenetv2_035_96_int8")
KIB = 1024
SIZES_ALL = (256 * KIB, 512 * KIB, 1024 * KIB)
SIZES_TINY = (32 * KIB, 64 * KIB, 128 * KIB)


@dataclass(frozen=True)
class VelaRun:
    per_layer: list[dict[str, str]]
    summary: dict[str, str]


def run_vela(model: Path, arena: int, workdir: Path) -> VelaRun | None:
    exe = shutil.which("vela")
    if exe is None:
        return None
    out = workdir / f"{model.stem}_{arena}"
    cmd = [exe, str(model), "--accelerator-config", "ethos-u65-256", "--system-config", "Ethos_U65_High_End",
           "--memory-mode", "Dedicated_Sram", "--optimise", "Performance", "--arena-cache-size", str(arena),
           "--output-dir", str(out), "--verbose-performance"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"  vela failed on {model.name} at {arena} B: {proc.stderr.strip().splitlines()[-1:]}")
        return None
    per_layer = list(csv.DictReader(open(next(out.glob("*_per-layer.csv")), encoding="utf-8")))
    summary = next(csv.DictReader(open(next(out.glob("*_summary_*.csv")), encoding="utf-8")))
    return VelaRun(per_layer, summary)


@dataclass(frozen=True)
class GroupCycles:
    layers: tuple[str, ...]  # output tensor of each layer of the group
    compute: int
    dma: int
    total: int


def group_breakdown(plan: Plan, graph: Graph, hw: HardwareProfile) -> list[GroupCycles]:
    """Per group of the plan: compute cycles, DMA cycles and the group's cycles, by the same
    rules as the plan's totals (memplan.plan.build.cost_totals)."""
    r = resolve(graph, hw, plan.decisions)
    out = []
    for c in r.candidates:
        dma = sum(i.load_bytes for i in c.inputs if i.tensor not in plan.decisions.resident)
        if c.anchor not in plan.decisions.resident:
            dma += c.store_bytes
        dma += sum(w.total_bytes if (w.layer in plan.decisions.keep and _weights_in_sram(hw)) else w.reload_bytes
                   for w in c.weights)
        dma_cycles = group_cycles(hw, 0, dma)
        out.append(GroupCycles(tuple(graph.layers[i].output for i in range(c.start, c.stop)), c.compute_cycles,
                               dma_cycles, group_cycles(hw, c.compute_cycles, dma)))
    return out


def vela_per_layer(rows: list[dict[str, str]], names: Sequence[str]) -> dict[str, tuple[float, float, int]]:
    """Vela's (NPU cycles, op cycles, NPU ops) per memplan layer output: each row is matched by
    its name; rows with a name of no layer (the parts of a decomposed operator) add to the next
    row that matches."""
    wanted = set(names)
    out: dict[str, tuple[float, float, int]] = {}
    npu = total = 0.0
    ops = 0
    for row in rows:
        npu += float(row["NPU"])
        total += float(row["Op Cycles"])
        ops += float(row["Op Cycles"]) > 0
        if row["Name"] in wanted:
            a, b, n = out.get(row["Name"], (0.0, 0.0, 0))
            out[row["Name"]] = (a + npu, b + total, n + ops)
            npu = total = 0.0
            ops = 0
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("inf") if a else 1.0


def _histogram(ratios: list[float]) -> str:
    edges = [0, 0.5, 0.8, 0.9, 1.1, 1.2, 1.5, 2.0, float("inf")]
    counts = [sum(lo <= r < hi for r in ratios) for lo, hi in zip(edges, edges[1:])]
    labels = ["<0.5", "0.5-0.8", "0.8-0.9", "0.9-1.1", "1.1-1.2", "1.2-1.5", "1.5-2", ">=2"]
    return "  ".join(f"{lab}: {n}" for lab, n in zip(labels, counts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(ALL), help="comma-separated stems of models/*.tflite")
    ap.add_argument("--cpsat", type=float, default=0.0, help="also plan with CP-SAT (energy) in this many seconds")
    ap.add_argument("--per-layer", action="store_true", help="print every layer's cycles")
    ap.add_argument("--profile", default="ethos-u65-256")
    args = ap.parse_args()
    if shutil.which("vela") is None:
        print("vela is not installed (pip install 'memplan[ethosu]'): memplan's figures only")
    rows_out: list[dict[str, object]] = []
    layer_ratios_npu: list[float] = []
    layer_ratios_total: list[float] = []
    worst: list[tuple[float, str, str, int, float]] = []
    total_ratios: list[tuple[str, int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for stem in args.models.split(","):
            path = MODELS / f"{stem}.tflite"
            graph = load_model(path)
            sizes = (*SIZES_TINY, *SIZES_ALL) if stem in TINY else SIZES_ALL
            for size in sizes:
                hw = load_profile(args.profile).with_sram(size)
                try:
                    plan = layer_by_layer(graph, hw)
                except Exception as exc:  # noqa: BLE001 - a model that does not fit is a row, not a stop
                    print(f"{stem} {size // KIB} KiB: memplan layer plan: {exc}")
                    continue
                groups = group_breakdown(plan, graph, hw)
                vela = run_vela(path, size, Path(tmp))
                t = plan.totals
                row: dict[str, object] = {
                    "model": stem, "sram_kib": size // KIB, "mp_layer_cycles": t.cycles,
                    "mp_layer_compute": sum(g.compute for g in groups), "mp_layer_fm_read": t.dram_read_fm,
                    "mp_layer_fm_write": t.dram_write_fm, "mp_weights": t.dram_read_weights, "mp_layer_sram": t.sram_peak,
                }
                if args.cpsat:
                    from memplan.solve import solve_cpsat
                    cfg = replace(load_solver_config("default"), time_limit_s=args.cpsat)
                    res = solve_cpsat(graph, hw, "energy", cfg)
                    ct = res.plan.totals
                    row.update(mp_cpsat_status=res.stats.status, mp_cpsat_cycles=ct.cycles, mp_cpsat_fm_read=ct.dram_read_fm,
                               mp_cpsat_fm_write=ct.dram_write_fm, mp_cpsat_weights=ct.dram_read_weights,
                               mp_cpsat_sram=ct.sram_peak)
                if vela is not None:
                    s = vela.summary
                    row.update(vela_cycles=round(float(s["cycles_total"])), vela_npu=round(float(s["cycles_npu"])),
                               vela_fm_read=int(float(s["dram_feature_map_read_bytes"])),
                               vela_fm_write=int(float(s["dram_feature_map_write_bytes"])),
                               vela_weights=int(float(s["dram_weight_read_bytes"])),
                               vela_sram=round(float(s["sram_memory_used"]) * KIB))
                    per = vela_per_layer(vela.per_layer, [g.layers[-1] for g in groups])
                    matched = 0
                    within_npu = within_total = 0
                    for g in groups:
                        name = g.layers[-1]
                        if name not in per:
                            continue
                        v_npu, v_total, n_ops = per[name]
                        matched += 1
                        rn, rt = _ratio(g.compute, v_npu), _ratio(g.total, v_total)
                        layer_ratios_npu.append(rn)
                        layer_ratios_total.append(rt)
                        within_npu += 0.8 <= rn <= 1.2
                        within_total += 0.8 <= rt <= 1.2
                        worst.append((abs(rt - 1), stem, name, size, rt))
                        if args.per_layer:
                            print(f"  {stem[:14]:>14} {size // KIB:>5}K {name[-48:]:>48} | compute {g.compute:>9,} "
                                  f"npu {v_npu:>11,.0f} ({rn:5.2f}) | total {g.total:>9,} op {v_total:>11,.0f} ({rt:5.2f})"
                                  f"{'' if n_ops <= 1 else f'  [{n_ops} Vela ops]'}")
                    vt = float(s["cycles_total"])
                    total_ratios.append((stem, size, t.cycles / vt))
                    row.update(layers=len(groups), layers_matched=matched, layers_within20_compute=within_npu,
                               layers_within20_total=within_total, total_ratio=round(t.cycles / vt, 4))
                rows_out.append(row)
                vshow = (f"vela cycles {row['vela_cycles']:>10,} (npu {row['vela_npu']:>10,}) fm {row['vela_fm_read']:>9,}"
                         f"+{row['vela_fm_write']:>9,} w {row['vela_weights']:>8,} sram {row['vela_sram']:>8,}"
                         if vela is not None else "")
                print(f"{stem[:22]:>22} {size // KIB:>5} KiB | memplan layer cycles {t.cycles:>10,} "
                      f"(compute {row['mp_layer_compute']:>10,}) fm {t.dram_read_fm:>9,}+{t.dram_write_fm:>9,} "
                      f"w {t.dram_read_weights:>8,} sram {t.sram_peak:>8,} | {vshow}"
                      + (f" | within 20%: {row['layers_within20_total']}/{row['layers_matched']} layers, total x{row['total_ratio']:.3f}"
                         if vela is not None else "")
                      + (f" | cpsat {row['mp_cpsat_status']} cycles {row['mp_cpsat_cycles']:,} fm "
                         f"{row['mp_cpsat_fm_read']:,}+{row['mp_cpsat_fm_write']:,}" if args.cpsat else ""))
    if layer_ratios_total:
        n = len(layer_ratios_total)
        print(f"\nper-layer ratio memplan/Vela over {n} layers (all models and sizes)")
        print(f"  compute vs Vela NPU:       {_histogram(layer_ratios_npu)}")
        print(f"  group total vs Op Cycles:  {_histogram(layer_ratios_total)}")
        w20 = sum(0.8 <= r <= 1.2 for r in layer_ratios_total)
        w20n = sum(0.8 <= r <= 1.2 for r in layer_ratios_npu)
        print(f"  within +-20 %: total {w20}/{n} ({100 * w20 / n:.1f} %), compute {w20n}/{n} ({100 * w20n / n:.1f} %)")
        tot_ok = sum(0.9 <= r <= 1.1 for _, _, r in total_ratios)
        print(f"  model totals within +-10 %: {tot_ok}/{len(total_ratios)}: "
              + ", ".join(f"{m[:10]}@{s // KIB}K x{r:.3f}" for m, s, r in total_ratios))
        print("  worst layers (total ratio): " + "; ".join(
            f"{m[:10]}@{s // KIB}K {name[-30:]} x{r:.2f}" for _, m, name, s, r in sorted(worst, reverse=True)[:8]))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows_out for k in r))
    with open(RESULTS, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows_out)
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
