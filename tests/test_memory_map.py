"""The DRAM memory map: every tensor that leaves SRAM has an aligned home, tensors whose
lifetimes meet never share bytes, and the weight blob holds each layer's rows and biases apart."""

from __future__ import annotations

import pytest

from memplan.config import SolverConfig, load_profile
from memplan.driver import plan_graph
from memplan.frontend import load_model
from memplan.ir.ops import WEIGHTED
from memplan.plan.memory_map import DRAM_ALIGN, ROLE_INPUT, ROLE_OUTPUT, memory_map, tensor_order
from memplan.plan.model import BufferKind, Op
from memplan.zoo import build_zoo_model
from test_tiled import MODELS

CONFIG = SolverConfig(time_limit_s=5, deterministic=True, max_fuse_depth=6)


@pytest.fixture(scope="module", params=["resnet8-layer", "resnet8-cpsat", "unet-greedy"])
def case(request: pytest.FixtureRequest):
    name, strategy = request.param.split("-")
    graph = (load_model(MODELS / "resnet8_float.onnx") if name == "resnet8"
             else build_zoo_model("unet", resolution=32, base=4, levels=2))
    hw = load_profile("generic-npu").with_sram(48 * 1024)
    return graph, plan_graph(graph, hw, strategy=strategy, config=CONFIG).plan


def test_dram_homes_are_aligned_and_disjoint_while_live(case) -> None:
    graph, plan = case
    mm = memory_map(plan, graph)
    assert mm.tensors, "these plans spill: some tensor must live in DRAM"
    for t in mm.tensors:
        assert t.offset % DRAM_ALIGN == 0 and t.end <= mm.arena_bytes and t.first <= t.last
    for i, a in enumerate(mm.tensors):
        for b in mm.tensors[i + 1:]:
            if a.first <= b.last and b.first <= a.last:
                assert a.end <= b.offset or b.end <= a.offset, (a, b)
    # the packing reuses addresses: never more than all tensors side by side
    assert mm.arena_bytes <= sum(-(-t.size // DRAM_ALIGN) * DRAM_ALIGN for t in mm.tensors)


def test_every_moved_tensor_has_a_home_that_covers_its_commands(case) -> None:
    graph, plan = case
    mm = memory_map(plan, graph)
    resident = {b.tensor for b in plan.buffers if b.kind is BufferKind.RESIDENT}
    for k, cmd in enumerate(plan.commands):
        if cmd.op in (Op.LOAD, Op.STORE):
            home = mm.dram(cmd.tensor)
            assert home is not None and home.first <= k <= home.last
            c, h, w = graph.shape(cmd.tensor)[1:]
            assert home.size == c * h * w
    for name in graph.inputs:
        assert (mm.dram(name) is None) == (name in resident)
        if name not in resident:
            assert mm.dram(name).role == ROLE_INPUT and mm.dram(name).first == 0
    for name in graph.outputs:
        if name not in resident:
            assert mm.dram(name).role == ROLE_OUTPUT and mm.dram(name).last == len(plan.commands)


def test_weight_blob_records(case) -> None:
    graph, plan = case
    mm = memory_map(plan, graph)
    weighted = [layer for layer in graph.layers if layer.op in WEIGHTED]
    assert [w.layer for w in mm.weights] == [layer.id for layer in weighted]
    spans = []
    for rec, layer in zip(mm.weights, weighted):
        assert rec.weight_bytes == graph.weight_elems(layer)
        assert rec.offset % DRAM_ALIGN == 0
        spans.append((rec.offset, rec.offset + rec.weight_bytes))
        assert (rec.bias_offset is None) == (layer.bias is None)
        if rec.bias_offset is not None:
            assert rec.bias_offset % DRAM_ALIGN == 0
            spans.append((rec.bias_offset, rec.bias_offset + 4 * rec.channels))
    spans.sort()
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])) and spans[-1][1] <= mm.weights_bytes
    assert sorted(mm.tensor_ids.values()) == list(range(len(tensor_order(graph))))
