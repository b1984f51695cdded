"""Build, warm-start, solve and decode the CP-SAT model; report status, objective, bound, gap.

The plan is always rebuilt from the decoded decisions and offsets by the same code the
baselines use, checked by the independent validator, and its cost compared with the solver's
objective value: they must be equal, or the model and the cost code disagree (a bug).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ortools.sat.python import cp_model

from memplan.baselines import CostCache, check_feasible, greedy, layer_by_layer
from memplan.config import HardwareProfile, SolverConfig
from memplan.errors import InfeasibleError, MemplanError, UsageError
from memplan.ir.graph import Graph
from memplan.plan.alloc import extent, first_fit
from memplan.plan.build import build_plan, cost_totals, plan_blocks, resolve
from memplan.plan.model import Decisions, GroupDecision, Plan
from memplan.plan.validate import validate_plan
from memplan.solve.candidates import CandidateSet, enumerate_candidates
from memplan.solve.dp import BoundaryDP
from memplan.solve.memory import Slot, add_memory
from memplan.solve.model import UserConstraints, Vars, build_decisions
from memplan.solve.objective import Terms, build_cycles, build_energy
from memplan.solve.place import place

OBJECTIVES = ("energy", "latency", "balanced", "memory", "custom")


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
    status: str
    objective: float
    bound: float
    gap: float
    objective_units: str
    wall_time_s: float | None
    deterministic_time: float
    candidates: int
    candidates_generated: int
    pruned_sram: int
    pruned_dominated: int
    booleans: int
    conflicts: int
    hint: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("status", "objective", "bound", "gap", "objective_units", "wall_time_s",
                                           "deterministic_time", "candidates", "candidates_generated", "pruned_sram",
                                           "pruned_dominated", "booleans", "conflicts", "hint")}
        d.update(self.extra)
        return d


@dataclass(frozen=True)
class SolveResult:
    plan: Plan
    stats: SolverStats
    baselines: Mapping[str, Plan] = field(default_factory=dict)  # layer and greedy, computed on the way


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


@dataclass
class _Built:
    vars: Vars
    slots: list[Slot]
    terms: Terms
    capacity: cp_model.IntVar | int


def _build(graph: Graph, hw: HardwareProfile, cs: CandidateSet, user: UserConstraints, memory_objective: bool) -> _Built:
    v = build_decisions(graph, hw, cs.candidates, user)
    cap: cp_model.IntVar | int = v.model.new_int_var(0, hw.sram_bytes, "capacity") if memory_objective else hw.sram_bytes
    slots = add_memory(graph, hw, v, cap)
    return _Built(v, slots, build_energy(graph, v, hw), cap)


def _slot_for_block(slots: list[Slot], name: str, groups: list[tuple[int, str]]) -> Slot:
    """The CP-SAT slot of a plan block; ``groups`` gives each group's start and anchor."""
    head, _, rest = name.partition(".")
    if head == "res":
        key: tuple[str, int | None, str | None] = ("res", None, rest)
    elif head == "w":
        layer, _, kind = rest.rpartition(".")
        key = (kind, None, layer)
    else:
        a, anchor = groups[int(head[1:])]
        part, _, tensor = rest.partition(".")
        key = ("out", None, anchor) if part == "out" else (part, a, tensor or None)
    for s in slots:
        if (s.kind, s.start, s.key) == key:
            return s
    raise KeyError(name)


@dataclass(frozen=True)
class _Warm:
    """A warm start: candidate indexes, decisions over them, offsets that fit, its energy."""

    chosen: tuple[int, ...]
    decisions: Decisions
    offsets: dict[str, int]
    energy_fj: int


def _warm_start(b: _Built, cs: CandidateSet, graph: Graph, hw: HardwareProfile, decisions: Decisions,
                deterministic: bool = False) -> _Warm | None:
    """Express decisions (a baseline's or the DP's) over the model's candidates (a pruned one
    is replaced by the candidate that dominates it) and place them: first fit, else the
    placement-only CP-SAT model. None when that fails or the decisions cannot be expressed."""
    v = b.vars
    chosen = []
    for gd in decisions.groups:
        idx = cs.index_of((gd.start, gd.stop, gd.tiling))
        if idx is None:
            return None  # beyond max_fuse_depth
        chosen.append(idx)
    dec = Decisions(tuple(GroupDecision(v.cands[i].start, v.cands[i].stop, v.cands[i].tiling) for i in chosen),
                    decisions.keep, decisions.resident & frozenset(v.res))
    try:
        r = resolve(graph, hw, dec)
    except MemplanError:
        return None
    blocks = plan_blocks(r)
    offsets = first_fit(blocks)
    if extent(blocks, offsets) > hw.sram_bytes:
        placed = place(blocks, hw.sram_bytes, time_limit_s=PLACE_LIMIT_S, deterministic=deterministic)
        if placed is None:
            return None
        offsets = placed
    return _Warm(tuple(chosen), dec, offsets, cost_totals(r, 0).energy_fj)


