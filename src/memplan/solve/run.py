"""Plan with CP-SAT, anytime: the best valid plan in hand is always returned, with its proven gap.

The solve is a sequence of stages, each handing a frozen record to the next::

    _layer_plan    feasibility check and layer-by-layer plan (always)
    _first_plans   the greedy plan
    _candidates    every (group, tiling) candidate, pruned
    _dp_stage      the DP's proven lower bound; warm starts (greedy, the DP's path) placed
    _search        the CP-SAT model, hinted with the best warm start, searched
    _finish        the cheapest plan among all of them, rebuilt, validated, with its bound

**Budget.** ``time_limit_s`` is the budget of the whole solve. Every stage after the
layer-by-layer plan runs against one :class:`Deadline`, less a reserve for rebuilding and
validating the plan at the end. A stage that reaches it stops (named in the stats'
``cut_short``) and the solve goes on with what it has: greedy stopped between groups
finishes layer by layer (``greedy_partial``); the candidate enumeration and the DP stop
outright; the search starts only if the model can be built and searched a little in the time
left, and its limit is what is left less a margin for CP-SAT's overrun. The layer-by-layer
plan is the cheapest valid plan to get, so it is computed whatever the limit; when even it
and its validation cannot be had within the limit, the stats say ``limit_too_short`` and it
is returned as soon as it is validated. Deterministic configs bound CP-SAT's deterministic
time instead and give preparation no wall-clock deadline, so their plans do not depend on
the machine's speed. Fallback plans exist only for the plain problem (no memory objective,
no forced weights, a profile that may spill): otherwise preparation runs to completion and
only the search is bounded, since cutting it short could only end without a plan.

**Proof.** A plan is OPTIMAL only when proven: CP-SAT proved it, or (energy objective) the
plan costs exactly a proven lower bound. When the warm start costs the DP's bound, CP-SAT
does not run at all (``proof: "dp_bound"``). The bound is the best of the DP's and CP-SAT's;
without either, for the energy objective, the compulsory-traffic floor (``proof: "floor"``
if a plan reaches it). ``gap = (objective - bound) / objective``.

**Ctrl-C** during the search stops it (a SIGINT handler installed in the main thread for the
search only, calling ``stop_search``); the best plan in hand is returned, marked
``interrupted`` (with no plan in hand, as for the memory objective before CP-SAT's first
solution, KeyboardInterrupt is raised). A Ctrl-C anywhere else raises KeyboardInterrupt.

**Plan bytes (a decision, from measurements).** The solver record in the plan holds no
wall-clock figure: timings go to :attr:`SolveResult.timings`. CP-SAT's deterministic time is
kept out of the plan too (it differs in the third decimal between identical interleaved
runs), and its conflict count goes in only for deterministic configs. What is left depends
only on the plan found, and that is reproducible with the default (wall-clock) config
whenever the DP bound proves the warm start (MobileNetV2 @224 at 256 KiB, most small zoo
cases), whenever CP-SAT proves the warm start optimal (ties go to the warm start, not to
CP-SAT's copy of it), and for fallback plans reached the same way. The search itself keeps
CP-SAT's parallel portfolio under a wall-clock limit: interleaving it (reproducible up to
where it stops) made resnet8 at 8 KiB take 4.4-4.8 s to prove instead of 0.8 s, and a
wall-clock stop would still depend on timing. Placement (:mod:`memplan.pack`, an exact search
over canonical packings) stops at its first packing, in a fixed order, so its offsets are the
same on every run; a deterministic config bounds it by search nodes instead of seconds.

The plan is always rebuilt from the decoded decisions and offsets by the same code the
baselines use, checked by the independent validator, and its cost compared with the solver's
objective value: they must be equal, or the model and the cost code disagree (a bug).
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Protocol

from ortools.sat.python import cp_model

from memplan.alloc import extent, first_fit
from memplan.pack import pack_result
from memplan.baselines import CostCache, Floor, check_feasible, floor, greedy, layer_by_layer
from memplan.config import HardwareProfile, SolverConfig
from memplan.errors import InfeasibleError, MemplanError, UsageError
from memplan.geometry.group import GroupShape
from memplan.ir.graph import Graph
from memplan.plan.build import build_plan, cost_totals, plan_blocks, resolve
from memplan.plan.prefetch import buffer_weights, build_buffered, stream_weights
from memplan.plan.model import Decisions, GroupDecision, Plan, Provenance, Totals
from memplan.plan.serialize import plan_to_json
from memplan.plan.validate import validate_plan
from memplan.solve.budget import budget_macs, candidate_recompute, describe, parse_recompute
from memplan.solve.candidates import CandidateSet, enumerate_candidates
from memplan.solve.dp import BoundaryDP, DPResult
from memplan.solve.memory import Slot, add_memory
from memplan.solve.model import UserConstraints, Vars, build_decisions
from memplan.solve.objective import Terms, build_cycles, build_energy

OBJECTIVES = ("energy", "latency", "balanced", "memory", "custom")

PLACE_LIMIT_S = 3.0  # placing a warm start's buffers where first fit fails (memplan.pack)
PLACE_NODES = 30_000  # the same, in search nodes, for deterministic configs (about 3 s)
DP_SLACKS = (0.0, 0.01, 0.03, 0.05)  # capacity margins tried for the DP path until one can be placed
# measured on MobileNetV2 and DenseNet-121 @224 (benchmarks/bench_anytime.py): building the
# CP-SAT model takes ~0.19 ms per candidate, rebuilding and validating a plan ~6 ms per
# layer, and CP-SAT overruns its time limit by up to ~1.3 s (presolve) on DenseNet-121
BUILD_S_PER_CANDIDATE = 0.25e-3
FINISH_S_PER_LAYER = 0.006
FINISH_PER_LAYER_PLAN = 2.0  # the reserve is at least this many times the layer-by-layer stage
MIN_SEARCH_S = 1.0  # a search shorter than this is not started when a fallback plan is in hand
OVERRUN_SHARE, OVERRUN_MAX_S = 0.2, 1.5  # of the search time left, kept back for CP-SAT's presolve overrun
MIN_SEARCH_SHARE = 0.1  # without a fallback plan, CP-SAT searches at least this share of the limit


class Progress(Protocol):
    """Where a long solve reports what it is doing (the CLI shows it as a live line)."""

    def stage(self, text: str) -> None:
        """A preparation stage begins (candidates, baselines, DP bound, ...)."""

    def search(self, objective: float, bound: float, seconds: float) -> None:
        """The best plan's objective or the proven bound changed; seconds since the solve began."""


