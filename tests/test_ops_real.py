"""Operators of real detection / segmentation / OCR / pose models: elementwise ops of feature
maps with broadcasting, ...

Each operator gets hand-computed goldens (shape rule, region back-propagation, float value,
int8 value against the TFLite-Micro formula) and a graph planned by every planner with a
small SRAM (so groups fuse and tile) and verified bit-exactly."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from memplan.baselines import greedy, layer_by_layer
from memplan.config import HardwareProfile, SolverConfig, load_profile
from memplan.errors import ModelError
from memplan.execute import prepare, verify_plan
from memplan.execute.float_ref import run_float
from memplan.frontend import load_model
from memplan.frontend.export import save_onnx
from memplan.geometry.backprop import block_region, input_regions
from memplan.geometry.region import Region
from memplan.execute.kernels import Tile, required_input_regions, run_layer
from memplan.execute.quantize import QLayer, QParams, activation_lut, quantize_graph
from memplan.ir.builder import GraphBuilder, prelu
from memplan.ir.graph import Graph
from memplan.ir.ops import (
    Activation,
    ActKind,
    Attrs,
    BlockAttrs,
    ConvAttrs,
    NoAttrs,
    OpKind,
    SliceAttrs,
    ZeroPadAttrs,
    infer_output_shape,
)
from memplan.plan.model import Op, Plan
from memplan.solve import solve_cpsat
from test_kernels import _full, _single

I8 = np.int8
NPU = load_profile("generic-npu")
CPSAT = SolverConfig(time_limit_s=5, deterministic=True, max_fuse_depth=6)
SIGMOID = Activation(ActKind.SIGMOID)


def _cpsat(g: Graph, hw: HardwareProfile) -> Plan:
    return solve_cpsat(g, hw, "energy", CPSAT).plan


PLANNERS: dict[str, Callable[[Graph, HardwareProfile], Plan]] = {
    "layer": layer_by_layer, "greedy": greedy, "cpsat": _cpsat}


def _verify_everywhere(g: Graph, srams: tuple[int, ...], fused: set[str]) -> None:
    """Every planner's plan verifies bit-exactly; some plan computes each layer of ``fused`` in
    a tiled group of several layers."""
    prepared = prepare(g)
    seen: set[str] = set()
    for sram in srams:
        hw = NPU.with_sram(sram)
        for planner in PLANNERS.values():
            plan = planner(g, hw)
            report = verify_plan(g, plan, hw, prepared=prepared)
            assert report.passed and report.bit_exact and report.counts_match, report.failure
            for k, gd in enumerate(plan.decisions.groups):
                tiles = {c.tile for c in plan.commands if c.op is Op.COMPUTE and c.group == k}
                assert {c.layer for c in plan.commands if c.op is Op.COMPUTE and c.group == k} == {
                    g.layers[i].id for i in range(gd.start, gd.stop)}
                if gd.stop - gd.start > 1 and len(tiles) > 1:
                    seen |= {g.layers[i].id for i in range(gd.start, gd.stop)}
    assert fused <= seen, f"never fused and tiled: {sorted(fused - seen)}"


def _inputs(g: Graph, **arrays: list[float]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.float64).reshape(g.shape(k)) for k, v in arrays.items()}


# ---------------------------------------------------------------------------- elementwise
def test_elementwise_shape_rule_broadcasts_size_one_axes() -> None:
    full, se, gate = (1, 4, 6, 5), (1, 4, 1, 1), (1, 1, 6, 5)
    for op in (OpKind.ADD, OpKind.SUB, OpKind.MUL, OpKind.MAX, OpKind.MIN):
        assert infer_output_shape(op, NoAttrs(), (full, se)) == full
        assert infer_output_shape(op, NoAttrs(), (gate, full)) == full
        assert infer_output_shape(op, NoAttrs(), (se, gate)) == full  # both broadcast
        with pytest.raises(ValueError, match="broadcast"):
            infer_output_shape(op, NoAttrs(), (full, (1, 2, 6, 5)))
        with pytest.raises(ValueError, match="broadcast"):
            infer_output_shape(op, NoAttrs(), (full, (2, 4, 6, 5)))  # never the batch
    with pytest.raises(ValueError, match="takes 2 inputs"):
        infer_output_shape(OpKind.MUL, NoAttrs(), (full, full, full))
    assert infer_output_shape(OpKind.MAX, NoAttrs(), (full, full, se)) == full


def test_elementwise_backprop_reads_the_single_cell_of_broadcast_axes() -> None:
    b = GraphBuilder("bp")
    x, s, m = b.input((1, 4, 6, 6), "x"), b.input((1, 4, 1, 1), "s"), b.input((1, 1, 6, 6), "m")
    y = b.mul(x, s)
    z = b.sub(y, m)
    g = b.build(z)
    out = Region(1, 3, 2, 4, 0, 5)
    assert input_regions(g, g.layers[0], out) == (out, Region(1, 3, 0, 1, 0, 1))
    assert input_regions(g, g.layers[1], out) == (out, Region(0, 1, 2, 4, 0, 5))


def test_elementwise_float_values() -> None:
    b = GraphBuilder("f")
    x, s, m = b.input((1, 2, 1, 2), "x"), b.input((1, 2, 1, 1), "s"), b.input((1, 1, 1, 2), "m")
    outs = [b.mul(x, s), b.sub(x, m), b.maximum(x, m), b.minimum(x, s), b.add(x, s)]
    g = b.build(tuple(outs))
    v = run_float(g, _inputs(g, x=[1, -2, 3, 4], s=[10, -1], m=[2, 0]))
    assert v[outs[0]].reshape(-1).tolist() == [10, -20, -3, -4]
    assert v[outs[1]].reshape(-1).tolist() == [-1, -2, 1, 4]
    assert v[outs[2]].reshape(-1).tolist() == [2, 0, 3, 4]
    assert v[outs[3]].reshape(-1).tolist() == [1, -2, -1, -1]
    assert v[outs[4]].reshape(-1).tolist() == [11, 8, 2, 3]


def test_mul_int8_is_tflite_mul() -> None:
    # a: scale 0.5 zp 3, b: scale 0.25 zp -2, out: scale 0.1 zp 1 -> M = 0.125 / 0.1 = 1.25
    # (Q31 2**30 * 1.25 = 1342177280 with shift 1)
    ql = _single(OpKind.MUL, NoAttrs(), [(1, 1, 1, 5)] * 2, params=[(0.5, 3), (0.25, -2), (0.1, 1)])
    a = np.array([7, 3, 0, 127, 0], I8).reshape(1, 1, 1, 5)
    b = np.array([5, 10, 4, 127, 0], I8).reshape(1, 1, 1, 5)
    # products of (a - 3)(b + 2): 28, 0, -18, 15996, -6; times 1.25: 35, 0, -22.5, 19995, -7.5
    # SRDHM rounds a positive tie up and a negative tie towards zero: -22.5 -> -22, -7.5 -> -7
    assert _full(ql, a, b).reshape(-1).tolist() == [36, 1, -21, 127, -6]


def test_mul_broadcasts_a_channel_scale_in_int8() -> None:
    ql = _single(OpKind.MUL, NoAttrs(), [(1, 2, 2, 2), (1, 2, 1, 1)], params=[(1.0, 0), (1.0, 0), (1.0, 0)])
    x = np.arange(1, 9, dtype=I8).reshape(1, 2, 2, 2)
    s = np.array([2, -3], I8).reshape(1, 2, 1, 1)
    assert _full(ql, x, s).reshape(-1).tolist() == [2, 4, 6, 8, -15, -18, -21, -24]


def test_sub_int8_is_tflite_sub() -> None:
    # as the add golden, with the second input subtracted:
    # reals 1.5-1.5 = 0 -> -5; 0.5-0.25 = 0.25 -> 0 -> -5; -0.5-0 -> -1 (away from 0) -> -6; 63.5+34.5 = 98 -> 93
    ql = _single(OpKind.SUB, NoAttrs(), [(1, 1, 1, 4)] * 2, params=[(0.5, 0), (0.25, 10), (1.0, -5)])
    a = np.array([3, 1, -1, 127], I8).reshape(1, 1, 1, 4)
    b = np.array([16, 11, 10, -128], I8).reshape(1, 1, 1, 4)
    assert _full(ql, a, b).reshape(-1).tolist() == [-5, -5, -6, 93]


def test_max_min_rescale_inputs_to_the_output_parameters() -> None:
    params = [(0.5, 0), (1.0, 0), (1.0, 0)]
    a = np.array([4, -3, 10], I8).reshape(1, 1, 1, 3)
    b = np.array([1, -2, 7], I8).reshape(1, 1, 1, 3)
    # a * 0.5 through SRDHM: 2, -1.5 -> -1, 5
    for op, want in ((OpKind.MAX, [2, -1, 7]), (OpKind.MIN, [1, -2, 5])):
        ql = _single(op, NoAttrs(), [(1, 1, 1, 3)] * 2, params=params)
        assert ql.input_requants[1] is None
        assert _full(ql, a, b).reshape(-1).tolist() == want


def squeeze_excite() -> Graph:
    """A MobileNetV3 / EfficientNet block: squeeze-excite channel scale, a spatial gate, and
    sub / max / min of feature maps."""
    b = GraphBuilder("se", seed=5)
    x = b.input((1, 6, 16, 16))
    x = b.conv(x, 16, 3, name="stem")
    s = b.conv(b.conv(b.global_avg_pool(x), 4, 1), 16, 1, activation=SIGMOID)
    x = b.mul(x, s, name="se_scale")
    gate = b.conv(x, 1, 3, activation=SIGMOID)
    y = b.mul(b.conv(x, 16, 3, name="body"), gate, name="spatial_gate")
    z = b.sub(y, b.conv(x, 16, 1), name="diff")
    z = b.maximum(z, x, activation=Activation(ActKind.RELU), name="max")
    z = b.minimum(b.conv(z, 16, 3), z, name="min")
    return b.build(z)


def test_elementwise_graph_plans_fuse_tile_and_verify() -> None:
    _verify_everywhere(squeeze_excite(), (8 * 1024, 32 * 1024), {"se_scale", "spatial_gate", "diff", "max", "min"})


# ---------------------------------------------------------------------------- ONNX round trip
def _ort_matches(g: Graph, path: Path) -> Graph:
    """Export ``g``, check onnxruntime computes what the float reference does, reimport."""
    import onnxruntime as ort  # a test dependency: missing, the test fails
    save_onnx(g, path)
    rng = np.random.default_rng(0)
    feeds = {name: rng.standard_normal(g.shape(name)).astype(np.float32) for name in g.inputs}
    got = ort.InferenceSession(str(path)).run(None, feeds)
    want = run_float(g, feeds)
    for name, value in zip(g.outputs, got, strict=True):
        np.testing.assert_allclose(value.reshape(want[name].shape), want[name], rtol=1e-4, atol=1e-4)
    return load_model(path)


def test_elementwise_ops_round_trip_through_onnx(tmp_path: Path) -> None:
    g = squeeze_excite()
    back = _ort_matches(g, tmp_path / "se.onnx")
    assert [layer.op for layer in back.layers] == [layer.op for layer in g.layers]


def _onnx_model(nodes: list[onnx.NodeProto], inits: dict[str, np.ndarray], shape: tuple[int, ...],
                out_shape: tuple[int, ...], opset: int = 13) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _import_and_compare(model: onnx.ModelProto, path: Path) -> Graph:
    import onnxruntime as ort  # a test dependency: missing, the test fails
    onnx.save(model, path)
    g = load_model(path)
    x = np.random.default_rng(1).standard_normal(g.shape("x")).astype(np.float32)
    (want,) = ort.InferenceSession(str(path)).run(None, {"x": x})
    got = run_float(g, {"x": x})[g.outputs[0]]
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-4, atol=1e-5)
    return g


def test_squeeze_excite_mul_of_nhwc_views_imports(tmp_path: Path) -> None:
    """tflite2onnx's SE: ``Transpose(x) * Reshape(sigmoid(conv(gap)), (1, 1, 1, C))`` in NHWC,
    transposed back; and Max / Min with a scalar constant become a Clip."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((4, 4, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Transpose", ["c"], ["c_nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("GlobalAveragePool", ["c"], ["gap"]),
        helper.make_node("Conv", ["gap", "w2"], ["s0"]),
        helper.make_node("Sigmoid", ["s0"], ["s1"]),
        helper.make_node("Reshape", ["s1", "shape"], ["s_nhwc"]),
        helper.make_node("Mul", ["c_nhwc", "s_nhwc"], ["m_nhwc"]),
        helper.make_node("Transpose", ["m_nhwc"], ["m"], perm=[0, 3, 1, 2]),
        helper.make_node("Max", ["m", "zero"], ["r"]),
        helper.make_node("Min", ["r", "six"], ["y"]),
    ]
    inits = {"w1": w1, "w2": w2, "shape": np.array([1, 1, 1, 4], np.int64), "zero": np.float32(0.0),
             "six": np.float32(0.5)}
    g = _import_and_compare(_onnx_model(nodes, inits, (1, 3, 6, 6), (1, 4, 6, 6)), tmp_path / "se.onnx")
    mul = next(layer for layer in g.layers if layer.op is OpKind.MUL)
    assert [g.shape(t) for t in mul.inputs] == [(1, 4, 6, 6), (1, 4, 1, 1)]
    assert mul.activation == Activation(ActKind.RELU)  # Max(m, 0); Min(r, 0.5) is a second activation
    assert g.layers[-1].activation == Activation(ActKind.CLIP, (-math.inf, 0.5))


