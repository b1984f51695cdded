"""``memplan verify``: check everything a plan claims, then execute it tile by tile and hold
it to the untiled reference.

:func:`memplan.driver.verify_files` reads the files; here a plan document verifies for a
graph when, in this order (the first failure is named in one line):

1. it is a version 3 plan, JSON that the plan schema (``memplan/schema/plan.schema.json``)
   accepts, whose ids name entries of its own tensor and layer tables;
2. it was made for this model (its sha256) and this hardware record (SRAM, element and bias
   sizes agree), and its weight encoding can be reproduced here (an ``ethos-u-mlw`` plan needs
   the same version of Vela's weight codec, :func:`memplan.cost.weights.reproducible`);
3. the symbolic replay of :mod:`memplan.plan.validate` accepts its command stream: every input
   cell a command needs holds the right tensor element, no live buffers overlap, and every
   total recomputed from the commands equals the plan's;
4. its buffers, commands and totals are exactly what its decisions expand to, so the decisions
   it states are the ones it carries out; and every field that restates or derives from
   another (``dram_total``, ``energy_pj``, a group's layer names, the tensor and layer tables,
   the DRAM map, the buffer each command uses, the commands each waits for) is exactly what
   memplan derives from the plan and the model;
5. its claims hold: the solver record is consistent (the objective is the plan's cost, the
   bound does not exceed it, the gap is theirs, OPTIMAL only with no gap), and the floor and
   the baseline summaries equal what memplan recomputes for the model and profile, and a plan
   made within a recompute budget (``settings.max_recompute_macs``) recomputes no more;
6. on one seeded int8 input, every tile the tiled executor computes, every model output and
   every tensor the plan spills is bit-identical to the untiled integer reference;
7. every total measured while executing (DRAM bytes, MACs, recompute, SRAM accesses, and the
   energy and cycles that follow from them) equals the plan's, and no command touches SRAM
   outside a live buffer of the plan that belongs to it.

Not checked: the solver's counters (candidates, conflicts, ...) are informational; that the
bound is a true lower bound would take solving again.

:func:`verify` works on files (the model and the plan JSON ``memplan solve`` wrote, checked to
belong together by the model's sha256); :func:`verify_plan` on objects, with
:func:`prepare` to quantise a graph and run its reference once for several plans.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from memplan.config import HardwareProfile
from memplan.cost.weights import encoder, reproducible
from memplan.errors import PlanError, UsageError, VerificationError
from memplan.execute.quantize import QuantizedGraph, calibration_inputs, quantize_graph
from memplan.execute.reference import run_reference
from memplan.execute.tiled import HOST, UNWRITTEN, Counts, TiledRun, describe_command, execute_plan
from memplan.ir.graph import Graph
from memplan.plan.model import Plan, Totals

I8 = npt.NDArray[np.int8]

#: the verification input is drawn like calibration inputs, from this offset of the seed
INPUT_SEED_OFFSET = 1


@dataclass(frozen=True)
class Prepared:
    """A quantised graph, the int8 input of the verification and the untiled reference on it."""

    qgraph: QuantizedGraph
    inputs: Mapping[str, I8]
    reference: Mapping[str, I8]
    seed: int
    times: Mapping[str, float]
    #: memo of recomputed baseline totals, per (profile, greedy depth, baseline), for
    #: verifying many plans of this graph
    baselines: dict[Any, dict[str, Any]] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class TflmCheck:
    """The model's outputs on the verification input, compared with TensorFlow Lite Micro's
    interpreter (int8 ``.tflite`` models). ``match``: None when the comparison could not run
    (``detail`` says why: the package is not installed, the model is float, ...)."""

    match: bool | None
    outputs: tuple[str, ...] = ()
    detail: str = ""


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of a verification.

    ``tensors``: the tensors compared with the reference after the run (model outputs and
    spilled tensors). ``failure``: why the plan did not verify (None when it did)."""

    model: str
    strategy: str | None
    sram_bytes: int
    commands: int
    bit_exact: bool
    tensors: tuple[str, ...]
    measured: Counts
    predicted: Counts
    sram_peak: int
    sram_peak_planned: int
    seed: int
    wall_time_s: float
    times: Mapping[str, float] = field(default_factory=dict)
    failure: str | None = None
    #: the comparison with TensorFlow Lite Micro (``.tflite`` models only)
    tflm: TflmCheck | None = None

    @property
    def counts_match(self) -> bool:
        return self.measured == self.predicted

    @property
    def passed(self) -> bool:
        return (self.bit_exact and self.counts_match and self.failure is None
                and (self.tflm is None or self.tflm.match is not False))

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "strategy": self.strategy,
            "verified": self.passed,
            "bit_exact": self.bit_exact,
            "counts_match": self.counts_match,
            "failure": self.failure,
            "tensors_compared": list(self.tensors),
            "measured": self.measured.to_json(),
            "predicted": self.predicted.to_json(),
            "sram_bytes": self.sram_bytes,
            "sram_peak": self.sram_peak,
            "sram_peak_planned": self.sram_peak_planned,
            "commands": self.commands,
            "seed": self.seed,
            "wall_time_s": self.wall_time_s,
            "times_s": dict(self.times),
            **({} if self.tflm is None else {"tflm_match": self.tflm.match, "tflm_outputs": list(self.tflm.outputs),
                                             "tflm_detail": self.tflm.detail}),
        }


