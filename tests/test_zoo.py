"""The model zoo and the IR -> ONNX exporter.

Every zoo model builds, passes the graph checks and the ONNX checker, and runs in onnxruntime
with the same result as a float64 numpy evaluation of the IR written here (so the exported
ONNX means what the IR means), and re-imports through the frontend to the same IR. The totals
(MACs, parameters) match the published figures of each architecture.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from memplan.errors import ModelError, UsageError
from memplan.execute import float_ref
from memplan.execute.float_ref import run_float
from memplan.frontend.export import save_onnx, to_onnx
from memplan.ir.builder import GraphBuilder
from memplan.ir.graph import Graph
from memplan.ir.ops import (
    Activation,
    ActKind,
    ChannelShuffleAttrs,
    ConvAttrs,
    ConvTransposeAttrs,
    NoAttrs,
    OpKind,
    PoolAttrs,
    ResizeAttrs,
)
from memplan.zoo import ZOO, build_zoo_model, parse_zoo_params

# ============================================================================ float64 reference
Array = np.ndarray


def evaluate(graph: Graph, feeds: Mapping[str, Array]) -> dict[str, Array]:
    """Run the IR graph in float64 (memplan.execute.float_ref, checked against onnxruntime op
    by op in test_reference.py): the meaning of the IR the exporter must preserve."""
    values = run_float(graph, feeds)
    for layer in graph.layers:
        out_shape = graph.shape(layer.output)
        assert values[layer.output].shape == out_shape, f"{layer.id}: reference gives {values[layer.output].shape}, IR says {out_shape}"
    return {o: values[o] for o in graph.outputs}


def _random_feeds(graph: Graph, seed: int = 1) -> dict[str, Array]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(graph.shape(name)).astype(np.float32) for name in graph.inputs}


def _assert_onnx_matches_ir(graph: Graph, model_bytes: bytes, feeds: Mapping[str, Array] | None = None) -> None:
    """onnxruntime (float32) on the exported model agrees with the float64 IR evaluation."""
    feeds = dict(feeds or _random_feeds(graph))
    expected = evaluate(graph, feeds)
    onnx_feeds = {
        k: (v.transpose(0, 2, 3, 1) if graph.input_layouts.get(k) == "NHWC" else v) for k, v in feeds.items()
    }
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    got = session.run(list(graph.outputs), onnx_feeds)
    for name, value in zip(graph.outputs, got):
        ref = expected[name]
        scale = max(1.0, float(np.abs(ref).max()))
        err = float(np.abs(value.reshape(ref.shape) - ref).max())
        assert err <= 2e-5 * scale, f"output {name}: max error {err:.3g} at scale {scale:.3g}"


# ============================================================================ zoo models
#: (model, resolution, params) run end to end; ImageNet models at 64 to keep the suite quick
RUN_CASES: tuple[tuple[str, int | None, dict[str, object]], ...] = (
    ("resnet18", 64, {}),
    ("resnet50", 64, {}),
    ("mobilenetv2", 64, {}),
    ("densenet121", 64, {}),
    ("unet", 64, {}),
    ("unet", 32, {"up": "nearest", "levels": 3}),
    ("unet", 32, {"up": "bilinear", "base": 8}),
    ("resnet8", None, {}),
    ("dscnn", None, {}),
    ("toy_chain", None, {"n": 3, "h": 12, "w": 10, "c": 8}),
)


def _case_id(case: tuple[str, int | None, dict[str, object]]) -> str:
    name, res, params = case
    return "-".join([name, *([str(res)] if res else []), *(f"{k}={v}" for k, v in params.items())])


@functools.cache
def _exported(index: int) -> tuple[Graph, bytes]:
    name, res, params = RUN_CASES[index]
    graph = build_zoo_model(name, resolution=res, seed=3, **params)
    return graph, to_onnx(graph).SerializeToString()


CASE_INDEXES = pytest.mark.parametrize("index", range(len(RUN_CASES)), ids=[_case_id(c) for c in RUN_CASES])


def test_every_zoo_model_is_run() -> None:
    assert {case[0] for case in RUN_CASES} == set(ZOO)


@CASE_INDEXES
def test_zoo_model_exports_and_runs_as_the_ir_says(index: int) -> None:
    graph, data = _exported(index)
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == list(graph.inputs)
    assert [o.name for o in model.graph.output] == list(graph.outputs)
    _assert_onnx_matches_ir(graph, data)


@CASE_INDEXES
def test_zoo_model_reimports_to_the_same_ir(index: int, tmp_path: Path) -> None:
    from memplan.frontend import load_model

    graph, data = _exported(index)
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    back = load_model(str(path))
    assert len(back.layers) == len(graph.layers)
    for ours, theirs in zip(graph.layers, back.layers):
        where = f"layer {ours.id}"
        assert theirs.op is ours.op, where
        assert theirs.attrs == ours.attrs, where
        assert theirs.activation == ours.activation, where
        assert back.tensors[theirs.output].shape == graph.tensors[ours.output].shape, where
        for mine, other in ((ours.weight, theirs.weight), (ours.bias, theirs.bias)):
            assert (mine is None) == (other is None), where
            if mine is not None and other is not None:
                np.testing.assert_array_equal(back.weights[other], graph.weights[mine], err_msg=where)
    assert [back.shape(i) for i in back.inputs] == [graph.shape(i) for i in graph.inputs]
    assert [back.tensors[o].shape for o in back.outputs] == [graph.tensors[o].shape for o in graph.outputs]


def _totals(graph: Graph) -> tuple[int, int]:
    macs = sum(graph.layer_macs(layer) for layer in graph.layers)
    params = sum(graph.weight_elems(layer) + graph.bias_elems(layer) for layer in graph.layers)
    return macs, params


# Published totals. torchvision counts two parameters per BatchNorm channel; with BN folded, a
# conv carries one bias per channel instead, so our exact count is torchvision's minus one per
# folded BN channel (resnet50: 25,557,032 - 26,560). DenseNet's unfoldable pre-activation BNs
# are depthwise 1x1 convs (weight + bias: 2 per channel, as torchvision counts them), which
# also add one MAC per element: 10.5M MACs on top of torchvision's 2.834G conv+FC MACs, 0.4%.
@pytest.mark.parametrize(
    ("name", "macs_published", "macs_tol", "params_published", "params_tol", "params_exact"),
    [
        ("resnet50", 4.1e9, 0.02, 25.5e6, 0.01, 25_557_032 - 26_560),
        ("resnet18", 1.8e9, 0.02, 11.7e6, 0.01, 11_689_512 - 4_800),
        ("mobilenetv2", 300e6, 0.02, 3.45e6, 0.015, 3_504_872 - 17_056),
        ("densenet121", 2.87e9, 0.02, 8.0e6, 0.01, 7_978_856 - 7_488),
    ],
)
def test_imagenet_totals_match_published(
    name: str, macs_published: float, macs_tol: float, params_published: float, params_tol: float, params_exact: int
) -> None:
    graph = build_zoo_model(name)
    assert graph.shape(graph.inputs[0]) == (1, 3, 224, 224)
    assert graph.tensors[graph.outputs[0]].shape == (1, 1000, 1, 1)
    macs, params = _totals(graph)
    assert abs(macs / macs_published - 1) <= macs_tol
    assert abs(params / params_published - 1) <= params_tol
    assert params == params_exact


def test_densenet121_structure() -> None:
    graph = build_zoo_model("densenet121", resolution=64)
    ops = [layer.op for layer in graph.layers]
    # 58 dense layers: every one but the first of a block reads a fresh concat; 4 block outputs
    assert ops.count(OpKind.CONCAT) == 58 - 4 + 4
    affine = [l for l in graph.layers if l.op is OpKind.CONV and isinstance(l.attrs, ConvAttrs) and l.attrs.groups > 1]
    assert len(affine) == 58 + 3 + 1  # norm1 of each dense layer, 3 transitions, norm5
    assert all(graph.weights[l.weight].shape[1:] == (1, 1, 1) for l in affine if l.weight)
    assert graph.shape("features.denseblock4.cat.out")[1] == 1024


def test_resnet8_matches_mlperf_tiny() -> None:
    graph = build_zoo_model("resnet8")
    assert _totals(graph) == (12_501_632, 77_706)
    shapes = {layer.id: graph.shape(layer.output) for layer in graph.layers}
    assert shapes["conv1"] == (1, 16, 32, 32)
    assert shapes["stage2.add"] == (1, 32, 16, 16) and shapes["stage3.add"] == (1, 64, 8, 8)
    assert shapes["avgpool"] == (1, 64, 1, 1) and shapes["softmax"] == (1, 10, 1, 1)
    # Keras 'same' on stride 2 pads bottom/right only, as in the reference model
    assert graph.layer("stage2.conv1").attrs == ConvAttrs((3, 3), (2, 2), (0, 0, 1, 1))
    assert graph.layers[-1].op is OpKind.SOFTMAX


def test_dscnn_matches_mlperf_tiny() -> None:
    graph = build_zoo_model("dscnn")
    assert _totals(graph) == (2_656_768, 22_604)
    assert graph.shape("input") == (1, 1, 49, 10)
    assert graph.layer("conv1").attrs == ConvAttrs((10, 4), (2, 2), (4, 1, 5, 1))
    assert graph.shape("conv1.out") == (1, 64, 25, 5)
    dws = [l for l in graph.layers if isinstance(l.attrs, ConvAttrs) and l.attrs.groups == 64]
    assert len(dws) == 4
    assert [l.op for l in graph.layers[-3:]] == [OpKind.GLOBAL_AVG_POOL, OpKind.FULLY_CONNECTED, OpKind.SOFTMAX]
    assert graph.tensors[graph.outputs[0]].shape == (1, 12, 1, 1)


@pytest.mark.parametrize(("n", "h", "w", "c"), [(5, 112, 112, 32), (2, 7, 9, 3)])
def test_toy_chain_counts(n: int, h: int, w: int, c: int) -> None:
    graph = build_zoo_model("toy_chain", n=n, h=str(h), w=w, c=c)
    assert len(graph.layers) == n
    assert all(l.op is OpKind.CONV and l.attrs == ConvAttrs((3, 3), (1, 1), (1, 1, 1, 1)) for l in graph.layers)
    assert graph.shape(graph.outputs[0]) == (1, c, h, w)
    assert _totals(graph)[0] == n * h * w * c * c * 9


def test_toy_chain_resolution_sets_h_and_w() -> None:
    assert build_zoo_model("toy_chain", resolution=20).shape("input") == (1, 32, 20, 20)


def test_unet_upsampling_variants() -> None:
    kinds = {up: {l.op for l in build_zoo_model("unet", resolution=32, up=up, base=4).layers}
             for up in ("transpose", "nearest", "bilinear")}
    assert OpKind.CONV_TRANSPOSE in kinds["transpose"] and OpKind.RESIZE not in kinds["transpose"]
    assert OpKind.RESIZE in kinds["nearest"] and OpKind.CONV_TRANSPOSE not in kinds["nearest"]
    graph = build_zoo_model("unet", resolution=64, classes=5)
    assert graph.shape(graph.outputs[0]) == (1, 5, 64, 64)
    assert sum(l.op is OpKind.CONCAT for l in graph.layers) == 4
    assert max(graph.shape(l.output)[1] for l in graph.layers) == 512


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    first = to_onnx(build_zoo_model("resnet8", seed=7)).SerializeToString()
    assert to_onnx(build_zoo_model("resnet8", seed=7)).SerializeToString() == first
    assert to_onnx(build_zoo_model("resnet8", seed=8)).SerializeToString() != first
    save_onnx(build_zoo_model("resnet8", seed=7), tmp_path / "r8.onnx")
    assert (tmp_path / "r8.onnx").read_bytes() == first


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: build_zoo_model("resnet9"), "unknown zoo model 'resnet9': choose one of resnet18, resnet50"),
        (lambda: build_zoo_model("unet", depth=3), "valid parameters are levels, base, classes, up"),
        (lambda: build_zoo_model("unet", up="bicubic"), "one of transpose, nearest, bilinear"),
        (lambda: build_zoo_model("toy_chain", n="0"), "positive integer"),
        (lambda: build_zoo_model("toy_chain", n="five"), "positive integer"),
        (lambda: build_zoo_model("unet", resolution=100), "multiple of 16"),
        (lambda: build_zoo_model("resnet50", resolution=16), "at least 32"),
        (lambda: build_zoo_model("dscnn", resolution=32), "fixed 49x10 input"),
        (lambda: build_zoo_model("resnet8", seed=-1), "seed"),
        (lambda: parse_zoo_params(["n"]), "KEY=VALUE"),
        (lambda: parse_zoo_params(["n=1", "n=2"]), "twice"),
    ],
)
def test_usage_errors_are_one_line(call: Callable[[], object], pattern: str) -> None:
    with pytest.raises(UsageError, match=pattern) as info:
        call()
    assert "\n" not in str(info.value)


def test_parse_zoo_params() -> None:
    assert parse_zoo_params(None) == {}
    assert parse_zoo_params(["up=nearest", "classes = 3"]) == {"up": "nearest", "classes": "3"}
    assert build_zoo_model("resnet8", **parse_zoo_params(["classes=3"])).shape("softmax.out") == (1, 3, 1, 1)


# ============================================================================ exporter coverage
def _all_ops_graph(gather_perm: bool = True) -> Graph:
    """Every op kind and activation, odd sizes, ceil-mode pooling, grouped and dilated convs, and
    2-D (FC) tensors feeding both 2-D-friendly and 4-D-only consumers. ``gather_perm`` adds a
    channel permutation that is not a group shuffle (exported as Gather)."""
    b = GraphBuilder("all_ops", seed=5)
    x = b.input((1, 8, 15, 15))
    x = b.conv(x, 8, 3, dilation=2, activation=Activation(ActKind.LEAKY_RELU, (0.1,)))
    pooled = b.add_layer(OpKind.MAX_POOL, (x,), PoolAttrs((2, 2), (2, 2), (0, 0, 1, 1), ceil_pads=(1, 1)))  # 8x8
    avg = b.add_layer(OpKind.AVG_POOL, (pooled,), PoolAttrs((3, 3), (2, 2), (1, 1, 2, 2), True, (1, 1)))  # 5x5
    avg = b.add_layer(OpKind.AVG_POOL, (avg,), PoolAttrs((2, 2), (1, 1), (1, 1, 0, 0), False))  # 5x5
    x = b.channel_shuffle(b.lrn(pooled, size=3), groups=2)
    if gather_perm:
        x = b.add_layer(OpKind.CHANNEL_SHUFFLE, (x,), ChannelShuffleAttrs((3, 1, 0, 2, 7, 6, 5, 4)))
    up = b.conv_transpose(x, 4, kernel=3, stride=2, pads=(1, 1, 1, 1),
                          activation=Activation(ActKind.HARD_SIGMOID, (0.25, 0.5)))  # 15x15
    up = b.add_layer(OpKind.CONV_TRANSPOSE, (up,), ConvTransposeAttrs((3, 3), (2, 2), (1, 1, 1, 1), groups=2,
                     output_padding=(1, 1)), 4, b.rng.normal(size=(4, 2, 3, 3)), None, Activation(ActKind.SILU))  # 30x30
    near = b.resize(avg, 3, mode="nearest")  # 15x15
    lin = b.add_layer(OpKind.RESIZE, (x,), ResizeAttrs((15, 18), "linear", "half_pixel"),
                      activation=Activation(ActKind.TANH))
    d1 = b.conv(near, 4, 1, activation=Activation(ActKind.HARD_SWISH))
    d2 = b.conv(lin, 4, (1, 4), pads=(0, 0, 0, 0), activation=Activation(ActKind.SIGMOID))
    d2 = b.depthwise(d2, 3)
    d3 = b.conv(up, 4, 3, stride=2, pads=(1, 1, 1, 1), activation=Activation(ActKind.CLIP, (-0.5, 0.5)))
    fmap = b.add(d1, d2, d3, activation=Activation(ActKind.RELU))
    cat = b.concat(fmap, d1)
    gmax = b.add_layer(OpKind.GLOBAL_MAX_POOL, (cat,), NoAttrs())
    f1 = b.fc(gmax, 6)
    f2 = b.fc(f1, 6, activation=Activation(ActKind.TANH))
    probs = b.softmax(b.concat(b.add(f1, f2), f2))  # 2-D add, concat and softmax
    mixed = b.add(f1, b.conv(b.global_avg_pool(cat), 6, 1, activation=None))  # 2-D + 4-D
    from_fc = b.conv(f2, 3, 1)  # a 4-D consumer of a 2-D tensor
    return b.build((probs, from_fc, mixed, b.softmax(cat)))


@pytest.mark.parametrize("opset", [13, 17])
def test_exporter_covers_every_op(opset: int) -> None:
    graph = _all_ops_graph()
    model = to_onnx(graph, opset=opset)
    onnx.checker.check_model(model, full_check=True)
    types = {n.op_type for n in model.graph.node}
    assert {"Gather", "Transpose", "Sum", "Flatten", "Gemm", "LRN", "Resize", "GlobalMaxPool"} <= types
    assert ("HardSwish" in types) == (opset >= 14)
    pools = [n for n in model.graph.node if n.op_type in ("MaxPool", "AveragePool")]
    assert any(onnx.helper.get_attribute_value(a) == 1 for n in pools for a in n.attribute if a.name == "ceil_mode")
    _assert_onnx_matches_ir(graph, model.SerializeToString())


def test_exporter_coverage_graph_reimports_to_an_equivalent_ir(tmp_path: Path) -> None:
    """Export then import keeps the layer list and the meaning (float attributes such as LRN's
    alpha pass through ONNX's float32 attributes, so the check is numeric). The frontend takes
    no Gather on feature maps, so this variant leaves out the non-shuffle permutation."""
    from memplan.frontend import load_model

    graph = _all_ops_graph(gather_perm=False)
    save_onnx(graph, tmp_path / "all_ops.onnx")
    back = load_model(tmp_path / "all_ops.onnx")
    assert [l.op for l in back.layers] == [l.op for l in graph.layers]
    assert [back.tensors[o].shape for o in back.outputs] == [graph.tensors[o].shape for o in graph.outputs]
    feeds = _random_feeds(graph)
    ours = evaluate(graph, feeds)
    theirs = evaluate(back, {back.inputs[0]: feeds[graph.inputs[0]]})
    for mine, other in zip(graph.outputs, back.outputs):
        np.testing.assert_allclose(theirs[other], ours[mine], rtol=1e-5, atol=1e-6)


def test_exporter_nhwc_input() -> None:
    graph = build_zoo_model("toy_chain", n=2, h=6, w=5, c=3)
    graph = dataclasses.replace(graph, input_layouts=MappingProxyType({"input": "NHWC"}))
    model = to_onnx(graph)
    onnx.checker.check_model(model, full_check=True)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 6, 5, 3]
    _assert_onnx_matches_ir(graph, model.SerializeToString())


def test_exporter_rejects_ceil_pads_onnx_cannot_express() -> None:
    b = GraphBuilder("ceil", seed=0)
    x = b.input((1, 2, 15, 15))
    # ceil mode on H only: ONNX's ceil_mode would also round W up (8 instead of 7)
    y = b.add_layer(OpKind.MAX_POOL, (x,), PoolAttrs((2, 2), (2, 2), (0, 0, 1, 0), ceil_pads=(1, 0)))
    with pytest.raises(ModelError, match="ceil_mode=1 gives 8x8"):
        to_onnx(b.build(y))


def test_exporter_rejects_bad_opset() -> None:
    with pytest.raises(UsageError, match="opset 11"):
        to_onnx(build_zoo_model("toy_chain", n=1, h=4, w=4, c=1), opset=11)


def test_layer_reference_is_not_vacuous() -> None:
    """The numpy reference itself: a 3x3 conv of ones on ones, and a known ConvTranspose."""
    ones = np.ones((1, 1, 3, 3))
    conv = float_ref._conv(ones, ConvAttrs((3, 3), pads=(1, 1, 1, 1)), np.ones((1, 1, 3, 3)), (3, 3))
    np.testing.assert_array_equal(conv[0, 0], [[4, 6, 4], [6, 9, 6], [4, 6, 4]])
    up = float_ref._conv_transpose(np.array([[[[1.0, 2.0]]]]), ConvTransposeAttrs((1, 2), (1, 2)),
                                   np.ones((1, 1, 1, 2)), (1, 4))
    np.testing.assert_array_equal(up[0, 0], [[1, 1, 2, 2]])
