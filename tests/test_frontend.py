"""ONNX frontend: each normalisation on a small hand-built graph, and numerical equivalence of
the IR with onnxruntime (hand-built graphs and real models).

The IR is evaluated by a small float64 numpy interpreter defined here (not memplan.execute), so
these tests catch wrong weight permutations, folding errors and layout mistakes independently.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from memplan.errors import ModelError
from memplan.execute.float_ref import run_float
from memplan.frontend import load_model
from memplan.ir.graph import Graph, Layer, QuantParams, Role
from memplan.ir.ops import (
    Activation,
    ActKind,
    ChannelShuffleAttrs,
    ConvAttrs,
    ConvTransposeAttrs,
    LRNAttrs,
    OpKind,
    PoolAttrs,
    ResizeAttrs,
)

import onnxruntime as ort  # noqa: E402  a test dependency (the test extra): missing, these tests fail

MODELS = Path(__file__).resolve().parent.parent / "models"


# =====================================================================================
# The IR evaluated in float64 by memplan.execute.float_ref (itself checked against
# onnxruntime op by op in test_reference.py)
# =====================================================================================
def evaluate_ir(graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run the IR in float64; ``inputs`` are given in the IR's NCHW shapes."""
    values = run_float(graph, inputs)
    for layer in graph.layers:
        assert values[layer.output].shape == graph.tensors[layer.output].shape, layer.id
    return {o: values[o] for o in graph.outputs}


def to_ir_input(graph: Graph, name: str, data: np.ndarray) -> np.ndarray:
    """The caller's data (in the ONNX input's own shape) as the IR's NCHW input."""
    shape = graph.tensors[name].shape
    if graph.input_layouts.get(name) == "NHWC":
        n, c, h, w = shape
        return data.reshape(n, h, w, c).transpose(0, 3, 1, 2)
    return data.reshape(shape)