# ---------------------------------------------------------------------------- decomposed hard-swish
def _const_node(name: str, value: float) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value, np.float32)))


@pytest.mark.parametrize("form", ["div_after_mul", "mul_sixth_after_mul", "gate_then_mul", "hard_sigmoid"])
def test_decomposed_hard_swish_fuses_as_hard_swish(form: str, tmp_path: Path) -> None:
    """Paddle / Keras export ``x * relu6(x + 3) / 6``; the Clip bounds are Constant nodes that
    come after the Add in the file, as in rapidocr."""
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c", "three"], ["a"]),
             _const_node("lo", 0.0), _const_node("hi", 6.0),
             helper.make_node("Clip", ["a", "lo", "hi"], ["r6"])]
    if form == "div_after_mul":
        nodes += [helper.make_node("Mul", ["c", "r6"], ["m"]), helper.make_node("Div", ["m", "six"], ["y"])]
    elif form == "mul_sixth_after_mul":
        nodes += [helper.make_node("Mul", ["r6", "c"], ["m"]), helper.make_node("Mul", ["sixth", "m"], ["y"])]
    elif form == "gate_then_mul":
        nodes += [helper.make_node("Div", ["r6", "six"], ["hs"]), helper.make_node("Mul", ["c", "hs"], ["y"])]
    else:
        nodes += [helper.make_node("Div", ["r6", "six"], ["y"])]
    inits = {"w": w, "three": np.float32(3.0), "six": np.float32(6.0), "sixth": np.float32(1 / 6)}
    g = _import_and_compare(_onnx_model(nodes, inits, (1, 3, 5, 5), (1, 4, 5, 5)), tmp_path / "hs.onnx")
    assert [layer.op for layer in g.layers] == [OpKind.CONV]
    want = Activation(ActKind.HARD_SIGMOID, (1 / 6, 0.5)) if form == "hard_sigmoid" else Activation(ActKind.HARD_SWISH)
    assert g.layers[0].activation == want


