"""Constant folding: evaluate ONNX nodes whose inputs are all constants.

Weights often reach a layer through a chain of constant ops (ConstantOfShape fills, Unsqueeze,
Reshape, Cast, DequantizeLinear of int8 data, Shape arithmetic). This module evaluates such
chains with numpy. A :class:`Const` keeps, next to its value, the dtype it has in the source
model and its quantisation parameters, so a dequantised int8 weight stays an int8 weight with
:class:`QuantParams` in the IR while its array holds the real (float) values.

Large fills are kept as read-only broadcast views, so a 100-million-element ConstantOfShape
costs no memory until something rewrites it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from onnx import helper

from memplan.frontend.common import (
    Node,
    NodeError,
    flatten_shape,
    normalize_axis,
    reshape_target,
    squeeze_shape,
    unsqueeze_shape,
)
from memplan.ir.graph import QuantParams


@dataclass(frozen=True, eq=False)
class Const:
    """A constant: its value, its dtype in the source model, its quantisation if it was stored
    quantised (then ``array`` holds the dequantised real values)."""

    array: np.ndarray
    dtype: str
    quant: QuantParams | None = None

    @staticmethod
    def of(array: np.ndarray) -> Const:
        return Const(array, array.dtype.name)


Evaluator = Callable[[Node, list[Const | None], int], list[Const]]
_EVALUATORS: dict[str, Evaluator] = {}


def _evaluates(*ops: str) -> Callable[[Evaluator], Evaluator]:
    def register(fn: Evaluator) -> Evaluator:
        for op in ops:
            _EVALUATORS[op] = fn
        return fn

    return register


def can_fold(op: str) -> bool:
    return op in _EVALUATORS


def fold(node: Node, inputs: list[Const | None], opset: int) -> list[Const]:
    """Evaluate a node whose present inputs are constants; one Const per output."""
    return _EVALUATORS[node.op](node, inputs, opset)


def _arr(c: Const | None, what: str) -> np.ndarray:
    if c is None:
        raise NodeError(f"the {what} input is missing")
    return c.array


def _ints(c: Const | None, what: str) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(_arr(c, what)).reshape(-1))


def _keep_meta(src: Const, array: np.ndarray, axis_map: Callable[[int], int | None] | None = None) -> Const:
    """A shape op's result keeps the source dtype and quantisation (per-axis quant follows its axis)."""
    quant = src.quant
    if quant is not None and quant.axis is not None:
        new_axis = axis_map(quant.axis) if axis_map else None
        quant = None if new_axis is None else QuantParams(quant.scale, quant.zero_point, quant.dtype, new_axis)
    return Const(array, src.dtype, quant)


def _moved_axis(old: Sequence[int], new: Sequence[int], axis: int) -> int | None:
    """Where axis ``axis`` of shape ``old`` lands after a reshape to ``new`` (None: it is split or merged)."""
    before = math.prod(old[:axis])
    for j in range(len(new)):
        if math.prod(new[:j]) == before and new[j] == old[axis]:
            return j
    return None


# ---------------------------------------------------------------------------------- sources
@_evaluates("Constant")
def _constant(node: Node, inputs: list[Const | None], opset: int) -> list[Const]:
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in node.attrs:
            value = node.attrs[key]
            if key.startswith("value_float"):
                value = np.asarray(value, dtype=np.float32)
            elif key.startswith("value_int"):
                value = np.asarray(value, dtype=np.int64)
            return [Const.of(np.asarray(value))]
    raise NodeError("Constant without a numeric value (sparse and string constants are not supported)")


@_evaluates("ConstantOfShape")
def _constant_of_shape(node: Node, inputs: list[Const | None], opset: int) -> list[Const]:
    shape = _ints(inputs[0], "shape")
    value = node.attr("value")
    fill = np.zeros(1, dtype=np.float32) if value is None else np.asarray(value).reshape(-1)[:1]
    # a broadcast view: no memory until rewritten
    return [Const.of(np.broadcast_to(fill.reshape(()), shape))]


# ---------------------------------------------------------------------------------- shape ops
@_evaluates("Identity", "Dropout")
def _identity(node: Node, inputs: list[Const | None], opset: int) -> list[Const]:
    src = inputs[0]
    assert src is not None
    outs = [src]
    if len(node.outputs) > 1:
        outs.append(Const.of(np.ones(src.array.shape, dtype=bool)))
    return outs


