"""Import problems of real converter output: dynamic batch dimensions, QDQ scale forms, the
tf2onnx ``--dequantize`` int8 interface, asymmetric weights, onnxruntime ``quantize_static``
models; each on a hand-built graph with hand-computed values, then on a real tf2onnx model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from memplan.cli import main
from memplan.errors import ModelError, UnsupportedOpError
from memplan.frontend import load_model
from memplan.ir.graph import QuantParams
from memplan.ir.ops import OpKind

MODELS = Path(__file__).resolve().parent.parent / "models"


def _save(tmp_path: Path, nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
          outputs: list[onnx.ValueInfoProto], inits: list[onnx.TensorProto], name: str = "m.onnx",
          opset: int = 13) -> Path:
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def _conv_model(tmp_path: Path, x_shape: list[int | str], name: str = "m.onnx") -> Path:
    """x (float) -> 1x1 Conv (3 -> 4 channels) -> Relu -> y."""
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3, 1, 1) / 10, "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"), helper.make_node("Relu", ["c"], ["y"], name="relu")]
    return _save(tmp_path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w], name)


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    return err


# ---------------------------------------------------------------------------- 1. dynamic batch
@pytest.mark.parametrize("batch", [-1, "unk__7"])
def test_dynamic_batch_is_planned_at_one_with_a_note(tmp_path: Path, batch: int | str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = _conv_model(tmp_path, [batch, 3, 8, 8])
    graph = load_model(path)
    assert graph.tensors["x"].shape == (1, 3, 8, 8) and dict(graph.input_shapes) == {"x": (1, 3, 8, 8)}
    shown = "-1" if batch == -1 else "unk__7"
    assert graph.notes == (f"input 'x' has a dynamic batch ({shown}x3x8x8); planning batch 1",)
    assert main(["inspect", str(path)]) == 0
    err = _err(capsys)
    assert err == f"memplan: note: input 'x' has a dynamic batch ({shown}x3x8x8); planning batch 1\n"


def test_other_dynamic_dims_need_input_shape_with_a_usable_hint(tmp_path: Path) -> None:
    path = _conv_model(tmp_path, [-1, 3, "H", "W"])  # as rapidocr_cls.onnx
    with pytest.raises(ModelError, match=r"\(-1x3xHxW\); give dims 2 and 3 .*--input-shape x=1x3x224x224") as info:
        load_model(path)
    assert "\n" not in str(info.value)
    nhwc = _conv_model(tmp_path, ["N", "H", "W", 3], "nhwc.onnx")
    with pytest.raises(ModelError, match=r"give dims 1 and 2 .*--input-shape x=1x224x224x3"):
        load_model(nhwc)
    graph = load_model(path, {"x": (2, 3, 16, 8)})  # a given batch is kept
    assert graph.tensors["x"].shape == (2, 3, 16, 8) and graph.notes == ()


# ---------------------------------------------------------------------------- 2. plan records shapes
def test_plan_records_input_shapes_and_verify_needs_none(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _conv_model(tmp_path, [-1, 3, "H", "W"])
    plan = tmp_path / "plan.json"
    assert main(["solve", str(path), "--strategy", "greedy", "--sram", "2KiB", "--input-shape", "x=1x3x12x10",
                 "-o", str(plan)]) == 0
    assert json.loads(plan.read_text())["model"]["input_shapes"] == {"x": [1, 3, 12, 10]}
    capsys.readouterr()
    assert main(["verify", str(path), str(plan)]) == 0
    assert main(["verify", str(path), str(plan), "--input-shape", "x=1x3x12x10"]) == 0  # the same shape is fine
    capsys.readouterr()
    assert main(["verify", str(path), str(plan), "--input-shape", "x=1x3x16x16"]) != 0
    err = _err(capsys)
    assert err.count("\n") == 1 and "--input-shape x=1x3x16x16 contradicts the plan, made for x=1x3x12x10" in err


def test_plan_of_a_pinned_batch_verifies_without_a_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _conv_model(tmp_path, ["N", 3, 8, 8])
    plan = tmp_path / "plan.json"
    assert main(["solve", str(path), "--strategy", "greedy", "--sram", "2KiB", "-o", str(plan)]) == 0
    assert "planning batch 1" in _err(capsys)
    assert main(["verify", str(path), str(plan)]) == 0
    assert "note" not in _err(capsys)  # the plan gives the batch


# ---------------------------------------------------------------------------- 3. QDQ scale forms
# conv weight (2 out, 2 in, 1x1) stored quantised; expected reals (q - zp) * scale by hand
_WEIGHT_FORMS = {
    "int8 per-tensor, scalar scale": (np.int8, [1, -2, 3, 127], 0.5, None, [0.5, -1.0, 1.5, 63.5], True),
    "uint8 per-tensor asymmetric": (np.uint8, [0, 100, 255, 101], 0.25, 100, [-25.0, 0.0, 38.75, 0.25], False),
    "uint8 per-tensor symmetric (zp 128)": (np.uint8, [128, 130, 0, 255], 0.5, 128, [0.0, 1.0, -64.0, 63.5], True),
    "int8 per-channel": (np.int8, [1, -2, 3, 127], [0.5, 0.25], [0, 0], [0.5, -1.0, 0.75, 31.75], True),
    "uint8 per-channel asymmetric": (np.uint8, [0, 100, 255, 101], [0.5, 0.25], [10, 200], [-5.0, 45.0, 13.75, -24.75],
                                     False),
    "int8 one-element scale": (np.int8, [1, -2, 3, 127], [0.5], [0], [0.5, -1.0, 1.5, 63.5], True),
}


@pytest.mark.parametrize("form", list(_WEIGHT_FORMS))
def test_qdq_weights_dequantise_exactly(tmp_path: Path, form: str) -> None:
    dtype, q, scale, zp, expected, keeps_params = _WEIGHT_FORMS[form]
    per_channel = isinstance(scale, list) and len(scale) > 1
    inits = [numpy_helper.from_array(np.array(q, dtype=dtype).reshape(2, 2, 1, 1), "wq"),
             numpy_helper.from_array(np.array(scale, dtype=np.float32), "ws"),
             # the bias: int32 with a one-element scale and an axis that a rank-1 tensor lacks
             numpy_helper.from_array(np.array([4, -8], dtype=np.int32), "bq"),
             numpy_helper.from_array(np.array([0.125], dtype=np.float32), "bs")]
    w_inputs = ["wq", "ws"]
    if zp is not None:
        inits.append(numpy_helper.from_array(np.array(zp, dtype=dtype), "wz"))
        w_inputs.append("wz")
    nodes = [
        # a scalar scale with axis=1, as onnxruntime and tf2onnx write it: ONNX ignores the axis
        helper.make_node("DequantizeLinear", w_inputs, ["w"], axis=0 if per_channel else 1),
        helper.make_node("DequantizeLinear", ["bq", "bs"], ["b"], axis=1),
        helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv"),
    ]
    path = _save(tmp_path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    graph = load_model(path)
    (layer,) = graph.layers
    assert layer.weight is not None and layer.bias is not None
    np.testing.assert_array_equal(graph.weights[layer.weight], np.array(expected, dtype=np.float32).reshape(2, 2, 1, 1))
    np.testing.assert_array_equal(graph.weights[layer.bias], np.array([0.5, -1.0], dtype=np.float32))
    w = graph.tensors[layer.weight]
    assert w.dtype == np.dtype(dtype).name
    if keeps_params:
        assert w.quant == QuantParams(tuple(np.atleast_1d(scale).astype(float)),
                                      tuple(np.atleast_1d(0 if zp is None else zp).astype(int)), w.dtype,
                                      0 if per_channel else None)
    else:  # asymmetric: exact reals, re-quantised symmetrically by verify
        assert w.quant is None
    assert graph.tensors[layer.bias].quant == QuantParams((0.125,), (0,), "int32", None)


def test_asymmetric_uint8_weights_plan_and_verify(tmp_path: Path) -> None:
    inits = [numpy_helper.from_array(np.array([0, 100, 255, 101], dtype=np.uint8).reshape(2, 2, 1, 1), "wq"),
             numpy_helper.from_array(np.array(0.25, dtype=np.float32), "ws"),
             numpy_helper.from_array(np.array(100, dtype=np.uint8), "wz")]
    nodes = [helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=1),
             helper.make_node("Conv", ["x", "w"], ["y"], name="conv")]
    path = _save(tmp_path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    plan = tmp_path / "plan.json"
    assert main(["solve", str(path), "--strategy", "greedy", "--sram", "1KiB", "-o", str(plan)]) == 0
    assert main(["verify", str(path), str(plan)]) == 0


# ---------------------------------------------------------------------------- 4. --dequantize chains
def _dequantize_chain_model(tmp_path: Path, *, uint8: bool = False, zp: float = -5.0, name: str = "m.onnx") -> Path:
    """tf2onnx --dequantize: x (int8, NHWC) -> Cast -> Sub(zp) -> Mul(scale) -> Transpose -> Conv ->
    Relu -> QuantizeLinear -> y (int8). The uint8 variant gives the constants as Constant nodes
    and the scale as Mul's first operand."""
    elem = TensorProto.UINT8 if uint8 else TensorProto.INT8
    scale = 0.0078125 if uint8 else 0.5
    w = numpy_helper.from_array(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3, 1, 1), "w")
    out_scale = numpy_helper.from_array(np.array(0.25, dtype=np.float32), "out_scale")
    out_zp = numpy_helper.from_array(np.array(3, dtype=np.int8), "out_zp")
    inits = [w, out_scale, out_zp]
    nodes = [helper.make_node("Cast", ["x"], ["xc"], name="x_dequant_Cast", to=TensorProto.FLOAT)]
    if uint8:
        nodes += [helper.make_node("Constant", [], ["zp"], value=numpy_helper.from_array(np.array(zp, np.float32))),
                  helper.make_node("Constant", [], ["s"], value=numpy_helper.from_array(np.array(scale, np.float32))),
                  helper.make_node("Sub", ["xc", "zp"], ["xs"]), helper.make_node("Mul", ["s", "xs"], ["xm"])]
    else:
        inits += [numpy_helper.from_array(np.array(zp, np.float32), "zp"),
                  numpy_helper.from_array(np.array(scale, np.float32), "s")]
        nodes += [helper.make_node("Sub", ["xc", "zp"], ["xs"]), helper.make_node("Mul", ["xs", "s"], ["xm"])]
    nodes += [helper.make_node("Transpose", ["xm"], ["xt"], perm=[0, 3, 1, 2]),
              helper.make_node("Conv", ["xt", "w"], ["c"], name="conv"),
              helper.make_node("Relu", ["c"], ["r"], name="relu"),
              helper.make_node("QuantizeLinear", ["r", "out_scale", "out_zp"], ["y"], name="y_quantize")]
    return _save(tmp_path, nodes, [helper.make_tensor_value_info("x", elem, ["unk__1", 6, 5, 3])],
                 [helper.make_tensor_value_info("y", TensorProto.INT8, ["unk__2", 4, 6, 5])], inits, name)


