"""The Python API: load a model, choose the hardware, solve, save, verify.

::

    import memplan

    graph = memplan.load_model("models/resnet8_float.onnx")
    hw = memplan.hardware("generic-npu", sram="32KiB")
    result = memplan.solve(graph, hw, strategy="cpsat", time_limit=10)
    result.save("plan.json")
    memplan.verify("models/resnet8_float.onnx", "plan.json")

These are the functions the command line calls (``memplan solve`` and ``memplan verify``), with
the same checks and the same one-line :class:`~memplan.errors.MemplanError` messages. A
:class:`Result` and a :class:`Verification` render as a small table in a notebook.

Importing this module is cheap: the frontend (onnx) and the planner (ortools) are imported by
the functions that need them.
"""

from __future__ import annotations

import dataclasses
import html
import math
import os
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memplan.config import SOLVER_RANGES, HardwareProfile, SolverConfig, TilingRules
from memplan.errors import ConfigError, UsageError
from memplan.execute.verify import VerifyReport
from memplan.plan.model import Plan, Totals

if TYPE_CHECKING:
    from memplan.baselines import Floor
    from memplan.solve.run import SolveResult
    from memplan.ir.graph import Graph
    from memplan.solve import UserConstraints
    from memplan.solve.budget import RecomputeBudget
    from memplan.solve.run import Progress

__all__ = ["Plan", "Result", "SolveSettings", "Verification", "hardware", "load_model", "load_plan", "solve",
           "solve_settings", "verify"]

PathLike = str | os.PathLike[str]

#: sha256 of the model file each graph :func:`load_model` returned was read from, by id(graph)
#: (an entry goes when its graph does); a plan records it, and verify checks it
_MODEL_SHA256: dict[int, str] = {}


def _model_sha256_of(graph: Graph) -> str | None:
    return _MODEL_SHA256.get(id(graph))


# ---------------------------------------------------------------------------- model and hardware
def load_model(path: PathLike, input_shapes: Mapping[str, Iterable[int]] | None = None,
               host_ops: str = "cpu") -> Graph:
    """Load an ONNX model as memplan's graph (what ``memplan inspect`` and ``memplan solve`` read).

    ``input_shapes`` pins dynamic input dimensions, ``{"input": (1, 3, 224, 224)}``, in the
    layout of the ONNX input. ``host_ops``: ``"cpu"`` runs an operator memplan does not tile on
    the host CPU, ``"error"`` refuses the model. The file's sha256 is remembered with the graph,
    so that a plan of it records the model it was made for."""
    if host_ops not in ("cpu", "error"):
        raise UsageError(f"host_ops {host_ops!r} is not cpu or error: cpu runs an operator memplan does not tile "
                         "on the host CPU, error refuses the model")
    from memplan.driver import model_sha256
    from memplan.frontend import load_model as load

    shapes = {name: tuple(int(d) for d in shape) for name, shape in (input_shapes or {}).items()}
    graph = load(path, shapes, host_ops=host_ops)
    key = id(graph)
    _MODEL_SHA256[key] = model_sha256(path)
    weakref.finalize(graph, _MODEL_SHA256.pop, key, None)
    return graph


_TILING_KEYS = tuple(f.name for f in dataclasses.fields(TilingRules))