def test_relu6_times_input_without_the_sixth_stays_arithmetic(tmp_path: Path) -> None:
    """``x * relu6(x + 3)`` (no / 6) is not hard-swish: it imports as clip and mul layers."""
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c", "three"], ["a"]),
             helper.make_node("Clip", ["a", "lo", "hi"], ["r6"]),
             helper.make_node("Mul", ["c", "r6"], ["y"])]
    inits = {"w": w, "three": np.float32(3.0), "lo": np.float32(0.0), "hi": np.float32(6.0)}
    g = _import_and_compare(_onnx_model(nodes, inits, (1, 3, 5, 5), (1, 4, 5, 5)), tmp_path / "r6.onnx")
    assert OpKind.MUL in [layer.op for layer in g.layers]


# ---------------------------------------------------------------------------- PRelu
def test_prelu_lut_is_one_table_per_channel() -> None:
    stage, out = QParams(0.5, 0), QParams(0.25, 10)
    lut = activation_lut(prelu([0.3, -1.0]), stage, out)
    assert lut.shape == (2, 256)
    # q = -7: x = -3.5; slope 0.3: -1.05 / 0.25 = -4.2 -> -4 + 10 = 6; slope -1: 3.5 -> 14 + 10 = 24
    # q = 5: x = 2.5 -> 10 + 10 = 20 on both channels
    assert [lut[0, -7 + 128], lut[1, -7 + 128], lut[0, 5 + 128], lut[1, 5 + 128]] == [6, 24, 20, 20]