@pytest.mark.parametrize("uint8", [False, True])
def test_dequantize_chain_folds_into_the_input_quantisation(tmp_path: Path, uint8: bool) -> None:
    zp = 128.0 if uint8 else -5.0
    path = _dequantize_chain_model(tmp_path, uint8=uint8, zp=zp)
    graph = load_model(path)
    assert [layer.op for layer in graph.layers] == [OpKind.CONV]
    x = graph.tensors["x"]
    assert x.shape == (1, 3, 6, 5) and graph.input_layouts["x"] == "NHWC"
    want_in = QuantParams((0.0078125,), (128,), "uint8") if uint8 else QuantParams((0.5,), (-5,), "int8")
    want_out = QuantParams((0.25,), (3,), "int8")
    assert x.dtype == want_in.dtype and x.quant == want_in
    assert graph.tensors["y"].dtype == "int8" and graph.tensors["y"].quant == want_out
    assert dict(graph.io_quant) == {"x": want_in, "y": want_out}


def test_dequantize_chain_model_plans_and_verifies(tmp_path: Path) -> None:
    path = _dequantize_chain_model(tmp_path)
    plan = tmp_path / "plan.json"
    assert main(["solve", str(path), "--strategy", "greedy", "--sram", "1KiB", "-o", str(plan)]) == 0
    assert main(["verify", str(path), str(plan)]) == 0


