"""memplan next to Arm Vela 5.2 on the same int8 .tflite files: cycles per layer and totals.

For each model in ``models/`` (MLPerf Tiny: kws_ref_model, vww_96_int8, pretrainedResnet_quant,
ad01_int8; and keras_mobilenetv2_035_96_int8) and SRAM size (256 KiB, 512 KiB, 1 MiB, and 32,
64, 128 KiB for MLPerf Tiny) this runs

* Vela (``pip install "memplan[ethosu]"``): ``vela M.tflite --accelerator-config ethos-u65-256
  --system-config Ethos_U65_High_End --memory-mode Dedicated_Sram --optimise Performance
  --arena-cache-size N --enable-debug-db``. Vela 5.2 compiles with its C++ core (regor); its
  debug database gives, per NPU operation, the figures of ``--verbose-performance``
  (``op_cycles`` = "Op Cycles", ``npu_cycles`` = "NPU", ``Sram_ac``/``Dram_ac`` = "SRAM AC"/
  "DRAM AC") and the memory (Sram or Dram) of every tensor;
* memplan on the profile ``ethos-u65-256`` (Vela's Ethos_U65_High_End figures) at N bytes: the
  layer-by-layer plan (one group per layer), with every intermediate feature map that Vela keeps
  in SRAM made resident as well (so both sides move the same feature maps through DRAM: the
  model input and output, and whatever Vela evicts). When those residents do not fit, the plain
  layer-by-layer plan (every feature map spilled) is compared, and the row says ``spilled``.

How each number is counted (docs/cycle-model.md has the formulas):

* memplan ``compute``: the sum of memplan.cost.cycles.command_work over the layer's commands
  (Vela's per-op model, the NPU reading and writing SRAM).
* memplan ``dma``: the group's DMA bytes (non-resident inputs and outputs, the layer's weights,
  as the profile encodes them) over the DRAM bandwidth; ``total``: the group's cycles in the
  plan's timeline (memplan.plan.build.timeline): max(compute + the weight DMA compute waits for,
  dma), after the part of its prefetched weights the previous layer's DMA slack did not hide.
  Weights overlap compute only when their buffer is prefetched (live during the previous layer),
  which the plan does where SRAM allows.
* Vela ``NPU``: the op's NPU cycles *including* the part of its weight DMA that the previous op
  does not hide: max(full transfer - slack + own slack, op + first transfer - slack), where a
  transfer is latency (500 DRAM cycles) + compressed bytes / 3.75.
* Vela ``Op Cycles``: max(NPU, SRAM access, DRAM access); the access cycles count every byte the
  NPU moves in that memory (feature maps per OFM block with halo and 16-channel bricks, scaled by
  the burst efficiency; weights) over its bandwidth.

So the like-for-like per-layer figure is memplan ``total`` vs Vela ``Op Cycles`` (both the max of
compute and memory traffic, with the same feature maps in SRAM); memplan ``compute`` vs Vela
``NPU`` is printed too, but Vela's NPU includes exposed weight DMA. Vela's rows are matched to
memplan's layers by name (Vela names an operator after its output tensor, as memplan names
layers); rows of an operator Vela decomposes (softmax into ~30 NPU ops, mean into a depthwise
and a multiply) are summed into the layer whose output they end at, and memplan layers whose
output Vela never names (Vela fused them into the next op, e.g. a conv into a standalone
activation) into the next layer Vela does name.

Totals: feature-map bytes in both tools' units, each restated in the other's (memplan's units:
DMA bytes, each region once per tile, raw; Vela's: what the NPU fetches from DRAM per OFM block
with halo, in 16-channel bricks; see fm_bytes_in_vela_units and vela_fm_in_memplan_units for how
each is restated), weights (memplan: the profile's weight codec, Vela's own encoder on the Ethos-U
profiles, plus its scale/bias records; Vela: its compressed stream),
SRAM (memplan's buffer peak; Vela's ``sram_memory_used``), cycles (memplan's plan total; Vela's
``cycles_total``).

Writes every row to ``benchmarks/results/vela.csv`` (a run of every model and size; ``--csv``
for others).

    python benchmarks/bench_vela.py [--models kws_ref_model,...] [--cpsat 20] [--per-layer]
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from memplan.baselines import layer_by_layer
from memplan.config import HardwareProfile, load_profile, load_solver_config
from memplan.errors import PlanError
from memplan.frontend import load_model
from memplan.geometry.group import Tiling
from memplan.ir.graph import Graph
from memplan.plan.build import _weights_in_sram, crossing_tensors, group_cycles, group_timing, resolve, timeline
from memplan.plan.prefetch import build_buffered
from memplan.plan.model import Op, Plan

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
RESULTS = ROOT / "benchmarks" / "results" / "vela.csv"
TINY = ("kws_ref_model", "vww_96_int8", "pretrainedResnet_quant", "ad01_int8")
ALL = (*TINY, "keras_mobilenetv2_035_96_int8")
KIB = 1024
SIZES_ALL = (256 * KIB, 512 * KIB, 1024 * KIB)
SIZES_TINY = (32 * KIB, 64 * KIB, 128 * KIB)


@dataclass(frozen=True)
class VelaOp:
    """One NPU operation of Vela's debug database."""

    name: str  # its output tensor
    operator: str
    op_cycles: int  # "Op Cycles": max(npu, memory access cycles)
    npu: int  # "NPU": op cycles + exposed weight DMA
    sram_ac: int
    dram_ac: int
    ifm_memory: str
    weight_bytes: int  # weight and scale bytes Vela reads from DRAM (its encoded stream)