def test_prelu_float_and_channel_tiles_in_int8() -> None:
    b = GraphBuilder("p")
    x = b.input((1, 2, 1, 2), "x")
    w = np.ones((2, 1, 1, 1), np.float32)
    y = b.add_layer(OpKind.CONV, (x,), ConvAttrs((1, 1), groups=2), 2, w, None, prelu([0.5, -2.0]))
    g = b.build(y)
    assert run_float(g, _inputs(g, x=[-4, 3, -1, 2]))[y].reshape(-1).tolist() == [-2, 3, 2, 2]
    ql = quantize_graph(g).layers[0]
    q = np.array([-100, 50, -20, 90], I8).reshape(1, 2, 1, 2)
    whole = _full(ql, q)
    # the second channel alone uses the second channel's table
    part = run_layer(ql, [Tile.cut(q, Region(1, 2, 0, 1, 0, 2))], Region(1, 2, 0, 1, 0, 2))
    assert np.array_equal(part, whole[:, 1:2])
    assert ql.weight is not None and ql.requant is not None
    acc = (q.astype(np.int64) - ql.in_q[0].zero_point) * ql.weight.astype(np.int64).reshape(1, 2, 1, 1)
    stage = ql.requant.apply(acc) + ql.stage_q.zero_point
    assert ql.lut is not None and whole[0, 1, 0, 0] == ql.lut[1, int(stage[0, 1, 0, 0]) + 128]


def prelu_net() -> Graph:
    b = GraphBuilder("prelu", seed=7)
    x = b.input((1, 8, 12, 12))
    rng = np.random.default_rng(0)
    x = b.conv(x, 32, 3, activation=prelu(rng.uniform(-0.5, 0.5, 32)), name="p1")
    x = b.conv(x, 24, 1, activation=prelu(rng.uniform(-0.5, 0.5, 24)), name="p2")
    x = b.depthwise(x, 3, activation=prelu(rng.uniform(-0.5, 0.5, 24)), name="p3")
    return b.build(x)


def test_prelu_graph_plans_split_channels_and_verify() -> None:
    g = prelu_net()
    _verify_everywhere(g, (4 * 1024, 16 * 1024), {"p1", "p2"})
    plan = greedy(g, NPU.with_sram(4 * 1024))
    assert any(c.op is Op.COMPUTE and c.region.channels < g.shape(c.output.tensor)[1] for c in plan.commands)


def test_per_channel_prelu_imports(tmp_path: Path) -> None:
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("PRelu", ["c", "slope"], ["y"])]
    slope = np.array([0.1, -0.2, 0.3, 0.25], np.float32).reshape(4, 1, 1)
    g = _import_and_compare(_onnx_model(nodes, {"w": w, "slope": slope}, (1, 3, 5, 5), (1, 4, 5, 5)),
                            tmp_path / "prelu.onnx")
    assert [layer.op for layer in g.layers] == [OpKind.CONV]
    assert g.layers[0].activation == prelu(slope)
    back = _ort_matches(g, tmp_path / "back.onnx")
    assert back.layers[0].activation == g.layers[0].activation