@_evaluates("Reshape")
def _reshape(node: Node, inputs: list[Const | None], opset: int) -> list[Const]:
    src = inputs[0]
    assert src is not None
    spec = node.ints("shape") if opset < 5 else _ints(inputs[1], "shape")
    assert spec is not None
    shape = reshape_target(src.array.shape, spec, bool(node.attr("allowzero", 0)))
    return [_keep_meta(src, src.array.reshape(shape), lambda a: _moved_axis(src.array.shape, shape, a))]


@_evaluates("Flatten")
def _flatten(node: Node, inputs: list[Const | None], opset: int) -> list[Const]:
    src = inputs[0]
    assert src is not None
    shape = flatten_shape(src.array.shape, int(node.attr("axis", 1)))
    return [_keep_meta(src, src.array.reshape(shape), lambda a: _moved_axis(src.array.shape, shape, a))]


@_evaluates("Squeeze", "Unsqueeze")
def _squeeze(node: Node, inputs: list[Const | None], opset: int) -> list[Const]:
    src = inputs[0]
    assert src is not None
    if opset < 13:
        axes = node.ints("axes")
    else:
        axes = _ints(inputs[1], "axes") if len(inputs) > 1 and inputs[1] is not None else None
    if node.op == "Squeeze":
        shape = squeeze_shape(src.array.shape, axes)
    else:
        if axes is None:
            raise NodeError("Unsqueeze needs axes")
        shape = unsqueeze_shape(src.array.shape, axes)
    return [_keep_meta(src, src.array.reshape(shape), lambda a: _moved_axis(src.array.shape, shape, a))]


@_evaluates("Transpose")
def _transpose(node: Node, inputs: list[Const | None], opset: int) -> list[Const]:
    src = inputs[0]
    assert src is not None
    rank = src.array.ndim
    perm = node.ints("perm") or tuple(reversed(range(rank)))
    return [_keep_meta(src, src.array.transpose(perm), lambda a: perm.index(a))]


@_evaluates("Cast")
def _cast(node: Node, inputs: list[Const | None], opset: int) -> list[Const]:
    to = np.dtype(helper.tensor_dtype_to_np_dtype(int(node.attr("to"))))
    return [Const.of(_arr(inputs[0], "data").astype(to))]


@_evaluates("Shape")
def _shape(node: Node, inputs: list[Const | None], opset: int) -> list[Const]:
    dims = _arr(inputs[0], "data").shape
    start, end = node.attr("start", 0), node.attr("end", None)
    return [Const.of(np.asarray(dims[start:end], dtype=np.int64))]


@_evaluates("Size")
def _size(node: Node, inputs: list[Const | None], opset: int) -> list[Const]:
    return [Const.of(np.asarray(_arr(inputs[0], "data").size, dtype=np.int64))]


@_evaluates("Concat")
def _concat(node: Node, inputs: list[Const | None], opset: int) -> list[Const]:
    arrays = [_arr(c, "data") for c in inputs]
    axis = normalize_axis(int(node.attr("axis")), arrays[0].ndim)
    return [Const.of(np.concatenate(arrays, axis=axis))]


@_evaluates("Gather")
def _gather(node: Node, inputs: list[Const | None], opset: int) -> list[Const]:
    data = _arr(inputs[0], "data")
    axis = normalize_axis(int(node.attr("axis", 0)), data.ndim)
    return [Const.of(np.take(data, _arr(inputs[1], "indices").astype(np.int64), axis=axis))]


@_evaluates("Slice")
def _slice(node: Node, inputs: list[Const | None], opset: int) -> list[Const]:
    data = _arr(inputs[0], "data")
    if opset < 10:
        starts, ends = node.ints("starts"), node.ints("ends")
        axes, steps = node.ints("axes"), None
    else:
        starts, ends = _ints(inputs[1], "starts"), _ints(inputs[2], "ends")
        axes = _ints(inputs[3], "axes") if len(inputs) > 3 and inputs[3] is not None else None
        steps = _ints(inputs[4], "steps") if len(inputs) > 4 and inputs[4] is not None else None
    assert starts is not None and ends is not None
    axes = axes or tuple(range(len(starts)))
    steps = steps or (1,) * len(starts)
    index: list[slice] = [slice(None)] * data.ndim
    for a, s, e, st in zip(axes, starts, ends, steps, strict=True):
        index[normalize_axis(a, data.ndim)] = slice(s, e, st)
    return [Const.of(data[tuple(index)])]