def _hint(b: _Built, graph: Graph, warm: _Warm) -> None:
    v, model, dec = b.vars, b.vars.model, warm.decisions
    model.clear_hints()
    sel = set(warm.chosen)
    for i, x in enumerate(v.x):
        model.add_hint(x, i in sel)
    for layer, k in v.keep.items():
        model.add_hint(k, layer in dec.keep)
    for t, lit in v.res.items():
        model.add_hint(lit, t in dec.resident)
    for (i, t), lit in v.load.items():
        model.add_hint(lit, i in sel and t not in dec.resident)
    internal = {cb.tensor for i in sel for cb in v.cands[i].core}
    for t, lit in v.store.items():
        model.add_hint(lit, t not in internal and t not in dec.resident)
    spatial = {w.layer: (w.reload_bytes // w.total_bytes if w.total_bytes else 1) for i in sel for w in v.cands[i].weights}
    for (layer, tiles), lit in v.reload.items():
        model.add_hint(lit, layer not in dec.keep and spatial.get(layer) == tiles)
    groups = [(gd.start, graph.layers[gd.stop - 1].output) for gd in dec.groups]
    for name, offset in warm.offsets.items():
        try:
            slot = _slot_for_block(b.slots, name, groups)
        except KeyError:
            continue
        model.add_hint(slot.offset, offset)


MIN_SEARCH_SHARE = 0.1  # CP-SAT searches for at least this share of the budget, however long preparing took
PLACE_LIMIT_S = 3.0  # placing a warm start's buffers where first fit fails (solve/place.py)
DP_SLACKS = (0.0, 0.01, 0.03, 0.05)  # capacity margins tried for the DP path until one can be placed
RESERVE_SHARE = 0.03  # kept back for decoding, rebuilding and validating the plan after the search


def _search_limit(config: SolverConfig, t_start: float, share: float = 1.0) -> float:
    """Seconds left for CP-SAT: ``time_limit_s`` is the budget of the whole solve (candidates,
    baselines, DP and search), so the search gets what preparing left (a ``share`` of it), at
    least ``MIN_SEARCH_SHARE`` of the budget. Deterministic runs bound deterministic time,
    which must not depend on the machine's speed: they get the whole limit."""
    if config.deterministic:
        return config.time_limit_s
    left = config.time_limit_s * (1 - RESERVE_SHARE) - (time.perf_counter() - t_start)
    return max(left * share, MIN_SEARCH_SHARE * config.time_limit_s)


def _params(config: SolverConfig, time_limit: float | None = None) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    p = solver.parameters
    p.num_workers = config.workers
    p.random_seed = config.random_seed
    p.log_search_progress = config.log_progress
    p.cp_model_probing_level = 0  # probing costs seconds of presolve and gains nothing measurable here
    limit = time_limit if time_limit is not None else config.time_limit_s
    if config.deterministic:
        p.interleave_search = True
        p.max_deterministic_time = limit
    else:
        p.max_time_in_seconds = limit
    return solver


def _decode(b: _Built, solver: cp_model.CpSolver) -> Decisions:
    v = b.vars
    chosen = sorted((i for i, x in enumerate(v.x) if solver.Value(x)), key=lambda i: v.cands[i].start)
    groups = tuple(GroupDecision(v.cands[i].start, v.cands[i].stop, v.cands[i].tiling) for i in chosen)
    keep = frozenset(layer for layer, k in v.keep.items() if solver.Value(k))
    res = frozenset(t for t, r in v.res.items() if solver.Value(r))
    return Decisions(groups, keep, res)


def _offsets(b: _Built, solver: cp_model.CpSolver, graph: Graph, hw: HardwareProfile, dec: Decisions) -> dict[str, int]:
    r = resolve(graph, hw, dec)
    groups = [(gd.start, graph.layers[gd.stop - 1].output) for gd in dec.groups]
    out = {}
    for blk in plan_blocks(r):
        slot = _slot_for_block(b.slots, blk.name, groups)
        out[blk.name] = solver.Value(slot.offset)
    return out


STATUS = {cp_model.OPTIMAL: "OPTIMAL", cp_model.FEASIBLE: "FEASIBLE", cp_model.INFEASIBLE: "INFEASIBLE",
          cp_model.MODEL_INVALID: "MODEL_INVALID", cp_model.UNKNOWN: "UNKNOWN"}


def solve_cpsat(graph: Graph, hw: HardwareProfile, objective: str = "energy", config: SolverConfig | None = None,
                user: UserConstraints | None = None, weights: Mapping[str, float] | None = None,
                progress: Progress | None = None) -> SolveResult:
    config = config or SolverConfig()
    user = user or UserConstraints()
    if objective not in OBJECTIVES:
        raise UsageError(f"unknown objective {objective!r}: use one of {', '.join(OBJECTIVES)}")
    unknown = sorted((user.force_keep | user.force_reload) - {layer.id for layer in graph.layers})
    if unknown:
        raise UsageError(f"--keep/--reload name {unknown[0]!r}, which is not a layer of the model (see memplan inspect)")
    if (user.force_keep or user.force_reload) and hw.weights_in_place:
        raise UsageError(f"profile {hw.name} reads weights in place from flash: --keep and --reload do not apply")
    if user.force_keep & user.force_reload:
        raise UsageError(f"layer {sorted(user.force_keep & user.force_reload)[0]!r} is forced both to keep and to reload")
    t_start = time.perf_counter()
    live = progress is not None  # callbacks only when someone listens: the search stays the same
    progress = progress or _NoProgress()
    # one memo of candidate costs for the feasibility check, the candidates and the baselines
    cache = CostCache(graph, hw)
    progress.stage("checking that every layer fits")
    check_feasible(graph, hw, cache)
    memory_obj = objective == "memory"
    if memory_obj:
        user = UserConstraints(user.force_keep, user.force_reload, no_spill=True)
    progress.stage("costing candidate groups and tilings")
    cs = enumerate_candidates(graph, hw, config.max_fuse_depth, cache)
    baselines: dict[str, Plan] = {}
    if not hw.feature_maps_in_sram:
        progress.stage(f"baselines ({len(cs.candidates):,} candidates)")
        baselines["layer"] = layer_by_layer(graph, hw, cache)
        baselines["greedy"] = greedy(graph, hw, config.max_fuse_depth, cache)
    del cache  # hundreds of MB on DenseNet; the candidates keep what the model needs
    stats_extra: dict[str, Any] = {}
    if not config.deterministic:
        stats_extra["prepare_s"] = round(time.perf_counter() - t_start, 3)
    progress.stage(f"building the CP-SAT model ({len(cs.candidates):,} candidates)")
    b = _build(graph, hw, cs, user, memory_obj)
    model = b.vars.model
    hint_name = None
    plain = not memory_obj and not (user.force_keep or user.force_reload)
    t_dp = time.perf_counter()
    if plain:
        progress.stage("DP bound and warm start")
    boundary_dp = BoundaryDP(graph, hw, cs.candidates) if plain else None
    dp = boundary_dp.bound() if boundary_dp is not None else None
    if dp is not None:
        stats_extra.update(dp_bound_fj=dp.bound_fj, dp_states=dp.peak_states)
    if config.warm_start and plain:
        # warm start: the cheapest expressible plan among greedy and the DP's path; the path at
        # the full SRAM first, with growing margins for fragmentation while it cannot be placed
        warm: dict[str, _Warm] = {}
        if "greedy" in baselines:
            w = _warm_start(b, cs, graph, hw, baselines["greedy"].decisions, config.deterministic)
            if w is not None:
                warm["greedy"] = w
        for slack in DP_SLACKS if boundary_dp is not None else ():
            path = boundary_dp.plan(slack)
            w = _warm_start(b, cs, graph, hw, path.decisions, config.deterministic) if path is not None else None
            if w is not None:
                warm[f"dp{slack:g}"] = w
                break
        if warm:
            hint_name = min(warm, key=lambda k: warm[k].energy_fj)
            _hint(b, graph, warm[hint_name])
            stats_extra["hint_energy_fj"] = warm[hint_name].energy_fj
    if not config.deterministic:
        stats_extra["dp_s"] = round(time.perf_counter() - t_dp, 3)

    scale: float = 1.0
    units = ""
    if objective == "energy":
        scale, units = b.terms.energy_scale, "fJ"
        # the objective is one variable whose domain starts at the DP relaxation's proven lower
        # bound (solve/dp.py), so CP-SAT's own bound includes it
        lb = -(-dp.bound_fj // b.terms.energy_scale) if dp is not None else 0
        energy = model.new_int_var(min(lb, b.terms.energy_max), b.terms.energy_max, "energy")
        model.add(energy == b.terms.energy)
        model.minimize(energy)
    elif objective == "latency":
        model.minimize(build_cycles(graph, b.vars, hw))
        units = "cycles"
    elif objective in ("balanced", "custom"):
        w = dict(weights or {})
        if objective == "balanced":
            w = {"energy": config.balanced_energy, "latency": config.balanced_latency}
        ref = baselines.get("layer")
        if ref is None:
            raise UsageError("the balanced objective normalises by the layer-by-layer baseline, which this profile cannot run; use energy or latency")
        e_ref = ref.totals.energy_fj / b.terms.energy_scale
        c_ref = max(ref.totals.cycles, 1)
        cycles = build_cycles(graph, b.vars, hw)
        model.minimize(b.terms.energy * (w.get("energy", 0.0) / e_ref) + cycles * (w.get("latency", 0.0) / c_ref))
        units = "normalised"
    else:
        model.minimize(b.capacity)
        units = "bytes"

    # the memory objective solves twice: half of what is left for the smallest SRAM
    search_limit = _search_limit(config, t_start, 0.5 if memory_obj else 1.0)
    if not config.deterministic:  # plan bytes of deterministic runs must not depend on wall time
        stats_extra["search_limit_s"] = round(search_limit, 3)
    solver = _params(config, search_limit)
    cb = None
    if live:
        # what the search starts from: the warm start's energy and the DP's bound
        start_obj = stats_extra.get("hint_energy_fj", math.inf) if objective == "energy" else math.inf
        start_bound = dp.bound_fj if objective == "energy" and dp is not None else 0.0
        progress.stage("CP-SAT search")
        if math.isfinite(start_obj):
            progress.search(start_obj, start_bound, time.perf_counter() - t_start)
        cb = _Callback(progress, scale, t_start, start_obj, start_bound)
        solver.best_bound_callback = cb.on_bound
    status = solver.solve(model, cb)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        if status == cp_model.INFEASIBLE:
            raise InfeasibleError(_why_infeasible(graph, hw, objective))
        raise InfeasibleError(f"CP-SAT found no plan within {config.time_limit_s:g} s (status {STATUS[status]}): "
                              "raise time_limit_s in the solver config, or use --strategy greedy")
    obj_value, bound = solver.ObjectiveValue() * scale, solver.BestObjectiveBound() * scale
    status_name = STATUS[status]
    if memory_obj:
        # phase 2: at the smallest capacity found, the cheapest plan in energy
        cap_found = int(round(solver.ObjectiveValue()))
        stats_extra.update(min_sram=cap_found, min_sram_status=status_name, min_sram_bound=int(solver.BestObjectiveBound()))
        assert isinstance(b.capacity, cp_model.IntVar)
        model.add(b.capacity <= cap_found)
        model.clear_hints()
        for var in b.vars.x:
            model.add_hint(var, solver.Value(var))
        model.minimize(b.terms.energy)
        solver2 = _params(config, _search_limit(config, t_start))
        status2 = solver2.solve(model)
        if status2 in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            solver = solver2
            stats_extra.update(energy_status=STATUS[status2], energy_fj=solver2.ObjectiveValue() * b.terms.energy_scale)
    dec = _decode(b, solver)
    offsets = _offsets(b, solver, graph, hw, dec)
    wall = time.perf_counter() - t_start
    gap = 0.0 if obj_value == 0 else max(0.0, (obj_value - bound) / abs(obj_value))
    stats = SolverStats(status_name, obj_value, bound, gap, units, None if config.deterministic else round(wall, 3),
                        round(solver.DeterministicTime() if hasattr(solver, "DeterministicTime") else 0.0, 3),
                        len(cs.candidates), cs.generated, cs.pruned_sram, cs.pruned_dominated,
                        len(b.vars.x), solver.NumConflicts(), hint_name, stats_extra)
    meta: dict[str, Any] = {"strategy": "cpsat", "objective": objective, "solver": stats.to_json()}
    plan = build_plan(graph, hw, dec, offsets, meta=meta)
    validate_plan(plan, graph, hw)
    if objective == "energy" and plan.totals.energy_fj != round(obj_value):
        raise MemplanError(f"internal error: CP-SAT energy {obj_value} differs from the plan's {plan.totals.energy_fj} fJ")
    if objective == "latency" and plan.totals.cycles > round(obj_value):
        raise MemplanError(f"internal error: CP-SAT cycles {obj_value} below the plan's {plan.totals.cycles}")
    return SolveResult(plan, stats, baselines)


def _why_infeasible(graph: Graph, hw: HardwareProfile, objective: str) -> str:
    if hw.feature_maps_in_sram or objective == "memory":
        total = max(graph.tensors[t].numel for t in graph.tensors if graph.tensors[t].is_feature_map) * hw.elem_bytes
        return (f"no plan keeps every feature map that crosses a group in {hw.sram_bytes} B of SRAM "
                f"(the largest feature map alone is {total} B): give more SRAM with --sram, or allow spills")
    return f"no plan fits {hw.sram_bytes} B of SRAM with the given constraints: relax --keep/--max-fuse-depth or give more SRAM"