# ---------------------------------------------------------------------------- zero pad
def test_pad_shape_backprop_float_and_int8() -> None:
    attrs = ZeroPadAttrs((1, 2), (1, 0, 0, 2))
    assert infer_output_shape(OpKind.PAD, attrs, ((1, 2, 3, 3),)) == (1, 5, 4, 5)
    b = GraphBuilder("pad")
    x = b.input((1, 2, 3, 3), "x")
    y = b.pad(x, (1, 2), (1, 0, 0, 2))
    g = b.build(y)
    # output channels [0, 2) read input channel 0 only; rows [0, 2) read rows [-1, 1) (row -1 is padding)
    assert input_regions(g, g.layers[0], Region(0, 2, 0, 2, 3, 5)) == (Region(0, 1, -1, 1, 3, 5),)
    assert input_regions(g, g.layers[0], Region(3, 5, 0, 4, 0, 5))[0].clip(g.shape(x)).empty
    v = run_float(g, _inputs(g, x=list(range(1, 19))))[y]
    assert v[0, 1].tolist() == [[0] * 5, [1, 2, 3, 0, 0], [4, 5, 6, 0, 0], [7, 8, 9, 0, 0]]
    assert not v[0, 0].any() and not v[0, 3:].any()
    # int8: padding is the zero point (real 0); the output keeps the input's parameters
    ql = _single(OpKind.PAD, attrs, [(1, 2, 3, 3)], params=[(0.5, -7), (0.5, -7)])
    q = np.arange(18, dtype=I8).reshape(1, 2, 3, 3)
    got = _full(ql, q)
    assert got[0, 2, 1].tolist() == [9, 10, 11, -7, -7] and (got[0, 0] == -7).all()
    # a region of padding only reads nothing
    assert run_layer(ql, [None], Region(3, 5, 0, 1, 0, 5)).tolist() == [[[[-7] * 5]] * 2]


def channel_pad_residual() -> Graph:
    """iris_landmark's residual: the shortcut is max-pooled and zero-padded to more channels."""
    b = GraphBuilder("chpad", seed=9)
    x = b.input((1, 4, 16, 16))
    x = b.conv(x, 8, 3, activation=prelu(np.linspace(-0.2, 0.3, 8)))
    body = b.conv(b.conv(x, 8, 3, stride=2), 16, 1, activation=None)
    short = b.pad(b.max_pool(x, 2), (0, 8), name="chpad")
    y = b.add(body, short, activation=prelu(np.linspace(0.1, 0.2, 16)), name="res")
    z = b.pad(b.conv(y, 8, 1), (0, 0), (1, 1, 1, 1), name="spatial_pad")
    return b.build(b.avg_pool(z, 3, 1))


def test_pad_graph_plans_fuse_tile_and_verify() -> None:
    _verify_everywhere(channel_pad_residual(), (4 * 1024, 16 * 1024), {"chpad", "res", "spatial_pad"})


def test_channel_pad_imports_and_round_trips(tmp_path: Path) -> None:
    nodes = [helper.make_node("MaxPool", ["x"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Pad", ["m", "p"], ["t"]), helper.make_node("Relu", ["t"], ["y"])]
    inits = {"p": np.array([0, 0, 0, 0, 0, 3, 1, 0], np.int64)}
    g = _import_and_compare(_onnx_model(nodes, inits, (1, 2, 4, 4), (1, 5, 3, 2)), tmp_path / "pad.onnx")
    assert [layer.op for layer in g.layers] == [OpKind.MAX_POOL, OpKind.PAD]
    assert g.layers[1].attrs == ZeroPadAttrs((0, 3), (0, 0, 1, 0))
    assert [layer.attrs for layer in _ort_matches(g, tmp_path / "back.onnx").layers] == [l.attrs for l in g.layers]


# ---------------------------------------------------------------------------- ReduceMean
@pytest.mark.parametrize("layout, keepdims", [("NCHW", 1), ("NCHW", 0), ("NHWC", 1), ("NHWC", 0)])
def test_spatial_reduce_mean_is_a_global_average_pool(layout: str, keepdims: int, tmp_path: Path) -> None:
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1])]
    src, axes = "c", [2, 3]
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", ["c"], ["t"], perm=[0, 2, 3, 1]))
        src, axes = "t", [1, -2]
    nodes.append(helper.make_node("ReduceMean", [src], ["y"], axes=axes, keepdims=keepdims))
    out = {(1, "NCHW"): (1, 4, 1, 1), (1, "NHWC"): (1, 1, 1, 4)}.get((keepdims, layout), (1, 4))
    g = _import_and_compare(_onnx_model(nodes, {"w": w}, (1, 3, 5, 5), out), tmp_path / "rm.onnx")
    assert [layer.op for layer in g.layers] == [OpKind.CONV, OpKind.GLOBAL_AVG_POOL]


def test_reduce_mean_over_channels_is_refused(tmp_path: Path) -> None:
    nodes = [helper.make_node("ReduceMean", ["x"], ["y"], axes=[1], keepdims=1)]
    onnx.save(_onnx_model(nodes, {}, (1, 3, 5, 5), (1, 1, 5, 5)), tmp_path / "rc.onnx")
    with pytest.raises(ModelError, match="not over H and W"):
        load_model(tmp_path / "rc.onnx", host_ops="error")