@dataclass(frozen=True)
class VelaRun:
    ops: list[VelaOp]
    sram_tensors: frozenset[str]  # feature maps Vela keeps in SRAM
    dram_tensors: dict[str, int]  # feature maps Vela places in DRAM: name -> its size there (bytes)
    weight_buffers: tuple[int, int, int]  # Vela's SRAM weight buffers: (double, single, their bytes)
    summary: dict[str, str]


def _db_tables(path: Path) -> dict[str, list[dict[str, str]]]:
    text = path.read_text(encoding="utf-8")
    return {m.group(1): list(csv.DictReader(io.StringIO(m.group(2).strip())))
            for m in re.finditer(r'<table name="([^"]+)">\s*<!\[CDATA\[(.*?)\]\]>', text, re.S)}


def _int(x: str | None) -> int:
    return int(float(x)) if x else 0


def run_vela(model: Path, arena: int, workdir: Path) -> VelaRun | None:
    exe = shutil.which("vela")
    if exe is None:
        return None
    out = workdir / f"{model.stem}_{arena}"
    cmd = [exe, str(model), "--accelerator-config", "ethos-u65-256", "--system-config", "Ethos_U65_High_End",
           "--memory-mode", "Dedicated_Sram", "--optimise", "Performance", "--arena-cache-size", str(arena),
           "--output-dir", str(out), "--enable-debug-db"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"  vela failed on {model.name} at {arena} B: {proc.stderr.strip().splitlines()[-1:]}")
        return None
    t = _db_tables(next(out.glob("*_debug.xml")))
    debug = {r["id"]: r for r in t["perf_debug"]}
    ops = []
    for r in t["perf"]:
        d = debug.get(r["id"], {})
        ops.append(VelaOp(r["name"], r["operator"], _int(r["op_cycles"]), _int(r["npu_cycles"]), _int(r["Sram_ac"]),
                          _int(r["Dram_ac"]), d.get("ifm_memory", ""),
                          _int(d.get("DramWeights_read")) + _int(d.get("DramScales_read"))))
    sram = frozenset(r["name"] for r in t["tensors"] if r["memory"] == "Sram" and r["usage"] == "OpLocal")
    dram = {r["name"]: int(r["size"], 16) for r in t["tensors"] if r["memory"] == "Dram" and r["usage"] == "OpLocal"}
    summary = next(csv.DictReader(open(next(out.glob("*_summary_*.csv")), encoding="utf-8")))
    wb = [r for r in t["tensors"] if r["usage"] == "OpBuffering" and r["name"].startswith("WB_")]
    double = sum(r["name"].startswith("WB_double") for r in wb)
    buffers = (double, len(wb) - double, sum(int(r["size"], 16) for r in wb))
    return VelaRun(ops, sram, dram, buffers, summary)


