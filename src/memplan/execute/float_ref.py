"""Float64 reference interpreter of the graph IR, with ONNX semantics.

Used to calibrate quantisation and to check the IR against onnxruntime. It runs every layer on
whole tensors with any batch size ``N >= 1``. Index arithmetic (which input cell an output
reads) comes from :mod:`memplan.execute.windows`, shared with the integer kernels.

ONNX semantics implemented: Conv/ConvTranspose with groups, pads, dilation, output_padding;
max pool (padding is -inf) and average pool (``count_include_pad``; the ``ceil_pads`` part of
the bottom/right padding never counts); Resize nearest/linear with the coordinate modes of
:class:`~memplan.ir.ops.ResizeAttrs` (linear clamps the source coordinate to the input, as
onnxruntime); LRN ``x / (bias + alpha/size * sum sq)^beta``; softmax over channels; fully
connected on the C, H, W flattening; activations with the ONNX default parameters when the
IR gives none (LeakyRelu alpha 0.01, HardSigmoid alpha 0.2 beta 0.5).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from memplan import host
from memplan.errors import UnsupportedOpError
from memplan.execute.windows import (
    conv_transpose_taps,
    conv_transpose_weight_taps,
    conv_weight_taps,
    conv_window,
    conv_transpose_window,
    lrn_channel_window,
    pool_counts,
    resize_linear_taps,
    resize_nearest_index,
)
from memplan.ir.graph import Graph, Layer
from memplan.ir.ops import (
    ActKind,
    Activation,
    BlockAttrs,
    ChannelShuffleAttrs,
    ConvAttrs,
    ConvTransposeAttrs,
    HostAttrs,
    LRNAttrs,
    OpKind,
    PoolAttrs,
    ResizeAttrs,
    SliceAttrs,
    ZeroPadAttrs,
)

F64 = npt.NDArray[np.float64]


# ---------------------------------------------------------------------------- activations
def activation_params(act: Activation) -> tuple[float, ...]:
    """The activation's parameters, with ONNX defaults filled in."""
    p = act.params
    if act.kind is ActKind.CLIP:
        lo = p[0] if len(p) > 0 else -np.inf
        hi = p[1] if len(p) > 1 else np.inf
        return (float(lo), float(hi))
    if act.kind is ActKind.LEAKY_RELU:
        return (float(p[0]) if p else 0.01,)
    if act.kind is ActKind.HARD_SIGMOID:
        return (float(p[0]) if len(p) > 0 else 0.2, float(p[1]) if len(p) > 1 else 0.5)
    return ()


def apply_activation(x: F64, act: Activation | None, channel_axis: int = 1) -> F64:
    """Apply a fused activation elementwise (float64); a per-channel one (PRelu) takes its
    channels along ``channel_axis``."""
    if act is None:
        return x
    kind = act.kind
    p = activation_params(act)
    if kind is ActKind.RELU:
        return np.maximum(x, 0.0)
    if kind is ActKind.CLIP:
        return np.clip(x, p[0], p[1])
    if kind is ActKind.LEAKY_RELU:
        return np.where(x >= 0, x, p[0] * x)
    if kind is ActKind.SIGMOID:
        return _sigmoid(x)
    if kind is ActKind.HARD_SIGMOID:
        return np.clip(p[0] * x + p[1], 0.0, 1.0)
    if kind is ActKind.HARD_SWISH:
        return x * np.clip(x / 6.0 + 0.5, 0.0, 1.0)
    if kind is ActKind.TANH:
        return np.tanh(x)
    if kind is ActKind.SILU:
        return x * _sigmoid(x)
    if kind is ActKind.PRELU:
        shape = [1] * x.ndim
        shape[channel_axis] = len(act.params)
        return np.where(x >= 0, x, np.asarray(act.params, dtype=np.float64).reshape(shape) * x)
    raise UnsupportedOpError(f"activation {kind.value} is not supported by the reference")


def _sigmoid(x: F64) -> F64:
    # split by sign so exp never overflows
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# ---------------------------------------------------------------------------- ops
def _pad(x: F64, rows: tuple[int, int], cols: tuple[int, int], value: float) -> F64:
    """Pad (or crop, for negative amounts) the two spatial axes."""
    (top, bottom), (left, right) = rows, cols
    x = x[:, :, max(-top, 0): x.shape[2] - max(-bottom, 0), max(-left, 0): x.shape[3] - max(-right, 0)]
    widths = ((0, 0), (0, 0), (max(top, 0), max(bottom, 0)), (max(left, 0), max(right, 0)))
    return np.pad(x, widths, constant_values=value)


