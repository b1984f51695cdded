"""Everything memplan prints for a person: rich tables and progress (the only module that
imports rich). Machine-readable output goes to stdout as JSON."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from memplan.ir.graph import Graph
from memplan.ir.stats import GraphStats

_out = Console(highlight=False)
_err = Console(stderr=True, highlight=False)


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def human_count(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def human_bytes(n: float) -> str:
    for unit, div in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n:.0f} B"


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def print_inspect(stats: GraphStats, as_json: bool = False) -> None:
    if as_json:
        print_json(stats.to_json())
        return
    table = Table(title=f"{stats.name}: {len(stats.layers)} layers")
    numeric = ("#", "MACs", "weight bytes (model)", "out bytes (model)")
    for col in ("#", "layer", "op", "inputs", "output", "MACs", "weight bytes (model)", "out bytes (model)"):
        table.add_column(col, justify="right" if col in numeric else "left")
    for i, s in enumerate(stats.layers):
        op = s.op + (f"+{s.activation}" if s.activation else "")
        table.add_row(str(i), s.id, op, ", ".join(_fmt_shape(x) for x in s.input_shapes), _fmt_shape(s.output_shape),
                      f"{s.macs:,}", f"{s.weight_bytes:,}", f"{s.output_bytes:,}")
    _out.print(table)
    _out.print(
        f"MACs {stats.total_macs:,} ({human_count(stats.total_macs)})  parameters {stats.parameters:,} "
        f"({human_count(stats.parameters)})  weight bytes {stats.weight_bytes:,}\n"
        f"largest activation {stats.largest_activation} {stats.largest_activation_bytes:,} B  "
        f"sum of activations {stats.sum_activation_bytes:,} B  input {stats.input_bytes:,} B  output {stats.output_bytes:,} B"
    )
    stored = ", ".join(stats.feature_map_dtypes) or "none"
    weights = f", weights {', '.join(stats.weight_dtypes)}" if stats.weight_dtypes else ""
    _out.print(f"bytes at the model's own types (feature maps {stored}{weights}); plans use the hardware profile's "
               "element size (1-byte int8 on the built-in profiles)")


def print_ops(ops: Mapping[str, tuple[str, ...]], as_json: bool = False) -> None:
    """``memplan ops``: what the importer converts to layers and what it only folds."""
    if as_json:
        print(json.dumps({k: list(v) for k, v in ops.items()}, indent=2))
        return
    _out.print(f"layers ({len(ops['layers'])}): {', '.join(ops['layers'])}")
    _out.print(f"folded on constant inputs only ({len(ops['constants'])}): {', '.join(ops['constants'])}")
    _out.print("any other standard operator runs on the host CPU (a host layer; see memplan inspect), "
               "unless --host-ops error is given")


def print_zoo_list(zoo: Mapping[str, Any]) -> None:
    table = Table(title="memplan zoo")
    table.add_column("name")
    table.add_column("description")
    for name, entry in zoo.items():
        table.add_row(name, getattr(entry, "description", ""))
    _out.print(table)


def print_written(path: str, graph: Graph) -> None:
    _err.print(f"wrote {path}: {graph.name}, {len(graph.layers)} layers")


def solve_summary(outcome: Any) -> dict[str, Any]:
    """The ``--json`` summary of a solve: status, objective, bound, gap, where the plan came
    from, whether the search was interrupted, the totals next to the floor and the baselines,
    and this run's timings (seconds per stage; they are not in the plan file)."""
    plan = outcome.plan
    solver = plan.provenance.solver or {}
    return {
        "model": plan.graph_name,
        "hardware": outcome.hw.name,
        "sram_bytes": plan.sram_bytes,
        "strategy": plan.provenance.strategy,
        "objective": plan.provenance.objective,
        "status": solver.get("status", "HEURISTIC"),
        "objective_value": solver.get("objective"),
        "bound": solver.get("bound"),
        "gap": solver.get("gap"),
        "plan_source": solver.get("plan_source", plan.provenance.strategy),
        "proof": solver.get("proof"),
        "interrupted": bool(solver.get("interrupted", False)),
        "cut_short": list(solver.get("cut_short", [])),
        "limit_too_short": bool(solver.get("limit_too_short", False)),
        "groups": len(plan.decisions.groups),
        "rolling_groups": sum(g.tiling.rolling for g in plan.decisions.groups),
        "totals": plan.totals.to_json(),
        "floor": outcome.floor.to_json(),
        "baselines": {k: p.totals.to_json() for k, p in outcome.baselines.items()},
        "timings": dict(getattr(outcome, "timings", {}) or {}),
    }


