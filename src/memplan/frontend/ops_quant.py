"""Quantised models: QDQ pairs and the QLinear operators.

* QuantizeLinear / DequantizeLinear on a feature map create no layer: the feature map is stored
  quantised, so its tensor takes the quantised dtype and :class:`QuantParams`, and the value
  after the pair is the same feature map.
* DequantizeLinear of a constant (a quantised weight or bias) is folded by
  :mod:`memplan.frontend.constants`: the IR keeps the real values and the parameters.
* QLinearConv and QLinearMatMul become CONV and FULLY_CONNECTED layers with dequantised weights
  and quantisation parameters on the input, weight, bias and output tensors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from memplan.frontend.common import Node, NodeError, handles
from memplan.frontend.constants import check_block_size, quant_dtype, quant_params
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
    return real, ConstInfo(w.dtype.name, quant), quant


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
    layer = fc_layer(cv, node, node.inputs[0], weight.T, ConstInfo(w_info.dtype, t_quant), None, None,
                     dtype=y_quant.dtype)
    cv.draft.tensors[layer.output].quant = y_quant