def hardware(name_or_path: PathLike = "generic-npu", sram: int | str | None = None, **overrides: Any) -> HardwareProfile:
    """A hardware profile by shipped name (``generic-npu``, ``ethos-u55-256``, ...) or ``.toml``
    path, with its SRAM size and other figures changed.

    ``sram``: bytes, or a size such as ``"256KiB"`` (as ``--sram``). ``overrides`` are keys of the
    profile TOML (``mac_pj=0.2``, ``clock_mhz=500``, ``dma_overlaps_compute=False``, ...) and its
    tiling rules (``row_only=True``, ``tile_multiple=8``, ``max_tiles=16``, or ``tiling={...}``);
    they are checked as the TOML loader checks a profile file, with the same one-line
    :class:`~memplan.errors.ConfigError` messages."""
    from memplan.config import load_profile, parse_size, profile_from_dict
    from memplan.plan.serialize import profile_to_json

    hw = load_profile(name_or_path)
    if overrides:
        data = profile_to_json(hw)
        tiling = dict(data.pop("tiling"))
        for key, value in overrides.items():
            if key in _TILING_KEYS:
                tiling[key] = value
            elif key == "tiling" and isinstance(value, Mapping):
                tiling.update(value)
            else:
                data[key] = value
        data["tiling"] = tiling
        if overrides.get("weight_codec") == "none":  # the codec's own keys go with it, unless given too
            for key in ("weight_codec_fallback", "scale_bias_bytes"):
                if key not in overrides:
                    data.pop(key, None)
        hw = profile_from_dict(data, source=f"hardware profile {hw.name!r} with overrides")
    if sram is not None:
        hw = hw.with_sram(parse_size(sram))
    return hw


# ---------------------------------------------------------------------------- solve
@dataclass(frozen=True)
class SolveSettings:
    """What a solve is asked for, checked: the solver config with its overrides, the forced
    weight residency, the objective and its custom weights, the recompute budget (a share of
    the untiled MACs or a MAC count: it becomes a MAC count once the model is known, in
    ``user`` of :meth:`constraints`)."""

    strategy: str
    objective: str
    config: SolverConfig
    user: UserConstraints
    weights: Mapping[str, float] | None = None
    max_recompute: RecomputeBudget | None = None

    def constraints(self, graph: Graph) -> UserConstraints:
        """The user constraints for ``graph``, with the recompute budget in MACs."""
        if self.max_recompute is None:
            return self.user
        from memplan.solve.budget import budget_macs

        return dataclasses.replace(self.user, max_recompute_macs=budget_macs(self.max_recompute, graph))


def _check_weights(weights: Mapping[str, float] | str) -> dict[str, float]:
    from memplan.solve import parse_weights

    if isinstance(weights, str):
        out = parse_weights(weights)
    else:
        out = dict(weights)
        shown = ",".join(f"{k}={v}" for k, v in out.items())
        for key, value in out.items():
            if key not in ("energy", "latency") or isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or value < 0:
                raise UsageError(f"--weights {shown!r} is not energy=W,latency=W with non-negative numbers")
        if not any(out.values()):
            raise UsageError("--weights must give a positive weight to energy or latency")
        out = {k: float(v) for k, v in out.items()}
    high = SOLVER_RANGES["balanced_energy"][1]  # only the ratio matters; CP-SAT needs bounded coefficients
    for key, value in out.items():
        if not (math.isfinite(value) and value <= high):
            raise UsageError(f"--weights {key}={value} must be a finite number from 0 to {high:,} (only "
                             "their ratio matters), e.g. --weights energy=0.7,latency=0.3")
    return out


