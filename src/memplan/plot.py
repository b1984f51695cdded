"""Plots of plans, sweeps and solves, with matplotlib (the optional extra ``memplan[plot]``).

Every function takes typed inputs and returns a :class:`matplotlib.figure.Figure`; none uses
pyplot or a display: figures are drawn on the Agg canvas, so they render on a headless
machine, and :func:`save_figure` writes PNG, SVG or PDF by the file's extension.

* :func:`plot_memory_map`: a plan's buffers, schedule step x SRAM address.
* :func:`plot_group_traffic`: DRAM bytes, DRAM energy and (given the graph) MACs per group.
* :func:`plot_sram_sweep`: a metric against SRAM size, one line per strategy and the floor.
* :func:`plot_fusion_curve`: energy per convolution against fusion depth (the U curve).
* :func:`plot_progress`: a CP-SAT solve's incumbent and bound over time
  (:class:`ProgressRecorder` collects them).
* :func:`plot_pareto`: energy against cycles, the non-dominated points connected.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import EngFormatter, FuncFormatter, MultipleLocator

from memplan.config import parse_size
from memplan.errors import MemplanError, PlanError, UsageError
from memplan.plan.model import BufferKind, Op, Plan

if TYPE_CHECKING:
    from memplan.config import HardwareProfile
    from memplan.ir.graph import Graph

#: the file types :func:`save_figure` writes, by extension
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}

KIND_COLOURS = {
    BufferKind.CORE: "#4c72b0",
    BufferKind.IN_STAGE: "#55a868",
    BufferKind.OUT_STAGE: "#c44e52",
    BufferKind.WEIGHT_KEEP: "#8172b2",
    BufferKind.WEIGHT_RELOAD: "#ccb974",
    BufferKind.RESIDENT: "#64b5cd",
    BufferKind.ACCUMULATOR: "#dd8452",
}
KIND_LABELS = {
    BufferKind.CORE: "core tile",
    BufferKind.IN_STAGE: "input staging",
    BufferKind.OUT_STAGE: "output staging",
    BufferKind.WEIGHT_KEEP: "weights (kept)",
    BufferKind.WEIGHT_RELOAD: "weights (reloaded)",
    BufferKind.RESIDENT: "resident tensor",
    BufferKind.ACCUMULATOR: "int32 partial sums (FDT)",
}


def _figure(width: float = 9.0, height: float = 5.0) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _bytes(n: float) -> str:
    for unit, div in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n:.0f} B"


def _bytes_axis(n: float, _pos: object = None) -> str:
    for unit, div in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= div:
            return f"{n / div:g} {unit}"
    return f"{n:g} B"


def _byte_ticks(axis: Any, top: float) -> None:
    """Ticks at multiples of a power of two bytes (about six of them up to ``top``), labelled in B, KiB or MiB."""
    step = 2 ** max(0, math.ceil(math.log2(max(top, 1) / 6)))
    axis.set_major_locator(MultipleLocator(step))
    axis.set_major_formatter(FuncFormatter(_bytes_axis))


def _energy_unit(top_pj: float) -> tuple[str, float]:
    """The unit that shows energies up to ``top_pj`` picojoules with few digits, and its size in pJ."""
    for unit, size in (("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if top_pj >= size:
            return unit, size
    return "pJ", 1.0


# ---------------------------------------------------------------------------- saving
def figure_format(path: str | os.PathLike[str]) -> str:
    """The format a figure is saved in, from the file's extension; a :class:`UsageError`
    for any other extension."""
    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        raise UsageError(f"cannot tell the image format of {str(path)!r}: end the file name in "
                         f"{', '.join(FORMATS)}, e.g. map.png")
    return FORMATS[ext]


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> None:
    """Write ``fig`` as PNG, SVG or PDF (by the extension): into a temporary file of the same
    folder, renamed into place, so a failure leaves no partial file."""
    fmt = figure_format(path)
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format=fmt, dpi=150)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------- 1. memory map
def plot_memory_map(plan: Plan, profile: str | None = None) -> Figure:
    """Schedule step (x) against SRAM address (y): one rectangle per buffer, over its live
    steps [t0, t1) and its bytes [offset, offset + size), coloured by kind; the SRAM capacity
    as a horizontal line, group boundaries as vertical lines. Each rectangle's gid is the
    buffer's name."""
    fig = _figure(10, 5.5)
    ax = fig.add_subplot()
    for b in plan.buffers:
        ax.add_patch(Rectangle((b.t0, b.offset), b.t1 - b.t0, b.size, facecolor=KIND_COLOURS[b.kind],
                               edgecolor="black", linewidth=0.4, alpha=0.85, gid=b.name))
    steps = max([g.stop for g in plan.decisions.groups] + [b.t1 for b in plan.buffers] + [1])
    ax.axhline(plan.sram_bytes, color="black", linestyle="--", linewidth=1.2, gid="capacity",
               label=f"SRAM capacity {_bytes(plan.sram_bytes)}")
    for g in plan.decisions.groups[1:]:
        ax.axvline(g.start, color="grey", linestyle=":", linewidth=0.8, gid="group-boundary")
    if len(plan.decisions.groups) <= 40:
        for i, g in enumerate(plan.decisions.groups):
            ax.text((g.start + g.stop) / 2, 1.0, f"g{i}", transform=ax.get_xaxis_transform(), ha="center",
                    va="bottom", fontsize=7, color="dimgrey")
    ax.set_xlim(0, steps)
    ax.set_ylim(0, plan.sram_bytes * 1.05)
    _byte_ticks(ax.yaxis, plan.sram_bytes)
    ax.set_xlabel("schedule step (layer index)")
    ax.set_ylabel("SRAM address")
    kinds = [k for k in BufferKind if any(b.kind is k for b in plan.buffers)]
    handles: list[Any] = [Patch(facecolor=KIND_COLOURS[k], edgecolor="black", linewidth=0.4, label=KIND_LABELS[k])
                          for k in kinds]
    handles.append(ax.get_lines()[0])
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    used = max((b.end for b in plan.buffers), default=0)
    strategy = plan.provenance.strategy
    ax.set_title(f"{plan.graph_name}{f' on {profile}' if profile else ''}{f', {strategy}' if strategy else ''}: "
                 f"SRAM used {_bytes(used)} / {_bytes(plan.sram_bytes)}, {len(plan.decisions.groups)} groups",
                 fontsize=10, pad=14)
    return fig