class _NoProgress:
    def stage(self, text: str) -> None:
        pass

    def search(self, objective: float, bound: float, seconds: float) -> None:
        pass


@dataclass(frozen=True)
class SolverStats:
    """What the plan's ``solver`` record says. ``plan_source``: where the plan came from
    (``cpsat``, a warm start such as ``dp0`` or ``greedy``, or ``layer``); ``proof``: what
    proved it optimal (``cpsat``, ``dp_bound``) or None; ``cut_short``: stages the time limit
    cut short or skipped; ``counters_in_plan``: the search ran bounded by deterministic time,
    so its conflict count is reproducible and goes into the plan. CP-SAT's deterministic time
    is not (it varies in the third decimal between identical interleaved runs): it is kept
    here and in the timings, never in the plan."""

    status: str
    objective: float
    bound: float
    gap: float
    objective_units: str
    deterministic_time: float
    candidates: int
    candidates_generated: int
    pruned_sram: int
    pruned_dominated: int
    booleans: int
    conflicts: int
    hint: str | None
    plan_source: str = "cpsat"
    proof: str | None = None
    interrupted: bool = False
    cut_short: tuple[str, ...] = ()
    counters_in_plan: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    #: the energy of the best warm start CP-SAT was given (None: none). Not in the plan: when
    #: the plan is not that warm start, nothing in the plan file can prove the figure
    warm_start_energy_fj: int | None = None

    def to_json(self) -> dict[str, Any]:
        keys = ["status", "objective", "bound", "gap", "objective_units", "candidates", "candidates_generated",
                "pruned_sram", "pruned_dominated", "booleans", "hint", "plan_source", "proof", "interrupted"]
        if self.counters_in_plan:
            keys[5:5] = ["conflicts"]
        d: dict[str, Any] = {k: getattr(self, k) for k in keys}
        d["cut_short"] = list(self.cut_short)
        d.update(self.extra)
        return d


@dataclass(frozen=True)
class SolveResult:
    """The outcome of one solve, whatever the strategy: the validated plan (its provenance
    holds the strategy, objective and solver record), the compulsory floor, the baselines
    computed on the way (layer and greedy), the greedy depth they used (verify recomputes
    them), ``stats`` (CP-SAT only) and ``timings``: this run's seconds per stage ("layer",
    "greedy", "candidates", "dp_bound", "warm_start", "model", "search", "finish"),
    "search_limit", CP-SAT's "deterministic_time", "total". Timings describe this run only:
    they are shown, never written into the plan, so that the same model, config, profile and
    seed give the same plan bytes."""

    graph: Graph
    hw: HardwareProfile
    plan: Plan
    floor: Floor
    baselines: Mapping[str, Plan] = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)
    max_fuse_depth: int = SolverConfig.max_fuse_depth
    stats: SolverStats | None = None
    max_recompute_macs: int | None = None  # the recompute budget the plan was made within (None: none)

    def to_json(self, model_sha256: str | None) -> dict[str, Any]:
        """The plan document ``memplan solve -o`` writes (``model_sha256``: the model file's)."""
        shapes = {k: tuple(v) for k, v in self.graph.input_shapes.items()} or None  # verify needs no --input-shape
        plan = replace(self.plan, provenance=replace(self.plan.provenance, model_sha256=model_sha256,
                                                     model_input_shapes=shapes))
        settings: dict[str, Any] = {"max_fuse_depth": self.max_fuse_depth, "host_ops": self.graph.host_ops}
        if self.max_recompute_macs is not None:
            settings["max_recompute_macs"] = self.max_recompute_macs  # memplan verify checks the plan honours it
        claims = {"settings": settings,
                  "floor": self.floor.to_json(),
                  "baselines": {name: p.totals.to_json() for name, p in self.baselines.items()}}
        return plan_to_json(plan, self.hw, self.graph, claims)


def parse_weights(text: str) -> dict[str, float]:
    """``energy=0.7,latency=0.3`` -> weights (non-negative, not both zero)."""
    out: dict[str, float] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        try:
            if not sep or key not in ("energy", "latency"):
                raise ValueError
            out[key] = float(value)
            if out[key] < 0:
                raise ValueError
        except ValueError:
            raise UsageError(f"--weights {text!r} is not energy=W,latency=W with non-negative numbers") from None
    if not any(out.values()):
        raise UsageError("--weights must give a positive weight to energy or latency")
    return out


class _Callback(cp_model.CpSolverSolutionCallback):
    """Forwards improving solutions and bound improvements to a Progress."""

    def __init__(self, progress: Progress, scale: float, t_start: float, objective: float, bound: float) -> None:
        super().__init__()
        self.progress, self.scale, self.t_start = progress, scale, t_start
        self.objective, self.bound = objective, bound

    def on_solution_callback(self) -> None:
        self.objective = self.ObjectiveValue() * self.scale
        self.bound = max(self.bound, self.BestObjectiveBound() * self.scale)
        self.progress.search(self.objective, self.bound, time.perf_counter() - self.t_start)

    def on_bound(self, bound: float) -> None:
        self.bound = max(self.bound, bound * self.scale)
        self.progress.search(self.objective, self.bound, time.perf_counter() - self.t_start)


# ---------------------------------------------------------------------------- the budget
@dataclass(frozen=True)
class Deadline:
    """The wall-clock end of a solve; ``end`` None means no wall-clock limit (deterministic
    configs: they bound CP-SAT's deterministic time instead)."""

    start: float
    end: float | None

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        now = time.perf_counter()
        return cls(now, None if seconds is None else now + seconds)


    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self, reserve: float = 0.0) -> float:
        """Seconds until ``reserve`` seconds before the end (inf without a limit)."""
        return math.inf if self.end is None else self.end - reserve - time.perf_counter()

    def stopper(self, reserve: float = 0.0) -> Callable[[], bool] | None:
        """A callable saying the time is up (None without a limit), for stages that poll."""
        if self.end is None:
            return None
        at = self.end - reserve
        return lambda: time.perf_counter() > at


class _Cut(Exception):
    """A stage ran past its deadline (raised by :class:`_BudgetCache`)."""


class _BudgetCache(CostCache):
    """A :class:`CostCache` that stops the stage using it at a deadline: every group shape
    asked for checks the clock first (one check per group range the stage looks at)."""

    def __init__(self, graph: Graph, hw: HardwareProfile) -> None:
        super().__init__(graph, hw)
        self.stop: Callable[[], bool] | None = None

    @contextmanager
    def until(self, stop: Callable[[], bool] | None) -> Iterator[_BudgetCache]:
        self.stop = stop
        try:
            yield self
        finally:
            self.stop = None

    def shape(self, start: int, stop: int) -> GroupShape | None:
        if self.stop is not None and self.stop():
            raise _Cut
        return super().shape(start, stop)