def solve_settings(strategy: str = "cpsat", objective: str = "energy", config: PathLike | SolverConfig = "default",
                   time_limit: float | None = None, seed: int | None = None, max_fuse_depth: int | None = None,
                   keep: Iterable[str] = (), reload: Iterable[str] = (),
                   weights: Mapping[str, float] | str | None = None,
                   max_recompute: str | int | RecomputeBudget | None = None) -> SolveSettings:
    """Check the settings of a solve before any model is read (the arguments of :func:`solve`;
    ``memplan solve`` checks its flags with it). A value out of range is a one-line
    :class:`~memplan.errors.ConfigError` or :class:`~memplan.errors.UsageError`."""
    from memplan.config import load_solver_config
    from memplan.driver import STRATEGIES
    from memplan.solve import OBJECTIVES, UserConstraints
    from memplan.solve.budget import parse_recompute

    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    named = [o for o in OBJECTIVES if o != "custom"]
    if objective not in OBJECTIVES:
        raise UsageError(f"unknown objective {objective!r}: use one of {', '.join(named)}, or give weights")
    cfg = config if isinstance(config, SolverConfig) else load_solver_config(config)
    changes: dict[str, Any] = {}
    if time_limit is not None:
        changes["time_limit_s"] = time_limit
    if seed is not None:
        changes["random_seed"] = seed
    if max_fuse_depth is not None:
        changes["max_fuse_depth"] = max_fuse_depth
    if changes:
        cfg = dataclasses.replace(cfg, **changes)  # checked as a config file's values are
    mix = None
    if weights is not None:
        if objective not in ("energy", "custom"):
            raise UsageError(f"weights give a custom objective, not {objective!r}: leave the objective out")
        objective, mix = "custom", _check_weights(weights)
    elif objective == "custom":
        raise UsageError(f"the custom objective needs weights, e.g. energy=0.7,latency=0.3; or use one of "
                         f"{', '.join(named)}")
    keep, reload = frozenset(keep), frozenset(reload)
    if (keep or reload) and strategy != "cpsat":
        raise UsageError(f"--keep and --reload apply to --strategy cpsat only; the {strategy} baseline decides "
                         "weight residency itself")
    # the flag (or argument) when given, else the config's (a CP-SAT setting: the baselines, which
    # do not choose their recompute, ignore it); "unlimited" given lifts the config's budget
    if max_recompute is not None:
        budget = parse_recompute(max_recompute)
    elif strategy == "cpsat":
        budget = parse_recompute(cfg.max_recompute, f"solver config {cfg.name!r}: max_recompute", ConfigError)
    else:
        budget = None
    if budget is not None and strategy != "cpsat":
        raise UsageError(f"--max-recompute applies to --strategy cpsat only; the {strategy} baseline does not "
                         "choose its recompute")
    cfg = dataclasses.replace(cfg, max_recompute=None)  # the budget travels in the settings from here
    return SolveSettings(strategy, objective, cfg, UserConstraints(keep, reload), mix, budget)


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x:.2%}"


