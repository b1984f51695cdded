"""The pipeline, stage by stage: model -> graph -> plan -> validated plan JSON, and the
plan file -> verified plan.

Reads like the architecture: load and check the graph, check that every layer can run at
all, plan with the chosen strategy, validate the plan independently, attach the floor and
the baselines, serialise.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from memplan.baselines import CostCache, check_feasible, floor, greedy, layer_by_layer
from memplan.config import HardwareProfile, SolverConfig
from memplan.errors import UsageError, VerificationError
from memplan.execute.verify import Prepared, VerifyReport, compare_with_tflm, prepare, verify_document
from memplan.execute.verify import model_sha256 as verified_sha256
from memplan.frontend import load_model
from memplan.ir.graph import Graph
from memplan.plan.model import Plan
from memplan.plan.serialize import check_document, file_sha256, plan_from_json, read_plan_document
from memplan.plan.validate import validate_plan
from memplan.solve import UserConstraints, solve_cpsat
from memplan.solve.run import Progress, SolveResult

STRATEGIES = ("cpsat", "layer", "greedy")


def plan_graph(graph: Graph, hw: HardwareProfile, strategy: str = "cpsat", objective: str = "energy",
               config: SolverConfig | None = None, user: UserConstraints | None = None,
               weights: Mapping[str, float] | None = None, progress: Progress | None = None) -> SolveResult:
    """Plan ``graph`` with a strategy; every plan returned has passed the validator."""
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    config = config or SolverConfig()
    t0 = time.perf_counter()
    baselines: dict[str, Plan] = {}
    if strategy == "cpsat":  # computes the baselines too, within its time budget, and validates its plan
        return solve_cpsat(graph, hw, objective, config, user, weights, progress)
    if objective != "energy":
        raise UsageError(f"the {strategy} baseline has no objective to choose: use --strategy cpsat for --objective {objective}")
    if user is not None and user.max_recompute_macs is not None:
        raise UsageError(f"--max-recompute applies to --strategy cpsat only; the {strategy} baseline does not choose its recompute")
    cache = CostCache(graph, hw)
    check_feasible(graph, hw, cache)
    # both run (the plan JSON reports each); on profiles that keep every feature map in
    # SRAM they raise the error that explains why no baseline applies
    baselines["layer"] = layer_by_layer(graph, hw, cache)
    baselines["greedy"] = greedy(graph, hw, config.max_fuse_depth, cache)
    plan = replace(baselines[strategy], provenance=replace(baselines[strategy].provenance, objective=objective))
    validate_plan(plan, graph, hw)
    return SolveResult(graph, hw, plan, floor(graph, hw), baselines, {"total": round(time.perf_counter() - t0, 3)},
                       config.max_fuse_depth)


def model_sha256(path: str | os.PathLike[str]) -> str:
    return file_sha256(path)


@dataclass(frozen=True)
class Verified:
    """A plan file that passed ``memplan verify`` for its model, with what the verification
    loaded and computed: the graph (at the plan's input shapes), the parsed plan and profile,
    and the quantised graph with its seeded input and reference (what the exports embed)."""

    report: VerifyReport
    graph: Graph
    plan: Plan
    hw: HardwareProfile
    prepared: Prepared


def verify_files(model: str | os.PathLike[str], plan_path: str | os.PathLike[str],
                 input_shapes: Mapping[str, tuple[int, ...]] | None = None, seed: int = 0,
                 host_ops: str | None = None) -> VerifyReport:
    """``memplan verify``: the plan file at ``plan_path`` against the model file it was made
    for (every check of :mod:`memplan.execute.verify`). The model is loaded at the input
    shapes and with the host-ops setting the plan records; given ones must agree with them."""
    return verified_plan(model, plan_path, input_shapes, seed, host_ops).report


def verified_plan(model: str | os.PathLike[str], plan_path: str | os.PathLike[str],
                  input_shapes: Mapping[str, tuple[int, ...]] | None = None, seed: int = 0,
                  host_ops: str | None = None) -> Verified:
    """:func:`verify_files`, keeping what the verification loaded (``memplan export``)."""
    start = time.perf_counter()
    doc = read_plan_document(plan_path)
    return _verify(model, doc, input_shapes, seed, host_ops, start)


def verify_model_document(model: str | os.PathLike[str], doc: Mapping[str, Any],
                          input_shapes: Mapping[str, tuple[int, ...]] | None = None, seed: int = 0,
                          host_ops: str | None = None, start: float | None = None) -> VerifyReport:
    """:func:`verify_files` of a plan document already read (``start``: when reading began,
    counted in the report's load time)."""
    return _verify(model, doc, input_shapes, seed, host_ops, start).report


def _verify(model: str | os.PathLike[str], doc: Mapping[str, Any], input_shapes: Mapping[str, tuple[int, ...]] | None,
            seed: int, host_ops: str | None, start: float | None) -> Verified:
    start = time.perf_counter() if start is None else start
    doc = dict(doc)
    check_document(doc)  # before any field of it is read
    sha256 = verified_sha256(model)
    if doc["model"]["sha256"] != sha256:  # before loading: the recorded shapes are this model's only
        raise VerificationError(f"the plan was made for a model with sha256 {str(doc['model']['sha256'])[:12]}..., but "
                                f"{str(model)!r} has sha256 {sha256[:12]}...: re-run memplan solve on this model")
    recorded = doc["model"].get("input_shapes") or {}
    for name, shape in (input_shapes or {}).items():
        if name in recorded and tuple(shape) != tuple(recorded[name]):
            raise UsageError(f"--input-shape {name}={'x'.join(map(str, shape))} contradicts the plan, made for "
                             f"{name}={'x'.join(map(str, recorded[name]))}: omit --input-shape (the plan records it)")
    shapes = {**{k: tuple(v) for k, v in recorded.items()}, **(input_shapes or {})}
    made = doc["settings"].get("host_ops", "cpu")
    if host_ops is not None and host_ops != made:
        raise UsageError(f"--host-ops {host_ops} contradicts the plan, made with --host-ops {made}: omit --host-ops "
                         "(the plan records it)")
    graph = load_model(model, shapes, host_ops=made)
    loaded = time.perf_counter() - start
    prepared = prepare(graph, seed)
    report = verify_document(graph, doc, sha256, seed, prepared=prepared)
    times = {"load": loaded, **report.times}
    tflm = None
    if str(model).lower().endswith(".tflite") and report.passed:  # TFLite Micro is the int8 reference of .tflite
        t0 = time.perf_counter()
        tflm = compare_with_tflm(model, graph, prepared)
        times["tflm"] = time.perf_counter() - t0
        if tflm.match is False:
            raise VerificationError(f"the plan runs bit-exactly against memplan's reference, but TFLite Micro disagrees: "
                                    f"{tflm.detail}")
    report = replace(report, wall_time_s=report.wall_time_s + loaded + times.get("tflm", 0.0), times=times, tflm=tflm)
    plan, hw = plan_from_json(doc)
    if graph.name != plan.graph_name:  # the same model bytes under another file name (the sha256 was checked)
        graph = replace(graph, name=plan.graph_name)
    return Verified(report, graph, plan, hw, prepared)