# ---------------------------------------------------------------------------- 2. traffic per group
@dataclass(frozen=True)
class GroupTraffic:
    """What one group moves, counted from the plan's command stream: feature-map bytes
    loaded and stored, weight bytes loaded, and (when the graph is known) MACs."""

    group: int
    start: int
    stop: int
    load: int
    store: int
    weights: int
    macs: int | None
    host: bool = False

    @property
    def dram(self) -> int:
        return self.load + self.store + self.weights


def group_traffic(plan: Plan, graph: Graph | None = None) -> list[GroupTraffic]:
    """Per group, the DRAM bytes of its load, store and load_weights commands and, given the
    graph, the MACs of its compute commands. Without the graph, a weight command's bytes are
    its channels times the bytes per channel of the layer's weight buffer (the buffer holds
    the largest slice the layer loads)."""
    loads = [0] * len(plan.decisions.groups)
    stores, weights, macs = loads.copy(), loads.copy(), loads.copy()
    host = [False] * len(loads)
    if graph is None and plan.weight_encoding != "int8":
        raise PlanError(f"this plan's weights are encoded ({plan.weight_encoding}): their slice sizes come from the "
                        "model's weights, so give the model too")
    per_channel = _weight_bytes_per_channel(plan) if graph is None else {}
    layers = {layer.id: layer for layer in graph.layers} if graph is not None else {}
    if graph is not None:
        from memplan.cost.weights import WeightFormat, slice_bytes
        from memplan.geometry.backprop import region_macs

        fmt = WeightFormat(plan.weight_encoding, plan.elem_bytes, plan.bias_bytes)
    for cmd in plan.commands:
        g = cmd.group
        if cmd.op in (Op.LOAD, Op.STORE):
            assert cmd.region is not None
            n = cmd.region.numel * plan.elem_bytes
            if cmd.op is Op.LOAD:
                loads[g] += n
            else:
                stores[g] += n
        elif cmd.op is Op.LOAD_WEIGHTS:
            assert cmd.channels is not None and cmd.layer is not None
            c0, c1 = cmd.channels
            if graph is not None:
                weights[g] += slice_bytes(graph, layers[cmd.layer], c0, c1, fmt)
            else:
                weights[g] += (c1 - c0) * per_channel[cmd.layer]
        elif cmd.op is Op.HOST:
            host[g] = True
        elif graph is not None and cmd.op is Op.COMPUTE:  # a requantize does no MACs
            assert cmd.region is not None and cmd.layer is not None
            layer = layers[cmd.layer]
            n = region_macs(graph, layer, cmd.region)
            if cmd.in_channels is not None:  # an FDT slice: its share of the consumer's reduction
                n = n * (cmd.in_channels[1] - cmd.in_channels[0]) // graph.shape(layer.inputs[0])[1]
            macs[g] += n
    return [GroupTraffic(i, d.start, d.stop, loads[i], stores[i], weights[i], macs[i] if graph is not None else None,
                         host[i]) for i, d in enumerate(plan.decisions.groups)]