def _conv(x: F64, attrs: ConvAttrs, w: F64, out_hw: tuple[int, int]) -> F64:
    t, l, b, r = attrs.pads
    window = _pad(x, (t, b), (l, r), 0.0)
    return conv_window(window, conv_weight_taps(w, attrs.groups), attrs.stride, attrs.dilation, out_hw)


def _conv_transpose(x: F64, attrs: ConvTransposeAttrs, w: F64, out_hw: tuple[int, int]) -> F64:
    _, _, h, wd = x.shape
    t, l, _, _ = attrs.pads
    ranges = []
    for n_in, n_out, k, s, pad, d in ((h, out_hw[0], attrs.kernel[0], attrs.stride[0], t, attrs.dilation[0]),
                                     (wd, out_hw[1], attrs.kernel[1], attrs.stride[1], l, attrs.dilation[1])):
        taps = [(iy, iy + cnt) for _, cnt, iy in conv_transpose_taps(0, n_out, k, s, pad, d) if cnt]
        lo = min([a for a, _ in taps] + [0])
        hi = max([b for _, b in taps] + [n_in])
        ranges.append((lo, hi))
    (ylo, yhi), (xlo, xhi) = ranges
    window = _pad(x, (-ylo, yhi - h), (-xlo, xhi - wd), 0.0)
    return conv_transpose_window(window, ylo, xlo, conv_transpose_weight_taps(w, attrs.groups), attrs.stride,
                                 (t, l), attrs.dilation, (0, out_hw[0]), (0, out_hw[1]))


def _pool(x: F64, attrs: PoolAttrs, is_max: bool, out_hw: tuple[int, int]) -> F64:
    t, l, b, r = attrs.pads
    (kh, kw), (sh, sw) = attrs.kernel, attrs.stride
    oh, ow = out_hw
    window = _pad(x, (t, b), (l, r), -np.inf if is_max else 0.0)
    taps = [window[:, :, i: i + sh * (oh - 1) + 1: sh, j: j + sw * (ow - 1) + 1: sw]
            for i in range(kh) for j in range(kw)]
    if is_max:
        return np.maximum.reduce(taps)
    total = np.add.reduce(taps)
    _, _, h, w = x.shape
    _, cy = pool_counts(0, oh, h, kh, sh, t, b, attrs.ceil_pads[0], attrs.count_include_pad)
    _, cx = pool_counts(0, ow, w, kw, sw, l, r, attrs.ceil_pads[1], attrs.count_include_pad)
    return total / (cy[:, None] * cx[None, :]).astype(np.float64)


def _resize(x: F64, attrs: ResizeAttrs) -> F64:
    _, _, h, w = x.shape
    oh, ow = attrs.out_hw
    if attrs.mode == "nearest":
        iy = resize_nearest_index(oh, h, attrs.coord, attrs.nearest_mode)
        ix = resize_nearest_index(ow, w, attrs.coord, attrs.nearest_mode)
        return x[:, :, iy][:, :, :, ix]
    if attrs.mode == "linear":
        y0, y1, fy = resize_linear_taps(oh, h, attrs.coord)
        x0, x1, fx = resize_linear_taps(ow, w, attrs.coord)
        wy = np.array([float(f) for f in fy])[:, None]
        wx = np.array([float(f) for f in fx])
        rows = x[:, :, y0] * (1.0 - wy) + x[:, :, y1] * wy
        return rows[:, :, :, x0] * (1.0 - wx) + rows[:, :, :, x1] * wx
    raise UnsupportedOpError(f"resize mode {attrs.mode!r} is not supported (nearest, linear)")


def _lrn(x: F64, attrs: LRNAttrs) -> F64:
    c = x.shape[1]
    sq = np.concatenate([np.zeros_like(x[:, :1]), np.cumsum(x * x, axis=1)], axis=1)
    lo = np.array([max(lrn_channel_window(k, attrs.size)[0], 0) for k in range(c)])
    hi = np.array([min(lrn_channel_window(k, attrs.size)[1], c) for k in range(c)])
    sums = sq[:, hi] - sq[:, lo]
    return x / (attrs.bias + attrs.alpha / attrs.size * sums) ** attrs.beta