def verification_inputs(qgraph: QuantizedGraph, seed: int = 0) -> dict[str, I8]:
    """The int8 input of a verification: one calibration-like draw, quantised."""
    floats = calibration_inputs(qgraph.graph, seed + INPUT_SEED_OFFSET, num_samples=1)
    return qgraph.quantize_inputs(floats)


def prepare(graph: Graph, seed: int = 0) -> Prepared:
    """Quantise ``graph`` (constant-fill weights are substituted, as :func:`quantize_graph`
    does), draw the input and run the untiled reference."""
    t0 = time.perf_counter()
    qgraph = quantize_graph(graph, seed=seed)
    t1 = time.perf_counter()
    inputs = verification_inputs(qgraph, seed)
    reference = run_reference(qgraph, inputs)
    t2 = time.perf_counter()
    return Prepared(qgraph, inputs, reference, seed, {"quantize": t1 - t0, "reference": t2 - t1})


def verify_plan(graph: Graph, plan: Plan, hw: HardwareProfile, seed: int = 0, *, prepared: Prepared | None = None,
                strict: bool = True, static_checks: bool = True) -> VerifyReport:
    """Verify ``plan`` for ``graph`` on ``hw``: :func:`check_plan` (with ``static_checks``;
    without, execution alone must catch what is wrong), then steps 6 and 7 of the module
    documentation.

    Raises :class:`VerificationError` naming the first fault: for a differing tensor, the
    tensor, the element and the command (index, group, tile) that wrote it. With ``strict``
    False, a differing tensor or count is reported in the result instead (faults that stop
    the execution still raise)."""
    start = time.perf_counter()
    if plan.graph_name != graph.name:
        raise VerificationError(f"the plan is for model {plan.graph_name!r}, not {graph.name!r}")
    if static_checks:
        check_plan(graph, plan, hw)
    earlier = 0.0  # time spent preparing before this call
    if prepared is None:
        prepared = prepare(graph, seed)
    else:
        earlier = sum(prepared.times.values())
    if prepared.qgraph.graph.name != graph.name or len(prepared.qgraph.layers) != len(graph.layers):
        raise ValueError("the prepared quantised graph is not of this graph")
    t0 = time.perf_counter()
    run = execute_plan(plan, prepared.qgraph, hw, prepared.inputs, expect=prepared.reference)
    t1 = time.perf_counter()
    tensors = tuple(sorted(set(run.dram) | set(run.outputs)))
    failure = _first_difference(plan, run, prepared.reference)
    bit_exact = failure is None
    measured, predicted = run.counts, Counts.of_totals(plan.totals)
    if failure is None and measured != predicted:
        failure = _count_mismatch(measured, predicted)
    if failure is None and run.host != plan.host:
        failure = (f"the host layers measured {run.host.to_json()}, but the plan's host_totals are "
                   f"{plan.host.to_json()}")
    t2 = time.perf_counter()
    times = {**prepared.times, "tiled": t1 - t0, "compare": t2 - t1}
    report = VerifyReport(
        model=graph.name, strategy=plan.provenance.strategy, sram_bytes=plan.sram_bytes, commands=run.commands,
        bit_exact=bit_exact, tensors=tensors, measured=measured, predicted=predicted, sram_peak=run.sram_peak,
        sram_peak_planned=plan.totals.sram_peak, seed=prepared.seed,
        wall_time_s=earlier + (t2 - start), times=times, failure=failure)
    if strict and failure is not None:
        raise VerificationError(failure)
    return report