def test_pad_of_an_nhwc_model_input_before_its_transpose_folds_into_the_conv(tmp_path: Path) -> None:
    """pose_detection (tf2onnx): ``Pad`` of the NHWC input, then the NHWC->NCHW ``Transpose``."""
    import onnxruntime as ort  # a test dependency: missing, the test fails
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Pad", ["x", "p"], ["t"]),
             helper.make_node("Transpose", ["t"], ["u"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["u", "w"], ["y"], strides=[2, 2])]
    inits = {"w": w, "p": np.array([0, 1, 1, 0, 0, 1, 1, 0], np.int64)}  # H and W of (N, H, W, C)
    path = tmp_path / "nhwc_pad.onnx"
    onnx.save(_onnx_model(nodes, inits, (1, 8, 8, 3), (1, 4, 4, 4)), path)
    g = load_model(path)
    assert g.input_layouts["x"] == "NHWC" and [layer.op for layer in g.layers] == [OpKind.CONV]
    assert g.layers[0].attrs.pads == (1, 1, 1, 1)
    x = np.random.default_rng(1).standard_normal((1, 8, 8, 3)).astype(np.float32)
    (want,) = ort.InferenceSession(str(path)).run(None, {"x": x})
    np.testing.assert_allclose(run_float(g, {"x": x.transpose(0, 3, 1, 2)})["y"], want, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------- depth to space / space to depth
def _float_layer(op: OpKind, attrs: Attrs, x: np.ndarray) -> np.ndarray:
    """The float reference of one layer on ``x``."""
    b = GraphBuilder("one")
    name = b.input(tuple(x.shape), "x")  # type: ignore[arg-type]
    g = b.build(b.add_layer(op, (name,), attrs))
    return run_float(g, {"x": x.astype(np.float64)})[g.outputs[0]]


def _reads_exactly_its_box(ql: QLayer, q: np.ndarray, regions: list[Region]) -> None:
    """The int8 layer is the float permutation of its input; for each output region the kernel
    reads the back-propagated box, and computes from a tile of only that box what it computes
    from the whole input."""
    full = _full(ql, q)
    np.testing.assert_array_equal(full, _float_layer(ql.op, ql.layer.attrs, q).astype(I8))
    for r in regions:
        (need,) = required_input_regions(ql, r)
        assert need == block_region(ql.op, ql.layer.attrs, ql.in_shapes[0], r)  # type: ignore[arg-type]
        np.testing.assert_array_equal(run_layer(ql, [Tile.cut(q, need)], r), full[(slice(None), *r.slices())])


def _regions(c: int, h: int, w: int) -> list[Region]:
    spans = lambda n: [(0, 1), (1, 2), (1, min(4, n)), (0, n)]  # noqa: E731
    return [Region(*a, *b, *d) for a in spans(c) for b in spans(h) for d in spans(w)]


def test_depth_to_space_shape_backprop_float_and_int8() -> None:
    dcr, crd = BlockAttrs(2), BlockAttrs(2, "CRD")
    assert infer_output_shape(OpKind.DEPTH_TO_SPACE, dcr, ((1, 8, 3, 5),)) == (1, 2, 6, 10)
    with pytest.raises(ValueError):
        infer_output_shape(OpKind.DEPTH_TO_SPACE, dcr, ((1, 6, 3, 5),))
    b = GraphBuilder("d2s")
    x = b.input((1, 8, 3, 3), "x")
    y, z = b.depth_to_space(x, 2), b.depth_to_space(x, 2, "CRD")
    g = b.build((y, z))
    d, c = g.layers
    # DCR: output channel c of block cell (dy, dx) is input channel (2 dy + dx) * 2 + c
    assert input_regions(g, d, Region(0, 1, 0, 2, 0, 6)) == (Region(0, 7, 0, 1, 0, 3),)
    assert input_regions(g, d, Region(1, 2, 1, 2, 0, 6)) == (Region(5, 8, 0, 1, 0, 3),)  # row 1: dy = 1 only
    assert input_regions(g, d, Region(0, 2, 3, 6, 2, 3)) == (Region(0, 6, 1, 3, 1, 2),)  # column 2: dx = 0 only
    # CRD: input channel 4 c + 2 dy + dx; a channel tile reads exactly its four channels
    assert input_regions(g, c, Region(1, 2, 0, 6, 0, 6)) == (Region(4, 8, 0, 3, 0, 3),)
    assert input_regions(g, c, Region(0, 1, 2, 3, 0, 6)) == (Region(0, 2, 1, 2, 0, 3),)
    v = run_float(g, _inputs(g, x=[10 * k for k in range(8) for _ in range(9)]))
    assert v[y][0, :, :2, :2].tolist() == [[[0, 20], [40, 60]], [[10, 30], [50, 70]]]
    assert v[z][0, :, :2, :2].tolist() == [[[0, 10], [20, 30]], [[40, 50], [60, 70]]]
    # int8: a pure permutation in the input's parameters (as TFLite)
    q = np.arange(-36, 36, dtype=I8).reshape(1, 8, 3, 3)
    for attrs in (dcr, crd):
        ql = _single(OpKind.DEPTH_TO_SPACE, attrs, [(1, 8, 3, 3)])
        assert ql.out_q == ql.in_q[0] and ql.requant is None
        _reads_exactly_its_box(ql, q, _regions(2, 6, 6))


def test_space_to_depth_shape_backprop_float_and_int8() -> None:
    attrs = BlockAttrs(2)
    assert infer_output_shape(OpKind.SPACE_TO_DEPTH, attrs, ((1, 3, 4, 6),)) == (1, 12, 2, 3)
    with pytest.raises(ValueError):
        infer_output_shape(OpKind.SPACE_TO_DEPTH, attrs, ((1, 3, 4, 5),))
    b = GraphBuilder("s2d")
    x = b.input((1, 2, 2, 4), "x")
    y = b.space_to_depth(x, 2)
    g = b.build(y)
    # output channel (2 dy + dx) * 2 + c reads input channel c at row 2 y + dy, column 2 x + dx
    assert input_regions(g, g.layers[0], Region(0, 2, 0, 1, 0, 2)) == (Region(0, 2, 0, 1, 0, 3),)
    assert input_regions(g, g.layers[0], Region(3, 4, 0, 1, 1, 2)) == (Region(1, 2, 0, 1, 3, 4),)
    assert input_regions(g, g.layers[0], Region(0, 8, 0, 1, 0, 2)) == (Region(0, 2, 0, 2, 0, 4),)
    v = run_float(g, _inputs(g, x=list(range(16))))[y]
    assert v[0, :, 0].tolist() == [[0, 2], [8, 10], [1, 3], [9, 11], [4, 6], [12, 14], [5, 7], [13, 15]]
    ql = _single(OpKind.SPACE_TO_DEPTH, attrs, [(1, 3, 4, 6)], params=[(0.25, 3), (0.25, 3)])
    _reads_exactly_its_box(ql, np.arange(-36, 36, dtype=I8).reshape(1, 3, 4, 6), _regions(12, 2, 3))


def pixel_shuffle_net() -> Graph:
    """pose_detection's upsampling: conv -> relu6 -> DepthToSpace, and a SpaceToDepth stem."""
    b = GraphBuilder("d2s_net", seed=4)
    x = b.input((1, 4, 16, 16))
    s = b.space_to_depth(b.conv(x, 4, 3, activation=Activation(ActKind.RELU)), 2, name="s2d")
    t = b.conv(s, 16, 3, activation=Activation(ActKind.CLIP, (0.0, 6.0)))
    u = b.depth_to_space(t, 2, name="d2s")
    v = b.depth_to_space(b.conv(u, 32, 1), 2, "CRD", name="d2s_crd")
    return b.build(b.conv(b.max_pool(v, 2), 8, 3, name="head"))


def test_depth_to_space_graph_plans_fuse_tile_and_verify() -> None:
    _verify_everywhere(pixel_shuffle_net(), (4 * 1024, 16 * 1024), {"s2d", "d2s", "d2s_crd"})


@pytest.mark.parametrize("op, attrs, out_shape", [
    ("DepthToSpace", {"mode": "DCR"}, (1, 2, 8, 10)), ("DepthToSpace", {"mode": "CRD"}, (1, 2, 8, 10)),
    ("DepthToSpace", {}, (1, 2, 8, 10)), ("SpaceToDepth", {}, (1, 32, 2, 3))])
def test_depth_to_space_imports_and_round_trips(op: str, attrs: dict[str, str], out_shape: tuple[int, ...],
                                                tmp_path: Path) -> None:
    w = np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node(op, ["c"], ["y"], blocksize=2, **attrs)]
    in_shape = (1, 3, 4, 5) if op == "DepthToSpace" else (1, 3, 4, 6)
    g = _import_and_compare(_onnx_model(nodes, {"w": w}, in_shape, out_shape), tmp_path / "m.onnx")
    kind = OpKind.DEPTH_TO_SPACE if op == "DepthToSpace" else OpKind.SPACE_TO_DEPTH
    assert [layer.op for layer in g.layers] == [OpKind.CONV, kind]
    assert g.layers[1].attrs == BlockAttrs(2, attrs.get("mode", "DCR"))
    assert [layer.attrs for layer in _ort_matches(g, tmp_path / "back.onnx").layers] == [l.attrs for l in g.layers]


