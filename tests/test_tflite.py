"""TFLite import (memplan.frontend.tflite) and TensorFlow Lite Micro as the int8 reference.

Every .tflite in models/ imports with the shapes and operators its flatbuffer holds (read
here independently with the ``tflite`` package); memplan's untiled int8 reference on the
seeded verification input equals TFLite Micro's output bytes exactly, and per layer where
the interpreter exposes its tensors. Differences memplan still has (docs/tflm-differences.md)
are strict xfails, so they flip when fixed.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tflite
import tflite_micro  # noqa: F401 - the reference; in the test extra

from memplan.errors import ModelError
from memplan.execute.verify import prepare
from memplan.frontend import load_model
from memplan.frontend.tflite import import_tflite, same_padding, tflm_reference
from memplan.ir.ops import OpKind

MODELS = Path(__file__).resolve().parents[1] / "models"
TFLITE = sorted(p.name for p in MODELS.glob("*.tflite"))
MLPERF = ["ad01_int8.tflite", "kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "vww_96_int8.tflite"]
INT8 = [*MLPERF, "keras_mobilenetv2_035_96_int8.tflite", "keras_mobilenetv3small_int8.tflite"]
FLOAT = ["selfie_segmentation.tflite"]
_NAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}


def _flatbuffer(name: str) -> tuple[collections.Counter[str], list[tuple[str, tuple[int, ...]]], list[tuple[str, tuple[int, ...]]]]:
    """What the file holds: operator counts, (name, shape) of inputs and of outputs."""
    buf = (MODELS / name).read_bytes()
    m = tflite.Model.GetRootAsModel(buf, 0)
    codes = [max(m.OperatorCodes(i).BuiltinCode(), m.OperatorCodes(i).DeprecatedBuiltinCode())
             for i in range(m.OperatorCodesLength())]
    sg = m.Subgraphs(0)
    ops: collections.Counter[str] = collections.Counter()
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        kind = _NAMES[codes[op.OpcodeIndex()]]
        ops[kind] += 1
        if kind in ("ADD", "SUB", "MUL"):
            const = [m.Buffers(sg.Tensors(i).Buffer()).DataLength() > 0 for i in op.InputsAsNumpy()]
            if any(const) and not all(const):
                ops["CONST_OPERAND"] += 1
                ops["CONST_MUL"] += kind == "MUL"
                ops["CONST_ADD"] += kind == "ADD"

    def io(indexes: np.ndarray) -> list[tuple[str, tuple[int, ...]]]:
        return [(sg.Tensors(i).Name().decode(), tuple(int(d) for d in sg.Tensors(i).ShapeAsNumpy())) for i in indexes]

    return ops, io(sg.InputsAsNumpy()), io(sg.OutputsAsNumpy())


def _nchw(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[0], shape[3], shape[1], shape[2]) if len(shape) == 4 else (shape[0], shape[1], 1, 1)


def test_models_folder_holds_the_tflite_models() -> None:
    assert set(INT8 + FLOAT) <= set(TFLITE)


@pytest.mark.parametrize("name", TFLITE)
def test_import_matches_the_flatbuffer(name: str) -> None:
    graph = load_model(MODELS / name)
    ops, inputs, outputs = _flatbuffer(name)
    assert [(n, graph.tensors[n].shape) for n in graph.inputs] == [(n, _nchw(s)) for n, s in inputs]
    assert dict(graph.input_shapes) == dict(inputs)  # the model's own (NHWC) shapes, what a plan records
    assert all(graph.input_layouts[n] == "NHWC" for n, s in inputs if len(s) == 4)
    assert [graph.tensors[n].shape for n in graph.outputs] == [_nchw(s) for _, s in outputs]
    kinds = collections.Counter(layer.op for layer in graph.layers)
    # one layer per operator of each kind that has a layer of its own
    assert kinds[OpKind.FULLY_CONNECTED] == ops["FULLY_CONNECTED"]
    assert kinds[OpKind.ADD] == ops["ADD"] - ops["CONST_ADD"]
    assert kinds[OpKind.SOFTMAX] == ops["SOFTMAX"]
    assert kinds[OpKind.AVG_POOL] == ops["AVERAGE_POOL_2D"]
    assert kinds[OpKind.GLOBAL_AVG_POOL] == ops["MEAN"]
    assert kinds[OpKind.CONV_TRANSPOSE] == ops["TRANSPOSE_CONV"] + (name == "selfie_segmentation.tflite")
    convs = ops["CONV_2D"] + ops["DEPTHWISE_CONV_2D"]
    if name in INT8:  # standalone activations and arithmetic with a constant are 1x1 depthwise convolutions
        standalone = sum(ops[k] for k in ("HARD_SWISH", "LOGISTIC", "TANH", "RELU", "RELU6", "LEAKY_RELU", "PRELU"))
        assert kinds[OpKind.CONV] == convs + standalone + ops["CONST_OPERAND"]
        assert kinds[OpKind.MUL] == ops["MUL"] - ops["CONST_MUL"]
    else:
        assert kinds[OpKind.CONV] >= convs  # float: activations fold into their producers where they can
    assert graph.host_layers == ()


@pytest.mark.parametrize("name", INT8)
def test_int8_parameters_are_the_files(name: str) -> None:
    """Activations carry the file's float32 scales exactly; weights give back the file's
    integers; int32 biases sit in the accumulator's domain."""
    graph = load_model(MODELS / name)
    buf = (MODELS / name).read_bytes()
    sg = tflite.Model.GetRootAsModel(buf, 0).Subgraphs(0)
    by_name = {sg.Tensors(i).Name().decode(): sg.Tensors(i) for i in range(sg.TensorsLength())}
    for t in graph.tensors.values():
        if t.is_feature_map and t.name in by_name:
            q = by_name[t.name].Quantization()
            assert t.quant is not None and t.quant.scale == (float(q.ScaleAsNumpy()[0]),)
            assert t.quant.zero_point == (int(q.ZeroPointAsNumpy()[0]),)
    for layer in graph.layers:
        if layer.weight is not None and graph.tensors[layer.weight].quant is not None:
            w, q = graph.weights[layer.weight], graph.tensors[layer.weight].quant
            s = np.asarray(q.scale).reshape((-1,) + (1,) * (w.ndim - 1)) if len(q.scale) > 1 else q.scale[0]
            ints = w / s
            assert np.array_equal(np.round(ints), np.clip(np.round(ints), -128, 127))
            assert np.abs(ints - np.round(ints)).max() < 1e-4