def model_sha256(model: str | os.PathLike[str]) -> str:
    """The sha256 of a model file, as plans record it."""
    from memplan.plan.serialize import file_sha256

    try:
        return file_sha256(model)
    except OSError as exc:
        raise VerificationError(f"model file {str(model)!r} cannot be read ({exc.strerror or exc})") from None


def compare_with_tflm(model: str | os.PathLike[str], graph: Graph, prepared: Prepared) -> TflmCheck:
    """Run TensorFlow Lite Micro on the verification input of an int8 ``.tflite`` model and
    compare every model output byte with the untiled reference (which the tiled run has
    already matched)."""
    from memplan.execute.tflm import tflm_reference

    if any(graph.tensors[name].quant is None for name in graph.inputs):
        return TflmCheck(None, detail="a float model: TFLite Micro runs it in float, memplan in int8")
    try:
        theirs = tflm_reference(model, prepared.inputs)
    except ImportError:
        return TflmCheck(None, detail="the tflite-micro package is not installed (pip install tflite-micro)")
    except (RuntimeError, ValueError) as exc:  # the interpreter refused or aborted: nothing to compare with
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return TflmCheck(None, detail=f"not compared: {why}")
    compared = []
    for name in graph.outputs:
        if name not in theirs:
            return TflmCheck(False, tuple(compared), f"TFLite Micro gives no value for output {name!r}")
        ours, want = np.asarray(prepared.reference[name]), np.asarray(theirs[name])
        if ours.shape != want.shape or not np.array_equal(ours, want):
            bad = int(np.count_nonzero(ours != want)) if ours.shape == want.shape else ours.size
            worst = int(np.abs(ours.astype(np.int32) - want.astype(np.int32)).max()) if ours.shape == want.shape else -1
            return TflmCheck(False, tuple(compared), f"output {name!r} differs from TFLite Micro's in {bad} of "
                                                     f"{ours.size} bytes (at most {worst} LSB)")
        compared.append(name)
    return TflmCheck(True, tuple(compared), f"{len(compared)} outputs identical to TFLite Micro's")


def verify_document(graph: Graph, doc: Mapping[str, Any], sha256: str | None, seed: int = 0, *,
                    prepared: Prepared | None = None) -> VerifyReport:
    """Verify a plan JSON document (as ``memplan solve`` writes it) for ``graph``: every step
    of the module documentation. ``sha256`` is the model file's (None: not checked, for
    graphs that do not come from a file)."""
    from memplan.plan.serialize import plan_from_json

    data = dict(doc)
    plan, hw = plan_from_json(data)
    want = plan.provenance.model_sha256
    if sha256 is not None and want != sha256:
        raise VerificationError(f"the plan was made for a model with sha256 {str(want)[:12]}..., but this model has "
                                f"sha256 {sha256[:12]}...: re-run memplan solve on this model")
    shapes = {k: tuple(v) for k, v in graph.input_shapes.items()} or None  # what the model was loaded at
    recorded = plan.provenance.model_input_shapes
    if (None if recorded is None else dict(recorded)) != shapes:
        raise VerificationError(f"plan field model.input_shapes is {recorded}, but the model's "
                                f"inputs were loaded at {shapes}: re-run memplan solve, or verify at the plan's shapes")
    if graph.name != plan.graph_name:  # the same bytes under another file name
        graph = dataclasses.replace(graph, name=plan.graph_name)
    check_plan(graph, plan, hw, data, None if prepared is None else prepared.baselines)
    return verify_plan(graph, plan, hw, seed, prepared=prepared, static_checks=False)