@dataclass(frozen=True, repr=False)
class Result:
    """A validated plan and how it was found.

    ``status``, ``objective`` (in ``objective_units``), ``bound``, ``gap``, ``plan_source`` and
    ``proof`` are the plan's solver record (``memplan.solve.run.SolverStats``). A baseline
    strategy (``greedy``, ``layer``) has none: its status is ``HEURISTIC``, its objective the
    plan's energy in fJ, with no bound, gap or proof. ``baselines``: the totals of the
    layer-by-layer and greedy plans; ``floor``: the compulsory traffic; ``timings``: seconds per
    stage of this run (never in the plan file)."""

    plan: Plan
    status: str
    objective: float
    bound: float | None
    gap: float | None
    objective_units: str
    baselines: Mapping[str, Totals]
    floor: Floor
    timings: Mapping[str, float]
    plan_source: str
    proof: str | None
    #: the sha256 of the model file the graph was loaded from (None for a graph built in memory)
    model_sha256: str | None = None
    outcome: SolveResult | None = field(default=None, compare=False)

    @classmethod
    def of(cls, outcome: SolveResult, model_sha256: str | None = None) -> Result:
        plan = outcome.plan
        solver = plan.provenance.solver
        if solver:
            status, objective, bound, gap = solver["status"], solver["objective"], solver["bound"], solver["gap"]
            units, source, proof = solver["objective_units"], solver["plan_source"], solver["proof"]
        else:
            status, objective, bound, gap = "HEURISTIC", float(plan.totals.energy_fj), None, None
            units, source, proof = "fJ", str(plan.provenance.strategy), None
        return cls(plan, status, objective, bound, gap, units, {k: p.totals for k, p in outcome.baselines.items()},
                   outcome.floor, dict(outcome.timings), source, proof, model_sha256, outcome)

    @property
    def hardware(self) -> HardwareProfile:
        assert self.outcome is not None
        return self.outcome.hw

    def to_json(self, model_sha256: str | None = None) -> dict[str, Any]:
        """The plan document (what ``memplan solve -o`` writes). ``model_sha256``: the model
        file's, by default the one :func:`load_model` recorded."""
        assert self.outcome is not None, "a Result made by memplan.solve"
        return self.outcome.to_json(model_sha256 or self.model_sha256)

    def save(self, path: PathLike, model_sha256: str | None = None) -> None:
        """Write the plan file, atomically (a temporary file beside it, then a rename)."""
        from memplan.plan.serialize import write_json_atomic

        write_json_atomic(path, self.to_json(model_sha256))

    def __repr__(self) -> str:
        t = self.plan.totals
        gap = "" if self.gap is None else f", gap={self.gap:.2%}"
        return (f"Result({self.plan.graph_name!r}, {self.plan.provenance.strategy}, status={self.status}{gap}, "
                f"energy={t.energy_pj:,.0f} pJ, dram={t.dram_total:,} B, cycles={t.cycles:,}, "
                f"sram_peak={t.sram_peak:,} B of {self.plan.sram_bytes:,})")

    def _repr_html_(self) -> str:
        t = self.plan.totals
        columns = ["plan", "floor", *self.baselines]
        rows: list[tuple[str, list[float | None]]] = [
            ("energy (pJ)", [t.energy_pj, self.floor.energy_fj / 1000, *(b.energy_pj for b in self.baselines.values())]),
            ("DRAM total (B)", [t.dram_total, self.floor.dram_total, *(b.dram_total for b in self.baselines.values())]),
            ("cycles", [t.cycles, None, *(b.cycles for b in self.baselines.values())]),
            ("SRAM peak (B)", [t.sram_peak, None, *(b.sram_peak for b in self.baselines.values())]),
        ]
        head = "".join(f"<th>{html.escape(c)}</th>" for c in ["", *columns])
        body = "".join(
            f"<tr><td>{html.escape(label)}</td>"
            + "".join(f"<td style='text-align:right'>{'' if v is None else f'{v:,.0f}'}</td>" for v in values)
            + "</tr>" for label, values in rows)
        gap = f", gap {_pct(self.gap)}" if self.gap is not None else ""
        caption = (f"{html.escape(self.plan.graph_name)}: {html.escape(str(self.plan.provenance.strategy))} plan, "
                   f"SRAM {self.plan.sram_bytes:,} B, {len(self.plan.decisions.groups)} groups; "
                   f"<b>{html.escape(self.status)}</b>{gap} ({html.escape(self.plan_source)})")
        return f"<table><caption>{caption}</caption><tr>{head}</tr>{body}</table>"


def solve(graph: Graph, hw: HardwareProfile, objective: str = "energy", strategy: str = "cpsat",
          time_limit: float | None = None, seed: int | None = None, max_fuse_depth: int | None = None,
          keep: Iterable[str] = (), reload: Iterable[str] = (), weights: Mapping[str, float] | str | None = None,
          config: PathLike | SolverConfig = "default", progress: Progress | None = None,
          max_recompute: str | int | RecomputeBudget | None = None) -> Result:
    """Plan ``graph`` on ``hw``: fusion, tiling, residency, weights and SRAM offsets.

    ``strategy``: ``cpsat`` (the default; computes the baselines too), ``greedy`` or ``layer``.
    ``objective``: ``energy``, ``latency``, ``balanced`` or ``memory``; ``weights``
    (``{"energy": 0.7, "latency": 0.3}`` or ``"energy=0.7,latency=0.3"``) gives a custom mix.
    ``config``: a solver config name (``default``, ``fast``, ``thorough``), a ``.toml`` path or a
    :class:`~memplan.config.SolverConfig`; ``time_limit`` (seconds for the whole solve), ``seed``
    and ``max_fuse_depth`` override it. ``keep`` / ``reload``: layers whose weights are forced to
    stay in SRAM / to reload per tile. ``progress``: a :class:`memplan.solve.run.Progress` that
    hears the stages and the search. ``max_recompute``: the most MACs the plan may spend beyond
    the untiled network, as a share of its MACs (``"10%"``) or a MAC count (``250000`` or
    ``"250000"``); a hard constraint with every objective (with ``memory``: the smallest SRAM
    within it, then the cheapest energy at that size), recorded in the plan for ``memplan
    verify``; None or ``"unlimited"``: no budget. Every plan returned has passed the validator."""
    from memplan.driver import plan_graph

    s = solve_settings(strategy, objective, config, time_limit, seed, max_fuse_depth, keep, reload, weights,
                       max_recompute)
    outcome = plan_graph(graph, hw, strategy=s.strategy, objective=s.objective, config=s.config, user=s.constraints(graph),
                         weights=s.weights, progress=progress)
    return Result.of(outcome, _model_sha256_of(graph))