class _Ledger:
    """Timings per stage and the stages cut short, as the solve goes; forwards stage names
    to the progress listener."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.timings: dict[str, float] = {}
        self.cut: list[str] = []
        self.too_short = False  # even the layer-by-layer plan and its validation overrun the limit

    @contextmanager
    def stage(self, key: str, text: str | None = None) -> Iterator[None]:
        if text:
            self.progress.stage(text)
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[key] = round(self.timings.get(key, 0.0) + time.perf_counter() - t, 3)

    def cut_short(self, key: str) -> None:
        if key not in self.cut:
            self.cut.append(key)


# ---------------------------------------------------------------------------- stage records
@dataclass(frozen=True)
class _Request:
    graph: Graph
    hw: HardwareProfile
    objective: str
    config: SolverConfig
    user: UserConstraints
    weights: Mapping[str, float]

    @property
    def plain(self) -> bool:
        """No memory objective and no forced weights: the DP applies, baselines are valid plans."""
        return self.objective != "memory" and not (self.user.force_keep or self.user.force_reload)

    @property
    def fallback(self) -> bool:
        """Plans made before the search (layer-by-layer, greedy, the DP path) can be returned."""
        return self.plain and not self.hw.feature_maps_in_sram

    @property
    def budget(self) -> int | None:
        return self.user.max_recompute_macs

    def within_budget(self, totals: Totals) -> bool:
        return self.budget is None or totals.recompute_macs <= self.budget

    def stopper(self, clock: Deadline, reserve: float) -> Callable[[], bool] | None:
        """When preparation stages must stop: at the deadline if a fallback plan can be
        returned instead; never otherwise (stopping early could only end without a plan)."""
        return clock.stopper(reserve) if self.fallback else None


@dataclass(frozen=True)
class _FirstPlans:
    baselines: Mapping[str, Plan]  # layer and greedy, complete: reported with the plan
    partial: Plan | None = None  # greedy cut short by the time limit, the rest layer by layer


@dataclass(frozen=True)
class _Warm:
    """A warm start: candidate indexes, decisions over them, offsets that fit, its totals."""

    chosen: tuple[int, ...]
    decisions: Decisions
    offsets: dict[str, int]
    totals: Totals

    @property
    def energy_fj(self) -> int:
        return self.totals.energy_fj


@dataclass(frozen=True)
class _DPStage:
    dp: DPResult | None  # the proven lower bound (None: not applicable, too many states, or cut short)
    warm: Mapping[str, _Warm]  # placed warm starts by name, greedy first (within the recompute budget)
    over_budget: tuple[str, ...] = ()  # warm starts dropped: their recompute is over the budget

    @property
    def best(self) -> tuple[str, _Warm] | None:
        if not self.warm:
            return None
        name = min(self.warm, key=lambda k: self.warm[k].energy_fj)  # ties: the first, greedy
        return name, self.warm[name]


@dataclass(frozen=True)
class _Searched:
    """What the CP-SAT search gave: its plan (decisions, offsets, objective) when it found one."""

    b: _Built
    status: str
    objective: float | None
    bound: float | None
    decisions: Decisions | None
    offsets: dict[str, int] | None
    deterministic_time: float
    conflicts: int
    interrupted: bool
    units: str
    extra: dict[str, Any]


@dataclass(frozen=True)
class _Option:
    """A valid plan in hand: where it came from, its objective value and how to build it."""

    source: str
    objective: float
    make: Callable[[], Plan]


# ---------------------------------------------------------------------------- stages
def _layer_plan(req: _Request, cache: _BudgetCache, log: _Ledger) -> Plan | None:
    """The feasibility check and the layer-by-layer plan, whatever the limit: the cheapest
    valid plan (None on profiles that keep every feature map in SRAM: no baseline applies)."""
    graph, hw = req.graph, req.hw
    if hw.feature_maps_in_sram:
        with log.stage("feasible", "checking that every layer fits"):
            check_feasible(graph, hw, cache)
        return None
    # layer_by_layer checks what check_feasible does, in the same order, with the same error
    with log.stage("layer", "checking that every layer fits: layer-by-layer plan"):
        return layer_by_layer(graph, hw, cache)


def _reserve(graph: Graph, log: _Ledger) -> float:
    """Seconds kept back for rebuilding and validating the plan: per layer, or, on a slow or
    busy machine, a multiple of what the layer-by-layer plan took (measured: validating takes
    1-2x as long as costing and building that plan)."""
    return max(FINISH_S_PER_LAYER * len(graph.layers), FINISH_PER_LAYER_PLAN * log.timings.get("layer", 0.0))


def _first_plans(req: _Request, cache: _BudgetCache, clock: Deadline, log: _Ledger, layer: Plan | None,
                 reserve: float) -> _FirstPlans:
    """The layer-by-layer plan, then greedy within the deadline: cut short, it finishes layer
    by layer and is kept apart from the baselines (it is not the greedy baseline)."""
    graph, hw = req.graph, req.hw
    if layer is None:
        return _FirstPlans({})
    if clock.left(reserve) < 0:
        log.too_short = True  # the cheapest valid plan cannot be had within the limit: returned anyway
    with log.stage("greedy", "greedy plan"):
        plan = greedy(graph, hw, req.config.max_fuse_depth, cache, halt=req.stopper(clock, reserve))
    if plan.provenance.partial:
        log.cut_short("greedy")
        return _FirstPlans({"layer": layer}, plan)
    return _FirstPlans({"layer": layer, "greedy": plan})


def _candidates(req: _Request, cache: _BudgetCache, clock: Deadline, log: _Ledger, reserve: float) -> CandidateSet | None:
    """The candidates (None when the deadline cut the enumeration short)."""
    with log.stage("candidates", "costing candidate groups and tilings"), cache.until(req.stopper(clock, reserve)):
        try:
            return enumerate_candidates(req.graph, req.hw, req.config.max_fuse_depth, cache)
        except _Cut:
            log.cut_short("candidates")
            return None


def _warm_start(cs: CandidateSet, graph: Graph, hw: HardwareProfile, decisions: Decisions,
                deterministic: bool = False, place_limit_s: float = PLACE_LIMIT_S,
                index: Mapping[tuple[int, int, object], int] | None = None) -> _Warm | None:
    """Express decisions (a baseline's or the DP's) over the candidates (a pruned one is
    replaced by the candidate that dominates it) and place them: first fit, else the exact
    allocator (:mod:`memplan.pack`, bounded by ``place_limit_s``, or by search nodes for a
    deterministic config). None when that fails or the decisions cannot be expressed.
    ``index`` maps candidate keys to indexes (:func:`_index`; else looked up one by one)."""
    chosen = []
    for gd in decisions.groups:
        key = (gd.start, gd.stop, gd.tiling)
        idx = cs.index_of(key) if index is None else index.get(key, cs.dominator.get(key))
        if idx is None:
            return None  # beyond max_fuse_depth
        chosen.append(idx)
    cands = cs.candidates
    dec = Decisions(tuple(GroupDecision(cands[i].start, cands[i].stop, cands[i].tiling) for i in chosen),
                    decisions.keep, decisions.resident)
    try:
        r = resolve(graph, hw, dec)
    except MemplanError:
        return None
    blocks = plan_blocks(r)
    offsets = first_fit(blocks, hw.sram_alignment)
    if extent(blocks, offsets) > hw.sram_bytes:
        if place_limit_s <= 0:
            return None
        placed = pack_result(blocks, hw.sram_bytes, time_limit_s=place_limit_s if not deterministic else 10 * PLACE_LIMIT_S,
                             max_nodes=PLACE_NODES if deterministic else None, alignment=hw.sram_alignment)
        if placed.offsets is None:
            return None
        offsets = dict(placed.offsets)
    return _Warm(tuple(chosen), dec, offsets, cost_totals(r, 0))


def _index(cs: CandidateSet) -> dict[tuple[int, int, object], int]:
    """Candidate key -> index (CandidateSet.index_of scans the candidates: slow on DenseNet)."""
    out: dict[tuple[int, int, object], int] = {}
    for i, c in enumerate(cs.candidates):
        out.setdefault(c.key, i)  # the first, as index_of
    return out


def _dp_stage(req: _Request, cs: CandidateSet, baselines: Mapping[str, Plan], clock: Deadline, log: _Ledger,
              reserve: float) -> _DPStage:
    """The DP's lower bound, then the warm starts: greedy's plan and the DP's path (at the
    full SRAM first, with growing margins for fragmentation while it cannot be placed)."""
    graph, hw, config = req.graph, req.hw, req.config
    if not req.plain:
        return _DPStage(None, {})
    stop = req.stopper(clock, reserve)
    with log.stage("dp_bound", "DP bound"):
        boundary_dp = BoundaryDP(graph, hw, cs.candidates)
        dp = boundary_dp.bound(stop=stop)
    if dp is None and stop is not None and stop():
        log.cut_short("dp_bound")
    warm: dict[str, _Warm] = {}
    if not config.warm_start:
        return _DPStage(dp, warm)
    with log.stage("warm_start", "warm start: DP path and placement"):
        # the DP path first: it is the better warm start, so it gets the time when time is short
        dp_warm: dict[str, _Warm] = {}
        index = _index(cs)
        for slack in DP_SLACKS:
            if stop is not None and stop():
                log.cut_short("dp_path")
                break
            path = boundary_dp.plan(slack, stop=stop)
            w = (_warm_start(cs, graph, hw, path.decisions, config.deterministic,
                             min(PLACE_LIMIT_S, clock.left(reserve)), index) if path is not None else None)
            if w is not None:
                dp_warm[f"dp{slack:g}"] = w
                break
        if "greedy" in baselines and not (stop is not None and stop()):
            w = _warm_start(cs, graph, hw, baselines["greedy"].decisions, config.deterministic,
                            min(PLACE_LIMIT_S, clock.left(reserve)), index)
            if w is not None:
                warm["greedy"] = w  # first: it wins ties
        warm.update(dp_warm)
    # a warm start over the recompute budget is neither a hint nor a plan to return
    over = [name for name, w in warm.items() if not req.within_budget(w.totals)]
    return _DPStage(dp, {k: w for k, w in warm.items() if k not in over}, tuple(over))


@dataclass
class _Built:
    vars: Vars
    slots: list[Slot]
    terms: Terms
    capacity: cp_model.IntVar | int


def _build(graph: Graph, hw: HardwareProfile, cs: CandidateSet, user: UserConstraints, memory_objective: bool,
           timed: bool = False) -> _Built:
    """The CP-SAT model; ``timed``: the objective counts cycles, so weight prefetching is a
    decision of the model (else memplan.plan.prefetch adds it to the decoded plan)."""
    v = build_decisions(graph, hw, cs.candidates, user, prefetch=timed)
    # buffers end at multiples of the alignment (reserved sizes): so does the capacity they fit in
    align = hw.sram_alignment
    cap: cp_model.IntVar | int = hw.sram_bytes // align * align
    if memory_objective:
        cap = v.model.new_int_var(0, hw.sram_bytes // align * align, "capacity")
        if align > 1:
            v.model.add(cap == align * v.model.new_int_var(0, hw.sram_bytes // align, "capacity_units"))
    slots = add_memory(graph, hw, v, cap)
    return _Built(v, slots, build_energy(graph, v, hw), cap)


def _slot_for_block(slots: list[Slot], name: str, groups: list[tuple[int, str]],
                    prefetch: frozenset[str] = frozenset(), double: frozenset[str] = frozenset()) -> Slot:
    """The CP-SAT slot of a plan block; ``groups`` gives each group's start and anchor,
    ``prefetch`` and ``double`` the decisions' prefetched and double-buffered layers (their
    weight buffers are other slots, memplan.solve.memory)."""
    head, _, rest = name.partition(".")
    if head == "res":
        key: tuple[str, int | None, str | None] = ("res", None, rest)
    elif head == "w":
        layer, _, kind = rest.rpartition(".")
        key = (kind + ("_pf" if layer in prefetch else "") + ("_db" if layer in double else ""), None, layer)
    else:
        a, anchor = groups[int(head[1:])]
        part, _, tensor = rest.partition(".")
        key = ("out", None, anchor) if part == "out" else (part, a, tensor or None)
    for s in slots:
        if (s.kind, s.start, s.key) == key:
            return s
    raise KeyError(name)


def _timed_hint(req: _Request, cs: CandidateSet, dps: _DPStage, baselines: Mapping[str, Plan]) -> tuple[str, _Warm] | None:
    """The hint for an objective that counts cycles: of the warm starts and the layer-by-layer
    plan, the best by that objective once prefetched as its plan would be (the energy-best warm
    start can be far from the fastest plan)."""
    graph, hw = req.graph, req.hw
    options = dict(dps.warm)
    layer = baselines.get("layer")
    if layer is not None and req.within_budget(layer.totals):
        w = _warm_start(cs, graph, hw, layer.decisions, place_limit_s=0)
        if w is not None:
            options["layer"] = w
    if not options:
        return None

    def value(name: str) -> float:
        w = options[name]
        return _objective_of(req, build_buffered(graph, hw, w.decisions, w.offsets).totals, layer)

    name = min(options, key=value)  # ties: the first (greedy, the DP's path, then layer)
    # then its weight-bound layers re-tiled where that lowers the objective (stream_weights):
    # CP-SAT rarely finds such a local move itself within its limit
    w = options[name]
    faster, _ = stream_weights(graph, hw, w.decisions, w.offsets, better=lambda new, old: (
        _objective_of(req, new, layer) < _objective_of(req, old, layer)))
    if faster.groups != w.decisions.groups:
        streamed = _warm_start(cs, graph, hw, faster, place_limit_s=0)
        if streamed is not None:
            options[f"{name}+streamed"] = streamed
            if value(f"{name}+streamed") < value(name):
                name = f"{name}+streamed"
    return name, options[name]


def _hint(b: _Built, graph: Graph, hw: HardwareProfile, warm: _Warm) -> None:
    v, model, dec = b.vars, b.vars.model, warm.decisions
    offsets: Mapping[str, int] = warm.offsets
    if v.prefetch or v.double:  # hint the warm start as it would be built: buffered where SRAM allows
        dec, found = buffer_weights(graph, hw, dec, warm.offsets)
        offsets = found if found is not None else first_fit(plan_blocks(resolve(graph, hw, dec)), hw.sram_alignment)
    model.clear_hints()
    sel = set(warm.chosen)
    for i, x in enumerate(v.x):
        model.add_hint(x, i in sel)
    for layer, k in v.keep.items():
        model.add_hint(k, layer in dec.keep)
    for t, lit in v.res.items():
        model.add_hint(lit, t in dec.resident)
    for layer, lit in v.prefetch.items():
        model.add_hint(lit, layer in dec.prefetch)
    for layer, lit in v.double.items():
        model.add_hint(lit, layer in dec.double)
    for (i, t), lit in v.load.items():
        model.add_hint(lit, i in sel and t not in dec.resident)
    internal = {cb.tensor for i in sel for cb in v.cands[i].core if cb.tensor not in v.cands[i].escapes}
    for t, lit in v.store.items():
        model.add_hint(lit, t not in internal and t not in dec.resident)
    spatial = {w.layer: (w.reload_bytes // w.total_bytes if w.total_bytes else 1, w.total_bytes)
               for i in sel for w in v.cands[i].weights}
    for (layer, tiles, total), lit in v.reload.items():
        model.add_hint(lit, layer not in dec.keep and spatial.get(layer) == (tiles, total))
    for layer, pairs in v.keep_bytes.items():
        if len(pairs) > 1:
            for total, lit in pairs:
                model.add_hint(lit, layer in dec.keep and spatial.get(layer, (0, -1))[1] == total)
    groups = [(gd.start, graph.layers[gd.stop - 1].output) for gd in dec.groups]
    for name, offset in offsets.items():
        try:
            slot = _slot_for_block(b.slots, name, groups, dec.prefetch, dec.double)
        except KeyError:
            continue
        model.add_hint(slot.offset, offset)


def _params(config: SolverConfig, time_limit: float) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    p = solver.parameters
    p.num_workers = config.workers
    p.random_seed = config.random_seed
    p.log_search_progress = config.log_progress
    p.cp_model_probing_level = 0  # probing costs seconds of presolve and gains nothing measurable here
    p.catch_sigint_signal = False  # Ctrl-C is ours (_solve_interruptible): we must know it happened
    if config.deterministic:
        p.interleave_search = True
        p.max_deterministic_time = time_limit
    else:
        p.max_time_in_seconds = time_limit
    return solver


def _solve_interruptible(solver: cp_model.CpSolver, model: cp_model.CpModel,
                         cb: cp_model.CpSolverSolutionCallback | None) -> tuple[int, bool]:
    """Run the search; a SIGINT meanwhile stops it (``stop_search``) instead of raising.
    Returns the status and whether it was interrupted. The handler is installed only in the
    main thread (the only one Python delivers signals to) and only for the search: the search
    runs in a worker thread while the main thread waits, so that the handler can run."""
    if threading.current_thread() is not threading.main_thread():
        return solver.solve(model, cb), False
    interrupted = threading.Event()

    def on_sigint(signum: int, frame: object) -> None:
        interrupted.set()
        solver.stop_search()

    outcome: list[int] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(solver.solve(model, cb))
        except BaseException as exc:  # handed to the main thread
            failure.append(exc)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        worker = threading.Thread(target=run, name="memplan-cpsat", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.05)
            if interrupted.is_set():
                solver.stop_search()  # again: a SIGINT before the search began is not lost
    finally:
        signal.signal(signal.SIGINT, previous)
    if failure:
        raise failure[0]
    return outcome[0], interrupted.is_set()


def _decode(b: _Built, solver: cp_model.CpSolver) -> Decisions:
    v = b.vars
    chosen = sorted((i for i, x in enumerate(v.x) if solver.Value(x)), key=lambda i: v.cands[i].start)
    groups = tuple(GroupDecision(v.cands[i].start, v.cands[i].stop, v.cands[i].tiling) for i in chosen)
    keep = frozenset(layer for layer, k in v.keep.items() if solver.Value(k))
    res = frozenset(t for t, r in v.res.items() if solver.Value(r))
    prefetch = frozenset(layer for layer, p in v.prefetch.items() if solver.Value(p))
    double = frozenset(layer for layer, d in v.double.items() if solver.Value(d))
    return Decisions(groups, keep, res, prefetch, double)


def _offsets(b: _Built, solver: cp_model.CpSolver, graph: Graph, hw: HardwareProfile, dec: Decisions) -> dict[str, int]:
    r = resolve(graph, hw, dec)
    groups = [(gd.start, graph.layers[gd.stop - 1].output) for gd in dec.groups]
    out = {}
    for blk in plan_blocks(r):
        slot = _slot_for_block(b.slots, blk.name, groups, dec.prefetch, dec.double)
        out[blk.name] = solver.Value(slot.offset)
    return out


STATUS = {cp_model.OPTIMAL: "OPTIMAL", cp_model.FEASIBLE: "FEASIBLE", cp_model.INFEASIBLE: "INFEASIBLE",
          cp_model.MODEL_INVALID: "MODEL_INVALID", cp_model.UNKNOWN: "UNKNOWN"}


def _objective_of(req: _Request, totals: Totals, layer: Plan | None) -> float:
    """A plan's value of the objective CP-SAT minimises (for plans made outside CP-SAT)."""
    if req.objective == "energy":
        return float(totals.energy_fj)
    if req.objective == "latency":
        return float(totals.cycles)
    w = _mix_weights(req)
    assert layer is not None
    return (totals.energy_fj * w.get("energy", 0.0) / layer.totals.energy_fj
            + totals.cycles * w.get("latency", 0.0) / max(layer.totals.cycles, 1))


