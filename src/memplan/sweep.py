"""``memplan sweep``: plan many (model, hardware profile, SRAM size, strategy) points on Dask
and collect one row of results per point.

One Dask task per point: the worker loads the model from its path, plans it with
:func:`memplan.driver.plan_graph`, optionally verifies the plan document, and returns a flat
row (:data:`COLUMNS`). A point that fails -- infeasible, any :class:`MemplanError`, even an
unexpected exception -- becomes a row with status ``infeasible`` or ``error`` and the one-line
message in ``error``; it never stops the sweep.

Rows are appended to the output as they finish (CSV, one flushed and fsynced line per row;
``.parquet`` when pyarrow is installed, rewritten atomically per row). Points whose key
(:data:`KEY`) is already in the output are skipped, so an interrupted sweep resumes; a
truncated last CSV line left by a crash is dropped on resume.

Only this module imports dask and distributed, and only inside the functions that need them.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from memplan.config import parse_size
from memplan.errors import InfeasibleError, MemplanError, UsageError

COLUMNS = ("model", "hardware", "sram_bytes", "strategy", "objective", "status", "gap", "energy_fj", "dram_total",
           "dram_read_fm", "dram_write_fm", "dram_read_weights", "macs", "cycles", "sram_peak", "plan_source",
           "verified", "solve_s", "error")
#: the columns that name a point: a row with the same values is not computed again
KEY = ("model", "hardware", "sram_bytes", "strategy", "objective")
_INT_COLUMNS = ("sram_bytes", "energy_fj", "dram_total", "dram_read_fm", "dram_write_fm", "dram_read_weights", "macs",
                "cycles", "sram_peak")
#: more SRAM sizes than this in one range is a typo, not a sweep
MAX_SIZES = 10_000


# ---------------------------------------------------------------------------- the SRAM range
_RANGE_RE = re.compile(r"^\s*([^.:,]+?)\s*\.\.\s*([^.:,]+?)\s*:\s*([x+*])\s*(.+?)\s*$", re.IGNORECASE)


def parse_sram_range(text: str) -> list[int]:
    """``64KiB..2MiB:x2`` (geometric, inclusive), ``64KiB..256KiB:+64KiB`` (arithmetic) or a
    comma list ``64KiB,1MiB`` -> sorted distinct byte counts."""
    example = "write e.g. --sram 64KiB..2MiB:x2, 64KiB..256KiB:+64KiB or 64KiB,1MiB"
    shown = repr(text) if len(text) <= 60 else repr(f"{text[:50]}...")
    if not text.strip():
        raise UsageError(f"--sram is empty: {example}")
    if ".." not in text:
        sizes = [_size(part, shown, example) for part in text.split(",")]
        return sorted(set(sizes))
    m = _RANGE_RE.match(text)
    if not m:
        raise UsageError(f"--sram {shown} is not a range: {example} (a range needs a step after ':')")
    low, high = _size(m.group(1), shown, example), _size(m.group(2), shown, example)
    if low > high:
        raise UsageError(f"--sram {shown} runs from {low:,} B down to {high:,} B: give the smaller size first")
    op, step_text = m.group(3).lower(), m.group(4)
    sizes = []
    if op in ("x", "*"):
        try:
            factor = float(step_text)
        except ValueError:
            factor = math.nan
        if not (math.isfinite(factor) and factor > 1):
            raise UsageError(f"--sram {shown}: the factor {step_text!r} must be a number above 1, e.g. :x2")
        value = float(low)
        while round(value) <= high and len(sizes) <= MAX_SIZES:
            sizes.append(round(value))
            value *= factor
    else:
        step = _size(step_text, shown, example)
        sizes = list(range(low, high + 1, step)[:MAX_SIZES + 1])
    if len(sizes) > MAX_SIZES:
        raise UsageError(f"--sram {shown} gives more than {MAX_SIZES:,} sizes: use a larger step")
    return sorted(set(sizes))


def _size(part: str, shown: str, example: str) -> int:
    if not part.strip():
        raise UsageError(f"--sram {shown} has an empty size: {example}")
    try:
        return parse_size(part.strip())
    except UsageError as exc:
        raise UsageError(f"--sram {shown}: {exc.message}") from None


def split_list(text: str, flag: str) -> list[str]:
    """``a,b,c`` -> [a, b, c] without empty items or repeats (a one-line error if none are left)."""
    items = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not items:
        raise UsageError(f"{flag} is empty: give one or more names separated by commas")
    return items


# ---------------------------------------------------------------------------- the points
@dataclass(frozen=True)
class Point:
    model: str
    hardware: str
    sram_bytes: int
    strategy: str
    objective: str

    def key(self) -> tuple[str, str, int, str, str]:
        return (self.model, self.hardware, self.sram_bytes, self.strategy, self.objective)


def build_points(models: Sequence[str], hardware: Sequence[str], sizes: Sequence[int], strategies: Sequence[str],
                 objective: str) -> list[Point]:
    """Every (model, profile, SRAM size, strategy), in that nesting order; the profiles and
    the strategies are checked here, before any task runs."""
    from memplan.config import load_profile
    from memplan.driver import STRATEGIES

    for name in hardware:
        load_profile(name)  # an unknown profile is a usage error, not a column of error rows
    for strategy in strategies:
        if strategy not in STRATEGIES:
            raise UsageError(f"unknown strategy {strategy!r} in --strategy: use some of {', '.join(STRATEGIES)}")
        if strategy != "cpsat" and objective != "energy":
            raise UsageError(f"the {strategy} baseline has no objective to choose: sweep --objective {objective} "
                             "with --strategy cpsat only")
    points = [Point(m, h, s, st, objective) for m in dict.fromkeys(models) for h in hardware for s in sizes
              for st in strategies]
    return points


# ---------------------------------------------------------------------------- one task (on a worker)
@lru_cache(maxsize=8)
def _load(path: str, size: int, mtime_ns: int):  # type: ignore[no-untyped-def]
    from memplan.frontend import load_model

    return load_model(path)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, MemplanError) else f"{type(exc).__name__}: {text}"


def run_point(point: Point, config: str = "default", time_limit_s: float | None = None,
              verify: bool = False, path: str | None = None) -> dict[str, Any]:
    """Plan one point and return its row; never raises (a failure is the row's status and
    error). ``path``: where this process finds the model (default ``point.model``)."""
    path = path or point.model
    row: dict[str, Any] = {c: None for c in COLUMNS}
    row.update(model=point.model, hardware=point.hardware, sram_bytes=point.sram_bytes, strategy=point.strategy,
               objective=point.objective)
    t0 = time.perf_counter()
    try:
        from dataclasses import replace

        from memplan.config import load_profile, load_solver_config
        from memplan.driver import model_sha256, plan_graph
        from memplan.execute.verify import verify_document

        solver = load_solver_config(config)
        if time_limit_s is not None:
            solver = replace(solver, time_limit_s=time_limit_s)
        hw = load_profile(point.hardware).with_sram(point.sram_bytes)
        stat = os.stat(path)
        graph = _load(path, stat.st_size, stat.st_mtime_ns)
        outcome = plan_graph(graph, hw, strategy=point.strategy, objective=point.objective, config=solver)
        row["solve_s"] = round(time.perf_counter() - t0, 3)
        plan = outcome.plan
        meta = plan.provenance.solver or {}
        totals = plan.totals
        row.update(status=meta.get("status", "HEURISTIC"), gap=meta.get("gap"), energy_fj=totals.energy_fj,
                   dram_total=totals.dram_total, dram_read_fm=totals.dram_read_fm, dram_write_fm=totals.dram_write_fm,
                   dram_read_weights=totals.dram_read_weights, macs=totals.macs, cycles=totals.cycles,
                   sram_peak=totals.sram_peak, plan_source=meta.get("plan_source", plan.provenance.strategy))
        if verify:
            sha256 = model_sha256(path)
            try:
                row["verified"] = verify_document(graph, outcome.to_json(sha256), sha256).passed
            except MemplanError as exc:
                row["verified"], row["error"] = False, f"verify: {_one_line(exc)}"
    except InfeasibleError as exc:
        row.update(status="infeasible", error=_one_line(exc))
    except Exception as exc:  # noqa: BLE001 - a failing point is a row, never the end of the sweep
        row.update(status="error", error=_one_line(exc))
    if row["solve_s"] is None:
        row["solve_s"] = round(time.perf_counter() - t0, 3)
    return row


# ---------------------------------------------------------------------------- the output
def _key_of(row: Mapping[str, Any]) -> tuple[str, str, int, str, str]:
    return (str(row["model"]), str(row["hardware"]), int(row["sram_bytes"]), str(row["strategy"]),
            str(row["objective"]))


class CsvOutput:
    """Rows appended one line at a time, each flushed and fsynced, so a crash leaves at most a
    truncated last line; :meth:`open` drops that line and reads the keys already done."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: io.TextIOWrapper | None = None

    def done(self) -> set[tuple[str, str, int, str, str]]:
        path = Path(self.path)
        if not path.exists() or path.stat().st_size == 0:
            return set()
        data = path.read_bytes()
        if not data.endswith(b"\n"):  # a crash mid-row: the partial line goes
            cut = data.rfind(b"\n") + 1
            with open(path, "r+b") as f:
                f.truncate(cut)
                f.flush()
                os.fsync(f.fileno())
            data = data[:cut]
        if not data:
            return set()
        reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise UsageError(f"-o {self.path!r} is not a memplan sweep CSV (its header differs): write to a new file")
        keys = set()
        for line, row in enumerate(reader, start=2):
            try:
                keys.add(_key_of(row))
            except (TypeError, ValueError):
                raise UsageError(f"-o {self.path!r} line {line} is not a sweep row: fix or remove it") from None
        return keys

    def append(self, row: Mapping[str, Any]) -> None:
        if self._file is None:
            new = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
            self._file = open(self.path, "a", newline="", encoding="utf-8")
            if new:
                self._write(COLUMNS)
        self._write([_cell(row.get(c)) for c in COLUMNS])

    def _write(self, cells: Iterable[Any]) -> None:
        assert self._file is not None
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(cells)
        self._file.write(buf.getvalue())  # one write per line
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _cell(value: Any) -> Any:
    return "" if value is None else value