def assert_matches_onnxruntime(path: Path, graph: Graph, seed: int = 0, rtol: float = 1e-4,
                               feed_shapes: dict[str, tuple[int, ...]] | None = None) -> None:
    """Random input -> onnxruntime and the IR interpreter agree on every output."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    ir_inputs: dict[str, np.ndarray] = {}
    for inp in session.get_inputs():
        shape = tuple((feed_shapes or {}).get(inp.name) or inp.shape)
        dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        data = rng.standard_normal(shape).astype(dtype)
        feeds[inp.name] = data
        ir_inputs[inp.name] = to_ir_input(graph, inp.name, data.astype(np.float64))
    expected = session.run(None, feeds)
    got = evaluate_ir(graph, ir_inputs)
    for meta, want in zip(session.get_outputs(), expected, strict=True):
        have = got[meta.name]
        scale = float(np.abs(want).max()) or 1.0
        np.testing.assert_allclose(have.reshape(want.shape), want, rtol=rtol, atol=rtol * scale, err_msg=meta.name)


# =====================================================================================
# Building small ONNX models
# =====================================================================================
F32 = TensorProto.FLOAT


def build(
    tmp_path: Path,
    nodes: list[onnx.NodeProto],
    inputs: dict[str, tuple[int, ...]],
    outputs: list[str],
    inits: dict[str, np.ndarray] | None = None,
    opset: int = 13,
    elem_type: int = F32,
    file: str = "m.onnx",
) -> Path:
    """Write a one-graph ONNX model and return its path."""
    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info(k, elem_type, list(v)) for k, v in inputs.items()],
        [helper.make_tensor_value_info(o, elem_type, None) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    path = tmp_path / file
    onnx.save(model, str(path))
    return path


def load_checked(path: Path, rtol: float = 1e-4, **kwargs: object) -> Graph:
    """Load a model and check the IR against onnxruntime."""
    graph = load_model(path, **kwargs)  # type: ignore[arg-type]
    assert_matches_onnxruntime(path, graph, rtol=rtol)
    return graph


def f32(*values: float) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def rand(*shape: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def ops(graph: Graph) -> list[OpKind]:
    return [layer.op for layer in graph.layers]


def weight(graph: Graph, layer: Layer) -> np.ndarray:
    assert layer.weight is not None
    return graph.weights[layer.weight]


def bias(graph: Graph, layer: Layer) -> np.ndarray:
    assert layer.bias is not None
    return graph.weights[layer.bias]


def conv_node(x: str, w: str, y: str, b: str | None = None, name: str = "", **attrs: object) -> onnx.NodeProto:
    return helper.make_node("Conv", [x, w] + ([b] if b else []), [y], name=name, **attrs)


# =====================================================================================
# Folding BatchNormalization and per-channel Mul / Add
# =====================================================================================
def test_batchnorm_folds_into_conv(tmp_path: Path) -> None:
    # W = [[2], [3]], b = [1, -1]; BN: s = gamma / sqrt(var + eps) = [4/2, 1/1] = [2, 1]
    # W' = W * s = [[4], [3]];  b' = (b - mean) * s + beta = [(1-1)*2 + .5, (-1-0)*1 + 0] = [.5, -1]
    path = build(
        tmp_path,
        [conv_node("x", "w", "c", "b", name="conv"),
         helper.make_node("BatchNormalization", ["c", "g", "beta", "mean", "var"], ["y"], name="bn", epsilon=1.0)],
        {"x": (1, 1, 2, 2)}, ["y"],
        {"w": f32(2, 3).reshape(2, 1, 1, 1), "b": f32(1, -1), "g": f32(4, 1), "beta": f32(0.5, 0),
         "mean": f32(1, 0), "var": f32(3, 0)},
    )
    graph = load_checked(path)
    assert ops(graph) == [OpKind.CONV]
    (conv,) = graph.layers
    assert conv.id == "conv" and conv.output == "y"
    np.testing.assert_allclose(weight(graph, conv).reshape(-1), [4, 3])
    np.testing.assert_allclose(bias(graph, conv), [0.5, -1])
    assert graph.tensors["y"].role is Role.MODEL_OUTPUT and graph.tensors["x"].role is Role.MODEL_INPUT
    assert graph.tensors[conv.weight].role is Role.WEIGHT and graph.tensors[conv.bias].role is Role.BIAS


def test_batchnorm_mul_add_chain_after_concat_becomes_one_depthwise_conv(tmp_path: Path) -> None:
    # BN: s = [2/2, 8/4] = [1, 2], t = beta - mean*s = [1, -2];  Mul [3, .5]: s = [3, 1], t = [3, -1]
    # Add [1, 1]: t = [4, 0]  ->  one depthwise 1x1 conv, weight [3, 1], bias [4, 0]
    path = build(
        tmp_path,
        [helper.make_node("Concat", ["a", "b"], ["cat"], axis=1),
         helper.make_node("BatchNormalization", ["cat", "g", "beta", "mean", "var"], ["bn"], name="bn", epsilon=1.0),
         helper.make_node("Mul", ["bn", "m"], ["mul"]),
         helper.make_node("Add", ["mul", "k"], ["y"])],
        {"a": (1, 1, 2, 2), "b": (1, 1, 2, 2)}, ["y"],
        {"g": f32(2, 8), "beta": f32(1, 0), "mean": f32(0, 1), "var": f32(3, 15),
         "m": f32(3, 0.5).reshape(2, 1, 1), "k": f32(1, 1).reshape(1, 2, 1, 1)},
    )
    graph = load_checked(path)
    assert ops(graph) == [OpKind.CONCAT, OpKind.CONV]
    dw = graph.layers[1]
    assert dw.id == "bn" and dw.attrs == ConvAttrs((1, 1), groups=2)
    np.testing.assert_allclose(weight(graph, dw).reshape(-1), [3, 1])
    np.testing.assert_allclose(bias(graph, dw), [4, 0])


def test_scalar_mul_and_channel_add_after_conv_fold(tmp_path: Path) -> None:
    w = rand(3, 2, 3, 3)
    path = build(
        tmp_path,
        [conv_node("x", "w", "c", pads=[1, 1, 1, 1]),
         helper.make_node("Mul", ["c", "two"], ["m"]),
         helper.make_node("Add", ["k", "m"], ["y"])],
        {"x": (1, 2, 5, 5)}, ["y"],
        {"w": w, "two": np.float32(2.0), "k": f32(1, 2, 3).reshape(3, 1, 1)},
    )
    graph = load_checked(path)
    (conv,) = graph.layers
    np.testing.assert_allclose(weight(graph, conv), 2 * w)
    np.testing.assert_allclose(bias(graph, conv), [1, 2, 3])


def test_batchnorm_after_shared_conv_output_is_not_folded(tmp_path: Path) -> None:
    # the conv output is read by BN and by Relu: neither can fold into the conv
    path = build(
        tmp_path,
        [conv_node("x", "w", "c"),
         helper.make_node("BatchNormalization", ["c", "g", "beta", "mean", "var"], ["y1"]),
         helper.make_node("Relu", ["c"], ["y2"])],
        {"x": (1, 2, 3, 3)}, ["y1", "y2"],
        {"w": rand(2, 2, 1, 1), "g": f32(1, 2), "beta": f32(0, 1), "mean": f32(0, 0), "var": f32(1, 1)},
    )
    graph = load_checked(path)
    assert ops(graph) == [OpKind.CONV] * 3
    conv, bn, relu = graph.layers
    assert conv.activation is None
    assert bn.attrs == ConvAttrs((1, 1), groups=2) and bn.activation is None
    assert relu.attrs == ConvAttrs((1, 1), groups=2) and relu.activation == Activation(ActKind.RELU)
    np.testing.assert_array_equal(weight(graph, relu).reshape(-1), [1, 1])
    assert relu.bias is None


# =====================================================================================
# Activations
# =====================================================================================
ACTIVATION_CASES = [
    ("Relu", {}, [], {}, 13, Activation(ActKind.RELU)),
    ("Clip", {}, ["lo", "hi"], {"lo": np.float32(0), "hi": np.float32(6)}, 13, Activation(ActKind.CLIP, (0.0, 6.0))),
    ("Clip", {}, ["lo"], {"lo": np.float32(0)}, 13, Activation(ActKind.RELU)),
    ("Clip", {"min": -1.0, "max": 1.0}, [], {}, 6, Activation(ActKind.CLIP, (-1.0, 1.0))),
    ("LeakyRelu", {"alpha": 0.25}, [], {}, 13, Activation(ActKind.LEAKY_RELU, (0.25,))),
    ("Sigmoid", {}, [], {}, 13, Activation(ActKind.SIGMOID)),
    ("HardSigmoid", {"alpha": 0.25, "beta": 0.375}, [], {}, 13, Activation(ActKind.HARD_SIGMOID, (0.25, 0.375))),
    ("HardSwish", {}, [], {}, 14, Activation(ActKind.HARD_SWISH)),
    ("Tanh", {}, [], {}, 13, Activation(ActKind.TANH)),
]


@pytest.mark.parametrize("op, attrs, extra, inits, opset, expected", ACTIVATION_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(ACTIVATION_CASES)])
def test_activation_fuses_into_conv(tmp_path: Path, op: str, attrs: dict[str, float], extra: list[str],
                                    inits: dict[str, np.ndarray], opset: int, expected: Activation) -> None:
    path = build(
        tmp_path,
        [conv_node("x", "w", "c", "b"), helper.make_node(op, ["c", *extra], ["y"], **attrs)],
        {"x": (1, 2, 4, 4)}, ["y"], {"w": rand(3, 2, 3, 3) * 2, "b": f32(0.5, -0.5, 0), **inits}, opset=opset,
    )
    graph = load_checked(path)
    assert ops(graph) == [OpKind.CONV]
    assert graph.layers[0].activation == expected


@pytest.mark.parametrize("gate, attrs, expected", [
    ("Sigmoid", {}, ActKind.SILU),
    ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}, ActKind.HARD_SWISH),
])
def test_x_times_gate_of_x_is_one_activation(tmp_path: Path, gate: str, attrs: dict[str, float], expected: ActKind) -> None:
    path = build(
        tmp_path,
        [conv_node("x", "w", "c"), helper.make_node(gate, ["c"], ["s"], **attrs), helper.make_node("Mul", ["s", "c"], ["y"])],
        {"x": (1, 2, 4, 4)}, ["y"], {"w": rand(2, 2, 3, 3) * 2},
    )
    graph = load_checked(path)
    assert ops(graph) == [OpKind.CONV] and graph.layers[0].activation == Activation(expected)


def test_unfusable_activations_become_identity_depthwise_convs(tmp_path: Path) -> None:
    # Relu on the model input has no producer; a second Relu finds its producer already activated
    path = build(
        tmp_path,
        [helper.make_node("Relu", ["x"], ["r"], name="r0"), conv_node("r", "w", "c", name="conv"),
         helper.make_node("Relu", ["c"], ["r1"], name="r1"), helper.make_node("Clip", ["r1", "lo", "hi"], ["y"], name="r2")],
        {"x": (1, 2, 3, 3)}, ["y"], {"w": rand(2, 2, 1, 1), "lo": np.float32(-1), "hi": np.float32(0.5)},
    )
    graph = load_checked(path)
    assert [layer.id for layer in graph.layers] == ["r0", "conv", "r2"]
    first, conv, last = graph.layers
    for identity in (first, last):
        assert identity.attrs == ConvAttrs((1, 1), groups=2) and identity.bias is None
        np.testing.assert_array_equal(weight(graph, identity).reshape(-1), [1, 1])
    assert first.activation == Activation(ActKind.RELU) and conv.activation == Activation(ActKind.RELU)
    assert last.activation == Activation(ActKind.CLIP, (-1.0, 0.5))


# =====================================================================================
# Add / Sum, Concat, Dropout, Identity
# =====================================================================================
def test_sum_and_add_of_feature_maps_are_residual_adds(tmp_path: Path) -> None:
    path = build(
        tmp_path,
        [conv_node("x", "w1", "a", pads=[1, 1, 1, 1]), conv_node("x", "w2", "b"),
         helper.make_node("Add", ["a", "b"], ["s1"]),
         helper.make_node("Sum", ["s1", "a", "x"], ["s2"]),
         helper.make_node("Relu", ["s2"], ["y"])],
        {"x": (1, 2, 3, 3)}, ["y"], {"w1": rand(2, 2, 3, 3), "w2": rand(2, 2, 1, 1, seed=2)},
    )
    graph = load_checked(path)
    assert ops(graph) == [OpKind.CONV, OpKind.CONV, OpKind.ADD, OpKind.ADD]
    assert graph.layers[3].inputs == ("s1", "a", "x")
    assert graph.layers[3].activation == Activation(ActKind.RELU)


@pytest.mark.parametrize("axis", [1, -3])
def test_concat_on_channels(tmp_path: Path, axis: int) -> None:
    path = build(tmp_path, [helper.make_node("Concat", ["a", "b"], ["c"], axis=axis), conv_node("c", "w", "y")],
                 {"a": (1, 2, 3, 3), "b": (1, 1, 3, 3)}, ["y"], {"w": rand(2, 3, 1, 1)})
    graph = load_checked(path)
    assert ops(graph) == [OpKind.CONCAT, OpKind.CONV]
    assert graph.tensors["c"].shape == (1, 3, 3, 3)


def test_dropout_and_identity_are_removed(tmp_path: Path) -> None:
    path = build(
        tmp_path,
        [conv_node("x", "w", "c"), helper.make_node("Dropout", ["c"], ["d"]), helper.make_node("Identity", ["d"], ["i"]),
         helper.make_node("Relu", ["i"], ["y"])],
        {"x": (1, 2, 3, 3)}, ["y"], {"w": rand(2, 2, 1, 1)},
    )
    graph = load_checked(path)
    assert ops(graph) == [OpKind.CONV] and graph.layers[0].activation == Activation(ActKind.RELU)


# =====================================================================================
# Pad folding
# =====================================================================================
def test_pad_folds_into_conv_padding(tmp_path: Path) -> None:
    path = build(
        tmp_path,
        [helper.make_node("Pad", ["x", "p"], ["xp"]), conv_node("xp", "w", "y", pads=[1, 1, 1, 1])],
        {"x": (1, 2, 5, 6)}, ["y"],
        {"p": np.array([0, 0, 1, 2, 0, 0, 3, 4], dtype=np.int64), "w": rand(3, 2, 3, 3)},
    )
    graph = load_checked(path)
    assert ops(graph) == [OpKind.CONV]
    assert graph.layers[0].attrs.pads == (2, 3, 4, 5)  # type: ignore[union-attr]


def test_pad_attribute_form_folds_into_maxpool_after_relu(tmp_path: Path) -> None:
    path = build(
        tmp_path,
        [conv_node("x", "w", "c"), helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("Pad", ["r"], ["rp"], pads=[0, 0, 1, 1, 0, 0, 1, 1]),
         helper.make_node("MaxPool", ["rp"], ["y"], kernel_shape=[3, 3], strides=[2, 2])],
        {"x": (1, 2, 6, 6)}, ["y"], {"w": rand(2, 2, 1, 1)}, opset=9,
    )
    graph = load_checked(path)
    assert ops(graph) == [OpKind.CONV, OpKind.MAX_POOL]
    assert graph.layers[1].attrs == PoolAttrs((3, 3), (2, 2), (1, 1, 1, 1))


def test_pad_folds_into_average_pool_counting_the_zeros(tmp_path: Path) -> None:
    path = build(
        tmp_path,
        [helper.make_node("Pad", ["x", "p"], ["xp"]),
         helper.make_node("AveragePool", ["xp"], ["y"], kernel_shape=[3, 3], strides=[1, 1])],
        {"x": (1, 2, 4, 4)}, ["y"], {"p": np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64)},
    )
    graph = load_checked(path)
    assert graph.layers[0].attrs == PoolAttrs((3, 3), (1, 1), (1, 1, 1, 1), count_include_pad=True)


def test_pad_before_maxpool_of_signed_values_is_refused(tmp_path: Path) -> None:
    path = build(
        tmp_path,
        [helper.make_node("Pad", ["x", "p"], ["xp"]), helper.make_node("MaxPool", ["xp"], ["y"], kernel_shape=[2, 2])],
        {"x": (1, 1, 4, 4)}, ["y"], {"p": np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64)},
    )
    with pytest.raises(ModelError, match="Pad before MaxPool"):
        load_model(path)


# =====================================================================================
# Layout: flatten before FC, channel shuffle, NHWC inputs, NHWC flatten
# =====================================================================================
@pytest.mark.parametrize("flatten", ["Flatten", "Reshape", "Squeeze"])
def test_flatten_before_fc_is_a_no_op(tmp_path: Path, flatten: str) -> None:
    nodes = [conv_node("x", "w", "c"), helper.make_node("GlobalAveragePool", ["c"], ["g"])]
    if flatten == "Flatten":
        nodes.append(helper.make_node("Flatten", ["g"], ["f"], axis=1))
    elif flatten == "Reshape":
        nodes.append(helper.make_node("Reshape", ["g", "shape"], ["f"]))
    else:
        nodes.append(helper.make_node("Squeeze", ["g", "axes"], ["f"]))
    nodes.append(helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1))
    path = build(tmp_path, nodes, {"x": (1, 2, 3, 3)}, ["y"],
                 {"w": rand(4, 2, 3, 3), "shape": np.array([0, -1], dtype=np.int64), "axes": np.array([2, 3], dtype=np.int64),
                  "fw": rand(5, 4), "fb": rand(5)})
    graph = load_checked(path)
    assert ops(graph) == [OpKind.CONV, OpKind.GLOBAL_AVG_POOL, OpKind.FULLY_CONNECTED]
    assert graph.tensors["y"].shape == (1, 5, 1, 1)


def test_fc_after_conv_flattens_spatial_map_in_chw_order(tmp_path: Path) -> None:
    path = build(
        tmp_path,
        [conv_node("x", "w", "c"), helper.make_node("Flatten", ["c"], ["f"]),
         helper.make_node("Gemm", ["f", "fw"], ["y"], transB=1)],
        {"x": (1, 2, 3, 3)}, ["y"], {"w": rand(2, 2, 2, 2), "fw": rand(3, 8)},
    )
    graph = load_checked(path)
    np.testing.assert_array_equal(weight(graph, graph.layers[1]), rand(3, 8))


def test_reshape_transpose_reshape_is_a_channel_shuffle(tmp_path: Path) -> None:
    # (1, 6) -> (1, 2 groups, 3, ...) -> swap -> (1, 3, 2, ...): out channel 2j+i = in channel 3i+j
    path = build(
        tmp_path,
        [conv_node("x", "w", "c"),
         helper.make_node("Reshape", ["c", "s5"], ["r"]),
         helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3, 4]),
         helper.make_node("Reshape", ["t", "s4"], ["shuffled"], name="shuffle"),
         conv_node("shuffled", "w2", "y")],
        {"x": (1, 6, 2, 2)}, ["y"],
        {"w": rand(6, 6, 1, 1), "w2": rand(4, 6, 1, 1, seed=3),
         "s5": np.array([1, 2, 3, 2, 2], dtype=np.int64), "s4": np.array([1, 6, 2, 2], dtype=np.int64)},
    )
    graph = load_checked(path)
    assert ops(graph) == [OpKind.CONV, OpKind.CHANNEL_SHUFFLE, OpKind.CONV]
    assert graph.layers[1].id == "shuffle"
    assert graph.layers[1].attrs == ChannelShuffleAttrs((0, 3, 1, 4, 2, 5))


def test_leading_nhwc_transpose_is_absorbed(tmp_path: Path) -> None:
    path = build(
        tmp_path,
        [helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 3, 1, 2]), conv_node("xt", "w", "y", pads=[1, 1, 1, 1])],
        {"x": (1, 5, 6, 3)}, ["y"], {"w": rand(4, 3, 3, 3)},
    )
    graph = load_checked(path)
    assert graph.inputs == ("x",) and graph.tensors["x"].shape == (1, 3, 5, 6)
    assert graph.input_layouts["x"] == "NHWC"
    assert graph.layers[0].inputs == ("x",)


def test_nhwc_flatten_before_gemm_permutes_fc_columns(tmp_path: Path) -> None:
    # NHWC flatten of C=2, H=1, W=2 visits (w, c) = (0,0), (0,1), (1,0), (1,1): CHW elements 0, 2, 1, 3
    # so ONNX column p = CHW column [0, 2, 1, 3][p]: W [[1, 2, 3, 4]] becomes [[1, 3, 2, 4]]
    path = build(
        tmp_path,
        [conv_node("x", "w", "c"), helper.make_node("Transpose", ["c"], ["t"], perm=[0, 2, 3, 1]),
         helper.make_node("Reshape", ["t", "s"], ["f"]), helper.make_node("Gemm", ["f", "fw"], ["y"], transB=1)],
        {"x": (1, 2, 1, 2)}, ["y"],
        {"w": rand(2, 2, 1, 1), "s": np.array([-1, 4], dtype=np.int64), "fw": f32(1, 2, 3, 4).reshape(1, 4)},
    )
    graph = load_checked(path)
    np.testing.assert_array_equal(weight(graph, graph.layers[1]), [[1, 3, 2, 4]])


def test_nhwc_flatten_of_the_model_input_keeps_the_input_nchw(tmp_path: Path) -> None:
    path = build(
        tmp_path,
        [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]), helper.make_node("Flatten", ["t"], ["f"]),
         helper.make_node("MatMul", ["f", "fw"], ["y"])],
        {"x": (1, 2, 3, 2)}, ["y"], {"fw": rand(12, 3)},
    )
    graph = load_checked(path)
    assert graph.tensors["x"].shape == (1, 2, 3, 2) and graph.input_layouts["x"] == "NCHW"


@pytest.mark.parametrize("nhwc", [True, False])
def test_reshape_of_flat_input_into_4d_is_absorbed(tmp_path: Path, nhwc: bool) -> None:
    nodes = [helper.make_node("Reshape", ["x", "s"], ["r"])]
    if nhwc:
        nodes.append(helper.make_node("Transpose", ["r"], ["rt"], perm=[0, 3, 1, 2]))
    nodes.append(conv_node("rt" if nhwc else "r", "w", "y"))
    shape = [1, 2, 2, 3] if nhwc else [1, 3, 2, 2]
    path = build(tmp_path, nodes, {"x": (1, 12)}, ["y"], {"s": np.array(shape, dtype=np.int64), "w": rand(2, 3, 1, 1)})
    graph = load_checked(path)
    assert graph.tensors["x"].shape == (1, 3, 2, 2)
    assert graph.input_layouts["x"] == ("NHWC" if nhwc else "NCHW")


# =====================================================================================
# Fully connected: MatMul + Add, Gemm attributes
# =====================================================================================
def test_matmul_add_is_fc_with_bias(tmp_path: Path) -> None:
    b = f32(1, 2, 3, 4, 5, 6).reshape(3, 2)
    path = build(tmp_path, [helper.make_node("MatMul", ["x", "b"], ["m"]), helper.make_node("Add", ["m", "c"], ["y"])],
                 {"x": (1, 3)}, ["y"], {"b": b, "c": f32(10, 20)})
    graph = load_checked(path)
    assert ops(graph) == [OpKind.FULLY_CONNECTED] and graph.tensors["x"].shape == (1, 3, 1, 1)
    fc = graph.layers[0]
    np.testing.assert_array_equal(weight(graph, fc), [[1, 3, 5], [2, 4, 6]])
    np.testing.assert_array_equal(bias(graph, fc), [10, 20])


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_trans_b_alpha_beta(tmp_path: Path, trans_b: int) -> None:
    b = f32(1, 2, 3, 4, 5, 6).reshape((2, 3) if trans_b else (3, 2))
    path = build(tmp_path, [helper.make_node("Gemm", ["x", "b", "c"], ["y"], transB=trans_b, alpha=2.0, beta=0.5)],
                 {"x": (1, 3)}, ["y"], {"b": b, "c": f32(10, 20).reshape(1, 2)})
    graph = load_checked(path)
    fc = graph.layers[0]
    expected = 2 * (b if trans_b else b.T)
    np.testing.assert_array_equal(weight(graph, fc), expected)
    np.testing.assert_array_equal(bias(graph, fc), [5, 10])


# =====================================================================================
# Convolutions and pooling attributes
# =====================================================================================
@pytest.mark.parametrize("auto_pad, pads", [("SAME_UPPER", (0, 0, 1, 1)), ("SAME_LOWER", (1, 1, 0, 0)), ("VALID", (0, 0, 0, 0))])
def test_conv_auto_pad(tmp_path: Path, auto_pad: str, pads: tuple[int, int, int, int]) -> None:
    # 7 wide, kernel 2, stride 2: SAME gives ceil(7/2) = 4 outputs, needing (4-1)*2 + 2 - 7 = 1 pad cell
    path = build(tmp_path, [conv_node("x", "w", "y", auto_pad=auto_pad, strides=[2, 2])],
                 {"x": (1, 2, 7, 7)}, ["y"], {"w": rand(3, 2, 2, 2)})
    graph = load_checked(path)
    assert graph.layers[0].attrs == ConvAttrs((2, 2), (2, 2), pads)


def test_grouped_dilated_strided_conv(tmp_path: Path) -> None:
    path = build(tmp_path, [conv_node("x", "w", "y", "b", group=2, dilations=[2, 1], strides=[1, 2], pads=[2, 0, 1, 1])],
                 {"x": (1, 4, 7, 8)}, ["y"], {"w": rand(6, 2, 3, 2), "b": rand(6)})
    graph = load_checked(path)
    assert graph.layers[0].attrs == ConvAttrs((3, 2), (1, 2), (2, 0, 1, 1), (2, 1), 2)
    assert graph.tensors["y"].shape == (1, 6, 6, 4)


def test_conv_transpose_with_batchnorm_folded(tmp_path: Path) -> None:
    path = build(
        tmp_path,
        [helper.make_node("ConvTranspose", ["x", "w", "b"], ["c"], group=2, strides=[2, 2], pads=[1, 1, 0, 0],
                          output_padding=[1, 1]),
         helper.make_node("BatchNormalization", ["c", "g", "beta", "mean", "var"], ["y"])],
        {"x": (1, 4, 3, 3)}, ["y"],
        {"w": rand(4, 3, 3, 3), "b": rand(6), "g": rand(6, seed=2), "beta": rand(6, seed=3), "mean": rand(6, seed=4),
         "var": np.abs(rand(6, seed=5)) + 0.5},
    )
    graph = load_checked(path)
    assert ops(graph) == [OpKind.CONV_TRANSPOSE]
    assert graph.layers[0].attrs == ConvTransposeAttrs((3, 3), (2, 2), (1, 1, 0, 0), (1, 1), 2, (1, 1))
    assert graph.tensors["y"].shape == (1, 6, 7, 7)


def test_max_pool_ceil_mode_becomes_extra_end_padding(tmp_path: Path) -> None:
    # 6 wide, kernel 3, stride 2: floor gives 2 outputs, ceil 3; the third window needs 1 extra cell
    path = build(tmp_path, [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)],
                 {"x": (1, 2, 6, 6)}, ["y"])
    graph = load_checked(path)
    assert graph.layers[0].attrs == PoolAttrs((3, 3), (2, 2), (0, 0, 1, 1), False, (1, 1))
    assert graph.tensors["y"].shape == (1, 2, 3, 3)


@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_average_pool_ceil_mode_and_padding(tmp_path: Path, count_include_pad: int) -> None:
    path = build(tmp_path, [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                             ceil_mode=1, count_include_pad=count_include_pad)],
                 {"x": (1, 2, 6, 7)}, ["y"])
    graph = load_checked(path)
    attrs = graph.layers[0].attrs
    assert isinstance(attrs, PoolAttrs) and attrs.count_include_pad == bool(count_include_pad)
    assert attrs.ceil_pads == (1, 0) and attrs.pads == (1, 1, 2, 1)


def test_global_pools(tmp_path: Path) -> None:
    path = build(tmp_path, [helper.make_node("GlobalAveragePool", ["x"], ["a"]), helper.make_node("GlobalMaxPool", ["x"], ["m"])],
                 {"x": (1, 3, 4, 5)}, ["a", "m"])
    graph = load_checked(path)
    assert ops(graph) == [OpKind.GLOBAL_AVG_POOL, OpKind.GLOBAL_MAX_POOL]
    assert graph.tensors["a"].shape == graph.tensors["m"].shape == (1, 3, 1, 1)


def test_lrn(tmp_path: Path) -> None:
    lrn = helper.make_node("LRN", ["x"], ["y"], size=3, alpha=0.5, beta=0.75, bias=2.0)
    path = build(tmp_path, [lrn], {"x": (1, 5, 2, 2)}, ["y"])
    graph = load_checked(path)
    assert graph.layers[0].attrs == LRNAttrs(3, 0.5, 0.75, 2.0)


# =====================================================================================
# Resize / Upsample
# =====================================================================================
def _resize_case(opset: int, op: str, inputs: list[str], inits: dict[str, np.ndarray], **attrs: object) -> tuple:
    return opset, op, inputs, inits, attrs


RESIZE_CASES = {
    "resize13-nearest-scales": _resize_case(13, "Resize", ["x", "", "s"], {"s": f32(1, 1, 2, 3)}, mode="nearest"),
    "resize13-nearest-sizes": _resize_case(13, "Resize", ["x", "", "", "z"], {"z": np.array([1, 2, 6, 9], dtype=np.int64)},
                                           mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
    "resize13-linear-half-pixel": _resize_case(13, "Resize", ["x", "", "s"], {"s": f32(1, 1, 2, 3)}, mode="linear"),
    "resize13-linear-align-corners": _resize_case(13, "Resize", ["x", "", "s"], {"s": f32(1, 1, 2, 3)}, mode="linear",
                                                  coordinate_transformation_mode="align_corners"),
    "resize11-nearest": _resize_case(11, "Resize", ["x", "roi", "s"], {"roi": f32(), "s": f32(1, 1, 2, 3)}, mode="nearest"),
    "resize10-nearest": _resize_case(10, "Resize", ["x", "s"], {"s": f32(1, 1, 2, 3)}, mode="nearest"),
    "upsample9-nearest": _resize_case(9, "Upsample", ["x", "s"], {"s": f32(1, 1, 2, 3)}, mode="nearest"),
    "upsample9-linear": _resize_case(9, "Upsample", ["x", "s"], {"s": f32(1, 1, 2, 3)}, mode="linear"),
    "upsample7-attr": _resize_case(7, "Upsample", ["x"], {}, mode="nearest", scales=[1.0, 1.0, 2.0, 3.0]),
}


@pytest.mark.parametrize("case", list(RESIZE_CASES))
def test_resize_variants(tmp_path: Path, case: str) -> None:
    opset, op, inputs, inits, attrs = RESIZE_CASES[case]
    path = build(tmp_path, [helper.make_node(op, inputs, ["y"], **attrs)], {"x": (1, 2, 3, 3)}, ["y"], inits, opset=opset)
    graph = load_checked(path)
    resize = graph.layers[0]
    assert resize.op is OpKind.RESIZE and graph.tensors["y"].shape == (1, 2, 6, 9)
    assert isinstance(resize.attrs, ResizeAttrs) and resize.attrs.mode == attrs["mode"]


def test_resize_with_fractional_output_is_refused(tmp_path: Path) -> None:
    path = build(tmp_path, [helper.make_node("Resize", ["x", "", "s"], ["y"])], {"x": (1, 1, 3, 3)}, ["y"],
                 {"s": f32(1, 1, 1.5, 1.5)})
    with pytest.raises(ModelError, match="fractional output size"):
        load_model(path, host_ops="error")


# =====================================================================================
# Softmax
# =====================================================================================
def test_softmax_after_fc_is_a_channel_softmax(tmp_path: Path) -> None:
    path = build(tmp_path, [helper.make_node("Gemm", ["x", "w"], ["f"], transB=1),
                            helper.make_node("Softmax", ["f"], ["y"], axis=-1)],
                 {"x": (1, 4)}, ["y"], {"w": rand(3, 4)})
    graph = load_checked(path)
    assert ops(graph) == [OpKind.FULLY_CONNECTED, OpKind.SOFTMAX] and graph.tensors["y"].shape == (1, 3, 1, 1)


def test_softmax_over_channels_of_a_spatial_map(tmp_path: Path) -> None:
    path = build(tmp_path, [helper.make_node("Softmax", ["x"], ["y"], axis=1)], {"x": (1, 3, 2, 2)}, ["y"])
    assert ops(load_checked(path)) == [OpKind.SOFTMAX]


def test_softmax_over_width_is_refused(tmp_path: Path) -> None:
    path = build(tmp_path, [helper.make_node("Softmax", ["x"], ["y"], axis=-1)], {"x": (1, 3, 2, 2)}, ["y"])
    with pytest.raises(ModelError, match="channel softmax only"):
        load_model(path, host_ops="error")


# =====================================================================================
# Quantisation: QDQ pairs, QLinearConv, QLinearMatMul
# =====================================================================================
def _q(name: str, x: str, scale: str, zp: str | None = None, **attrs: object) -> onnx.NodeProto:
    return helper.make_node("QuantizeLinear", [x, scale] + ([zp] if zp else []), [name], **attrs)


def _dq(name: str, x: str, scale: str, zp: str | None = None, **attrs: object) -> onnx.NodeProto:
    return helper.make_node("DequantizeLinear", [x, scale] + ([zp] if zp else []), [name], **attrs)


def test_qdq_conv_keeps_real_weights_and_quant_params(tmp_path: Path) -> None:
    wq = np.array([1, -2, 3, 4], dtype=np.int8).reshape(2, 2, 1, 1)
    path = build(
        tmp_path,
        [_q("xq", "x", "xs", "xz"), _dq("xd", "xq", "xs", "xz"),
         _dq("wd", "wq", "ws", "wz", axis=0), _dq("bd", "bq", "bs", axis=0),
         conv_node("xd", "wd", "c", "bd", name="conv"), helper.make_node("Relu", ["c"], ["r"]),
         _q("rq", "r", "ys", "yz"), _dq("y", "rq", "ys", "yz")],
        {"x": (1, 2, 3, 3)}, ["y"],
        {"xs": np.float32(0.1), "xz": np.int8(0), "wq": wq, "ws": f32(0.5, 0.25), "wz": np.zeros(2, np.int8),
         "bq": np.array([10, -4], dtype=np.int32), "bs": f32(0.05, 0.025), "ys": np.float32(0.2), "yz": np.int8(-128)},
    )
    graph = load_model(path)
    assert ops(graph) == [OpKind.CONV]
    conv = graph.layers[0]
    assert conv.id == "conv" and conv.activation == Activation(ActKind.RELU) and conv.output == "y"
    np.testing.assert_allclose(weight(graph, conv).reshape(-1), [0.5, -1.0, 0.75, 1.0])
    np.testing.assert_allclose(bias(graph, conv), [0.5, -0.1], rtol=1e-6)
    w_t, b_t = graph.tensors[conv.weight], graph.tensors[conv.bias]  # type: ignore[index]
    assert w_t.dtype == "int8" and w_t.quant == QuantParams((0.5, 0.25), (0, 0), "int8", 0)
    assert b_t.dtype == "int32" and b_t.quant is not None and b_t.quant.axis == 0
    np.testing.assert_allclose(b_t.quant.scale, [0.05, 0.025], rtol=1e-6)
    x_t, y_t = graph.tensors["x"], graph.tensors["y"]
    assert x_t.dtype == "int8" and x_t.quant is not None and x_t.quant.zero_point == (0,)
    assert math.isclose(x_t.quant.scale[0], 0.1, rel_tol=1e-6)
    assert y_t.dtype == "int8" and y_t.quant is not None and y_t.quant.zero_point == (-128,) and y_t.role is Role.MODEL_OUTPUT


def test_qlinear_conv(tmp_path: Path) -> None:
    wq = np.array([1, -2, 3, 4], dtype=np.int8).reshape(2, 2, 1, 1)
    path = build(
        tmp_path,
        [_q("xq", "x", "xs", "xz"),
         helper.make_node("QLinearConv", ["xq", "xs", "xz", "wq", "ws", "wz", "ys", "yz", "b"], ["yq"], name="qconv"),
         _dq("y", "yq", "ys", "yz")],
        {"x": (1, 2, 3, 3)}, ["y"],
        {"xs": np.float32(0.05), "xz": np.uint8(128), "wq": wq, "ws": np.float32(0.5), "wz": np.int8(0),
         "ys": np.float32(0.2), "yz": np.uint8(100), "b": np.array([20, -8], dtype=np.int32)},
        opset=13,
    )
    graph = load_model(path)
    (conv,) = graph.layers
    assert conv.op is OpKind.CONV and conv.id == "qconv"
    np.testing.assert_allclose(weight(graph, conv).reshape(-1), [0.5, -1.0, 1.5, 2.0])
    np.testing.assert_allclose(bias(graph, conv), [0.5, -0.2], rtol=1e-6)  # B * x_scale * w_scale
    assert graph.tensors[conv.weight].quant == QuantParams((0.5,), (0,), "int8", None)  # type: ignore[index]
    assert graph.tensors[conv.bias].dtype == "int32"  # type: ignore[index]
    assert graph.tensors["x"].dtype == "uint8" and graph.tensors["x"].quant.zero_point == (128,)  # type: ignore[union-attr]
    y = graph.tensors["y"]
    assert y.dtype == "uint8" and y.quant is not None and y.quant.zero_point == (100,)


def test_qlinear_matmul(tmp_path: Path) -> None:
    b = np.arange(12, dtype=np.uint8).reshape(4, 3) + 120
    path = build(
        tmp_path,
        [_q("xq", "x", "xs", "xz"),
         helper.make_node("QLinearMatMul", ["xq", "xs", "xz", "b", "bs", "bz", "ys", "yz"], ["yq"]),
         _dq("y", "yq", "ys", "yz")],
        {"x": (1, 4)}, ["y"],
        {"xs": np.float32(0.1), "xz": np.uint8(128), "b": b, "bs": f32(0.5, 0.25, 0.125), "bz": np.full(3, 128, np.uint8),
         "ys": np.float32(0.3), "yz": np.uint8(10)},
    )
    graph = load_model(path)
    (fc,) = graph.layers
    assert fc.op is OpKind.FULLY_CONNECTED and graph.tensors["y"].shape == (1, 3, 1, 1)
    expected = ((b.astype(np.float64) - 128) * [0.5, 0.25, 0.125]).T
    np.testing.assert_allclose(weight(graph, fc), expected)
    assert graph.tensors[fc.weight].quant == QuantParams((0.5, 0.25, 0.125), (128, 128, 128), "uint8", 0)  # type: ignore[index]


# =====================================================================================
# dtypes, constants, ids
# =====================================================================================
def test_float16_model_keeps_its_dtype_with_float32_weights(tmp_path: Path) -> None:
    path = build(tmp_path, [conv_node("x", "w", "c", "b"), helper.make_node("Relu", ["c"], ["y"])],
                 {"x": (1, 2, 4, 4)}, ["y"], {"w": rand(3, 2, 3, 3).astype(np.float16), "b": rand(3).astype(np.float16)},
                 elem_type=TensorProto.FLOAT16)
    graph = load_checked(path, rtol=5e-3)
    conv = graph.layers[0]
    assert weight(graph, conv).dtype == np.float32 and graph.tensors[conv.weight].dtype == "float16"  # type: ignore[index]
    assert graph.tensors["x"].dtype == graph.tensors["y"].dtype == "float16"


def test_constant_subgraphs_fold(tmp_path: Path) -> None:
    w = rand(3, 2, 1, 1)
    fc = np.random.default_rng(5).standard_normal((5, 48))
    nodes = [
        helper.make_node("Constant", [], ["wc"], value=numpy_helper.from_array(w)),
        helper.make_node("ConstantOfShape", ["bshape"], ["bc"], value=numpy_helper.from_array(f32(0.5))),
        conv_node("x", "wc", "c", "bc"),
        # PyTorch's flatten: Reshape(c, Concat(Unsqueeze(Gather(Shape(c), 0)), [-1]))
        helper.make_node("Shape", ["c"], ["sh"]),
        helper.make_node("Gather", ["sh", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["c", "target"], ["f"]),
        helper.make_node("Constant", [], ["fw64"], value=numpy_helper.from_array(fc)),
        helper.make_node("Cast", ["fw64"], ["fw"], to=TensorProto.FLOAT),
        helper.make_node("Gemm", ["f", "fw"], ["y"], transB=1),
    ]
    path = build(tmp_path, nodes, {"x": (1, 2, 4, 4)}, ["y"],
                 {"bshape": np.array([3], dtype=np.int64), "zero": np.array(0, dtype=np.int64),
                  "ax0": np.array([0], dtype=np.int64), "minus1": np.array([-1], dtype=np.int64)})
    graph = load_checked(path)
    assert ops(graph) == [OpKind.CONV, OpKind.FULLY_CONNECTED]
    np.testing.assert_array_equal(bias(graph, graph.layers[0]), [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(weight(graph, graph.layers[1]), fc.astype(np.float32))


def test_layer_ids_come_from_node_names_unique_and_synthesised(tmp_path: Path) -> None:
    path = build(
        tmp_path,
        [conv_node("x", "w", "a", name="dup"), helper.make_node("Relu", ["a"], ["b"], name="act"),
         conv_node("b", "w", "c", name="dup"), conv_node("c", "w", "z")],
        {"x": (1, 2, 3, 3)}, ["z"], {"w": rand(2, 2, 1, 1)},
    )
    graph = load_model(path)
    assert [layer.id for layer in graph.layers] == ["dup", "dup~1", "z"]
    assert graph.layers[0].output == "b"  # the fused layer writes the activation's output
    assert load_model(path) == graph  # deterministic


# =====================================================================================
# Real models: the IR computes what onnxruntime computes
# =====================================================================================
LIGHT = Path(onnx.__file__).resolve().parent / "backend" / "test" / "data" / "light"

NUMERIC_MODELS = {
    "resnet8_float": (MODELS / "resnet8_float.onnx", None, 1e-4),
    "cifar10_float": (MODELS / "cifar10_float.onnx", None, 1e-4),
    "mobilenet_v1_0_25_128_tf2onnx": (MODELS / "mobilenet_v1_0_25_128_tf2onnx.onnx", None, 1e-4),
    "vww_mobilenetv1_96_float": (MODELS / "vww_mobilenetv1_96_float.onnx", None, 1e-4),
    "kws_dscnn_tf2onnx": (MODELS / "kws_dscnn_tf2onnx.onnx", {"input_1": (1, 49, 10, 1)}, 1e-4),
    "micro_kws_m_static_fp32": (MODELS / "micro_kws_m_static_fp32.onnx", None, 1e-4),
    "anomaly_autoencoder_float": (MODELS / "anomaly_autoencoder_float.onnx", None, 1e-4),
    "SqueezeNet_fp16": (MODELS / "SqueezeNet_fp16.onnx", None, 5e-3),  # onnxruntime computes in float16
    "light_shufflenet": (LIGHT / "light_shufflenet.onnx", None, 1e-4),
}


@pytest.mark.parametrize("name", list(NUMERIC_MODELS))
def test_real_model_matches_onnxruntime(name: str) -> None:
    path, shapes, rtol = NUMERIC_MODELS[name]
    graph = load_model(path, shapes)
    assert_matches_onnxruntime(path, graph, rtol=rtol, feed_shapes=shapes)