def test_same_padding_is_tflites() -> None:
    # ComputeOutSize / ComputePaddingWithOffset: the odd cell after
    assert same_padding(96, 3, 2, 1) == (48, 0, 1)
    assert same_padding(49, 10, 2, 1) == (25, 4, 5)
    assert same_padding(10, 4, 2, 1) == (5, 1, 1)
    assert same_padding(7, 3, 1, 2) == (7, 2, 2)
    assert same_padding(5, 1, 1, 1) == (5, 0, 0)


# ---------------------------------------------------------------------------- TFLite Micro
def _compare(name: str, last_op: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], object]:
    graph = load_model(MODELS / name)
    prep = prepare(graph)
    tflm = tflm_reference(MODELS / name, prep.inputs, intermediates=True, last_op=last_op)
    return dict(prep.reference), tflm, graph


@pytest.mark.parametrize("name", MLPERF)
def test_int8_reference_equals_tflm_on_every_output(name: str) -> None:
    graph = load_model(MODELS / name)
    prep = prepare(graph)
    tflm = tflm_reference(MODELS / name, prep.inputs)
    assert set(tflm) == set(graph.outputs)
    for out in graph.outputs:
        assert tflm[out].dtype == np.int8
        assert tflm[out].tobytes() == prep.reference[out].tobytes()


@pytest.mark.parametrize("name", ["kws_ref_model.tflite", "vww_96_int8.tflite", "pretrainedResnet_quant.tflite"])
def test_int8_reference_equals_tflm_on_every_layer(name: str) -> None:
    ours, tflm, graph = _compare(name)
    compared = [layer.output for layer in graph.layers if layer.output in tflm]  # type: ignore[attr-defined]
    assert len(compared) == len(graph.layers)  # type: ignore[attr-defined]
    for t in compared:
        assert tflm[t].tobytes() == ours[t].tobytes(), t


def _first_op(name: str, op_name: str) -> int:
    buf = (MODELS / name).read_bytes()
    m = tflite.Model.GetRootAsModel(buf, 0)
    sg = m.Subgraphs(0)
    for k in range(sg.OperatorsLength()):
        oc = m.OperatorCodes(sg.Operators(k).OpcodeIndex())
        if _NAMES[max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())] == op_name:
            return k
    raise AssertionError(op_name)


def test_mobilenetv2_every_layer_before_the_softmax_equals_tflm() -> None:
    """TFLite Micro aborts on this model's 1000-class softmax (next test); every layer it runs
    before it (conv, depthwise, ReLU6, add, mean, fully connected) is bit-identical."""
    name = "keras_mobilenetv2_035_96_int8.tflite"
    ours, tflm, graph = _compare(name, last_op=_first_op(name, "SOFTMAX") - 1)
    assert len(tflm) == len(graph.layers) - 1  # type: ignore[attr-defined]
    for t, value in tflm.items():
        assert value.tobytes() == ours[t].tobytes(), t


@pytest.mark.xfail(strict=True, raises=RuntimeError, reason="TFLite Micro (tflite-micro 0.dev20261023) aborts the "
                   "process (SIGABRT) on the int8 SOFTMAX over 1000 classes of the Keras models; see "
                   "docs/tflm-differences.md")
def test_mobilenetv2_output_equals_tflm() -> None:
    name = "keras_mobilenetv2_035_96_int8.tflite"
    graph = load_model(MODELS / name)
    prep = prepare(graph)
    tflm = tflm_reference(MODELS / name, prep.inputs)
    for out in graph.outputs:
        assert tflm[out].tobytes() == prep.reference[out].tobytes()