_SOURCES = {"cpsat": "CP-SAT's plan", "greedy": "the greedy plan", "layer": "the layer-by-layer plan",
            "greedy_partial": "the greedy plan as far as it got, then layer by layer"}


def solver_line(solver: Mapping[str, Any], timings: Mapping[str, float]) -> str:
    """One line on how the plan was found: status, objective, bound, gap, its source and
    proof, what the time limit cut short, an interruption, the wall time."""
    source = solver.get("plan_source", "cpsat")
    what = _SOURCES.get(source, f"the DP path ({source})" if source.startswith("dp") else source)
    proof = {"cpsat": ", proven by CP-SAT", "dp_bound": ", proven by the DP bound (no search)",
             "floor": ", proven: it costs the compulsory-traffic floor"}.get(solver.get("proof") or "", "")
    line = (f"{solver['status']}: objective {solver['objective']:,.0f} {solver['objective_units']}, "
            f"bound {solver['bound']:,.0f}, gap {solver['gap']:.2%}; {what}{proof}")
    if solver.get("candidates"):
        line += f"; {solver['candidates']:,} candidates"
    if solver.get("cut_short"):
        line += f"; cut short by the time limit: {', '.join(solver['cut_short'])}"
    if solver.get("limit_too_short"):
        line += "; the time limit is too short even for the layer-by-layer plan: returned as soon as validated"
    if solver.get("interrupted"):
        line += "; search interrupted (Ctrl-C): best plan so far"
    if "total" in timings:
        line += f"; {timings['total']:.1f} s"  # the solve's (model load not included)
    return line


def _rolling(plan: Any) -> str:
    n = sum(g.tiling.rolling for g in plan.decisions.groups)
    return f" ({n} with rolling buffers)" if n else ""


def print_solve(outcome: Any, as_json: bool = False, output: str | None = None) -> None:
    if as_json:
        print_json(solve_summary(outcome))
        return
    plan, fl = outcome.plan, outcome.floor
    t = plan.totals
    table = Table(title=f"{plan.graph_name} on {outcome.hw.name}, SRAM {human_bytes(plan.sram_bytes)}: "
                        f"{plan.provenance.strategy} plan, {len(plan.decisions.groups)} groups{_rolling(plan)}")
    table.add_column("")
    table.add_column("plan", justify="right")
    table.add_column("floor", justify="right")
    for name in outcome.baselines:
        table.add_column(name, justify="right")
    rows = [
        ("DRAM read, feature maps", t.dram_read_fm, fl.dram_read_fm, "dram_read_fm"),
        ("DRAM write, feature maps", t.dram_write_fm, fl.dram_write_fm, "dram_write_fm"),
        ("DRAM read, weights", t.dram_read_weights, fl.dram_read_weights, "dram_read_weights"),
        ("DRAM total", t.dram_total, fl.dram_total, "dram_total"),
        ("MACs", t.macs, fl.macs, "macs"),
        ("energy (pJ)", t.energy_pj, fl.energy_fj / 1000, "energy_pj"),
    ]
    for label, value, floor_value, key in rows:
        table.add_row(label, f"{value:,.0f}", f"{floor_value:,.0f}",
                      *(f"{p.totals.to_json()[key]:,.0f}" for p in outcome.baselines.values()))
    table.add_row("cycles", f"{t.cycles:,}", "", *(f"{p.totals.cycles:,}" for p in outcome.baselines.values()))
    table.add_row("SRAM peak (B)", f"{t.sram_peak:,}", "", *(f"{p.totals.sram_peak:,}" for p in outcome.baselines.values()))
    _out.print(table)
    solver = plan.provenance.solver
    timings = getattr(outcome, "timings", {}) or {}
    if solver:
        _out.print(solver_line(solver, timings), markup=False)
    elif "total" in timings:
        _out.print(f"{plan.provenance.strategy} plan in {timings['total']:.1f} s")
    if output:
        _err.print(f"wrote {output}")