@_evaluates("Expand")
def _expand(node: Node, inputs: list[Const | None], opset: int) -> list[Const]:
    data = _arr(inputs[0], "input")
    shape = np.broadcast_shapes(data.shape, _ints(inputs[1], "shape"))
    return [Const.of(np.broadcast_to(data, shape))]


@_evaluates("Range")
def _range(node: Node, inputs: list[Const | None], opset: int) -> list[Const]:
    start, limit, delta = (_arr(c, "range").item() for c in inputs[:3])
    dtype = _arr(inputs[0], "start").dtype
    return [Const.of(np.arange(start, limit, delta).astype(dtype))]


# ---------------------------------------------------------------------------------- arithmetic
def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ONNX integer division truncates toward zero."""
    q = np.abs(a) // np.abs(b)
    out: np.ndarray = np.where((a < 0) ^ (b < 0), -q, q).astype(np.result_type(a, b))
    return out


_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Pow": np.power,
    "Equal": np.equal,
    "Less": np.less,
    "Greater": np.greater,
}
_UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Neg": np.negative,
    "Abs": np.abs,
    "Sqrt": np.sqrt,
    "Reciprocal": np.reciprocal,
    "Floor": np.floor,
    "Ceil": np.ceil,
    "Exp": np.exp,
    "Log": np.log,
    "Relu": lambda x: np.maximum(x, 0).astype(x.dtype),
    "Not": np.logical_not,
}


@_evaluates(*_BINARY, "Div")
def _binary(node: Node, inputs: list[Const | None], opset: int) -> list[Const]:
    a, b = _arr(inputs[0], "A"), _arr(inputs[1], "B")
    if node.op == "Div":
        out = _int_div(a, b) if a.dtype.kind in "iu" and b.dtype.kind in "iu" else np.divide(a, b)
    else:
        out = _BINARY[node.op](a, b)
    if node.op not in ("Equal", "Less", "Greater"):
        out = np.asarray(out).astype(np.result_type(a, b), copy=False)
    return [Const.of(np.asarray(out))]


@_evaluates(*_UNARY)
def _unary(node: Node, inputs: list[Const | None], opset: int) -> list[Const]:
    return [Const.of(np.asarray(_UNARY[node.op](_arr(inputs[0], "X"))))]


@_evaluates("Min", "Max", "Sum")
def _variadic(node: Node, inputs: list[Const | None], opset: int) -> list[Const]:
    fn = {"Min": np.minimum, "Max": np.maximum, "Sum": np.add}[node.op]
    arrays = [_arr(c, "data") for c in inputs]
    out = arrays[0]
    for a in arrays[1:]:
        out = fn(out, a)
    return [Const.of(np.asarray(out))]


@_evaluates("Where")
def _where(node: Node, inputs: list[Const | None], opset: int) -> list[Const]:
    cond, x, y = (_arr(c, "Where") for c in inputs[:3])
    return [Const.of(np.where(cond, x, y))]


# ---------------------------------------------------------------------------------- quantisation
def quant_params(scale: np.ndarray, zero_point: np.ndarray | None, dtype: str, axis: int, rank: int) -> QuantParams:
    """QuantParams from ONNX scale/zero-point tensors (1-D of size > 1 means per-axis)."""
    s = np.asarray(scale, dtype=np.float64).reshape(-1)
    z = np.zeros(s.shape, dtype=np.int64) if zero_point is None else np.asarray(zero_point, dtype=np.int64).reshape(-1)
    if z.size == 1 and s.size > 1:
        z = np.repeat(z, s.size)
    per_axis = np.ndim(scale) >= 1 and s.size > 1
    return QuantParams(
        scale=tuple(float(v) for v in s),
        zero_point=tuple(int(v) for v in z),
        dtype=dtype,
        axis=normalize_axis(axis, rank) if per_axis else None,
    )


def weight_quant(quant: QuantParams) -> QuantParams | None:
    """The parameters a dequantised constant keeps: symmetric ones (zero point 0, or 128 for
    uint8) only. An asymmetric weight keeps its exact real values, ``(q - zp) * scale``, and its
    stored dtype, but not the parameters: memplan's int8 kernels take symmetric weights, so int8
    execution quantises it again per output channel, as for a float weight."""
    neutral = 128 if quant.dtype == "uint8" else 0
    return quant if all(z == neutral for z in quant.zero_point) else None


def _broadcastable(param: np.ndarray, rank: int, axis: int | None) -> np.ndarray:
    """A per-axis parameter reshaped to broadcast along ``axis`` of a rank-``rank`` tensor."""
    if param.ndim == 0 or param.size == 1 or axis is None:
        return param.reshape(())
    shape = [1] * rank
    shape[axis] = param.size
    return param.reshape(shape)


def param_axis(node: Node, scale: np.ndarray, x_shape: Sequence[int]) -> int | None:
    """The axis a Quantize/DequantizeLinear applies its scale along: None for a per-tensor
    (scalar or one-element) scale, whose ``axis`` attribute ONNX ignores; otherwise the
    attribute (default 1), which must index a dimension of the scale's length."""
    if np.ndim(scale) == 0 or np.size(scale) == 1:
        return None
    axis = normalize_axis(int(node.attr("axis", 1)), max(len(x_shape), 1))
    if np.ndim(scale) != 1 or len(x_shape) == 0 or x_shape[axis] != np.size(scale):
        raise NodeError(
            f"the scale has shape {tuple(np.shape(scale))}, but per-axis quantisation along axis {axis} of a "
            f"{tuple(x_shape)} tensor needs {x_shape[axis] if x_shape else 1} scales"
        )
    return axis