@pytest.mark.xfail(strict=True, reason="measured: the first ADD of a constant (Keras Rescaling) differs by up to 1 LSB "
                   "(memplan re-quantises it as a depthwise conv), HARD_SWISH by up to 7 LSB (memplan's table on a "
                   "calibrated stage scale vs TFLite Micro's integer algorithm), MEAN by up to 5 LSB (two roundings); "
                   "see docs/tflm-differences.md")
def test_mobilenetv3small_every_layer_before_the_softmax_equals_tflm() -> None:
    name = "keras_mobilenetv3small_int8.tflite"
    ours, tflm, _ = _compare(name, last_op=_first_op(name, "SOFTMAX") - 1)
    for t, value in tflm.items():
        assert value.tobytes() == ours[t].tobytes(), t


def test_mobilenetv3small_exact_ops_equal_tflm() -> None:
    """Where memplan's int8 semantics are TFLite Micro's, layers whose inputs agree agree:
    every ReLU6-clamped convolution of MobileNetV3-Small whose input TFLite Micro computed
    identically is identical too (ops with documented differences are left out)."""
    name = "keras_mobilenetv3small_int8.tflite"
    ours, tflm, graph = _compare(name, last_op=_first_op(name, "SOFTMAX") - 1)
    checked = 0
    for layer in graph.layers:  # type: ignore[attr-defined]
        if layer.op is not OpKind.CONV or layer.activation is None or layer.activation.kind.value != "clip":
            continue
        src = layer.inputs[0]
        if src in tflm and layer.output in tflm and tflm[src].tobytes() == ours[src].tobytes():
            assert tflm[layer.output].tobytes() == ours[layer.output].tobytes(), layer.id
            checked += 1
    assert checked >= 1


def test_tflm_refuses_the_fp16_model() -> None:
    """TFLite Micro does not run MediaPipe's fp16 models: the comparison says so in one line."""
    graph = load_model(MODELS / "selfie_segmentation.tflite")
    with pytest.raises((RuntimeError, ValueError)):
        tflm_reference(MODELS / "selfie_segmentation.tflite", {n: np.zeros(graph.tensors[n].shape, np.int8)
                                                               for n in graph.inputs})


# ---------------------------------------------------------------------------- float TFLite
def test_fp16_mediapipe_model_imports_float_and_calibrates() -> None:
    result = import_tflite(MODELS / "selfie_segmentation.tflite")
    graph = result.graph
    assert all(graph.tensors[t].quant is None for t in (*graph.inputs, *graph.outputs))
    assert {graph.weights[layer.weight].dtype for layer in graph.layers if layer.weight} == {np.dtype(np.float32)}
    assert graph.tensors[graph.inputs[0]].shape == (1, 3, 256, 256)
    assert graph.tensors[graph.outputs[0]].shape == (1, 1, 256, 256)
    kinds = collections.Counter(layer.op for layer in graph.layers)
    assert kinds[OpKind.CONV_TRANSPOSE] == 1 and kinds[OpKind.RESIZE] >= 1


# ---------------------------------------------------------------------------- bad input
def _mutated(tmp_path: Path, name: str, edit) -> Path:  # type: ignore[no-untyped-def]
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel((MODELS / name).read_bytes(), 0))
    edit(m)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    out = tmp_path / f"edited_{name}"
    out.write_bytes(bytes(b.Output()))
    return out


def test_bad_files_are_one_line_model_errors(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes((MODELS / "kws_ref_model.tflite").read_bytes()[:5000])
    foreign = tmp_path / "foreign.tflite"
    foreign.write_bytes(b"\x00" * 64)
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")

    def int16(m) -> None:  # type: ignore[no-untyped-def]
        sg = m.subgraphs[0]
        sg.tensors[sg.operators[1].outputs[0]].type = 7  # INT16 activations

    cases = [truncated, foreign, empty, tmp_path / "missing.tflite", _mutated(tmp_path, "kws_ref_model.tflite", int16)]
    for path in cases:
        with pytest.raises(ModelError) as info:
            load_model(path)
        message = str(info.value)
        assert "\n" not in message and message.startswith(str(path)), message
    assert "int16" in str(pytest.raises(ModelError, load_model, cases[-1]).value)


def test_cli_bad_file_one_line_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"TFL3" * 10)
    proc = subprocess.run([sys.executable, "-m", "memplan", "inspect", str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_cli_solve_and_verify_a_tflite_model(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    model = MODELS / "kws_ref_model.tflite"
    run = [sys.executable, "-m", "memplan"]
    solved = subprocess.run([*run, "solve", str(model), "--sram", "32KiB", "--time-limit", "10", "-o", str(plan)],
                            capture_output=True, text=True)
    assert solved.returncode == 0, solved.stderr
    assert json.loads(plan.read_text())["model"]["input_shapes"] == {"input_1": [1, 49, 10, 1]} or \
        list(json.loads(plan.read_text())["model"]["input_shapes"].values()) == [[1, 49, 10, 1]]
    verified = subprocess.run([*run, "verify", str(model), str(plan), "--json"], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["verified"] is True