# ---------------------------------------------------------------------------- slice / split
def test_slice_shape_backprop_float_and_int8() -> None:
    attrs = SliceAttrs((2, 5), (1, 5), (1, 4))
    assert infer_output_shape(OpKind.SLICE, attrs, ((1, 6, 6, 6),)) == (1, 3, 4, 3)
    for bad in (SliceAttrs((2, 7), (0, 6), (0, 6)), SliceAttrs((3, 3), (0, 6), (0, 6))):
        with pytest.raises(ValueError):
            infer_output_shape(OpKind.SLICE, bad, ((1, 6, 6, 6),))
    b = GraphBuilder("slice")
    x = b.input((1, 6, 6, 6), "x")
    y = b.slice(x, (2, 5), (1, 5), (1, 4))
    g = b.build(y)
    assert g.layers[0].attrs == attrs
    assert input_regions(g, g.layers[0], Region(0, 2, 1, 3, 0, 2)) == (Region(2, 4, 2, 4, 1, 3),)
    v = run_float(g, _inputs(g, x=list(range(216))))[y]
    assert v[0, 0, 0].tolist() == [79, 80, 81] and v[0, 2, 3].tolist() == [4 * 36 + 4 * 6 + k for k in (1, 2, 3)]
    ql = _single(OpKind.SLICE, attrs, [(1, 6, 6, 6)], params=[(0.5, -7), (0.5, -7)])
    q = (np.arange(216) - 108).astype(I8).reshape(1, 6, 6, 6)
    np.testing.assert_array_equal(_full(ql, q), q[:, 2:5, 1:5, 1:4])
    region = Region(1, 3, 2, 4, 0, 2)
    (need,) = required_input_regions(ql, region)
    assert need == input_regions(g, g.layers[0], region)[0]
    assert run_layer(ql, [Tile.cut(q, need)], region).tolist() == q[:, 3:5, 3:5, 1:3].tolist()