def quant_dtype(node: Node, zero_point: np.ndarray | None) -> str:
    """Quantised dtype of a QuantizeLinear output: the zero point's, else ``output_dtype``, else uint8."""
    if zero_point is not None:
        return zero_point.dtype.name
    if node.attr("output_dtype"):
        return np.dtype(helper.tensor_dtype_to_np_dtype(int(node.attr("output_dtype")))).name
    return "uint8"


def check_block_size(node: Node) -> None:
    if int(node.attr("block_size", 0)):
        raise NodeError("blocked quantisation (block_size > 0) is not supported; use per-tensor or per-axis scales")


@_evaluates("DequantizeLinear")
def _dequantize(node: Node, inputs: list[Const | None], opset: int) -> list[Const]:
    check_block_size(node)
    x = _arr(inputs[0], "x")
    scale = _arr(inputs[1], "x_scale")
    zp = inputs[2].array if len(inputs) > 2 and inputs[2] is not None else None
    axis = param_axis(node, scale, x.shape)
    zp_b = _broadcastable(np.asarray(zp if zp is not None else 0, dtype=np.float64), x.ndim, axis)
    # exact: (q - zp) in float64 holds every int8/uint8/int32 difference, one rounding to float32
    real = (x.astype(np.float64) - zp_b) * _broadcastable(scale.astype(np.float64), x.ndim, axis)
    quant = weight_quant(quant_params(scale, zp, x.dtype.name, 1 if axis is None else axis, max(x.ndim, 1)))
    return [Const(real.astype(scale.dtype), x.dtype.name, quant)]


@_evaluates("QuantizeLinear")
def _quantize(node: Node, inputs: list[Const | None], opset: int) -> list[Const]:
    check_block_size(node)
    x = _arr(inputs[0], "x")
    scale = _arr(inputs[1], "y_scale")
    zp = inputs[2].array if len(inputs) > 2 and inputs[2] is not None else None
    dtype = np.dtype(quant_dtype(node, zp))
    axis = param_axis(node, scale, x.shape)
    zp_b = _broadcastable(np.asarray(zp if zp is not None else 0, dtype=np.float64), x.ndim, axis)
    q = np.rint(x.astype(np.float64) / _broadcastable(scale.astype(np.float64), x.ndim, axis)) + zp_b
    info = np.iinfo(dtype)
    q = np.clip(q, info.min, info.max).astype(dtype)
    # the integers themselves: a following DequantizeLinear gives the real values and parameters
    return [Const.of(q)]


#: ONNX ops that fold when all their inputs are constant
FOLDABLE: frozenset[str] = frozenset(_EVALUATORS)