def check_plan(graph: Graph, plan: Plan, hw: HardwareProfile, claims: Mapping[str, Any] | None = None,
               memo: dict[Any, dict[str, Any]] | None = None) -> None:
    """Steps 2 to 5 of the module documentation, without executing: raise
    :class:`VerificationError` naming the first fault. ``claims``: the plan document, whose
    floor and baselines are checked when given (``memo``: see :class:`Prepared`)."""
    from memplan.plan.serialize import check_derived
    from memplan.plan.validate import check_against_decisions, validate_plan

    why = reproducible(plan.weight_encoding, encoder(plan.weight_encoding))
    if why is not None:
        raise VerificationError(f"this plan cannot be checked here: {why}")
    try:
        validate_plan(plan, graph, hw)
        check_against_decisions(plan, graph, hw)
    except PlanError as exc:
        raise VerificationError(exc.message) from None
    if claims is not None:  # the tables, map and dependencies derive from a plan that is what its decisions give
        check_derived(dict(claims), plan, hw, graph)
    _check_solver_record(plan)
    if claims is not None:
        _check_summaries(graph, plan, hw, claims, {} if memo is None else memo)


# ---------------------------------------------------------------------------- claims
#: units of the solver's objective, per objective
_UNITS = {"energy": "fJ", "latency": "cycles", "balanced": "normalised", "custom": "normalised", "memory": "bytes"}
#: relative tolerance of the solver's floating-point objective, bound and gap (CP-SAT reports
#: doubles; the energy itself is compared exactly, as an integer)
_REL = 1e-9
#: CP-SAT calls a plan optimal within this absolute gap of its objective (absolute_gap_limit);
#: the integer objectives (fJ, cycles, bytes) are exact, the normalised mixes are not
_ABS = 1e-4


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= _REL * max(1.0, abs(a), abs(b))


def _check_solver_record(plan: Plan) -> None:
    strategy, objective, solver = plan.provenance.strategy, plan.provenance.objective, plan.provenance.solver
    if strategy != "cpsat":
        if solver is not None:
            raise VerificationError(f"plan field solver: a {strategy} plan has no solver record, yet one is given")
        if objective not in (None, "energy"):
            raise VerificationError(f"plan field objective: the {strategy} baseline minimises energy, not {objective}")
        return
    if not isinstance(solver, Mapping):
        raise VerificationError("plan field solver: a cpsat plan must carry the solver's record: re-run memplan solve")
    obj, bound, gap, status = solver["objective"], solver["bound"], solver["gap"], solver["status"]
    units = _UNITS.get(str(objective))
    weight = solver.get("recompute_weight")  # the weighted memory objective: bytes + weight x recompute MACs
    if objective == "memory" and weight is not None:
        units = "weighted bytes"
    if solver["objective_units"] != units:
        raise VerificationError(f"plan field solver.objective_units is {solver['objective_units']!r}, but the "
                                f"{objective} objective is counted in {units!r}")
    t = plan.totals
    if objective == "energy" and obj != t.energy_fj:
        raise VerificationError(f"plan field solver.objective is {obj}, but the plan's energy is {t.energy_fj} fJ")
    if objective == "latency" and obj < t.cycles:
        raise VerificationError(f"plan field solver.objective is {obj} cycles, below the plan's {t.cycles}")
    if objective == "memory" and weight is None and obj < t.sram_peak:
        raise VerificationError(f"plan field solver.objective is {obj} B, below the plan's SRAM peak {t.sram_peak} B")
    if objective == "memory" and weight is not None:
        cost = t.sram_peak + Fraction(weight) * t.recompute_macs
        if obj < cost and not _close(obj, float(cost)):
            raise VerificationError(f"plan field solver.objective is {obj}, below the plan's SRAM peak {t.sram_peak} B + "
                                    f"{weight} x {t.recompute_macs} recompute MACs = {float(cost)}")
        if t.recompute_macs > solver.get("min_sram_recompute_macs", t.recompute_macs):
            raise VerificationError(f"the plan recomputes {t.recompute_macs} MACs, more than the "
                                    f"{solver['min_sram_recompute_macs']} its smallest SRAM was found with")
    if bound > obj and not _close(bound, obj):
        raise VerificationError(f"plan field solver.bound is {bound}, above the objective {obj}: a bound cannot "
                                "exceed the plan it bounds")
    proven = obj - bound <= _ABS + _REL * abs(obj)  # CP-SAT's own optimality tolerance
    want_gap = 0.0 if obj == 0 or status == "OPTIMAL" else max(0.0, (obj - bound) / abs(obj))
    # energy is exact, so there a bound equal to the plan's cost proves it; the other objectives
    # are modelled (cycles from above, normalised mixes in floating point): OPTIMAL needs CP-SAT's proof
    if status == "OPTIMAL" and not proven or status != "OPTIMAL" and proven and objective == "energy":
        raise VerificationError(f"plan field solver.status is {status} with objective {obj} and bound {bound}: a plan "
                                "is OPTIMAL exactly when its bound proves it")
    if not _close(gap, want_gap):
        raise VerificationError(f"plan field solver.gap is {gap}, but objective {obj} and bound {bound} give {want_gap}")
    _check_provenance(solver, objective, t)