def _weight_bytes_per_channel(plan: Plan) -> dict[str, int]:
    widest: dict[str, int] = {}
    for cmd in plan.commands:
        if cmd.op is Op.LOAD_WEIGHTS and cmd.layer is not None and cmd.channels is not None:
            widest[cmd.layer] = max(widest.get(cmd.layer, 0), cmd.channels[1] - cmd.channels[0])
    out: dict[str, int] = {}
    for b in plan.buffers:
        if b.kind in (BufferKind.WEIGHT_KEEP, BufferKind.WEIGHT_RELOAD) and b.layer in widest:
            if b.size % widest[b.layer]:
                raise PlanError(f"weight buffer {b.name!r} of {b.size} B does not hold {widest[b.layer]} whole output "
                                "channels: the plan is not one memplan solve wrote")
            out[b.layer] = b.size // widest[b.layer]
    missing = sorted(set(widest) - set(out))
    if missing:
        raise PlanError(f"layer {missing[0]!r} loads weights but has no weight buffer: the plan is not one memplan "
                        "solve wrote")
    return out


def plot_group_traffic(plan: Plan, hw: HardwareProfile | None = None, graph: Graph | None = None) -> Figure:
    """Per group (x): stacked bars of DRAM bytes (feature maps loaded, stored, weights
    loaded); below, the energy of that traffic at the profile's pJ per DRAM byte plus, given
    the graph, the MAC energy, with the group's MACs on a second axis. Host groups are
    hatched (their DRAM traffic is the host CPU's, not counted here)."""
    rows = group_traffic(plan, graph)
    x = list(range(len(rows)))
    fig = _figure(10, 6.5 if hw is not None else 4.5)
    axes = fig.subplots(2 if hw is not None else 1, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    bottom = [0] * len(rows)
    for field, label, colour in (("load", "feature maps loaded", "#55a868"), ("store", "feature maps stored", "#c44e52"),
                                 ("weights", "weights loaded", "#8172b2")):
        values = [getattr(r, field) for r in rows]
        ax.bar(x, values, bottom=bottom, color=colour, label=label, gid=field)
        bottom = [b + v for b, v in zip(bottom, values)]
    for r in rows:
        if r.host:
            ax.axvspan(r.group - 0.4, r.group + 0.4, facecolor="none", edgecolor="grey", hatch="//", linewidth=0)
    _byte_ticks(ax.yaxis, max(bottom, default=0))
    ax.set_ylabel("DRAM traffic")
    outside = dict(fontsize=8, loc="upper left", bbox_to_anchor=(1.08 if graph is not None else 1.01, 1.0), frameon=False)
    ax.legend(**outside)
    total = sum(r.dram for r in rows)
    note = "" if total == plan.totals.dram_total else f" (weights read in place: {_bytes(plan.totals.dram_total - total)} more)"
    ax.set_title(f"{plan.graph_name}{f' on {hw.name}' if hw else ''}: DRAM traffic per group, total {_bytes(total)}{note}",
                 fontsize=10)
    if hw is not None:
        ex = axes[1]
        dram_pj = [float(hw.dram_pj_per_byte) * r.dram for r in rows]
        mac_pj = [float(hw.mac_pj) * (r.macs or 0) for r in rows]
        unit, size = _energy_unit(max(d + m for d, m in zip(dram_pj, mac_pj)) if rows else 0.0)
        ex.bar(x, [d / size for d in dram_pj], color="#4c72b0", label="DRAM energy", gid="dram_energy")
        if graph is not None:
            ex.bar(x, [m / size for m in mac_pj], bottom=[d / size for d in dram_pj], color="#dd8452",
                   label="MAC energy", gid="mac_energy")
            twin = ex.twinx()
            twin.plot(x, [r.macs for r in rows], color="black", marker=".", linewidth=0.8, label="MACs", gid="macs")
            twin.yaxis.set_major_formatter(EngFormatter())
            twin.set_ylabel("MACs")
            twin.set_ylim(bottom=0)
            lines, labels = ex.get_legend_handles_labels()
            more, more_labels = twin.get_legend_handles_labels()
            ex.legend(lines + more, labels + more_labels, **outside)
        else:
            ex.legend(**outside)
        ex.set_ylabel(f"energy ({unit})")
        ex.set_title(f"energy per group (plan total {plan.totals.energy_pj / 1e6:.3g} uJ, SRAM accesses included)",
                     fontsize=9)
    axes[-1].set_xlabel("group")
    axes[-1].set_xticks(x, [f"g{i}" for i in x] if len(x) <= 30 else None)
    if len(x) > 30:
        axes[-1].xaxis.set_major_locator(_integer_locator())
    return fig


def _integer_locator() -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


# ---------------------------------------------------------------------------- 3. metric vs SRAM size
METRIC_LABELS = {"energy_fj": "energy (fJ)", "energy_uJ": "energy (uJ)", "energy_pj": "energy (pJ)",
                 "dram_total": "DRAM traffic (bytes)", "cycles": "cycles"}


def read_rows(source: str | os.PathLike[str] | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows from a CSV file (a header line, one row a line) or an iterable of mappings."""
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, newline="") as f:
                return [dict(row) for row in csv.DictReader(f)]
        except OSError as exc:
            raise UsageError(f"cannot read rows from {str(source)!r} ({exc.strerror or exc})") from None
    return [dict(row) for row in source]


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _sram(row: Mapping[str, Any]) -> int | None:
    value = row.get("sram_bytes", row.get("sram"))
    if value is None or value == "":
        return None
    try:
        return parse_size(int(value) if isinstance(value, (int, float)) else str(value))
    except (MemplanError, ValueError):
        return None


def plot_sram_sweep(rows: str | os.PathLike[str] | Iterable[Mapping[str, Any]], metric: str = "energy_fj",
                    model: str | None = None) -> Figure:
    """``metric`` against SRAM size, one line per strategy (the strategy ``floor`` dashed),
    one panel per model. Rows need ``sram_bytes`` (or ``sram``, e.g. ``256KiB``), ``strategy``
    and the metric; rows without a number there (an infeasible size, an error) are left out.
    ``model`` keeps only that model's rows."""
    data: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for row in read_rows(rows):
        name = str(row.get("model") or "")
        if model is not None and name != model:
            continue
        sram, value, strategy = _sram(row), _number(row.get(metric)), row.get("strategy")
        if sram is None or value is None or not strategy:
            continue
        data.setdefault(name, {}).setdefault(str(strategy), []).append((sram, value))
    if not data:
        raise UsageError(f"no rows with sram_bytes, strategy and a number in {metric!r} to plot")
    fig = _figure(9, 4.5 * len(data) if len(data) > 1 else 5)
    axes = fig.subplots(len(data), 1, squeeze=False)[:, 0]
    for ax, (name, series) in zip(axes, sorted(data.items())):
        for strategy in sorted(series, key=lambda s: (s == "floor", s)):
            points = sorted(series[strategy])
            style = dict(color="black", linestyle="--", marker=None) if strategy == "floor" else dict(marker="o")
            ax.plot([p[0] for p in points], [p[1] for p in points], label=strategy, gid=strategy, **style)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(_bytes_axis))
        ax.set_xlabel("SRAM size")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"{name + ': ' if name else ''}{METRIC_LABELS.get(metric, metric)} vs SRAM size", fontsize=10)
    return fig


