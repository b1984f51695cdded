"""Command dependencies (``waits_for``): any order of the commands that respects them computes
the same outputs, moves the same bytes and does the same work as the plan's own order; an
order that breaks one of them is caught."""

from __future__ import annotations

import dataclasses
import heapq
import random

import numpy as np
import pytest

from memplan.config import SolverConfig, load_profile
from memplan.driver import plan_graph
from memplan.errors import VerificationError
from memplan.execute.tiled import execute_plan
from memplan.execute.verify import prepare
from memplan.frontend import load_model
from memplan.geometry.region import Region
from memplan.plan.hazards import region_span, waits_for
from memplan.plan.memory_map import memory_map
from memplan.plan.model import Op, Plan
from memplan.zoo import build_zoo_model
from test_tiled import MODELS

CONFIG = SolverConfig(time_limit_s=5, deterministic=True, max_fuse_depth=6)


def _shapes(graph):
    return {n: t.shape[1:] for n, t in graph.tensors.items() if t.is_feature_map}


def _multi_output_case():
    """A skip block whose first tensor a multi-output group stores from its tile buffer's view,
    in three row stripes (two slots: each stripe's store overlaps the next stripe's compute)."""
    from memplan.geometry.group import Tiling
    from memplan.ir.builder import GraphBuilder
    from memplan.plan.build import build_plan
    from memplan.plan.model import Decisions, GroupDecision

    b = GraphBuilder("skip", seed=3)
    x = b.input((1, 4, 12, 12))
    t = b.conv(x, 4, 3, name="A")
    v = b.conv(b.conv(t, 4, 3, name="B"), 4, 1, name="C")
    graph = b.build(b.add(v, t, name="D"))
    hw = load_profile("generic-npu").with_tiling(multi_output=True).with_sram(64 * 1024)
    plan = build_plan(graph, hw, Decisions((GroupDecision(0, 3, Tiling(4, 12, 4)), GroupDecision(3, 4, Tiling(12, 12, 4)))))
    return graph, hw, plan


@pytest.fixture(scope="module", params=["resnet8-cpsat", "unet-greedy", "resnet8-layer", "unet-rolling", "skip-multi"])
def case(request: pytest.FixtureRequest):
    if request.param == "skip-multi":
        graph, hw, plan = _multi_output_case()
        return graph, hw, plan, waits_for(plan, memory_map(plan, graph), _shapes(graph)), prepare(graph)
    name, strategy = request.param.split("-")
    graph = (load_model(MODELS / "resnet8_float.onnx") if name == "resnet8"
             else build_zoo_model("unet", resolution=32, base=4, levels=2))
    hw = load_profile("generic-npu").with_sram(48 * 1024)
    if strategy == "rolling":  # copies and loads into staging views between the slots of rolling buffers
        hw = hw.with_sram(12 * 1024).with_tiling(rolling_buffers=True)
        strategy = "cpsat"
    plan = plan_graph(graph, hw, strategy=strategy, config=CONFIG).plan
    if hw.tiling.rolling_buffers:
        assert any(c.op is Op.COPY for c in plan.commands)
    deps = waits_for(plan, memory_map(plan, graph), _shapes(graph))
    return graph, hw, plan, deps, prepare(graph)


def _random_order(deps: tuple[tuple[int, ...], ...], rng: random.Random) -> list[int]:
    """A random linear extension of the dependency order (Kahn's algorithm, random priorities)."""
    n = len(deps)
    succ: list[list[int]] = [[] for _ in range(n)]
    indeg = [len(d) for d in deps]
    for j, d in enumerate(deps):
        for i in d:
            succ[i].append(j)
    ready = [(rng.random(), j) for j in range(n) if indeg[j] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, i = heapq.heappop(ready)
        order.append(i)
        for j in succ[i]:
            indeg[j] -= 1
            if indeg[j] == 0:
                heapq.heappush(ready, (rng.random(), j))
    assert len(order) == n, "the dependencies have a cycle"
    return order


def _run(plan: Plan, order: list[int], hw, prepared):
    reordered = dataclasses.replace(plan, commands=tuple(plan.commands[i] for i in order))
    return execute_plan(reordered, prepared.qgraph, hw, prepared.inputs)


def test_waits_point_backwards_only(case) -> None:
    _, _, plan, deps, _ = case
    assert len(deps) == len(plan.commands)
    assert all(all(i < j for i in d) for j, d in enumerate(deps))
    # every compute waits for something (its inputs are written by earlier commands or the host)
    assert sum(1 for d in deps if d) > len(deps) // 2


def test_any_order_respecting_the_waits_gives_the_same_run(case) -> None:
    graph, hw, plan, deps, prepared = case
    base = _run(plan, list(range(len(plan.commands))), hw, prepared)
    moved = 0
    for seed in range(3):
        order = _random_order(deps, random.Random(seed))
        moved += sum(1 for k, i in enumerate(order) if k != i)
        run = _run(plan, order, hw, prepared)
        for name in graph.outputs:
            np.testing.assert_array_equal(run.outputs[name], base.outputs[name])
            np.testing.assert_array_equal(run.outputs[name], prepared.reference[name])
        assert run.counts == base.counts
    assert moved > len(plan.commands) // 10, "the random orders hardly moved anything: the test would prove nothing"


def test_breaking_a_read_after_write_wait_is_caught(case) -> None:
    _, hw, plan, deps, prepared = case
    # the first compute that waits for a load: run it before that load
    j = next(j for j, d in enumerate(deps) if plan.commands[j].op is Op.COMPUTE
             and any(plan.commands[i].op is Op.LOAD for i in d))
    i = max(i for i in deps[j] if plan.commands[i].op is Op.LOAD)
    order = list(range(len(plan.commands)))
    order.remove(j)
    order.insert(order.index(i), j)
    with pytest.raises(VerificationError):
        _run(plan, order, hw, prepared)


def test_region_span_is_the_hull_of_its_bytes() -> None:
    held = Region(2, 6, 1, 5, 0, 7)
    part = Region(3, 5, 2, 4, 1, 3)
    lo, hi = region_span(held, part, 100, 1)
    cells = [100 + ((c - 2) * 4 + (y - 1)) * 7 + x for c in range(3, 5) for y in range(2, 4) for x in range(1, 3)]
    assert (lo, hi) == (min(cells), max(cells) + 1)
    assert region_span(held, held, 0, 2) == (0, 2 * 4 * 4 * 7)