def _check_provenance(solver: Mapping[str, Any], objective: object, t: Totals) -> None:
    """What the record says about where the plan and its bound came from, against the plan."""
    proof, obj = solver["proof"], solver["objective"]
    if (proof is not None) != (solver["status"] == "OPTIMAL"):
        raise VerificationError(f"plan field solver.proof is {proof}, but the status is {solver['status']}: an OPTIMAL "
                                "plan names what proved it, a FEASIBLE one nothing")
    dp = solver.get("dp_bound_fj")
    if dp is not None and dp > t.energy_fj:  # the DP relaxation bounds every plan's energy
        raise VerificationError(f"plan field solver.dp_bound_fj is {dp}, above the plan's energy {t.energy_fj} fJ")
    if objective == "energy":
        if dp is not None and solver["bound"] < dp:
            raise VerificationError(f"plan field solver.bound is {solver['bound']}, below the DP bound {dp} it includes")
        if proof == "dp_bound" and dp != obj:
            raise VerificationError(f"plan field solver.proof is dp_bound, but the DP bound {dp} is not the objective {obj}")
        hint = solver.get("hint_energy_fj")  # written by earlier versions only (now SolverStats.warm_start_energy_fj)
        if hint is not None and str(solver["plan_source"]).startswith("dp") and hint != t.energy_fj:  # the DP warm start
            raise VerificationError(f"plan field solver.hint_energy_fj is {hint}, but the plan is the warm start it "
                                    f"names, of {t.energy_fj} fJ")
        if hint is not None and hint < t.energy_fj:
            raise VerificationError(f"plan field solver.hint_energy_fj is {hint}: the warm start it names is cheaper than "
                                    f"the plan returned ({t.energy_fj} fJ)")