# ---------------------------------------------------------------------------- plans and verification
def load_plan(path: PathLike) -> tuple[Plan, HardwareProfile]:
    """The plan and hardware profile in a plan file, checked against the plan schema first (a
    malformed file is a one-line :class:`~memplan.errors.PlanError` naming the field)."""
    from memplan.plan.serialize import load_plan_file

    plan, hw, _ = load_plan_file(path)
    return plan, hw


@dataclass(frozen=True)
class Verification(VerifyReport):
    """A :class:`memplan.execute.verify.VerifyReport` that renders in a notebook."""

    @classmethod
    def of(cls, report: VerifyReport) -> Verification:
        return cls(**{f.name: getattr(report, f.name) for f in dataclasses.fields(report)})

    def _repr_html_(self) -> str:
        m, p = self.measured, self.predicted
        rows = [("DRAM read, feature maps (B)", m.dram_read_fm, p.dram_read_fm),
                ("DRAM write, feature maps (B)", m.dram_write_fm, p.dram_write_fm),
                ("DRAM read, weights (B)", m.dram_read_weights, p.dram_read_weights),
                ("DRAM total (B)", m.dram_total, p.dram_total), ("MACs", m.macs, p.macs),
                ("SRAM peak (B)", self.sram_peak, self.sram_peak_planned)]
        body = "".join(f"<tr><td>{label}</td><td style='text-align:right'>{got:,}</td>"
                       f"<td style='text-align:right'>{want:,}</td></tr>" for label, got, want in rows)
        verdict = "verified" if self.passed else "NOT verified"
        caption = (f"{html.escape(self.model)}: <b>{verdict}</b>, bit-exact {'yes' if self.bit_exact else 'no'} "
                   f"({len(self.tensors)} tensors, seed {self.seed}), {self.commands:,} commands, "
                   f"{self.wall_time_s:.1f} s")
        failure = f"<p>{html.escape(self.failure)}</p>" if self.failure else ""
        return (f"<table><caption>{caption}</caption><tr><th></th><th>measured</th><th>plan</th></tr>{body}</table>"
                f"{failure}")


def verify(model: PathLike | Graph, plan: PathLike | Result | Mapping[str, Any], seed: int = 0) -> Verification:
    """Check everything a plan claims and execute it tile by tile against the untiled int8
    reference (``memplan verify``; :mod:`memplan.execute.verify` lists the checks).

    ``model``: the model file, or a graph (from :func:`load_model`: its file's sha256 is then
    checked too). ``plan``: a plan file, a :class:`Result` or a plan document. Raises a one-line
    :class:`~memplan.errors.VerificationError` (or ``PlanError``) naming the first fault."""
    from memplan.driver import verify_model_document
    from memplan.execute.verify import verify_document
    from memplan.ir.graph import Graph
    from memplan.plan.serialize import read_plan_document

    if isinstance(plan, Result):
        doc = plan.to_json()
    elif isinstance(plan, Mapping):
        doc = dict(plan)
    else:
        doc = read_plan_document(plan)
    if isinstance(model, Graph):
        return Verification.of(verify_document(model, doc, _model_sha256_of(model), seed))
    return Verification.of(verify_model_document(model, doc, seed=seed))
