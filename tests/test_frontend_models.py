"""ONNX frontend: every real model imports with the expected layers and shapes, and bad models
give one clear error (also through the command line)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from memplan.cli import main
from memplan.errors import GraphError, MemplanError, ModelError, UnsupportedOpError
from memplan.frontend import load_model
from memplan.ir.graph import Graph, Role
from memplan.ir.ops import Activation, ActKind, ConvAttrs, OpKind

MODELS = Path(__file__).resolve().parent.parent / "models"
LIGHT = Path(onnx.__file__).resolve().parent / "backend" / "test" / "data" / "light"
KWS_SHAPE = {"input_1": (1, 49, 10, 1)}

# model -> (layer count, op-kind counts, IR input shape, input layout, output shape)
EXPECTED = {
    "resnet8_float": (15, {"conv": 9, "add": 3, "avg_pool": 1, "fully_connected": 1, "softmax": 1},
                      (1, 3, 32, 32), "NCHW", (1, 10, 1, 1)),
    "cifar10_float": (7, {"conv": 3, "max_pool": 2, "fully_connected": 2}, (1, 3, 32, 32), "NCHW", (1, 10, 1, 1)),
    "mobilenet_v1_0_25_128_tf2onnx": (30, {"conv": 28, "avg_pool": 1, "softmax": 1}, (1, 3, 128, 128), "NHWC", (1, 1001, 1, 1)),
    "vww_mobilenetv1_96_float": (30, {"conv": 27, "avg_pool": 1, "fully_connected": 1, "softmax": 1},
                                 (1, 3, 96, 96), "NCHW", (1, 2, 1, 1)),
    "anomaly_autoencoder_float": (10, {"fully_connected": 10}, (1, 640, 1, 1), "NCHW", (1, 640, 1, 1)),
    "kws_dscnn_tf2onnx": (12, {"conv": 9, "avg_pool": 1, "fully_connected": 1, "softmax": 1},
                          (1, 1, 49, 10), "NHWC", (1, 12, 1, 1)),
    "micro_kws_m_static_fp32": (10, {"conv": 3, "max_pool": 1, "avg_pool": 2, "fully_connected": 3, "softmax": 1},
                                (1, 1, 49, 40), "NCHW", (1, 10, 1, 1)),
    "SqueezeNet_fp16": (39, {"conv": 26, "max_pool": 3, "concat": 8, "global_avg_pool": 1, "softmax": 1},
                        (1, 3, 224, 224), "NCHW", (1, 1000, 1, 1)),
    "light_resnet50": (73, {"conv": 53, "max_pool": 1, "add": 16, "avg_pool": 1, "fully_connected": 1, "softmax": 1},
                       (1, 3, 224, 224), "NCHW", (1, 1000, 1, 1)),
    "light_densenet121": (246, {"conv": 183, "max_pool": 1, "concat": 58, "avg_pool": 3, "global_avg_pool": 1},
                          (1, 3, 224, 224), "NCHW", (1, 1000, 1, 1)),
    "light_inception_v1": (84, {"conv": 57, "max_pool": 13, "lrn": 2, "concat": 9, "avg_pool": 1, "fully_connected": 1,
                                "softmax": 1}, (1, 3, 224, 224), "NCHW", (1, 1000, 1, 1)),
    "light_inception_v2": (94, {"conv": 69, "max_pool": 5, "avg_pool": 8, "concat": 10, "fully_connected": 1, "softmax": 1},
                           (1, 3, 224, 224), "NCHW", (1, 1000, 1, 1)),
    "light_shufflenet": (88, {"conv": 49, "max_pool": 1, "channel_shuffle": 16, "avg_pool": 4, "concat": 3, "add": 13,
                              "fully_connected": 1, "softmax": 1}, (1, 3, 224, 224), "NCHW", (1, 1000, 1, 1)),
    "light_squeezenet": (39, {"conv": 26, "max_pool": 3, "concat": 8, "global_avg_pool": 1, "softmax": 1},
                         (1, 3, 224, 224), "NCHW", (1, 1000, 1, 1)),
    "light_vgg19": (25, {"conv": 16, "max_pool": 5, "fully_connected": 3, "softmax": 1},
                    (1, 3, 224, 224), "NCHW", (1, 1000, 1, 1)),
    "light_bvlc_alexnet": (14, {"conv": 5, "lrn": 2, "max_pool": 3, "fully_connected": 3, "softmax": 1},
                           (1, 3, 224, 224), "NCHW", (1, 1000, 1, 1)),
    "light_zfnet512": (14, {"conv": 5, "lrn": 2, "max_pool": 3, "fully_connected": 3, "softmax": 1},
                       (1, 3, 224, 224), "NCHW", (1, 1000, 1, 1)),
}


def model_path(name: str) -> Path:
    return (LIGHT if name.startswith("light_") else MODELS) / f"{name}.onnx"


_CACHE: dict[str, Graph] = {}


def graph_of(name: str) -> Graph:
    if name not in _CACHE:
        _CACHE[name] = load_model(model_path(name), KWS_SHAPE if name == "kws_dscnn_tf2onnx" else None)
    return _CACHE[name]


def test_every_model_file_in_models_is_covered() -> None:
    files = {p.stem for p in MODELS.glob("*.onnx")} - {"keras_mobilenetv2_035_96_int8_qdq"}  # in test_real_models
    assert len(files) == 8 and files <= set(EXPECTED)
    assert len([n for n in EXPECTED if n.startswith("light_")]) == 9


@pytest.mark.parametrize("name", list(EXPECTED))
def test_model_imports(name: str) -> None:
    n_layers, kinds, in_shape, layout, out_shape = EXPECTED[name]
    graph = graph_of(name)
    assert len(graph.layers) == n_layers
    assert Counter(layer.op.value for layer in graph.layers) == kinds
    (inp,) = graph.inputs
    (out,) = graph.outputs
    assert graph.tensors[inp].shape == in_shape and graph.input_layouts[inp] == layout
    assert graph.tensors[inp].role is Role.MODEL_INPUT
    assert graph.tensors[out].shape == out_shape and graph.tensors[out].role is Role.MODEL_OUTPUT
    onnx_outputs = [o.name for o in onnx.load(model_path(name), load_external_data=False).graph.output]
    assert list(graph.outputs) == onnx_outputs  # output names survive the conversion
    for layer in graph.layers:
        if layer.weight:
            assert graph.tensors[layer.weight].role is Role.WEIGHT
        if layer.bias:
            assert graph.tensors[layer.bias].role is Role.BIAS


def test_resnet50_shapes_and_macs() -> None:
    graph = graph_of("light_resnet50")
    fc = next(layer for layer in graph.layers if layer.op is OpKind.FULLY_CONNECTED)
    assert graph.tensors[fc.output].shape == (1, 1000, 1, 1)
    assert graph.weights[fc.weight].shape == (1000, 2048)  # type: ignore[index]
    first = graph.layers[0]
    assert first.op is OpKind.CONV and graph.tensors[first.output].shape == (1, 64, 112, 112)
    assert first.activation is not None and first.activation.kind is ActKind.RELU  # BN folded, Relu fused
    adds = [layer for layer in graph.layers if layer.op is OpKind.ADD]
    assert all(layer.activation is not None for layer in adds)  # Sum + Relu
    total = sum(graph.layer_macs(layer) for layer in graph.layers)
    assert 4.0e9 < total < 4.2e9  # the published ~4.1 GMACs


def test_densenet_batchnorm_after_concat_is_depthwise() -> None:
    graph = graph_of("light_densenet121")
    depthwise = [layer for layer in graph.layers if layer.op is OpKind.CONV and isinstance(layer.attrs, ConvAttrs)
                 and layer.attrs.kernel == (1, 1) and layer.attrs.groups == graph.shape(layer.inputs[0])[1] > 1]
    # one per dense layer (58), transition (3) and the final BN; the first BN folds into conv1
    assert len(depthwise) == 62
    assert all(layer.activation is not None and layer.activation.kind is ActKind.RELU for layer in depthwise)


def test_mobilenet_tf2onnx_clip_is_relu6() -> None:
    graph = graph_of("mobilenet_v1_0_25_128_tf2onnx")
    acts = Counter(layer.activation for layer in graph.layers if layer.activation)
    assert acts == {Activation(ActKind.CLIP, (0.0, 6.0)): 27}
    assert graph.layers[0].inputs == ("input",)


def test_squeezenet_fp16_keeps_dtype_float16() -> None:
    graph = graph_of("SqueezeNet_fp16")
    conv = graph.layers[0]
    assert graph.tensors[conv.weight].dtype == "float16" and graph.weights[conv.weight].dtype == np.float32  # type: ignore[index]
    assert graph.tensors[conv.output].dtype == "float16"


def test_shufflenet_shuffle_permutation() -> None:
    graph = graph_of("light_shufflenet")
    shuffle = next(layer for layer in graph.layers if layer.op is OpKind.CHANNEL_SHUFFLE)
    # 112 channels in 4 groups of 28: output channel 4j + i reads input channel 28i + j
    assert shuffle.attrs.perm[:6] == (0, 28, 56, 84, 1, 29)  # type: ignore[union-attr]


# =====================================================================================
# Bad models and bad arguments
# =====================================================================================
def _tiny(tmp_path: Path, nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto] | None = None,
          x_shape: list[int | str] | None = None, out: str = "y", file: str = "m.onnx") -> Path:
    graph = helper.make_graph(nodes, "bad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape or [1, 2, 4, 4])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / file
    path.write_bytes(model.SerializeToString())
    return path


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such file"):
        load_model(tmp_path / "nope.onnx")


@pytest.mark.parametrize("keep", [0.5, 0.0])
def test_truncated_or_empty_file(tmp_path: Path, keep: float) -> None:
    data = (MODELS / "resnet8_float.onnx").read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ModelError, match="truncated") as info:
        load_model(path)
    assert str(info.value).startswith(str(path))


def test_unsupported_op_names_op_node_and_where_the_supported_set_is(tmp_path: Path) -> None:
    path = _tiny(tmp_path, [helper.make_node("Erf", ["x"], ["y"], name="the_erf")])
    with pytest.raises(UnsupportedOpError) as info:
        load_model(path, host_ops="error")
    message = str(info.value)
    assert "Erf" in message and "'the_erf'" in message and "memplan ops" in message and "\n" not in message


def test_dynamic_batch_is_pinned_to_one_with_a_note() -> None:
    graph = load_model(MODELS / "kws_dscnn_tf2onnx.onnx")
    assert graph.tensors["input_1"].shape == (1, 1, 49, 10) and dict(graph.input_shapes) == {"input_1": (1, 49, 10, 1)}
    assert graph.notes == ("input 'input_1' has a dynamic batch (unk__128x49x10x1); planning batch 1",)
    assert graph_of("kws_dscnn_tf2onnx").notes == ()  # the batch was given


def test_input_shapes_name_must_be_a_model_input() -> None:
    with pytest.raises(ModelError, match="'data'.*not a model input.*input_1"):
        load_model(MODELS / "resnet8_float.onnx", {"data": (1, 3, 32, 32)})


def test_input_shapes_cannot_change_static_dims() -> None:
    with pytest.raises(ModelError, match="only dynamic dimensions"):
        load_model(MODELS / "resnet8_float.onnx", {"input_1": (1, 3, 64, 64)})


def test_batch_from_input_shapes() -> None:
    graph = load_model(MODELS / "kws_dscnn_tf2onnx.onnx", {"input_1": (2, 49, 10, 1)})
    assert graph.tensors["input_1"].shape == (2, 1, 49, 10) and graph.tensors[graph.outputs[0]].shape == (2, 12, 1, 1)


def test_cycle(tmp_path: Path) -> None:
    # n1 reads n2's output and n2 reads n1's
    path = _tiny(tmp_path, [helper.make_node("Add", ["x", "b"], ["a"], name="n1"),
                            helper.make_node("Relu", ["a"], ["b"], name="n2"),
                            helper.make_node("Relu", ["b"], ["y"], name="n3")])
    with pytest.raises(GraphError, match="cycle through nodes 'n1', 'n2'"):
        load_model(path)


def _external_model(tmp_path: Path, location: str) -> Path:
    w = numpy_helper.from_array(np.ones((2, 2, 1, 1), dtype=np.float32), "w")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    w.ClearField("raw_data")
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    return _tiny(folder, [helper.make_node("Conv", ["x", "w"], ["y"])], [w], file="ext.onnx")


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/hostname", "sub/../../secret.bin"])
def test_external_data_outside_the_model_folder_is_refused(tmp_path: Path, location: str) -> None:
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)
    path = _external_model(tmp_path, location)
    with pytest.raises(ModelError, match="outside the model's folder"):
        load_model(path)


def test_external_data_beside_the_model_is_read(tmp_path: Path) -> None:
    path = _external_model(tmp_path, "w.bin")
    (path.parent / "w.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    graph = load_model(path)
    np.testing.assert_array_equal(graph.weights[graph.layers[0].weight].reshape(-1), [0, 1, 2, 3])  # type: ignore[index]


@pytest.mark.parametrize("width, message", [(6, "not an NCHW feature map"), (4, "moves elements across H or W")])
def test_unsupported_layout_is_a_clear_error(tmp_path: Path, width: int, message: str) -> None:
    # a Transpose of H and W (the Relu in between runs on the untransposed map) cannot feed a pool
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Transpose", ["r"], ["t"], perm=[0, 1, 3, 2]),
             helper.make_node("Relu", ["t"], ["u"]), helper.make_node("MaxPool", ["u"], ["y"], kernel_shape=[2, 2])]
    path = _tiny(tmp_path, nodes, x_shape=[1, 2, 4, width])
    with pytest.raises(ModelError, match=message):
        load_model(path, host_ops="error")


def test_malformed_node_is_a_one_line_model_error(tmp_path: Path) -> None:
    path = _tiny(tmp_path, [helper.make_node("LRN", ["x"], ["y"], name="no_size")])  # LRN needs 'size'
    with pytest.raises(ModelError, match="node 'no_size' \\(LRN\\) is malformed") as info:
        load_model(path)
    assert "\n" not in str(info.value)


def test_custom_domain_op_is_unsupported(tmp_path: Path) -> None:
    path = _tiny(tmp_path, [helper.make_node("FusedConv", ["x"], ["y"], name="fc", domain="com.microsoft")])
    with pytest.raises(UnsupportedOpError, match="com.microsoft:FusedConv"):
        load_model(path)


@pytest.mark.parametrize("nodes, message", [
    ([helper.make_node("Mul", ["x", "k"], ["y"])], "per-channel or scalar"),
    # a zero Pad before a Relu is a pad layer now; reflection padding is not
    ([helper.make_node("Pad", ["x", "p"], ["t"], mode="reflect"), helper.make_node("Relu", ["t"], ["y"])],
     "mode 'reflect' is not supported"),
])
def test_inexpressible_elementwise_ops_are_refused(tmp_path: Path, nodes: list[onnx.NodeProto], message: str) -> None:
    inits = [numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 1, 1, 4), "k"),
             numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64), "p")]
    path = _tiny(tmp_path, nodes, inits)
    with pytest.raises(ModelError, match=message):
        load_model(path, host_ops="error")


def test_errors_are_one_line_memplan_errors(tmp_path: Path) -> None:
    # Div of two feature maps has no IR layer (Mul of two feature maps does)
    path = _tiny(tmp_path, [helper.make_node("Div", ["x", "x"], ["y"], name="square")])
    with pytest.raises(MemplanError) as info:
        load_model(path, host_ops="error")
    assert "\n" not in str(info.value) and "'square'" in str(info.value)


@pytest.mark.parametrize("case", ["missing", "dynamic", "truncated"])
def test_cli_prints_one_line_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    if case == "missing":
        argv = ["inspect", str(tmp_path / "nope.onnx")]
    elif case == "dynamic":  # a dynamic height and width: only the batch is pinned without being given
        argv = ["inspect", str(_tiny(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], x_shape=["N", 3, "H", "W"]))]
    else:
        cut = tmp_path / "cut.onnx"
        cut.write_bytes((MODELS / "cifar10_float.onnx").read_bytes()[:1000])
        argv = ["inspect", str(cut)]
    assert main(argv) != 0
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("memplan: error:")
    if case == "dynamic":
        assert "give dims 2 and 3" in captured.err and "--input-shape x=1x3x224x224" in captured.err


def test_cli_inspect_with_input_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(MODELS / "kws_dscnn_tf2onnx.onnx"), "--input-shape", "input_1=1x49x10x1"]) == 0
    assert capsys.readouterr().err == ""