def _check_summaries(graph: Graph, plan: Plan, hw: HardwareProfile, doc: Mapping[str, Any],
                     memo: dict[Any, dict[str, Any]]) -> None:
    """The floor and the baseline summaries a plan carries equal memplan's own, recomputed
    (``memo``: baseline totals already recomputed for this graph)."""
    from memplan.baselines import CostCache, floor, greedy, layer_by_layer
    from memplan.plan.serialize import json_path

    def differ(path: tuple[str, ...], got: Mapping[str, Any], want: Mapping[str, Any]) -> None:
        for key in want:
            if got.get(key) != want[key] or isinstance(got.get(key), bool):
                raise VerificationError(f"plan field {json_path((*path, key))} is {got.get(key)}, but memplan "
                                        f"recomputes {want[key]} for this model and profile")

    differ(("floor",), doc["floor"], floor(graph, hw).to_json())
    claimed = doc["baselines"]
    expected = set() if hw.feature_maps_in_sram else {"layer", "greedy"}
    # a solve whose time ran out before the greedy baseline says so in its record
    expected -= set((plan.provenance.solver or {}).get("cut_short") or ())
    if set(claimed) != expected:
        raise VerificationError(f"plan field baselines names {sorted(claimed)}, but this plan's profile and solve "
                                f"give the baselines {sorted(expected)}")
    depth = doc["settings"]["max_fuse_depth"]
    host_ops = doc["settings"].get("host_ops", "cpu")
    if host_ops != graph.host_ops:
        raise VerificationError(f"plan field settings.host_ops is {host_ops}, but the model was loaded with "
                                f"--host-ops {graph.host_ops}: verify with the plan's setting")
    budget = doc["settings"].get("max_recompute_macs")
    if budget is not None and plan.totals.recompute_macs > budget:
        raise VerificationError(f"plan field totals.recompute_macs is {plan.totals.recompute_macs}, over the recompute "
                                f"budget settings.max_recompute_macs {budget} the plan was made within")
    longest = max(g.stop - g.start for g in plan.decisions.groups)
    if longest > depth:
        raise VerificationError(f"plan field settings.max_fuse_depth is {depth}, but the plan fuses {longest} layers "
                                "in one group")
    cache: CostCache | None = None
    for name in sorted(claimed):
        key = (hw, depth, name)
        if key not in memo:
            cache = cache or CostCache(graph, hw)
            base = layer_by_layer(graph, hw, cache) if name == "layer" else greedy(graph, hw, depth, cache)
            memo[key] = base.totals.to_json()
        differ(("baselines", name), claimed[name], memo[key])
    strategy = plan.provenance.strategy
    if strategy in claimed and claimed[strategy] != plan.totals.to_json():
        raise VerificationError(f"plan field baselines.{strategy} differs from the totals of this {strategy} plan")
    source = (plan.provenance.solver or {}).get("plan_source")
    if source in claimed and claimed[source] != plan.totals.to_json():
        raise VerificationError(f"plan field solver.plan_source is {source}, but the plan's totals are not those of the "
                                f"{source} baseline")
    if (plan.provenance.solver or {}).get("proof") == "floor" and doc["floor"]["energy_fj"] != plan.totals.energy_fj:
        raise VerificationError("plan field solver.proof is floor, but the plan's energy is not the floor's")


# ---------------------------------------------------------------------------- comparison
def _first_difference(plan: Plan, run: TiledRun, reference: Mapping[str, I8]) -> str | None:
    """The difference from the reference written earliest in the command stream, described."""
    best: tuple[int, str] | None = None
    for tensor in sorted(set(run.dram) | set(run.outputs)):
        got = run.outputs.get(tensor, run.dram.get(tensor))
        assert got is not None
        want = np.asarray(reference[tensor])
        writers = run.writers[tensor]
        bad = got != want
        if not bad.any():
            continue
        order = np.where(bad, writers.astype(np.int64), np.iinfo(np.int64).max)
        order[bad & (writers == UNWRITTEN)] = -1  # a hole is reported before any wrong value
        flat = int(np.argmin(order))
        idx = np.unravel_index(flat, got.shape)
        writer = int(writers[idx])
        at = [int(i) for i in idx[1:]]
        if writer == UNWRITTEN:
            text = (f"tensor {tensor} differs from the reference: element {at} (channel, row, column) was never "
                    f"written by any command ({int(bad.sum())} elements differ)")
        else:
            by = "the host" if writer == HOST else describe_command(writer, plan.commands[writer])
            text = (f"tensor {tensor} differs from the reference at {at} (channel, row, column): got {int(got[idx])}, "
                    f"expected {int(want[idx])}, written by {by} ({int(bad.sum())} elements differ)")
        key = writer if writer != HOST else -1
        if best is None or key < best[0]:
            best = (key, text)
    return None if best is None else best[1]


def _count_mismatch(measured: Counts, predicted: Counts) -> str:
    diffs = [f"{name} measured {getattr(measured, name):,} but the plan predicts {getattr(predicted, name):,}"
             for name in Counts.FIELDS if getattr(measured, name) != getattr(predicted, name)]
    return "the outputs are bit-exact but the counts differ: " + "; ".join(diffs)


__all__ = ["TflmCheck", "compare_with_tflm", "Prepared", "VerifyReport", "check_plan", "model_sha256", "prepare", "verification_inputs",
           "verify_document", "verify_plan"]