def split_net() -> Graph:
    """A channel split into two branches (CSP / ghost modules) and a crop of rows and columns."""
    b = GraphBuilder("split", seed=6)
    x = b.input((1, 4, 16, 16))
    t = b.conv(x, 16, 3, activation=Activation(ActKind.RELU))
    left = b.conv(b.slice(t, channels=(0, 6), name="sl_a"), 8, 3)
    right = b.slice(t, channels=(6, 16), name="sl_b")
    u = b.concat(left, right)
    crop = b.slice(u, rows=(1, 15), cols=(2, 14), name="crop")
    return b.build(b.conv(crop, 8, 3, stride=2))


def test_slice_graph_plans_fuse_tile_and_verify() -> None:
    _verify_everywhere(split_net(), (4 * 1024, 16 * 1024), {"sl_a", "sl_b", "crop"})


def _conv_then(nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    return [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), *nodes]


_W8 = np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32)
_I64 = np.iinfo(np.int64).max


@pytest.mark.parametrize("form", ["nchw", "nhwc", "opset9"])
def test_slice_imports_and_round_trips(form: str, tmp_path: Path) -> None:
    if form == "nchw":  # negative and open-ended bounds are clamped as ONNX says
        nodes = [helper.make_node("Slice", ["c", "s", "e", "a"], ["t"])]
        inits = {"s": np.array([2, 1], np.int64), "e": np.array([5, -1], np.int64), "a": np.array([1, 2], np.int64)}
        want, out = SliceAttrs((2, 5), (1, 5), (0, 7)), (1, 3, 4, 7)
    elif form == "nhwc":  # tf2onnx slices channels of the NHWC tensor
        nodes = [helper.make_node("Transpose", ["c"], ["n"], perm=[0, 2, 3, 1]),
                 helper.make_node("Slice", ["n", "s", "e", "a", "st"], ["m"]),
                 helper.make_node("Transpose", ["m"], ["t"], perm=[0, 3, 1, 2])]
        inits = {"s": np.array([4], np.int64), "e": np.array([_I64], np.int64), "a": np.array([-1], np.int64),
                 "st": np.array([1], np.int64)}
        want, out = SliceAttrs((4, 8), (0, 6), (0, 7)), (1, 4, 6, 7)
    else:
        nodes = [helper.make_node("Slice", ["c"], ["t"], starts=[1], ends=[4], axes=[3])]
        inits, want, out = {}, SliceAttrs((0, 8), (0, 6), (1, 4)), (1, 8, 6, 3)
    opset = 9 if form == "opset9" else 13
    nodes = _conv_then([*nodes, helper.make_node("Relu", ["t"], ["y"])])
    g = _import_and_compare(_onnx_model(nodes, {"w": _W8, **inits}, (1, 3, 6, 7), out, opset), tmp_path / "m.onnx")
    assert [layer.op for layer in g.layers] == [OpKind.CONV, OpKind.SLICE] and g.layers[1].attrs == want
    assert g.layers[1].activation == Activation(ActKind.RELU)
    assert [layer.attrs for layer in _ort_matches(g, tmp_path / "back.onnx").layers] == [l.attrs for l in g.layers]


@pytest.mark.parametrize("opset", [11, 13, 18])
def test_split_imports_as_one_slice_per_output(opset: int, tmp_path: Path) -> None:
    if opset == 11:  # the split attribute, along W
        split = helper.make_node("Split", ["c"], ["a", "b"], axis=3, split=[3, 4])
        rest, inits, out = [helper.make_node("Identity", ["b"], ["y0"])], {}, (1, 8, 6, 4)
        parts = [SliceAttrs((0, 8), (0, 6), (3, 7))]  # the first output is unused: no layer
    elif opset == 13:  # sizes as an input, along C
        split = helper.make_node("Split", ["c", "sizes"], ["a", "b"], axis=1)
        rest, inits, out = [helper.make_node("Concat", ["b", "a"], ["y0"], axis=1)], {"sizes": np.array([2, 6])}, \
            (1, 8, 6, 7)
        parts = [SliceAttrs((0, 2), (0, 6), (0, 7)), SliceAttrs((2, 8), (0, 6), (0, 7))]
    else:  # num_outputs (opset 18), along H: ceil(6 / 3) = 2 rows each
        split = helper.make_node("Split", ["c"], ["a", "b", "d"], axis=2, num_outputs=3)
        rest = [helper.make_node("Sum", ["a", "b", "d"], ["y0"])]
        inits, out = {}, (1, 8, 2, 7)
        parts = [SliceAttrs((0, 8), (2 * k, 2 * k + 2), (0, 7)) for k in range(3)]
    nodes = _conv_then([split, *rest, helper.make_node("Relu", ["y0"], ["y"])])
    g = _import_and_compare(_onnx_model(nodes, {"w": _W8, **inits}, (1, 3, 6, 7), out, opset), tmp_path / "m.onnx")
    assert [layer.attrs for layer in g.layers if layer.op is OpKind.SLICE] == parts
    assert [layer.attrs for layer in _ort_matches(g, tmp_path / "back.onnx").layers] == [l.attrs for l in g.layers]
