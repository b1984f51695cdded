"""Quantised models: QDQ pairs and the QLinear operators.

* QuantizeLinear / DequantizeLinear on a feature map create no layer: the feature map is stored
  quantised, so its tensor takes the quantised dtype and :class:`QuantParams`, and the value
  after the pair is the same feature map. This holds for every feature map, not only model
  inputs and outputs: int8 execution takes these parameters instead of calibrating
  (:mod:`memplan.execute.quantize`). A QuantizeLinear's parameters win over a DequantizeLinear's
  (which only fills in a tensor no QuantizeLinear quantised, e.g. a model input).
* Fused activations: ``Conv -> Relu -> Q -> DQ`` annotates the Relu's output, and when
  :func:`~memplan.frontend.normalize.fuse_activations` fuses the Relu into the Conv the layer's
  output *is* that tensor, so the parameters stay on the activated output. In
  ``Conv -> Q -> DQ -> Relu -> Q -> DQ`` the first pair's parameters live on the
  pre-activation tensor, which the fusion removes: the fused layer requantises once, straight
  into the activated output's parameters (onnxruntime rounds twice there).
* uint8 feature maps (onnxruntime ``QUInt8`` activations) keep their uint8 parameters here;
  int8 execution shifts them to int8 (``q - 128``, ``zero_point - 128``).
* DequantizeLinear of a constant (a quantised weight or bias) is folded by
  :mod:`memplan.frontend.constants`: the IR keeps the real values and the parameters.
* QLinearConv and QLinearMatMul become CONV and FULLY_CONNECTED layers with dequantised weights
  and quantisation parameters on the input, weight, bias and output tensors. onnxruntime's
  QOperator contrib ops (QLinearAdd, QLinearMul, QLinear(Global)AveragePool, QLinearSigmoid,
  QLinearLeakyRelu, QLinearConcat, QGemm) are lowered to the QDQ form they compute before
  conversion (:func:`lower_qoperators`).
* The int8 interface of a tf2onnx ``--dequantize`` model, an int8/uint8 model input followed by
  Cast to float, Sub of its zero point and Mul by its scale, is rewritten into one
  DequantizeLinear before conversion (:func:`fold_input_dequantize`): the same reals in float32,
  so the input is stored quantised with that scale and zero point. Its QuantizeLinear output
  needs nothing special: the feature map before it takes the output's parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import numpy_helper

from memplan.frontend.common import Node, NodeError, handles, replace_graph_nodes
from memplan.frontend.constants import check_block_size, quant_dtype, quant_params, weight_quant
from memplan.frontend.draft import ConstInfo
from memplan.frontend.layout import Ref
from memplan.frontend.ops_nn import conv_layer, fc_layer
from memplan.ir.graph import QuantParams
from memplan.ir.ops import Shape

if TYPE_CHECKING:
    from memplan.frontend.convert import Converter


def _annotate(cv: Converter, ref: Ref, base_shape: Shape, quant: QuantParams, overwrite: bool) -> None:
    """Record that feature map ``ref.base`` is stored quantised with ``quant``."""
    if quant.axis is not None:
        channel_axis = ref.index is None and quant.axis == 1 and (ref.shape == base_shape or len(ref.shape) == 2)
        if not channel_axis:
            raise NodeError("per-axis quantisation of a feature map must be along its channels (axis 1)")
    tensor = cv.draft.tensors[ref.base]
    if tensor.quant is None or overwrite:
        tensor.quant = quant
        tensor.dtype = quant.dtype


def _params(cv: Converter, node: Node, scale_at: int, zp_at: int, dtype: str | None = None, rank: int = 1,
            axis: int = 1) -> QuantParams:
    scale = cv.const(node.input(scale_at), "scale").array
    zp_const = cv.maybe_const(node.input(zp_at))
    zp = None if zp_const is None else zp_const.array
    return quant_params(scale, zp, dtype or quant_dtype(node, zp), axis, rank)


@handles("QuantizeLinear")
def _quantize(cv: Converter, node: Node) -> None:
    check_block_size(node)
    ref, base_shape = cv.view(node.inputs[0])
    quant = _params(cv, node, 1, 2, rank=len(ref.shape), axis=int(node.attr("axis", 1)))
    _annotate(cv, ref, base_shape, quant, overwrite=True)
    cv.set_ref(node.outputs[0], ref)


@handles("DequantizeLinear")
def _dequantize(cv: Converter, node: Node) -> None:
    check_block_size(node)
    ref, base_shape = cv.view(node.inputs[0])
    dtype = cv.value_dtype(node.inputs[0])
    quant = _params(cv, node, 1, 2, dtype=dtype, rank=len(ref.shape), axis=int(node.attr("axis", 1)))
    _annotate(cv, ref, base_shape, quant, overwrite=False)
    cv.set_ref(node.outputs[0], ref)


def _dequantised_weight(cv: Converter, node: Node, w_at: int, axis: int) -> tuple[np.ndarray, ConstInfo, QuantParams]:
    """Real-valued weights of a QLinear op and their parameters (per-tensor or along ``axis``)."""
    w = cv.const(node.input(w_at), "weight").array
    quant = _params(cv, node, w_at + 1, w_at + 2, dtype=w.dtype.name, rank=w.ndim, axis=axis)
    shape = [1] * w.ndim
    if quant.axis is not None:
        shape[quant.axis] = -1
    scale = np.asarray(quant.scale, dtype=np.float64).reshape(shape)
    zp = np.asarray(quant.zero_point, dtype=np.float64).reshape(shape)
    real = ((w.astype(np.float64) - zp) * scale).astype(np.float32)
    return real, ConstInfo(w.dtype.name, weight_quant(quant)), quant


def _input_params(cv: Converter, node: Node, x: str, scale_at: int) -> QuantParams:
    ref, base_shape = cv.view(x)
    x_dtype = cv.value_dtype(x)
    quant = _params(cv, node, scale_at, scale_at + 1, dtype=x_dtype, rank=len(ref.shape))
    _annotate(cv, ref, base_shape, quant, overwrite=False)
    return quant


def _output_params(cv: Converter, node: Node, scale_at: int) -> QuantParams:
    zp = cv.maybe_const(node.input(scale_at + 1))
    dtype = zp.array.dtype.name if zp is not None else cv.value_dtype(node.outputs[0])
    return _params(cv, node, scale_at, scale_at + 1, dtype=dtype)


def _quantised_bias(bias: np.ndarray, x_quant: QuantParams, w_quant: QuantParams) -> tuple[np.ndarray, ConstInfo]:
    """Real-valued int32 bias (its scale is input scale x weight scale, zero point 0)."""
    scale = np.asarray(x_quant.scale[0], dtype=np.float64) * np.asarray(w_quant.scale, dtype=np.float64)
    real = (bias.astype(np.float64) * (scale if scale.size > 1 else scale[0])).astype(np.float32)
    quant = QuantParams(tuple(float(s) for s in scale), (0,) * scale.size, bias.dtype.name,
                        0 if scale.size > 1 else None)
    return real, ConstInfo(bias.dtype.name, quant)


@handles("QLinearConv")
def _qlinear_conv(cv: Converter, node: Node) -> None:
    x_quant = _input_params(cv, node, node.inputs[0], 1)
    weight, w_info, w_quant = _dequantised_weight(cv, node, 3, axis=0)
    y_quant = _output_params(cv, node, 6)
    bias = bias_info = None
    if node.input(8):
        bias, bias_info = _quantised_bias(cv.const(node.input(8), "bias").array, x_quant, w_quant)
    layer = conv_layer(cv, node, node.inputs[0], weight, w_info, bias, bias_info, dtype=y_quant.dtype)
    cv.draft.tensors[layer.output].quant = y_quant


@handles("QLinearMatMul")
def _qlinear_matmul(cv: Converter, node: Node) -> None:
    ref, _ = cv.view(node.inputs[0])
    if len(ref.shape) != 2:
        raise NodeError(f"a QLinearMatMul on a rank-{len(ref.shape)} input is not a fully connected layer")
    _input_params(cv, node, node.inputs[0], 1)
    weight, w_info, w_quant = _dequantised_weight(cv, node, 3, axis=1)  # B is (features, outputs)
    if weight.ndim != 2:
        raise NodeError("a fully connected QLinearMatMul needs 2-D weights")
    t_quant = w_quant if w_quant.axis is None else QuantParams(w_quant.scale, w_quant.zero_point, w_quant.dtype, 0)
    y_quant = _output_params(cv, node, 6)
    layer = fc_layer(cv, node, node.inputs[0], weight.T, ConstInfo(w_info.dtype, w_info.quant and t_quant), None, None,
                     dtype=y_quant.dtype)
    cv.draft.tensors[layer.output].quant = y_quant


# ---------------------------------------------------------------------------- model interface
_QUANT_TYPES = {onnx.TensorProto.INT8: np.int8, onnx.TensorProto.UINT8: np.uint8}
#: ops that only move elements: a per-tensor DequantizeLinear commutes with them
_LAYOUT_OPS = ("Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze")


def _scalar_constants(graph: onnx.GraphProto) -> dict[str, float]:
    """Initializers and Constant-node outputs of one element, as floats."""
    out: dict[str, float] = {}
    for t in graph.initializer:
        if int(np.prod(t.dims)) == 1:
            out[t.name] = float(numpy_helper.to_array(t).reshape(-1)[0])
    for node in graph.node:
        if node.op_type == "Constant" and len(node.output) == 1:
            for attr in node.attribute:
                if attr.name == "value" and attr.HasField("t") and int(np.prod(attr.t.dims)) == 1:
                    out[node.output[0]] = float(numpy_helper.to_array(attr.t).reshape(-1)[0])
                elif attr.name == "value_float":
                    out[node.output[0]] = float(attr.f)
    return out


def fold_input_dequantize(model: onnx.ModelProto) -> dict[str, tuple[float, int, str]]:
    """Rewrite ``x (int8/uint8) -> Cast(float32) [-> Sub(x, zp)] [-> Mul(x, scale)]`` at a model
    input into ``DequantizeLinear(x, scale, zp)``, the same float32 values (``(q - zp) * scale``).

    Only this exact chain is folded: a scalar constant zero point that is an integer of the
    input's range, a positive finite scalar scale (either Mul operand), every intermediate value
    read by the next node only and none a model output. The DequantizeLinear then moves below
    the layout ops (the NHWC->NCHW Transpose) that follow, which it commutes with, so the
    converter absorbs them into the model input as in a QDQ model. Returns input -> (scale,
    zero point, dtype) of each folded input."""
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    nodes = []
    for proto in graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(proto)
        nodes.append(copy)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    scalars = _scalar_constants(graph)
    folded: dict[str, tuple[float, int, str]] = {}
    gone: set[str] = set()

    def single(name: str) -> onnx.NodeProto | None:
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in outputs else None

    for inp in inputs:
        elem = inp.type.tensor_type.elem_type if inp.type.HasField("tensor_type") else 0
        if elem not in _QUANT_TYPES:
            continue
        cast = single(inp.name)
        to = next((a.i for a in cast.attribute if a.name == "to"), None) if cast is not None else None
        if cast is None or cast.op_type != "Cast" or to != onnx.TensorProto.FLOAT:
            continue
        chain, value, zp, scale = [cast], cast.output[0], 0.0, 1.0
        nxt = single(value)
        if nxt is not None and nxt.op_type == "Sub" and list(nxt.input[:1]) == [value] and nxt.input[1] in scalars:
            zp = scalars[nxt.input[1]]
            chain.append(nxt)
            value = nxt.output[0]
            nxt = single(value)
        if nxt is not None and nxt.op_type == "Mul" and value in nxt.input[:2]:
            other = nxt.input[1] if nxt.input[0] == value else nxt.input[0]
            if other in scalars and other != value:
                scale = scalars[other]
                chain.append(nxt)
                value = nxt.output[0]
        info = np.iinfo(_QUANT_TYPES[elem])
        if not (zp == int(zp) and info.min <= zp <= info.max and np.isfinite(scale) and scale > 0):
            continue
        dtype = np.dtype(_QUANT_TYPES[elem])
        base = chain[0].name or f"{inp.name}_dequant"
        scale_name, zp_name = f"{base}.memplan_scale", f"{base}.memplan_zero_point"
        graph.initializer.append(numpy_helper.from_array(np.asarray(scale, dtype=np.float32), scale_name))
        graph.initializer.append(numpy_helper.from_array(np.asarray(int(zp), dtype=dtype), zp_name))
        position = next(i for i, n in enumerate(nodes) if n is chain[0])
        nodes = [n for n in nodes if not any(n is c for c in chain)]
        dq = onnx.helper.make_node("DequantizeLinear", [inp.name, scale_name, zp_name], [value], name=base)
        nodes.insert(position, dq)
        gone.update(n.output[0] for n in chain)
        # a per-tensor dequantisation commutes with layout ops: move it below them
        while (nxt := single(dq.output[0])) is not None and nxt.op_type in _LAYOUT_OPS \
                and list(nxt.input).count(dq.output[0]) == 1 and nxt.input[0] == dq.output[0]:
            gone.add(dq.output[0])
            mid = f"{nxt.output[0]}.memplan_quantised"
            nxt.input[0], dq.input[0], dq.output[0], nxt.output[0] = dq.input[0], mid, nxt.output[0], mid
            nodes = [n for n in nodes if n is not dq]
            nodes.insert(next(i for i, n in enumerate(nodes) if n is nxt) + 1, dq)
        folded[inp.name] = (float(np.float32(scale)), int(zp), dtype.name)
    if folded:
        replace_graph_nodes(graph, nodes, gone)
    return folded


# ---------------------------------------------------------------------------- QOperator models
#: onnxruntime's QOperator contrib ops (domain com.microsoft) lowered to QDQ: op -> (float op,
#: the (value, scale, zero point) input triples by position, (scale, zero point) of the output)
_QOPS: dict[str, tuple[str, tuple[tuple[int, int, int], ...], tuple[int, int]]] = {
    "QLinearAdd": ("Add", ((0, 1, 2), (3, 4, 5)), (6, 7)),
    "QLinearMul": ("Mul", ((0, 1, 2), (3, 4, 5)), (6, 7)),
    "QLinearGlobalAveragePool": ("GlobalAveragePool", ((0, 1, 2),), (3, 4)),
    "QLinearAveragePool": ("AveragePool", ((0, 1, 2),), (3, 4)),
    "QLinearSigmoid": ("Sigmoid", ((0, 1, 2),), (3, 4)),
    "QLinearLeakyRelu": ("LeakyRelu", ((0, 1, 2),), (3, 4)),
}
_MS_DOMAIN = "com.microsoft"


def lower_qoperators(model: onnx.ModelProto) -> int:
    """Rewrite onnxruntime's QOperator contrib ops (``quantize_static(quant_format=QOperator)``:
    QLinearAdd, QLinearMul, QLinear(Global)AveragePool, QLinearSigmoid, QLinearLeakyRelu,
    QLinearConcat, QGemm) into the QDQ form they compute: DequantizeLinear of each quantised
    input, the float op, QuantizeLinear into the output's scale and zero point. The QDQ path
    then gives every feature map the model's own parameters, exactly as for a QDQ model. QGemm's
    int32 bias gets the scale its definition gives it (A's scale times B's). Channels-last
    variants and a float QGemm output (no output scale) are left alone, so they fail naming the
    op. Returns how many nodes were lowered."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    out: list[onnx.NodeProto] = []
    lowered = 0
    for node in graph.node:
        new = _lower(node, inits, graph) if node.domain == _MS_DOMAIN else None
        if new is None:
            out.append(node)
            continue
        out.extend(new)
        lowered += 1
    if lowered:
        del graph.node[:]
        graph.node.extend(out)
    return lowered