def _mix_weights(req: _Request) -> dict[str, float]:
    if req.objective == "balanced":
        return {"energy": req.config.balanced_energy, "latency": req.config.balanced_latency}
    return dict(req.weights)


def _set_objective(req: _Request, b: _Built, dp: DPResult | None, layer: Plan | None) -> tuple[float, str]:
    """Give the model its objective; returns the scale of the objective value and its units."""
    model = b.vars.model
    if req.objective == "energy":
        # the objective is one variable whose domain starts at the DP relaxation's proven lower
        # bound (solve/dp.py), so CP-SAT's own bound includes it
        lb = -(-dp.bound_fj // b.terms.energy_scale) if dp is not None else 0
        energy = model.new_int_var(min(lb, b.terms.energy_max), b.terms.energy_max, "energy")
        model.add(energy == b.terms.energy)
        model.minimize(energy)
        return b.terms.energy_scale, "fJ"
    if req.objective == "latency":
        model.minimize(build_cycles(req.graph, b.vars, req.hw))
        return 1.0, "cycles"
    if req.objective in ("balanced", "custom"):
        if layer is None:
            raise UsageError("the balanced objective normalises by the layer-by-layer baseline, which this profile cannot run; use energy or latency")
        w = _mix_weights(req)
        e_ref = layer.totals.energy_fj / b.terms.energy_scale
        c_ref = max(layer.totals.cycles, 1)
        cycles = build_cycles(req.graph, b.vars, req.hw)
        model.minimize(b.terms.energy * (w.get("energy", 0.0) / e_ref) + cycles * (w.get("latency", 0.0) / c_ref))
        return 1.0, "normalised"
    weighted = _weighted_recompute(req, b)
    if weighted is not None:
        w, recompute = weighted
        model.minimize(b.capacity * w.denominator + recompute * w.numerator)
        return 1.0 / w.denominator, "weighted bytes"  # SRAM bytes + weight x recompute MACs
    model.minimize(b.capacity)
    return 1.0, "bytes"


def _weighted_recompute(req: _Request, b: _Built) -> tuple[Fraction, cp_model.LinearExprT] | None:
    """With the memory objective and a ``recompute_weight``: the weight as an exact fraction
    and the plan's recompute MACs as a linear expression (the cost model's integers)."""
    if req.objective != "memory" or not req.config.recompute_weight:
        return None
    w = Fraction(req.config.recompute_weight).limit_denominator(1000)
    extra = candidate_recompute(req.graph, b.vars.cands)
    most = sum(e for e in extra if e > 0)
    if req.hw.sram_bytes * w.denominator + most * w.numerator >= 1 << 62:
        raise UsageError(f"recompute_weight {req.config.recompute_weight} is too large for this model's recompute "
                         f"({most:,} MACs at most): CP-SAT's objective must fit 62 bits; give a smaller weight")
    return w, sum(e * x for e, x in zip(extra, b.vars.x) if e)


def _search(req: _Request, cs: CandidateSet, baselines: Mapping[str, Plan], dps: _DPStage, clock: Deadline,
            log: _Ledger, reserve: float, live: bool) -> _Searched | None:
    """Build the model, hint it with the best warm start, search. None when a fallback plan
    is in hand and too little time is left to build the model and search a little."""
    graph, hw, config = req.graph, req.hw, req.config
    have_fallback = req.fallback and bool(baselines)  # layer-by-layer at least
    if have_fallback and clock.left(reserve) < BUILD_S_PER_CANDIDATE * len(cs.candidates) + MIN_SEARCH_S:
        log.cut_short("search")
        return None
    memory_obj = req.objective == "memory"
    with log.stage("model", f"building the CP-SAT model ({len(cs.candidates):,} candidates)"):
        timed = req.objective not in ("energy", "memory")
        b = _build(graph, hw, cs, req.user, memory_obj, timed=timed)
        best_warm = _timed_hint(req, cs, dps, baselines) if timed else dps.best
        if best_warm is not None and best_warm[1].decisions.resident <= frozenset(b.vars.res):
            _hint(b, graph, hw, best_warm[1])
        scale, units = _set_objective(req, b, dps.dp, baselines.get("layer"))

    def limit(share: float = 1.0) -> float:
        if config.deterministic:
            return config.time_limit_s
        left = clock.left(reserve)
        left = (left - min(OVERRUN_SHARE * left, OVERRUN_MAX_S)) * share
        return left if have_fallback else max(left, MIN_SEARCH_SHARE * config.time_limit_s)

    # the memory objective solves twice: half of what is left for the smallest SRAM
    search_limit = limit(0.5 if memory_obj else 1.0)
    log.timings["search_limit"] = round(search_limit, 3)
    if have_fallback and search_limit < MIN_SEARCH_S / 2:  # building the model took longer than expected
        log.cut_short("search")
        return None
    solver = _params(config, search_limit)
    cb = None
    if live:
        # what the search starts from: the warm start's energy and the DP's bound
        start_obj = float(best_warm[1].energy_fj) if best_warm is not None and req.objective == "energy" else math.inf
        start_bound = float(dps.dp.bound_fj) if req.objective == "energy" and dps.dp is not None else 0.0
        log.progress.stage("CP-SAT search")
        if math.isfinite(start_obj):
            log.progress.search(start_obj, start_bound, clock.elapsed())
        cb = _Callback(log.progress, scale, clock.start, start_obj, start_bound)
        solver.best_bound_callback = cb.on_bound
    with log.stage("search"):
        status, interrupted = _solve_interruptible(solver, b.vars.model, cb)
    if status == cp_model.INFEASIBLE:
        raise InfeasibleError(_why_infeasible_budget(req, cs, limit(0.25)) or _why_infeasible(graph, hw, req.objective))
    extra: dict[str, Any] = {}
    dtime, conflicts = solver.deterministic_time, solver.num_conflicts
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return _Searched(b, STATUS[status], None, None, None, None, dtime, conflicts, interrupted, units, extra)
    obj_value, bound = solver.ObjectiveValue() * scale, solver.BestObjectiveBound() * scale
    status_name = STATUS[status]
    if memory_obj and not interrupted:
        # phase 2: at the smallest capacity found (and, weighted, its recompute), the cheapest
        # plan in energy
        assert isinstance(b.capacity, cp_model.IntVar)
        cap_found = solver.Value(b.capacity)
        extra.update(min_sram=cap_found, min_sram_status=status_name)
        model = b.vars.model
        weighted = _weighted_recompute(req, b)
        if weighted is None:
            extra["min_sram_bound"] = int(solver.BestObjectiveBound())
        else:
            recompute = weighted[1]
            found = recompute if isinstance(recompute, int) else solver.Value(recompute)
            extra.update(min_sram_recompute_macs=found, recompute_weight=str(weighted[0]))
            if not isinstance(recompute, int):
                model.add(recompute <= found)
        model.add(b.capacity <= cap_found)
        model.clear_hints()
        for var in b.vars.x:
            model.add_hint(var, solver.Value(var))
        model.minimize(b.terms.energy)
        solver2 = _params(config, limit())
        with log.stage("search"):
            status2, interrupted = _solve_interruptible(solver2, model, None)
        if status2 in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            solver = solver2
            extra.update(energy_status=STATUS[status2], energy_fj=solver2.ObjectiveValue() * b.terms.energy_scale)
            dtime += solver2.deterministic_time
            conflicts += solver2.num_conflicts
    dec = _decode(b, solver)
    offsets = _offsets(b, solver, graph, hw, dec)
    return _Searched(b, status_name, obj_value, bound, dec, offsets, dtime, conflicts, interrupted, units, extra)


def _options(req: _Request, first: _FirstPlans, dps: _DPStage, searched: _Searched | None) -> list[_Option]:
    """The valid plans in hand: the warm start, CP-SAT's, greedy, layer-by-layer, a greedy
    plan cut short (finished layer by layer). The order breaks ties: when CP-SAT proves the
    warm start optimal, the warm start is returned, since it does not depend on how the
    parallel search ran (the same plan bytes on every run). Plans made outside CP-SAT count
    only for the plain problem."""
    graph, hw = req.graph, req.hw
    out: list[_Option] = []
    if searched is not None and searched.decisions is not None and searched.objective is not None:
        dec, offsets = searched.decisions, searched.offsets
        if req.objective == "memory":  # prefetching must not raise the SRAM peak the search minimised
            def make() -> Plan:
                peak = build_plan(graph, hw, dec, offsets).totals.sram_peak
                return build_buffered(graph, hw, dec, offsets, capacity=peak)
        else:
            def make() -> Plan:
                return build_buffered(graph, hw, dec, offsets)
        out.append(_Option("cpsat", searched.objective, make))
    if not req.fallback:
        return out
    baselines = first.baselines
    layer = baselines.get("layer")
    best = dps.best
    if best is not None:
        name, w = best
        same = baselines.get(name)  # a baseline's own decisions: its plan (first-fit offsets, prefetches and all)
        if same is not None and replace(same.decisions, prefetch=frozenset()) == w.decisions:
            warm = _Option(name, _objective_of(req, same.totals, layer), lambda: same)
        else:
            warm = _Option(name, _objective_of(req, w.totals, layer), lambda: build_buffered(graph, hw, w.decisions, w.offsets))
        # the normalised mixes compare floating-point values computed two ways: CP-SAT's first
        out.insert(0 if req.objective in ("energy", "latency") else len(out), warm)
    plans = [("greedy", baselines.get("greedy")), ("layer", layer), ("greedy_partial", first.partial)]
    for name, plan in plans:
        if plan is not None and req.within_budget(plan.totals):  # built already, with first-fit offsets
            out.append(_Option(name, _objective_of(req, plan.totals, layer), lambda plan=plan: plan))
    return out


def _finish(req: _Request, cs: CandidateSet | None, first: _FirstPlans, dps: _DPStage,
            searched: _Searched | None, log: _Ledger, clock: Deadline) -> SolveResult:
    """The cheapest plan in hand, rebuilt, validated and checked against its objective, with
    the best proven bound and an honest status."""
    graph, hw, objective = req.graph, req.hw, req.objective
    options = _options(req, first, dps, searched)
    if not options:
        if searched is None or searched.status != "UNKNOWN":
            raise InfeasibleError((_why_infeasible_budget(req, cs, 1.0) if cs is not None else None)
                                  or _why_infeasible(graph, hw, objective))
        if searched.interrupted:
            raise KeyboardInterrupt  # Ctrl-C before any plan: as anywhere else outside the search
        raise InfeasibleError(f"CP-SAT found no plan within {req.config.time_limit_s:g} s (status UNKNOWN): "
                              "raise time_limit_s in the solver config, or use --strategy greedy")
    best = min(options, key=lambda o: o.objective)  # the first of equals (see _options)
    bounds: list[tuple[float, str]] = []  # proven lower bounds, and what proves them
    if objective == "energy" and dps.dp is not None:
        bounds.append((float(dps.dp.bound_fj), "dp_bound"))
    if searched is not None and searched.bound is not None:
        bounds.append((searched.bound, "cpsat"))
    if objective == "energy" and not bounds:
        bounds.append((float(floor(graph, hw).energy_fj), "floor"))  # compulsory traffic: below every plan
    bound = max((b for b, _ in bounds), default=0.0)
    value = best.objective
    # proven optimal: by CP-SAT, or because the plan costs exactly a proven lower bound of the
    # energy (the model's energy is exact; its cycles only bound a plan's from above, and the
    # normalised mixes are floating point)
    if best.source == "cpsat" and searched is not None and searched.status == "OPTIMAL":
        proof: str | None = "cpsat"
    elif objective == "energy" and value <= bound:
        proof = next(name for b, name in bounds if value <= b)
    else:
        proof = None
    status = "OPTIMAL" if proof else "FEASIBLE"
    gap = 0.0 if value == 0 or proof else max(0.0, (value - bound) / abs(value))
    units = searched.units if searched is not None else {"energy": "fJ", "latency": "cycles"}.get(objective, "normalised")
    extra: dict[str, Any] = {}
    if dps.dp is not None:
        extra.update(dp_bound_fj=dps.dp.bound_fj, dp_states=dps.dp.peak_states)
    warm = dps.best
    if log.too_short:
        extra["limit_too_short"] = True
    if dps.over_budget:
        extra["over_budget"] = list(dps.over_budget)
    if searched is not None:
        extra.update(search_status=searched.status, **searched.extra)
        log.timings["deterministic_time"] = round(searched.deterministic_time, 3)
    deterministic = req.config.deterministic
    stats = SolverStats(
        status, value, bound, gap, units,
        round(searched.deterministic_time, 3) if searched is not None else 0.0,
        len(cs.candidates) if cs is not None else 0, cs.generated if cs is not None else 0,
        cs.pruned_sram if cs is not None else 0, cs.pruned_dominated if cs is not None else 0,
        len(searched.b.vars.x) if searched is not None else 0, searched.conflicts if searched is not None else 0,
        warm[0] if warm is not None and searched is not None else None,
        plan_source=best.source, proof=proof, interrupted=searched is not None and searched.interrupted,
        cut_short=tuple(log.cut), counters_in_plan=deterministic and searched is not None, extra=extra,
        warm_start_energy_fj=warm[1].energy_fj if warm is not None else None)
    with log.stage("finish", "rebuilding and validating the plan"):
        plan = best.make()
        plan = replace(plan, provenance=Provenance("cpsat", objective, stats.to_json()))
        validate_plan(plan, graph, hw)
    if not req.within_budget(plan.totals):
        raise MemplanError(f"internal error: the {best.source} plan recomputes {plan.totals.recompute_macs} MACs, over "
                           f"the budget of {req.budget}")
    if best.source == "cpsat":
        if objective == "energy" and plan.totals.energy_fj != round(value):
            raise MemplanError(f"internal error: CP-SAT energy {value} differs from the plan's {plan.totals.energy_fj} fJ")
        if objective == "latency" and plan.totals.cycles > round(value):
            raise MemplanError(f"internal error: CP-SAT cycles {value} below the plan's {plan.totals.cycles}")
    elif objective == "energy" and plan.totals.energy_fj != round(value):
        raise MemplanError(f"internal error: the {best.source} plan costs {plan.totals.energy_fj} fJ, not {value}")
    log.timings["total"] = round(clock.elapsed(), 3)
    return SolveResult(graph, hw, plan, floor(graph, hw), dict(first.baselines), dict(log.timings),
                       req.config.max_fuse_depth, stats, req.budget)


# ---------------------------------------------------------------------------- the solve
def _check_request(graph: Graph, hw: HardwareProfile, objective: str, user: UserConstraints) -> None:
    if objective not in OBJECTIVES:
        raise UsageError(f"unknown objective {objective!r}: use one of {', '.join(OBJECTIVES)}")
    unknown = sorted((user.force_keep | user.force_reload) - {layer.id for layer in graph.layers})
    if unknown:
        raise UsageError(f"--keep/--reload name {unknown[0]!r}, which is not a layer of the model (see memplan inspect)")
    if (user.force_keep or user.force_reload) and hw.weights_in_place:
        raise UsageError(f"profile {hw.name} reads weights in place from flash: --keep and --reload do not apply")
    if user.force_keep & user.force_reload:
        raise UsageError(f"layer {sorted(user.force_keep & user.force_reload)[0]!r} is forced both to keep and to reload")
    budget = user.max_recompute_macs
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 0):
        raise UsageError(f"the recompute budget must be a non-negative MAC count, got {budget!r}")