# ---------------------------------------------------------------------------- 4. fusion-depth U curve
def plot_fusion_curve(rows: Iterable[tuple[int, float]], title: str = "energy per convolution vs fusion depth",
                      ylabel: str = "energy per convolution", reference: Mapping[int, float] | None = None) -> Figure:
    """Energy per convolution (y) against the number of convolutions fused into one group
    (x), the lowest marked; ``reference`` (depth -> value), e.g. published numbers, as a
    second, dashed line."""
    points = sorted((int(d), float(e)) for d, e in rows)
    if not points:
        raise UsageError("no (depth, energy) rows to plot")
    fig = _figure(7, 4.5)
    ax = fig.add_subplot()
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label="memplan", gid="curve")
    best = min(points, key=lambda p: p[1])
    ax.plot([best[0]], [best[1]], marker="*", markersize=14, color="#c44e52", linestyle="none",
            label=f"lowest: {best[0]} fused", gid="best")
    if reference:
        ref = sorted(reference.items())
        ax.plot([r[0] for r in ref], [r[1] for r in ref], marker="s", linestyle="--", color="grey", label="reference",
                gid="reference")
    ax.set_xticks([p[0] for p in points])
    ax.set_xlabel("convolutions fused in one group")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig


# ---------------------------------------------------------------------------- 5. solver progress
class ProgressRecorder:
    """A :class:`memplan.solve.run.Progress` that keeps what a solve reports: ``trace`` holds
    ``(seconds, objective, bound)`` for each improvement, ``stages`` ``(seconds, text)`` for
    each stage (seconds since the recorder was made, which should be just before the solve)."""

    def __init__(self) -> None:
        self.trace: list[tuple[float, float, float]] = []
        self.stages: list[tuple[float, str]] = []
        self._start = time.perf_counter()

    def stage(self, text: str) -> None:
        self.stages.append((time.perf_counter() - self._start, text))

    def search(self, objective: float, bound: float, seconds: float) -> None:
        self.trace.append((seconds, objective, bound))


