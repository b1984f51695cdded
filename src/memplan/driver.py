"""The pipeline, stage by stage: model -> graph -> plan -> validated plan JSON.

Reads like the architecture: load and check the graph, check that every layer can run at
all, plan with the chosen strategy, validate the plan independently, attach the floor and
the baselines, serialise.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from memplan.baselines import (
    CostCache,
    Floor,
    check_feasible,
    floor,
    greedy,
    layer_by_layer,
)
from memplan.config import HardwareProfile, SolverConfig
from memplan.errors import UsageError
from memplan.ir.graph import Graph
from memplan.plan.model import Plan
from memplan.plan.serialize import file_sha256, plan_to_json
from memplan.plan.validate import validate_plan
from memplan.solve import UserConstraints, solve_cpsat
from memplan.solve.run import Progress

STRATEGIES = ("cpsat", "layer", "greedy")


@dataclass(frozen=True)
class SolveOutcome:
    """A validated plan with the floor and the baselines. ``timings`` (seconds per stage and
    ``total``) describe this run only: they are shown, never written into the plan, so that
    the same model, config, profile and seed give the same plan bytes."""

    graph: Graph
    hw: HardwareProfile
    plan: Plan
    floor: Floor
    baselines: dict[str, Plan]
    timings: Mapping[str, float] = field(default_factory=dict)
    #: the longest fused group the greedy baseline was allowed (verify recomputes the baseline)
    max_fuse_depth: int = SolverConfig.max_fuse_depth

    def to_json(self, model_sha256: str | None) -> dict[str, Any]:
        plan = self.plan
        meta = dict(plan.meta)
        meta["model_sha256"] = model_sha256
        if self.graph.input_shapes:  # the shapes the model was loaded with: verify needs no --input-shape
            meta["model_input_shapes"] = {k: list(v) for k, v in self.graph.input_shapes.items()}
        meta["settings"] = {"max_fuse_depth": self.max_fuse_depth, "host_ops": self.graph.host_ops}
        meta["floor"] = self.floor.to_json()
        meta["baselines"] = {name: p.totals.to_json() for name, p in self.baselines.items()}
        return plan_to_json(replace(plan, meta=meta), self.hw, [layer.id for layer in self.graph.layers])


def plan_graph(graph: Graph, hw: HardwareProfile, strategy: str = "cpsat", objective: str = "energy",
               config: SolverConfig | None = None, user: UserConstraints | None = None,
               weights: Mapping[str, float] | None = None, progress: Progress | None = None) -> SolveOutcome:
    """Plan ``graph`` with a strategy; every plan returned has passed the validator."""
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    config = config or SolverConfig()
    t0 = time.perf_counter()
    baselines: dict[str, Plan] = {}
    if strategy == "cpsat":  # computes the baselines too, within its time budget, and validates its plan
        result = solve_cpsat(graph, hw, objective, config, user, weights, progress)
        return SolveOutcome(graph, hw, result.plan, floor(graph, hw), dict(result.baselines), result.timings,
                            config.max_fuse_depth)
    if objective != "energy":
        raise UsageError(f"the {strategy} baseline has no objective to choose: use --strategy cpsat for --objective {objective}")
    cache = CostCache(graph, hw)
    check_feasible(graph, hw, cache)
    # both run (the plan JSON reports each); on profiles that keep every feature map in
    # SRAM they raise the error that explains why no baseline applies
    baselines["layer"] = layer_by_layer(graph, hw, cache)
    baselines["greedy"] = greedy(graph, hw, config.max_fuse_depth, cache)
    plan = replace(baselines[strategy], meta={**baselines[strategy].meta, "objective": objective})
    validate_plan(plan, graph, hw)
    return SolveOutcome(graph, hw, plan, floor(graph, hw), baselines, {"total": round(time.perf_counter() - t0, 3)},
                        config.max_fuse_depth)


def model_sha256(path: str | os.PathLike[str]) -> str:
    return file_sha256(path)