def solve_cpsat(graph: Graph, hw: HardwareProfile, objective: str = "energy", config: SolverConfig | None = None,
                user: UserConstraints | None = None, weights: Mapping[str, float] | None = None,
                progress: Progress | None = None) -> SolveResult:
    """Plan ``graph`` within ``config.time_limit_s`` (the whole solve); see the module
    docstring for the stages, the budget and when a plan is called OPTIMAL."""
    config = config or SolverConfig()
    user = user or UserConstraints()
    if user.max_recompute_macs is None and config.max_recompute is not None:  # the config's own budget
        budget = parse_recompute(config.max_recompute, f"solver config {config.name!r}: max_recompute")
        if budget is not None:
            user = replace(user, max_recompute_macs=budget_macs(budget, graph))
    _check_request(graph, hw, objective, user)
    if objective == "memory":
        user = replace(user, no_spill=True)
    req = _Request(graph, hw, objective, config, user, dict(weights or {}))
    clock = Deadline.after(None if config.deterministic else config.time_limit_s)
    live = progress is not None  # callbacks only when someone listens: the search stays the same
    log = _Ledger(progress or _NoProgress())
    # one memo of candidate costs for the feasibility check, the baselines and the candidates
    cache = _BudgetCache(graph, hw)
    layer = _layer_plan(req, cache, log)
    reserve = _reserve(graph, log)  # for rebuilding and validating the plan
    first = _first_plans(req, cache, clock, log, layer, reserve)
    cs = _candidates(req, cache, clock, log, reserve)
    del cache  # hundreds of MB on DenseNet; the candidates keep what the model needs
    if cs is None:
        return _finish(req, None, first, _DPStage(None, {}), None, log, clock)
    dps = _dp_stage(req, cs, first.baselines, clock, log, reserve)
    best = dps.best
    if objective == "energy" and dps.dp is not None and best is not None and best[1].energy_fj == dps.dp.bound_fj:
        return _finish(req, cs, first, dps, None, log, clock)  # proven optimal: no search
    searched = _search(req, cs, first.baselines, dps, clock, log, reserve, live)
    return _finish(req, cs, first, dps, searched, log, clock)