def test_int8_quantiser_uses_the_folded_input_and_output_parameters(tmp_path: Path) -> None:
    from memplan.execute.quantize import QParams, quantize_graph

    qgraph = quantize_graph(load_model(_dequantize_chain_model(tmp_path)))
    assert qgraph.params["x"] == QParams(0.5, -5) and qgraph.params["y"] == QParams(0.25, 3)


def test_a_chain_that_is_not_a_dequantisation_is_not_folded(tmp_path: Path) -> None:
    path = _dequantize_chain_model(tmp_path, zp=0.5)  # not an integer zero point
    with pytest.raises(ModelError, match="cast of a feature map from int8 to float32") as info:
        load_model(path, host_ops="error")
    assert "\n" not in str(info.value)


def test_rescaling_before_the_input_transpose_is_absorbed(tmp_path: Path) -> None:
    """tf2onnx QDQ of a Keras Rescaling layer (MobileNetV3Small) and ZeroPadding2D (DenseNet121):
    the NHWC->NCHW Transpose comes after a per-tensor Mul and Add and a Pad of the input; they
    commute with it (the pads permuted)."""
    # the values after Mul, 0.125 * (q + 3), are exactly the mid-point grid (no rounding, no clipping)
    c = {"s_in": (0.5, np.float32), "z_in": (-3, np.int8), "k": (1, np.int8), "k_s": (0.25, np.float32),
         "s_mid": (0.125, np.float32), "z_mid": (-3, np.int8), "off": (-1.0, np.float32)}
    inits = [numpy_helper.from_array(np.array(v, dtype=t), k) for k, (v, t) in c.items()]
    inits.append(numpy_helper.from_array(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3, 1, 1), "w"))
    inits.append(numpy_helper.from_array(np.array([0, 1, 2, 0, 0, 2, 1, 0], dtype=np.int64), "pads"))
    nodes = [helper.make_node("DequantizeLinear", ["x", "s_in", "z_in"], ["xd"]),
             helper.make_node("DequantizeLinear", ["k", "k_s"], ["kd"]),  # a dequantised constant factor
             helper.make_node("Mul", ["xd", "kd"], ["m"]),
             helper.make_node("QuantizeLinear", ["m", "s_mid", "z_mid"], ["mq"]),
             helper.make_node("DequantizeLinear", ["mq", "s_mid", "z_mid"], ["md"]),
             helper.make_node("Add", ["md", "off"], ["a0"]),
             helper.make_node("Pad", ["a0", "pads"], ["a"]),  # NHWC zero padding (DenseNet's ZeroPadding2D)
             helper.make_node("Transpose", ["a"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["t", "w"], ["y"], name="conv")]
    path = _save(tmp_path, nodes, [helper.make_tensor_value_info("x", TensorProto.INT8, [1, 6, 5, 3])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    graph = load_model(path)
    assert graph.input_layouts["x"] == "NHWC" and graph.tensors["x"].shape == (1, 3, 6, 5)
    assert graph.tensors["x"].quant == QuantParams((0.5,), (-3,), "int8")
    assert graph.layers[-1].op is OpKind.CONV
    import onnxruntime as ort  # a test dependency: missing, the test fails
    from memplan.execute.float_ref import run_float_detailed

    x = np.random.default_rng(0).integers(-128, 128, (1, 6, 5, 3)).astype(np.int8)
    want = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    values, _ = run_float_detailed(graph, {"x": (0.5 * (x.astype(np.float64) + 3)).transpose(0, 3, 1, 2)})
    np.testing.assert_allclose(values["y"], want, rtol=1e-5, atol=1e-5)
    plan = tmp_path / "plan.json"
    assert main(["solve", str(path), "--strategy", "greedy", "--sram", "1KiB", "-o", str(plan)]) == 0
    assert main(["verify", str(path), str(plan)]) == 0


# ---------------------------------------------------------------------------- 6. onnxruntime quantize_static
def _float_cnn(path: Path) -> None:
    """conv + relu, depthwise conv + relu, residual add, global average pool, gemm."""
    rng = np.random.default_rng(0)
    arrays = {"w1": rng.normal(0, 0.3, (8, 3, 3, 3)), "b1": rng.normal(0, 0.1, 8), "w2": rng.normal(0, 0.3, (8, 1, 3, 3)),
              "b2": rng.normal(0, 0.1, 8), "w3": rng.normal(0, 0.3, (4, 8)), "b3": rng.normal(0, 0.1, 4)}
    inits = [numpy_helper.from_array(a.astype(np.float32), k) for k, a in arrays.items()]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="dw", pads=[1, 1, 1, 1], group=8),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Add", ["r1", "r2"], ["s"], name="add"),
        helper.make_node("GlobalAveragePool", ["s"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], name="fc", transB=1),
    ]
    _save(path.parent, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits, path.name)


_ORT_CASES = [(fmt, types, pc) for fmt in ("QDQ", "QOperator") for types in ("s8s8", "u8s8", "u8u8")
              for pc in (False, True)]


@pytest.fixture(scope="module")
def ort_models(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, bool], Path]:
    from onnxruntime import quantization  # a test dependency: missing, the test fails
    folder = tmp_path_factory.mktemp("ort")
    source = folder / "float.onnx"
    _float_cnn(source)

    class Reader(quantization.CalibrationDataReader):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.data = iter([{"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(4)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.data, None)

    qtype = {"s8": quantization.QuantType.QInt8, "u8": quantization.QuantType.QUInt8}
    out = {}
    for fmt, types, pc in _ORT_CASES:
        path = folder / f"{fmt}_{types}_{'per_channel' if pc else 'per_tensor'}.onnx"
        quantization.quantize_static(str(source), str(path), Reader(), quant_format=getattr(quantization.QuantFormat, fmt),
                                     activation_type=qtype[types[:2]], weight_type=qtype[types[2:]], per_channel=pc)
        out[fmt, types, pc] = path
    return out


@pytest.mark.parametrize("types", ["s8s8", "u8s8", "u8u8"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_onnxruntime_qdq_models_import_plan_and_verify(ort_models: dict[tuple[str, str, bool], Path], tmp_path: Path,
                                                      types: str, per_channel: bool) -> None:
    path = ort_models["QDQ", types, per_channel]
    graph = load_model(path)
    assert [layer.op for layer in graph.layers] == [OpKind.CONV, OpKind.CONV, OpKind.ADD, OpKind.GLOBAL_AVG_POOL,
                                                   OpKind.FULLY_CONNECTED]
    act = "int8" if types[:2] == "s8" else "uint8"
    assert all(graph.tensors[t].dtype == act and graph.tensors[t].quant is not None
               for t in (*graph.inputs, *(layer.output for layer in graph.layers)))
    # the imported weights are the model's own (q - zp) * scale
    model = onnx.load(path)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    conv_w = dq[next(n for n in model.graph.node if n.name == "conv").input[1]]
    q, scale, zp = (inits[i].astype(np.float64) for i in conv_w.input)
    shape = (-1, 1, 1, 1) if per_channel else ()
    want = ((q - zp.reshape(shape)) * scale.reshape(shape)).astype(np.float32)
    weight = graph.tensors[graph.layers[0].weight]  # type: ignore[index]
    np.testing.assert_array_equal(graph.weights[weight.name], want)
    symmetric = bool(np.all(zp == (0 if types[2:] == "s8" else 128)))  # per-tensor u8 weights are asymmetric
    assert symmetric or types == "u8u8"
    assert (weight.quant is not None) == symmetric
    if symmetric:
        assert weight.quant is not None and (weight.quant.axis == 0) == per_channel
    plan = tmp_path / "plan.json"
    assert main(["solve", str(path), "--strategy", "greedy", "--sram", "4KiB", "-o", str(plan)]) == 0
    assert main(["verify", str(path), str(plan)]) == 0


@pytest.mark.parametrize("types", ["s8s8", "u8s8", "u8u8"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_onnxruntime_qoperator_models_lower_to_qdq_plan_and_verify(ort_models: dict[tuple[str, str, bool], Path],
                                                                  tmp_path: Path, types: str, per_channel: bool) -> None:
    """QOperator contrib ops (QLinearAdd, QLinearGlobalAveragePool, QGemm) are lowered to QDQ at
    import: the same layers as the QDQ model, every feature map with the file's own parameters
    (the output scale and zero point of the op that produces it)."""
    path = ort_models["QOperator", types, per_channel]
    model = onnx.load(path)
    assert {"QLinearAdd", "QLinearGlobalAveragePool", "QGemm"} <= {n.op_type for n in model.graph.node}
    graph = load_model(path)
    assert [layer.op for layer in graph.layers] == [OpKind.CONV, OpKind.CONV, OpKind.ADD, OpKind.GLOBAL_AVG_POOL,
                                                   OpKind.FULLY_CONNECTED]
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    add = next(n for n in model.graph.node if n.op_type == "QLinearAdd")
    want = QuantParams((float(inits[add.input[6]]),), (int(inits[add.input[7]]),), inits[add.input[7]].dtype.name)
    assert graph.tensors[graph.layers[2].output].quant == want
    gemm = next(n for n in model.graph.node if n.op_type == "QGemm")
    q, scale, zp = (inits[i].astype(np.float64) for i in gemm.input[3:6])
    shape = (-1, 1) if per_channel else ()
    real = ((q - zp.reshape(shape)) * scale.reshape(shape)).astype(np.float32)  # B is (outputs, features): transB
    np.testing.assert_array_equal(graph.weights[graph.layers[4].weight], real)  # type: ignore[index]
    plan = tmp_path / "plan.json"
    assert main(["solve", str(path), "--strategy", "greedy", "--sram", "4KiB", "-o", str(plan)]) == 0
    assert main(["verify", str(path), str(plan)]) == 0


def test_qoperator_channels_last_is_refused_naming_the_op(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.INT8, [1, 4, 4, 3])
    y = helper.make_tensor_value_info("y", TensorProto.INT8, [1, 1, 1, 3])
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z")]
    node = helper.make_node("QLinearGlobalAveragePool", ["x", "s", "z", "s", "z"], ["y"], domain="com.microsoft",
                            channels_last=1)
    path = tmp_path / "cl.onnx"
    onnx.save(helper.make_model(helper.make_graph([node], "g", [x], [y], inits),
                                opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)]), path)
    with pytest.raises(UnsupportedOpError, match=r"com\.microsoft:QLinearGlobalAveragePool"):
        load_model(path)


# ---------------------------------------------------------------------------- real tf2onnx model
def test_tf2onnx_int8_qdq_mobilenetv2_imports_plans_and_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = MODELS / "keras_mobilenetv2_035_96_int8_qdq.onnx"
    graph = load_model(path)
    (x,) = graph.inputs
    (y,) = graph.outputs
    assert graph.notes == (f"input '{x}' has a dynamic batch (unk__1254x96x96x3); planning batch 1",)
    assert graph.tensors[x].shape == (1, 3, 96, 96) and graph.input_layouts[x] == "NHWC"
    assert graph.tensors[y].shape == (1, 1000, 1, 1)
    assert dict(graph.io_quant) == {x: QuantParams((float(np.float32(0.007843106)),), (0,), "int8"),
                                    y: QuantParams((0.00390625,), (-128,), "int8")}
    assert len(graph.layers) == 65
    assert all(graph.tensors[layer.output].quant is not None for layer in graph.layers)
    plan = tmp_path / "plan.json"
    assert main(["solve", str(path), "--strategy", "greedy", "--sram", "128KiB", "-o", str(plan)]) == 0
    assert json.loads(plan.read_text())["model"]["input_shapes"] == {x: [1, 96, 96, 3]}
    capsys.readouterr()
    assert main(["verify", str(path), str(plan)]) == 0
    assert "bit-exact yes" in " ".join(capsys.readouterr().out.split())