class _LiveProgress:
    """The solve's progress as one live line: the preparation stage, then the search's best
    objective, bound and gap (see :class:`memplan.solve.run.Progress`)."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.t0 = time.perf_counter()
        self.text = ""

    def stage(self, text: str) -> None:
        self.text = text
        self.live.update(f"{time.perf_counter() - self.t0:6.1f} s  {text}")

    def search(self, objective: float, bound: float, seconds: float) -> None:
        gap = 0.0 if objective == 0 else max(0.0, (objective - bound) / abs(objective))
        self.live.update(f"{seconds:6.1f} s  {self.text}: objective {objective:,.0f}  bound {bound:,.0f}  gap {gap:.2%}")


@contextmanager
def solve_progress(enabled: bool) -> Iterator[_LiveProgress | None]:
    """A live line on stderr while the planner prepares and searches (nothing when disabled
    or when stderr is not a terminal)."""
    if not enabled or not _err.is_terminal:
        yield None
        return
    with Live(console=_err, refresh_per_second=4, transient=True) as live:
        yield _LiveProgress(live)


def print_verify(result: Any, as_json: bool = False) -> None:
    """The outcome of ``memplan verify``: bit-exactness, measured against planned traffic and
    MACs, SRAM peak. ``result`` is a :class:`memplan.execute.verify.VerifyReport`."""
    if as_json:
        print_json(result.to_json())
        return
    measured, predicted = result.measured, result.predicted
    verdict = "[green]verified[/green]" if result.passed else "[red]NOT verified[/red]"
    table = Table(title=f"{result.model}: {result.strategy or 'plan'} plan, SRAM {human_bytes(result.sram_bytes)}, "
                        f"{result.commands:,} commands")
    table.add_column("")
    table.add_column("measured", justify="right")
    table.add_column("plan", justify="right")
    table.add_column("", justify="center")
    rows = [
        ("DRAM read, feature maps (B)", measured.dram_read_fm, predicted.dram_read_fm),
        ("DRAM write, feature maps (B)", measured.dram_write_fm, predicted.dram_write_fm),
        ("DRAM read, weights (B)", measured.dram_read_weights, predicted.dram_read_weights),
        ("DRAM total (B)", measured.dram_total, predicted.dram_total),
        ("MACs", measured.macs, predicted.macs),
    ]
    for label, got, want in rows:
        table.add_row(label, f"{got:,}", f"{want:,}", "[green]=[/green]" if got == want else "[red]differs[/red]")
    table.add_row("SRAM peak (B)", f"{result.sram_peak:,}", f"{result.sram_peak_planned:,}",
                  "[green]within[/green]" if result.sram_peak <= result.sram_peak_planned else "[red]over[/red]")
    _out.print(table)
    exact = "yes" if result.bit_exact else "[red]no[/red]"
    _out.print(f"{verdict}: bit-exact {exact} ({len(result.tensors)} output and spilled tensors, seed {result.seed}); "
               f"SRAM peak {human_bytes(result.sram_peak)} of {human_bytes(result.sram_bytes)}; "
               f"{result.wall_time_s:.1f} s")
    if result.tflm is not None:
        match = {True: "[green]identical[/green]", False: "[red]differs[/red]", None: "not compared"}[result.tflm.match]
        _out.print(f"TFLite Micro: {match} ({result.tflm.detail})")
    if result.failure:
        _out.print(f"[red]{result.failure}[/red]")


class _SweepBar:
    """``memplan sweep``'s progress bar: one step per finished point, the last row's status."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.task: Any = None

    def start(self, total: int) -> None:
        self.task = self.progress.add_task("sweep", total=total)

    def row(self, row: Mapping[str, Any]) -> None:
        if self.task is not None:
            last = f"{row['model']} {row['hardware']} {human_bytes(row['sram_bytes'])} {row['strategy']}: {row['status']}"
            self.progress.update(self.task, advance=1, description=last)


@contextmanager
def sweep_progress(enabled: bool) -> Iterator[_SweepBar | None]:
    """A progress bar on stderr while a sweep runs (nothing when disabled or when stderr is
    not a terminal)."""
    if not enabled or not _err.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=_err, transient=True) as progress:
        yield _SweepBar(progress)


def print_sweep(summary: Any, as_json: bool = False) -> None:
    """The end of ``memplan sweep``: how many points ran, were skipped (already in the
    output), and their statuses. ``summary`` is a :class:`memplan.sweep.SweepSummary`."""
    if as_json:
        print_json(summary.to_json())
        return
    statuses = ", ".join(f"{n} {status}" for status, n in sorted(summary.statuses.items())) or "nothing new"
    _err.print(f"wrote {summary.output}: {summary.computed} of {summary.points} points computed ({statuses}), "
               f"{summary.skipped} already there; {summary.wall_s:.1f} s")