def fm_bytes_in_vela_units(plan: Plan, graph: Graph, brick: int = 16) -> tuple[int, int, int, int]:
    """memplan's feature-map DMA in both units: (read, write) as memplan counts them (each LOAD
    or STORE region's bytes) and (read, write) as Vela counts a DRAM intermediate: Vela stores it
    NHCWB16 and moves whole 16-channel bricks, so each region's channel range is widened to brick
    boundaries; the model's inputs and outputs stay NHWC (as Vela keeps them) and are not widened.
    memplan's DMA reads each region once per tile, so there is no per-OFM-block re-read to add."""
    nhwc = set(graph.inputs) | set(graph.outputs)
    raw = [0, 0]
    bricked = [0, 0]
    for c in plan.commands:
        if c.op not in (Op.LOAD, Op.STORE) or c.region is None or c.tensor is None:
            continue
        r = c.region
        cells = (r.y1 - r.y0) * (r.x1 - r.x0) * plan.elem_bytes
        lo, hi = (r.c0, r.c1) if c.tensor in nhwc else (r.c0 // brick * brick, -(-r.c1 // brick) * brick)
        k = 0 if c.op is Op.LOAD else 1
        raw[k] += (r.c1 - r.c0) * cells
        bricked[k] += (hi - lo) * cells
    return raw[0], raw[1], bricked[0], bricked[1]


def vela_fm_in_memplan_units(run: VelaRun, graph: Graph, elem_bytes: int) -> tuple[int, int, int, int]:
    """Vela's DRAM feature maps in memplan's units: every tensor Vela places in DRAM written once
    (unless it is a model input) and read once per consuming layer, raw NHWC bytes, no re-reads
    per OFM block and no bricks: what a DMA schedule with Vela's placement would move. Returns
    (read, write, DRAM tensors of no memplan tensor, their bytes in Vela's format); those are
    tensors of operators Vela decomposes, counted neither way."""
    read = write = unmatched = unmatched_bytes = 0
    for name, size in run.dram_tensors.items():
        if name not in graph.tensors:
            unmatched += 1
            unmatched_bytes += size
            continue
        nbytes = math.prod(graph.shape(name)) * elem_bytes
        write += 0 if name in graph.inputs else nbytes
        read += len(graph.consumers.get(name, ())) * nbytes
    return read, write, unmatched, unmatched_bytes


@dataclass(frozen=True)
class GroupCycles:
    layers: tuple[str, ...]  # output tensor of each layer of the group
    compute: int
    dma: int  # cycles of all the group's DMA
    fm_bytes: int  # feature-map DMA bytes
    w_bytes: int  # weight DMA bytes
    total: int
    tiles: int  # tiles of the group (1: whole tensors)


def _tiles(graph: Graph, anchor: str, tiling: Tiling) -> int:
    _, ch, h, w = graph.shape(anchor)
    return math.ceil(h / tiling.tile_h) * math.ceil(w / tiling.tile_w) * math.ceil(ch / tiling.tile_c)


def group_breakdown(plan: Plan, graph: Graph, hw: HardwareProfile) -> list[GroupCycles]:
    """Per group of the plan: compute cycles, DMA cycles and the group's cycles, by the same
    rules as the plan's totals (memplan.plan.build.group_timing and timeline)."""
    r = resolve(graph, hw, plan.decisions)
    out = []
    timings = group_timing(r)
    for c, t, cycles in zip(r.candidates, timings, timeline(hw, timings)):
        fm = sum(i.load_bytes for i in c.inputs if i.tensor not in plan.decisions.resident)
        if c.anchor not in plan.decisions.resident:
            fm += c.store_bytes
        w = sum(w.total_bytes if (w.layer in plan.decisions.keep and _weights_in_sram(hw)) else w.reload_bytes
                for w in c.weights)
        out.append(GroupCycles(tuple(graph.layers[i].output for i in range(c.start, c.stop)), c.compute_cycles,
                               group_cycles(hw, 0, t.dma_bytes + t.early_bytes), fm, w, cycles, _tiles(graph, c.anchor, c.tiling)))
    return out


def merge(groups: list[GroupCycles]) -> GroupCycles:
    """Consecutive groups counted as one layer: memplan layers whose output Vela never names
    (Vela fused them into the next op, e.g. a conv into its standalone activation) add to the
    next layer Vela does name."""
    return GroupCycles(tuple(n for g in groups for n in g.layers), sum(g.compute for g in groups),
                       sum(g.dma for g in groups), sum(g.fm_bytes for g in groups), sum(g.w_bytes for g in groups),
                       sum(g.total for g in groups), max(g.tiles for g in groups))


def plan_like_vela(graph: Graph, hw: HardwareProfile, sram_tensors: frozenset[str]) -> tuple[Plan, bool]:
    """The layer-by-layer plan with the feature maps Vela keeps in SRAM resident (model inputs
    and outputs stay in DRAM on both sides); the plain layer plan if they do not fit. Returns
    (plan, residents fitted)."""
    base = layer_by_layer(graph, hw)
    resident = (crossing_tensors(graph, base.decisions) & sram_tensors) - set(graph.inputs) - set(graph.outputs)
    if not resident:
        return base, True
    try:
        plan = build_buffered(graph, hw, replace(base.decisions, resident=frozenset(resident), prefetch=frozenset(),
                                                  double=frozenset()))
    except PlanError:
        return base, False
    if plan.totals.sram_peak > hw.sram_bytes:
        return base, False
    return plan, True


@dataclass(frozen=True)
class VelaLayer:
    npu: int
    op_cycles: int
    sram_ac: int
    dram_ac: int
    ops: int  # NPU operations summed into this layer
    ifm_in_dram: bool  # its first NPU operation reads its IFM from DRAM
    weight_bytes: int


def vela_per_layer(ops: list[VelaOp], names: Sequence[str]) -> dict[str, VelaLayer]:
    """Vela's figures per memplan layer output: each op is matched by its name; ops with a name
    of no layer (the parts of a decomposed operator) add to the next op that matches."""
    wanted = set(names)
    out: dict[str, VelaLayer] = {}
    pend: list[VelaOp] = []
    for op in ops:
        pend.append(op)
        if op.name in wanted:
            busy = [o for o in pend if o.op_cycles > 0]
            prev = out.get(op.name)
            cur = VelaLayer(sum(o.npu for o in pend), sum(o.op_cycles for o in pend), sum(o.sram_ac for o in pend),
                            sum(o.dram_ac for o in pend), len(busy), bool(busy) and busy[0].ifm_memory == "Dram",
                            sum(o.weight_bytes for o in pend))
            if prev is not None:
                cur = VelaLayer(prev.npu + cur.npu, prev.op_cycles + cur.op_cycles, prev.sram_ac + cur.sram_ac,
                                prev.dram_ac + cur.dram_ac, prev.ops + cur.ops, prev.ifm_in_dram or cur.ifm_in_dram,
                                prev.weight_bytes + cur.weight_bytes)
            out[op.name] = cur
            pend = []
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("inf") if a else 1.0


LEGEND = """\
how each number is counted (docs/cycle-model.md):
  memplan: layer-by-layer plan, the feature maps Vela keeps in SRAM resident ('spilled': they did not fit);
    compute = sum of cycles.command_work over the layer's commands (the NPU reading/writing SRAM);
    dma = (non-resident feature-map bytes + weights as the profile encodes them) / dram_bytes_per_cycle;
    total = max(compute + weight DMA compute waits for, dma) + prefetched weight DMA the previous layer does not hide
  Vela 5.2 (regor, --enable-debug-db): NPU = op cycles + weight DMA the previous op does not hide;
    Op Cycles = max(NPU, SRAM access, DRAM access); ops of a decomposed layer are summed
  per layer: total / Op Cycles (like for like) and compute / NPU; model totals: plan total / cycles_total
  feature-map bytes in both units: memplan's (DMA bytes; Vela's DRAM tensors each written once and
    read once per consumer, raw) and Vela's (what its NPU fetches from DRAM, per OFM block with halo,
    in 16-channel bricks; memplan's LOAD/STORE regions widened to whole bricks, model I/O NHWC)
"""

EDGES = (0, 0.5, 0.8, 0.9, 1.1, 1.2, 1.5, 2.0, float("inf"))
LABELS = ("<0.5", "0.5-0.8", "0.8-0.9", "0.9-1.1", "1.1-1.2", "1.2-1.5", "1.5-2", ">=2")


def _histogram(ratios: list[float]) -> str:
    counts = [sum(lo <= r < hi for r in ratios) for lo, hi in zip(EDGES, EDGES[1:])]
    return "  ".join(f"{lab}: {n}" for lab, n in zip(LABELS, counts))


def _within(ratios: list[float], tol: float = 0.2) -> str:
    n = sum(1 - tol <= r <= 1 + tol for r in ratios)
    return f"{n}/{len(ratios)} ({100 * n / max(1, len(ratios)):.1f} %)"


def reason(g: GroupCycles, v: VelaLayer) -> str:
    """Which term bounds each side (mechanical, from the counted figures)."""
    if g.compute >= g.dma:
        mine = "compute"
    else:
        mine = "DMA weights" if g.w_bytes >= g.fm_bytes else "DMA feature maps"
    vela = max((v.npu, "NPU"), (v.sram_ac, "SRAM access"), (v.dram_ac, "DRAM access"))[1]
    notes = []
    if v.ifm_in_dram:
        notes.append("Vela's NPU reads its IFM from DRAM")
    if v.ops > 1:
        notes.append(f"{v.ops} Vela ops")
    if g.tiles > 1:
        notes.append(f"memplan runs it in {g.tiles} tiles")
    if mine == "DMA weights" and v.weight_bytes:
        notes.append(f"weights memplan {g.w_bytes:,} B raw vs Vela {v.weight_bytes:,} B encoded")
    return f"memplan {mine}, Vela {vela}" + (f" ({'; '.join(notes)})" if notes else "")


def cause(g: GroupCycles, v: VelaLayer, r: float) -> str:
    """The class of a layer outside +-20 %: over or under, the bounding terms, the facts."""
    why = reason(g, v)
    why = re.sub(r"weights memplan [\d,]+ B raw vs Vela [\d,]+ B encoded", "raw vs encoded weights", why)
    why = re.sub(r"\d+ Vela ops", "decomposed by Vela", why)
    why = re.sub(r"memplan runs it in \d+ tiles", "memplan tiles it", why)
    return f"{'over' if r > 1 else 'under'}: {why}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(ALL), help="comma-separated stems of models/*.tflite")
    ap.add_argument("--sizes", default="", help="comma-separated SRAM sizes in KiB (default: the list above)")
    ap.add_argument("--cpsat", type=float, default=0.0, help="also plan with CP-SAT (energy) in this many seconds")
    ap.add_argument("--per-layer", action="store_true", help="print every layer's cycles")
    ap.add_argument("--profile", default="ethos-u65-256")
    ap.add_argument("--csv", default="", help="write the rows here (default: benchmarks/results/vela.csv, "
                                              "on a run of every model and size only)")
    args = ap.parse_args()
    if shutil.which("vela") is None:
        print("vela is not installed (pip install 'memplan[ethosu]'): memplan's figures only")
    print(LEGEND)
    rows_out: list[dict[str, object]] = []
    ratios_npu: dict[str, list[float]] = {}
    ratios_total: dict[str, list[float]] = {}
    worst: list[tuple[float, str, int, str, float, str]] = []
    total_ratios: list[tuple[str, int, float]] = []
    causes: dict[str, int] = {}
    sums_same_memory: list[tuple[str, int, int, int]] = []  # model, size, memplan, Vela
    with tempfile.TemporaryDirectory() as tmp:
        for stem in args.models.split(","):
            path = MODELS / f"{stem}.tflite"
            graph = load_model(path)
            sizes = tuple(int(x) * KIB for x in args.sizes.split(",")) if args.sizes else \
                (*SIZES_TINY, *SIZES_ALL) if stem in TINY else SIZES_ALL
            for size in sizes:
                hw = load_profile(args.profile).with_sram(size)
                vela = run_vela(path, size, Path(tmp))
                try:
                    plan, fitted = plan_like_vela(graph, hw, vela.sram_tensors if vela else frozenset())
                except Exception as exc:  # noqa: BLE001 - a model that does not fit is a row, not a stop
                    print(f"{stem} {size // KIB} KiB: memplan layer plan: {exc}")
                    continue
                groups = group_breakdown(plan, graph, hw)
                t = plan.totals
                raw_r, raw_w, mp_vr, mp_vw = fm_bytes_in_vela_units(plan, graph)
                if (raw_r, raw_w) != (t.dram_read_fm, t.dram_write_fm):
                    raise SystemExit(f"{stem}: the plan's LOAD/STORE bytes {raw_r:,}+{raw_w:,} differ from its totals "
                                     f"{t.dram_read_fm:,}+{t.dram_write_fm:,}")
                row: dict[str, object] = {
                    "model": stem, "sram_kib": size // KIB, "residents_fitted": fitted,
                    "mp_layer_cycles": t.cycles, "mp_layer_compute": sum(g.compute for g in groups),
                    "mp_layer_fm_read": t.dram_read_fm, "mp_layer_fm_write": t.dram_write_fm,
                    "mp_weights": t.dram_read_weights, "mp_layer_sram": t.sram_peak,
                    "mp_layer_fm_read_vela_units": mp_vr, "mp_layer_fm_write_vela_units": mp_vw,
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
                    vr, vw, vun, vun_b = vela_fm_in_memplan_units(vela, graph, plan.elem_bytes)
                    row.update(vela_fm_read_memplan_units=vr, vela_fm_write_memplan_units=vw,
                               vela_dram_tensors_unmatched=vun, vela_dram_unmatched_bytes=vun_b,
                               vela_weight_buffers_double=vela.weight_buffers[0],
                               vela_weight_buffers_single=vela.weight_buffers[1])
                    per = vela_per_layer(vela.ops, [g.layers[-1] for g in groups])
                    rn_all, rt_all = ratios_npu.setdefault(stem, []), ratios_total.setdefault(stem, [])
                    rn_here: list[float] = []
                    rt_here: list[float] = []
                    same_mp = same_vela = 0
                    pending: list[GroupCycles] = []
                    for g in groups:
                        name = g.layers[-1]
                        if name not in per:  # a layer Vela fused into a later op (an activation's conv)
                            pending.append(g)
                            continue
                        g = merge([*pending, g]) if pending else g
                        pending = []
                        v = per[name]
                        rn, rt = _ratio(g.compute, v.npu), _ratio(g.total, v.op_cycles)
                        rn_here.append(rn)
                        rt_here.append(rt)
                        if not v.ifm_in_dram:
                            same_mp += g.total
                            same_vela += v.op_cycles
                        if not 0.8 <= rt <= 1.2:
                            k = cause(g, v, rt)
                            causes[k] = causes.get(k, 0) + 1
                        worst.append((abs(rt - 1) if rt >= 1 else abs(1 / rt - 1) if rt else float("inf"), stem, size,
                                      name, rt, reason(g, v) + f": memplan {g.total:,} vs Vela {v.op_cycles:,}"))
                        if args.per_layer:
                            print(f"  {stem[:14]:>14} {size // KIB:>5}K {name[-44:]:>44} | compute {g.compute:>8,} "
                                  f"dma {g.dma:>8,} total {g.total:>8,} | npu {v.npu:>8,} sram {v.sram_ac:>7,} "
                                  f"dram {v.dram_ac:>8,} op {v.op_cycles:>8,} | x{rn:5.2f} x{rt:5.2f}"
                                  f"{'' if v.ops <= 1 else f'  [{v.ops} Vela ops]'}")
                    rn_all += rn_here
                    sums_same_memory.append((stem, size, same_mp, same_vela))
                    rt_all += rt_here
                    vt = float(s["cycles_total"])
                    total_ratios.append((stem, size, t.cycles / vt))
                    w20 = sum(0.8 <= r <= 1.2 for r in rt_here)
                    w20n = sum(0.8 <= r <= 1.2 for r in rn_here)
                    row.update(layers=len(groups), layers_matched=len(rt_here), layers_within20_compute=w20n,
                               layers_within20_total=w20, total_ratio=round(t.cycles / vt, 4))
                rows_out.append(row)
                vshow = (f"vela cycles {row['vela_cycles']:>10,} (npu {row['vela_npu']:>10,}) fm {row['vela_fm_read']:>9,}"
                         f"+{row['vela_fm_write']:>9,} w {row['vela_weights']:>8,} sram {row['vela_sram']:>8,}"
                         if vela is not None else "")
                units = (f"   feature-map DRAM bytes read+write, in memplan's units (DMA bytes): memplan "
                         f"{t.dram_read_fm:,}+{t.dram_write_fm:,}"
                         + (f", Vela {row['vela_fm_read_memplan_units']:,}+{row['vela_fm_write_memplan_units']:,}"
                            + (f" (+{vun} DRAM tensors of no memplan layer, {vun_b:,} B)" if vela is not None and vun else "")
                            if vela is not None else "")
                         + f"; in Vela's units (NPU fetches, bricks): memplan {mp_vr:,}+{mp_vw:,}"
                         + (f", Vela {row['vela_fm_read']:,}+{row['vela_fm_write']:,}" if vela is not None else "")
                         + (f" | Vela's weight buffers: {vela.weight_buffers[0]} double, {vela.weight_buffers[1]} single"
                            if vela is not None else ""))
                print(f"{stem[:22]:>22} {size // KIB:>5} KiB{'' if fitted else ' spilled'} | memplan cycles {t.cycles:>10,} "
                      f"(compute {row['mp_layer_compute']:>10,}) fm {t.dram_read_fm:>9,}+{t.dram_write_fm:>9,} "
                      f"w {t.dram_read_weights:>8,} sram {t.sram_peak:>8,} | {vshow}"
                      + (f" | within 20%: {row['layers_within20_total']}/{row['layers_matched']} layers, total x{row['total_ratio']:.3f}"
                         if vela is not None else "")
                      + (f" | cpsat {row['mp_cpsat_status']} cycles {row['mp_cpsat_cycles']:,} fm "
                         f"{row['mp_cpsat_fm_read']:,}+{row['mp_cpsat_fm_write']:,}" if args.cpsat else ""))
                print(units)
    if ratios_total:
        every_t = [r for v in ratios_total.values() for r in v]
        every_n = [r for v in ratios_npu.values() for r in v]
        print(f"\nper-layer ratio memplan/Vela over {len(every_t)} layers (all models and sizes)")
        print(f"  total vs Op Cycles:  {_histogram(every_t)}")
        print(f"  compute vs NPU:      {_histogram(every_n)}")
        print(f"  within +-20 %: total vs Op Cycles {_within(every_t)}, compute vs NPU {_within(every_n)}")
        for stem in ratios_total:
            print(f"    {stem:>30}: total {_within(ratios_total[stem])}, compute {_within(ratios_npu[stem])}")
        tot_ok = sum(0.9 <= r <= 1.1 for _, _, r in total_ratios)
        print(f"  model totals within +-10 %: {tot_ok}/{len(total_ratios)}: "
              + ", ".join(f"{m[:10]}@{s // KIB}K x{r:.3f}" for m, s, r in total_ratios))
        print("  summed over the layers whose IFM Vela's NPU reads from SRAM (without the layers it runs from "
              "DRAM, which memplan DMAs into SRAM first): "
              + ", ".join(f"{m[:10]}@{s // KIB}K x{_ratio(a, b):.3f}" for m, s, a, b in sums_same_memory))
        print("  layers outside +-20 % (total vs Op Cycles), by the terms that bound each side:")
        for k, n in sorted(causes.items(), key=lambda kv: -kv[1]):
            print(f"    {n:>4}  {k}")
        print("  10 worst layers (total vs Op Cycles; one per model layer, at its worst size):")
        seen: set[tuple[str, str]] = set()
        shown = 0
        for _, m, s, name, r, why in sorted(worst, key=lambda x: -x[0]):
            if (m, name) in seen:
                continue
            seen.add((m, name))
            print(f"    x{r:5.2f} {m[:12]}@{s // KIB}K {name[-40:]}: {why}")
            shown += 1
            if shown == 10:
                break
    full = args.models == ",".join(ALL) and not args.sizes and args.profile == "ethos-u65-256" and not args.cpsat
    out = Path(args.csv) if args.csv else RESULTS if full else None
    if out is None:
        print(f"a partial run: not overwriting {RESULTS.relative_to(ROOT)} (--csv PATH writes its rows)")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows_out for k in r))
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows_out)
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