def _lower(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto], graph: onnx.GraphProto) -> list[onnx.NodeProto] | None:
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("channels_last", 0):
        return None
    ins = list(node.input) + [""] * 9
    tag = node.name or node.output[0]

    def dq(value: str, scale: str, zp: str, k: int, axis: int | None = None) -> tuple[onnx.NodeProto, str]:
        name = f"{tag}/dq{k}"
        extra = {} if axis is None else {"axis": axis}
        return onnx.helper.make_node("DequantizeLinear", [value, scale, zp] if zp else [value, scale], [name],
                                     name=name, **extra), name

    def q(value: str, scale: str, zp: str) -> onnx.NodeProto:
        return onnx.helper.make_node("QuantizeLinear", [value, scale, zp] if zp else [value, scale], [node.output[0]],
                                     name=f"{tag}/q")

    keep = {k: v for k, v in attrs.items() if k != "channels_last"}
    if node.op_type in _QOPS:
        op, triples, (ys, yz) = _QOPS[node.op_type]
        pre = [dq(ins[v], ins[s], ins[z], k) for k, (v, s, z) in enumerate(triples)]
        body = onnx.helper.make_node(op, [name for _, name in pre], [f"{tag}/f"], name=f"{tag}/{op}", **keep)
        return [n for n, _ in pre] + [body, q(f"{tag}/f", ins[ys], ins[yz])]
    if node.op_type == "QLinearConcat":  # Y_scale, Y_zp, then (value, scale, zp) per input
        pre = [dq(ins[i], ins[i + 1], ins[i + 2], k) for k, i in enumerate(range(2, len(node.input), 3))]
        body = onnx.helper.make_node("Concat", [name for _, name in pre], [f"{tag}/f"], name=f"{tag}/Concat", **keep)
        return [n for n, _ in pre] + [body, q(f"{tag}/f", ins[0], ins[1])]
    if node.op_type == "QGemm":  # A, a_scale, a_zp, B, b_scale, b_zp, C, y_scale, y_zp
        if not ins[7] or ins[1] not in inits or ins[4] not in inits:
            return None
        # a per-channel B is quantised along its output axis: 0 when transposed (N x K), else 1
        a, b = dq(ins[0], ins[1], ins[2], 0), dq(ins[3], ins[4], ins[5], 1, axis=0 if attrs.get("transB", 0) else 1)
        nodes, names = [a[0], b[0]], [a[1], b[1]]
        if ins[6]:
            scale = (numpy_helper.to_array(inits[ins[1]]).astype(np.float64)
                     * numpy_helper.to_array(inits[ins[4]]).astype(np.float64)).astype(np.float32)
            bias_scale = numpy_helper.from_array(scale, f"{tag}/bias_scale")
            graph.initializer.append(bias_scale)
            c = dq(ins[6], bias_scale.name, "", 2, axis=0)
            nodes.append(c[0])
            names.append(c[1])
        body = onnx.helper.make_node("Gemm", names, [f"{tag}/f"], name=f"{tag}/Gemm", **keep)
        return [*nodes, body, q(f"{tag}/f", ins[7], ins[8])]
    return None