def plot_progress(trace: ProgressRecorder | Sequence[tuple[float, float, float]], title: str = "CP-SAT search",
                  ylabel: str = "objective") -> Figure:
    """The incumbent (best plan's objective) and the proven bound over time, as steps; the
    stages a :class:`ProgressRecorder` saw as labelled vertical lines."""
    stages = trace.stages if isinstance(trace, ProgressRecorder) else []
    points = trace.trace if isinstance(trace, ProgressRecorder) else list(trace)
    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    incumbent = [(s, o) for s, o, _ in points if math.isfinite(o)]
    bound = [(s, b) for s, _, b in points if math.isfinite(b) and b > 0]
    if incumbent:
        ax.step([p[0] for p in incumbent], [p[1] for p in incumbent], where="post", marker=".", label="incumbent",
                gid="incumbent")
    if bound:
        ax.step([p[0] for p in bound], [p[1] for p in bound], where="post", marker=".", label="bound", gid="bound")
    times = [s for s, _ in stages] + [p[0] for p in points]
    span = (max(times) - min(times)) if times else 0.0
    labelled = -math.inf
    for seconds, text in stages:  # a line for every stage, a label where it does not run into the last one
        ax.axvline(seconds, color="lightgrey", linewidth=0.8, gid="stage")
        if seconds - labelled >= 0.03 * span:
            short = text if len(text) <= 32 else f"{text[:30]}..."
            ax.text(seconds, 0.98, f" {short}", transform=ax.get_xaxis_transform(), rotation=90, va="top", fontsize=7,
                    color="dimgrey")
            labelled = seconds
    ax.set_xlabel("seconds since the solve began")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if incumbent or bound:
        ax.legend(fontsize=8, loc="lower right")
    gap = ""
    if incumbent and bound and incumbent[-1][1] > 0:
        gap = f", gap at the last report {100 * (incumbent[-1][1] - bound[-1][1]) / incumbent[-1][1]:.2f} %"
    ax.set_title(f"{title}{gap}", fontsize=10)
    return fig


# ---------------------------------------------------------------------------- 6. Pareto front
def pareto_front(points: Iterable[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """The points no other point dominates (no more cycles and no more energy, one of them
    fewer), by cycles; of equal points the first is kept."""
    pts = list(points)
    front = []
    for i, (c, e, label) in enumerate(pts):
        dominated = any((c2 <= c and e2 <= e and (c2 < c or e2 < e)) or (c2 == c and e2 == e and j < i)
                        for j, (c2, e2, _) in enumerate(pts) if j != i)
        if not dominated:
            front.append((c, e, label))
    return sorted(front, key=lambda p: (p[0], p[1]))


def plot_pareto(points: Iterable[tuple[float, float, str]], title: str = "energy vs latency",
                energy_label: str = "energy (fJ)") -> Figure:
    """Energy (y) against cycles (x), one labelled point per plan; the non-dominated points
    connected by a line (gid ``front``)."""
    pts = [(float(c), float(e), str(label)) for c, e, label in points]
    if not pts:
        raise UsageError("no (cycles, energy, label) points to plot")
    front = pareto_front(pts)
    fig = _figure(8, 5)
    ax = fig.add_subplot()
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="#8c8c8c", zorder=2, label="plans", gid="points")
    ax.plot([p[0] for p in front], [p[1] for p in front], color="#c44e52", marker="o", zorder=3, label="Pareto front",
            gid="front")
    for c, e, label in pts:
        ax.annotate(label, (c, e), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("latency (cycles)")
    ax.set_ylabel(energy_label)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{title}: {len(front)} of {len(pts)} plans non-dominated", fontsize=10)
    return fig