class ParquetOutput:
    """Parquet cannot be appended to: the whole table is rewritten (to a temporary file, then
    renamed over the output) after every row, so the file is always whole."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []

    def done(self) -> set[tuple[str, str, int, str, str]]:
        import pyarrow.parquet as pq

        if not os.path.exists(self.path):
            return set()
        table = pq.read_table(self.path)
        if tuple(table.column_names) != COLUMNS:
            raise UsageError(f"-o {self.path!r} is not a memplan sweep table (its columns differ): write to a new file")
        self.rows = table.to_pylist()
        return {_key_of(r) for r in self.rows}

    def append(self, row: Mapping[str, Any]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.rows.append({c: row.get(c) for c in COLUMNS})
        def kind(c: str) -> Any:
            if c in _INT_COLUMNS:
                return pa.int64()
            return pa.float64() if c in ("gap", "solve_s") else pa.bool_() if c == "verified" else pa.string()

        schema = pa.schema([(c, kind(c)) for c in COLUMNS])
        tmp = f"{self.path}.tmp"
        pq.write_table(pa.Table.from_pylist(self.rows, schema=schema), tmp)
        os.replace(tmp, self.path)

    def close(self) -> None:
        pass  # nothing is held open: every row rewrote the file whole


def open_output(path: str) -> CsvOutput | ParquetOutput:
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UsageError(f"-o {path!r}: writing .parquet needs pyarrow (pip install pyarrow); "
                             "or write a .csv") from None
        return ParquetOutput(path)
    if suffix != ".csv":
        raise UsageError(f"-o {path!r}: sweep results are written as .csv (or .parquet with pyarrow), "
                         "e.g. -o results.csv")
    return CsvOutput(path)


# ---------------------------------------------------------------------------- the sweep
@dataclass(frozen=True)
class SweepSummary:
    output: str
    points: int
    skipped: int
    computed: int
    statuses: Mapping[str, int]
    wall_s: float

    def to_json(self) -> dict[str, Any]:
        return {"output": self.output, "points": self.points, "skipped": self.skipped, "computed": self.computed,
                "statuses": dict(self.statuses), "wall_s": self.wall_s}


def run_sweep(points: Sequence[Point], output: str, *, config: str = "default", time_limit_s: float | None = None,
              verify: bool = False, scheduler: str | None = None, workers: int | None = None,
              on_row: Callable[[Mapping[str, Any]], None] | None = None,
              on_start: Callable[[int], None] | None = None) -> SweepSummary:
    """Run the points not yet in ``output`` on Dask and append their rows as they finish.
    ``scheduler``: the address of a running Dask scheduler; None starts a local cluster of
    ``workers`` processes (default: the machine's cores), one thread each."""
    t0 = time.perf_counter()
    out = open_output(output)
    done = out.done()
    todo = [p for p in dict.fromkeys(points) if p.key() not in done]
    skipped = len(set(points)) - len(todo)
    if on_start is not None:
        on_start(len(todo))
    statuses: dict[str, int] = {}
    try:
        if todo:
            with _client(scheduler, workers) as client:
                from distributed import as_completed

                # absolute paths: a worker's working folder need not be ours (on a cluster, the
                # models must be at the same paths on every worker)
                futures = {client.submit(run_point, p, config, time_limit_s, verify, os.path.abspath(p.model),
                                         pure=False): p for p in todo}
                for future in as_completed(futures):
                    try:
                        row = future.result()
                    except Exception as exc:  # noqa: BLE001 - a lost worker, say: still one row
                        row = {c: None for c in COLUMNS}
                        point = futures[future]
                        row.update(dict(zip(KEY, point.key())), status="error", error=_one_line(exc))
                    out.append(row)
                    statuses[row["status"]] = statuses.get(row["status"], 0) + 1
                    if on_row is not None:
                        on_row(row)
    finally:
        out.close()
    return SweepSummary(output, len(set(points)), skipped, sum(statuses.values()), statuses,
                        round(time.perf_counter() - t0, 3))


def _cores() -> int:
    """The cores this process may run on (a container's or a CPU set's, not the host's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _client:
    """A ``distributed.Client``: to ``scheduler``, or to a local cluster started (and closed) here."""

    def __init__(self, scheduler: str | None, workers: int | None) -> None:
        self.scheduler, self.workers = scheduler, workers
        self.cluster: Any = None
        self.client: Any = None

    def __enter__(self):  # type: ignore[no-untyped-def]
        import logging

        from distributed import Client, LocalCluster

        if self.scheduler is None:
            n = self.workers or _cores()
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                        silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
            return self.client
        try:
            self.client = Client(self.scheduler, timeout="15s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise UsageError(f"--scheduler {self.scheduler!r}: cannot connect ({_one_line(exc)}); start a scheduler "
                             "there or leave out --scheduler for a local cluster") from None
        try:
            self.client.wait_for_workers(1, timeout=60)
        except (OSError, TimeoutError) as exc:
            self.client.close()
            raise UsageError(f"--scheduler {self.scheduler!r} has no workers after 60 s ({_one_line(exc)}): start "
                             "`dask worker` there") from None
        return self.client

    def __exit__(self, *exc: Any) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