def _why_infeasible_budget(req: _Request, cs: CandidateSet, seconds: float) -> str | None:
    """With a recompute budget, whether the budget is what leaves no plan: the same model
    without it, searched for any plan for a few seconds. The one-line reason, or None when the
    budget is not (or not shown to be) the cause."""
    if req.budget is None:
        return None
    graph, hw = req.graph, req.hw
    b = _build(graph, hw, cs, replace(req.user, max_recompute_macs=None), req.objective == "memory")
    solver = _params(req.config, max(min(seconds, 10.0), 0.5))
    status = solver.solve(b.vars.model)
    what = f"{describe(req.budget, graph)}"
    sram = f"{hw.sram_bytes} B of SRAM" + (" without spilling a feature map" if req.user.no_spill or hw.feature_maps_in_sram else "")
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return (f"no plan fits {sram} with {what}, though plans with more recompute do: raise --max-recompute "
                "(or give more SRAM with --sram)")
    if status == cp_model.UNKNOWN:
        return (f"no plan fits {sram} with {what}: raise --max-recompute or give more SRAM with --sram")
    return None


def _why_infeasible(graph: Graph, hw: HardwareProfile, objective: str) -> str:
    if hw.feature_maps_in_sram or objective == "memory":
        total = max(graph.tensors[t].numel for t in graph.tensors if graph.tensors[t].is_feature_map) * hw.elem_bytes
        return (f"no plan keeps every feature map that crosses a group in {hw.sram_bytes} B of SRAM "
                f"(the largest feature map alone is {total} B): give more SRAM with --sram, or allow spills")
    return f"no plan fits {hw.sram_bytes} B of SRAM with the given constraints: relax --keep/--max-fuse-depth or give more SRAM"