def _softmax(x: F64) -> F64:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _block_move(x: F64, to_space: bool, attrs: BlockAttrs) -> F64:
    """ONNX DepthToSpace (DCR / CRD) and SpaceToDepth, by reshape and transpose."""
    n, c, h, w = x.shape
    b = attrs.block
    if not to_space:
        return x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4).reshape(n, c * b * b, h // b, w // b)
    if attrs.mode == "DCR":
        t = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        t = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return t.reshape(n, c // (b * b), h * b, w * b)


def layer_preactivation(graph: Graph, layer: Layer, xs: list[F64]) -> F64:
    """The layer's output before its fused activation."""
    op, attrs = layer.op, layer.attrs
    if op is OpKind.HOST:  # evaluated as the ONNX node it stands for (host layers have no activation)
        assert isinstance(attrs, HostAttrs)
        return np.asarray(host.evaluate(attrs, xs), dtype=np.float64)
    out_shape = graph.shape(layer.output)
    out_hw = (out_shape[2], out_shape[3])
    w = graph.weights[layer.weight].astype(np.float64) if layer.weight else None
    bias = graph.weights[layer.bias].astype(np.float64) if layer.bias else None
    x = xs[0]
    if op is OpKind.CONV:
        assert isinstance(attrs, ConvAttrs) and w is not None
        y = _conv(x, attrs, w, out_hw)
    elif op is OpKind.CONV_TRANSPOSE:
        assert isinstance(attrs, ConvTransposeAttrs) and w is not None
        y = _conv_transpose(x, attrs, w, out_hw)
    elif op is OpKind.FULLY_CONNECTED:
        assert w is not None
        y = (x.reshape(x.shape[0], -1) @ w.T)[:, :, None, None]
    elif op in (OpKind.MAX_POOL, OpKind.AVG_POOL):
        assert isinstance(attrs, PoolAttrs)
        y = _pool(x, attrs, op is OpKind.MAX_POOL, out_hw)
    elif op is OpKind.GLOBAL_AVG_POOL:
        y = x.mean(axis=(2, 3), keepdims=True)
    elif op is OpKind.GLOBAL_MAX_POOL:
        y = x.max(axis=(2, 3), keepdims=True)
    elif op is OpKind.ADD:
        y = functools.reduce(np.add, xs)
    elif op is OpKind.SUB:
        y = xs[0] - xs[1]
    elif op is OpKind.MUL:
        y = xs[0] * xs[1]
    elif op is OpKind.MAX:
        y = functools.reduce(np.maximum, xs)
    elif op is OpKind.MIN:
        y = functools.reduce(np.minimum, xs)
    elif op is OpKind.CONCAT:
        y = np.concatenate(xs, axis=1)
    elif op is OpKind.RESIZE:
        assert isinstance(attrs, ResizeAttrs)
        y = _resize(x, attrs)
    elif op is OpKind.LRN:
        assert isinstance(attrs, LRNAttrs)
        y = _lrn(x, attrs)
    elif op is OpKind.SOFTMAX:
        y = _softmax(x)
    elif op is OpKind.PAD:
        assert isinstance(attrs, ZeroPadAttrs)
        t, l, b, r = attrs.pads
        y = np.pad(x, ((0, 0), attrs.channels, (t, b), (l, r)))
    elif op is OpKind.SLICE:
        assert isinstance(attrs, SliceAttrs)
        y = x[:, slice(*attrs.channels), slice(*attrs.rows), slice(*attrs.cols)]
    elif op in (OpKind.DEPTH_TO_SPACE, OpKind.SPACE_TO_DEPTH):
        assert isinstance(attrs, BlockAttrs)
        y = _block_move(x, op is OpKind.DEPTH_TO_SPACE, attrs)
    elif op is OpKind.CHANNEL_SHUFFLE:
        assert isinstance(attrs, ChannelShuffleAttrs)
        y = x[:, list(attrs.perm)]
    else:
        raise UnsupportedOpError(f"layer {layer.id!r}: op {op.value} is not supported by the reference")
    if bias is not None:
        y = y + bias[None, :, None, None]
    return y


def run_float_detailed(graph: Graph, inputs: Mapping[str, npt.ArrayLike]) -> tuple[dict[str, F64], dict[str, F64]]:
    """Run the graph in float64. Returns (every tensor by name, the pre-activation value of
    every layer that has a fused activation, keyed by the layer's output tensor)."""
    values: dict[str, F64] = {}
    for name in graph.inputs:
        if name not in inputs:
            raise KeyError(f"missing model input {name!r}")
        arr = np.asarray(inputs[name], dtype=np.float64)
        want = graph.shape(name)
        if arr.ndim != 4 or arr.shape[1:] != tuple(want[1:]):
            raise ValueError(f"input {name!r} has shape {arr.shape}, expected (N, {want[1]}, {want[2]}, {want[3]})")
        values[name] = arr
    pre: dict[str, F64] = {}
    for layer in graph.layers:
        y = layer_preactivation(graph, layer, [values[t] for t in layer.inputs])
        if layer.activation is not None:
            pre[layer.output] = y
            y = apply_activation(y, layer.activation)
        values[layer.output] = y
    return values, pre


def run_float(graph: Graph, inputs: Mapping[str, npt.ArrayLike]) -> dict[str, F64]:
    """Run the graph in float64 and return every tensor (model inputs included) by name."""
    return run_float_detailed(graph, inputs)[0]
