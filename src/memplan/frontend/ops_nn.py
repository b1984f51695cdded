"""Converters of the layer operators: convolutions, pooling, fully connected, resize, LRN,
softmax, concat, DepthToSpace and SpaceToDepth."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from memplan.frontend.common import Node, NodeError, handles, normalize_axis
from memplan.frontend.draft import ConstInfo, DraftLayer
from memplan.frontend.layout import positions, reduces_channels
from memplan.ir.graph import QuantParams
from memplan.ir.ops import (
    BlockAttrs,
    ConvAttrs,
    ConvTransposeAttrs,
    FullyConnectedAttrs,
    LRNAttrs,
    NoAttrs,
    OpKind,
    Pads,
    Pair,
    PoolAttrs,
    ResizeAttrs,
    infer_output_shape,
)

if TYPE_CHECKING:
    from memplan.frontend.convert import Converter


# ---------------------------------------------------------------------------------- attributes
def _pair(node: Node, name: str, default: int) -> Pair:
    values = node.ints(name, (default, default))
    assert values is not None
    if len(values) != 2:
        raise NodeError(f"{name} {values} is not 2-D; memplan handles 2-D (NCHW) operators only")
    return (values[0], values[1])


def _explicit_pads(node: Node) -> Pads:
    pads = node.ints("pads", (0, 0, 0, 0))
    assert pads is not None
    if len(pads) != 4:
        raise NodeError(f"pads {pads} are not 2-D")
    if min(pads) < 0:
        raise NodeError(f"negative pads {pads} are not supported")
    return (pads[0], pads[1], pads[2], pads[3])


def spatial_pads(node: Node, in_hw: Pair, kernel: Pair, stride: Pair, dilation: Pair) -> Pads:
    """(top, left, bottom, right) from ``pads`` or ``auto_pad`` (SAME_UPPER puts the odd cell at
    the end, SAME_LOWER at the start)."""
    auto = node.attr("auto_pad", "NOTSET") or "NOTSET"
    if auto == "NOTSET":
        return _explicit_pads(node)
    if auto == "VALID":
        return (0, 0, 0, 0)
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise NodeError(f"auto_pad {auto!r} is not an ONNX value")
    lo_hi = []
    for n, k, s, d in zip(in_hw, kernel, stride, dilation, strict=True):
        out = -(-n // s)
        total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
        small, big = total // 2, total - total // 2
        lo_hi.append((small, big) if auto == "SAME_UPPER" else (big, small))
    return (lo_hi[0][0], lo_hi[1][0], lo_hi[0][1], lo_hi[1][1])


def _weight_kernel(node: Node, w: np.ndarray) -> Pair:
    if w.ndim != 4:
        raise NodeError(f"weights of rank {w.ndim}; memplan handles 2-D convolutions (4-D weights) only")
    kernel = node.ints("kernel_shape", w.shape[2:])
    assert kernel is not None
    if tuple(kernel) != tuple(w.shape[2:]):
        raise NodeError(f"kernel_shape {kernel} does not match the weights {w.shape}")
    return (int(w.shape[2]), int(w.shape[3]))


# ---------------------------------------------------------------------------------- convolutions
def conv_layer(
    cv: Converter,
    node: Node,
    x: str,
    weight: np.ndarray,
    weight_info: ConstInfo,
    bias: np.ndarray | None,
    bias_info: ConstInfo | None,
    dtype: str | None = None,
) -> DraftLayer:
    """A CONV layer for ``node`` reading ``x`` (shared by Conv and QLinearConv)."""
    base, shape = cv.fmap(x)
    kernel = _weight_kernel(node, weight)
    stride, dilation = _pair(node, "strides", 1), _pair(node, "dilations", 1)
    groups = int(node.attr("group", 1))
    if shape[1] != weight.shape[1] * groups or weight.shape[0] % groups:
        raise NodeError(f"weights {weight.shape} with group={groups} do not fit the input {shape}")
    attrs = ConvAttrs(kernel, stride, spatial_pads(node, shape[2:], kernel, stride, dilation), dilation, groups)
    c_out = int(weight.shape[0])
    if bias is not None and bias.shape != (c_out,):
        raise NodeError(f"bias shape {bias.shape} does not match {c_out} output channels")
    out_shape = infer_output_shape(OpKind.CONV, attrs, (shape,), c_out)
    return cv.emit(node, OpKind.CONV, [base], attrs, out_shape, dtype=dtype, weight=weight, bias=bias,
                   weight_info=weight_info, bias_info=bias_info)


@handles("Conv")
def _conv(cv: Converter, node: Node) -> None:
    w = cv.const(node.input(1), "weight")
    b = cv.maybe_const(node.input(2))
    if node.input(2) and b is None:
        raise NodeError("the bias must be a constant")
    conv_layer(cv, node, node.inputs[0], cv.float_array(w), cv.info(w),
               None if b is None else cv.float_array(b), None if b is None else cv.info(b))


@handles("ConvTranspose")
def _conv_transpose(cv: Converter, node: Node) -> None:
    base, shape = cv.fmap(node.inputs[0])
    w_const = cv.const(node.input(1), "weight")
    w = cv.float_array(w_const)
    kernel = _weight_kernel(node, w)
    stride, dilation = _pair(node, "strides", 1), _pair(node, "dilations", 1)
    out_pad = _pair(node, "output_padding", 0)
    groups = int(node.attr("group", 1))
    if shape[1] != w.shape[0] or shape[1] % groups:
        raise NodeError(f"weights {w.shape} with group={groups} do not fit the input {shape}")
    c_out = int(w.shape[1]) * groups
    auto = node.attr("auto_pad", "NOTSET") or "NOTSET"
    target = node.ints("output_shape")
    if target is None and auto in ("SAME_UPPER", "SAME_LOWER"):
        target = (shape[2] * stride[0], shape[3] * stride[1])
    if target is not None:
        if len(target) < 2:
            raise NodeError(f"output_shape {target} is not 2-D")
        target = target[-2:]
        lo_hi = []
        for n, k, s, d, op, t in zip(shape[2:], kernel, stride, dilation, out_pad, target, strict=True):
            total = s * (n - 1) + op + d * (k - 1) + 1 - t
            if total < 0:
                raise NodeError(f"output_shape {tuple(target)} needs negative padding")
            small, big = total // 2, total - total // 2
            lo_hi.append((small, big) if auto == "SAME_UPPER" else (big, small))
        pads: Pads = (lo_hi[0][0], lo_hi[1][0], lo_hi[0][1], lo_hi[1][1])
    elif auto == "VALID":
        pads = (0, 0, 0, 0)
    else:
        pads = _explicit_pads(node)
    attrs = ConvTransposeAttrs(kernel, stride, pads, dilation, groups, out_pad)
    b = cv.maybe_const(node.input(2))
    out_shape = infer_output_shape(OpKind.CONV_TRANSPOSE, attrs, (shape,), c_out)
    cv.emit(node, OpKind.CONV_TRANSPOSE, [base], attrs, out_shape, weight=w, weight_info=cv.info(w_const),
            bias=None if b is None else cv.float_array(b), bias_info=None if b is None else cv.info(b))


# ---------------------------------------------------------------------------------- pooling
def _ceil_extra(n: int, k: int, s: int, lo: int, hi: int) -> int:
    """Extra end padding that makes floor-mode arithmetic give the ceil-mode output length
    (a window that would start in the end padding is dropped, as ONNX specifies)."""
    span = n + lo + hi - k
    out = -(-span // s) + 1
    if (out - 1) * s >= n + lo:
        out -= 1
    return max((out - 1) * s + k - (n + lo + hi), 0)


@handles("MaxPool", "AveragePool")
def _pool(cv: Converter, node: Node) -> None:
    base, shape = cv.fmap(node.inputs[0])
    kernel = _pair(node, "kernel_shape", 0)
    stride = _pair(node, "strides", 1)
    if _pair(node, "dilations", 1) != (1, 1):
        raise NodeError("dilated pooling is not supported")
    if min(kernel) < 1:
        raise NodeError("kernel_shape is missing")
    top, left, bottom, right = spatial_pads(node, (shape[2], shape[3]), kernel, stride, (1, 1))
    ceil_pads = (0, 0)
    if int(node.attr("ceil_mode", 0)):
        ceil_pads = (
            _ceil_extra(shape[2], kernel[0], stride[0], top, bottom),
            _ceil_extra(shape[3], kernel[1], stride[1], left, right),
        )
    pads = (top, left, bottom + ceil_pads[0], right + ceil_pads[1])
    attrs = PoolAttrs(kernel, stride, pads, bool(node.attr("count_include_pad", 0)), ceil_pads)
    op = OpKind.MAX_POOL if node.op == "MaxPool" else OpKind.AVG_POOL
    cv.emit(node, op, [base], attrs, infer_output_shape(op, attrs, (shape,)))


@handles("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(cv: Converter, node: Node) -> None:
    base, shape = cv.fmap(node.inputs[0])
    op = OpKind.GLOBAL_AVG_POOL if node.op == "GlobalAveragePool" else OpKind.GLOBAL_MAX_POOL
    cv.emit(node, op, [base], NoAttrs(), (shape[0], shape[1], 1, 1))


@handles("ReduceMean", "ReduceMax")
def _reduce_spatial(cv: Converter, node: Node) -> None:
    """ReduceMean / ReduceMax over exactly H and W (of an NCHW map, or of its NHWC transpose):
    a global average / max pool, keepdims or not."""
    ref, base_shape = cv.view(node.inputs[0])
    rank = len(ref.shape)
    if cv.opset < 18:
        axes = node.ints("axes")
    else:
        c = cv.maybe_const(node.input(1))
        if node.input(1) and c is None:
            raise NodeError("axes must be a constant")
        axes = None if c is None else tuple(int(v) for v in c.array.reshape(-1))
    n, ch, h, w = base_shape
    if ref.shape == base_shape and ref.index is None:
        spatial = [2, 3]
    elif ref.shape == (n, h, w, ch) and np.array_equal(
            positions(ref), np.arange(n * ch * h * w).reshape(base_shape).transpose(0, 2, 3, 1)):
        spatial = [1, 2]
    else:
        spatial = None
    if axes is None or spatial is None or sorted(normalize_axis(a, rank) for a in axes) != spatial:
        raise NodeError(f"{node.op} over axes {axes} of {ref.shape} is not over H and W of a feature map; memplan "
                        "supports a spatial reduction (a global pool) only")
    kept = [1 if a in spatial else d for a, d in enumerate(ref.shape)]
    onnx_shape = tuple(kept) if int(node.attr("keepdims", 1)) else tuple(d for a, d in enumerate(kept) if a not in spatial)
    op = OpKind.GLOBAL_AVG_POOL if node.op == "ReduceMean" else OpKind.GLOBAL_MAX_POOL
    cv.emit(node, op, [ref.base], NoAttrs(), (n, ch, 1, 1), onnx_shape=onnx_shape)


@handles("LRN")
def _lrn(cv: Converter, node: Node) -> None:
    base, shape = cv.fmap(node.inputs[0])
    attrs = LRNAttrs(int(node.attr("size")), float(node.attr("alpha", 1e-4)), float(node.attr("beta", 0.75)),
                     float(node.attr("bias", 1.0)))
    cv.emit(node, OpKind.LRN, [base], attrs, shape)


# ---------------------------------------------------------------------------------- fully connected
def fc_layer(
    cv: Converter,
    node: Node,
    x: str,
    weight: np.ndarray,
    weight_info: ConstInfo,
    bias: np.ndarray | None,
    bias_info: ConstInfo | None,
    dtype: str | None = None,
) -> DraftLayer:
    """A FULLY_CONNECTED layer with ``weight`` (K, F) whose columns follow the ONNX input's
    flatten order; they are permuted into the IR's C, H, W order."""
    base, shape, cols = cv.fc_input(x)
    k, f = weight.shape
    if f != shape[1] * shape[2] * shape[3]:
        raise NodeError(f"weights {weight.shape} do not fit an input of {shape[1] * shape[2] * shape[3]} features")
    if cols is not None:
        permuted = np.empty(weight.shape, dtype=weight.dtype)
        permuted[:, cols] = weight
        weight = permuted
        if weight_info.quant is not None and weight_info.quant.axis == 1:
            weight_info = ConstInfo(weight_info.dtype, None)
    return cv.emit(node, OpKind.FULLY_CONNECTED, [base], FullyConnectedAttrs(k), (shape[0], k, 1, 1),
                   onnx_shape=(shape[0], k), dtype=dtype, weight=weight, bias=bias,
                   weight_info=weight_info, bias_info=bias_info)


def transposed_info(info: ConstInfo) -> ConstInfo:
    """Constant info of a 2-D weight after a transpose (a per-axis axis swaps)."""
    q = info.quant
    if q is None or q.axis is None:
        return info
    return ConstInfo(info.dtype, QuantParams(q.scale, q.zero_point, q.dtype, 1 - q.axis))


def _row_bias(c: np.ndarray, n: int, k: int) -> np.ndarray:
    try:
        full = np.broadcast_to(c, (n, k))
    except ValueError:
        raise NodeError(f"bias of shape {c.shape} does not broadcast to the output ({n}, {k})") from None
    if not np.all(full == full[:1]):
        raise NodeError("a bias that differs between samples of the batch is not a bias")
    return np.array(full[0], dtype=np.float32)


@handles("Gemm")
def _gemm(cv: Converter, node: Node) -> None:
    if int(node.attr("transA", 0)):
        raise NodeError("transA=1 (a transposed feature map) is not supported")
    b = cv.const(node.input(1), "B (weight)")
    w = cv.float_array(b)
    info = cv.info(b)
    if w.ndim != 2:
        raise NodeError(f"weights of rank {w.ndim}; Gemm needs 2-D")
    if not int(node.attr("transB", 0)):
        w, info = w.T, transposed_info(info)
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    if alpha != 1.0:
        w = (w.astype(np.float64) * alpha).astype(np.float32)
        info = ConstInfo(info.dtype, None)
    c = cv.maybe_const(node.input(2))
    if node.input(2) and c is None:
        raise NodeError("the bias C must be a constant")
    bias = bias_info = None
    if c is not None:
        ref, _ = cv.view(node.inputs[0])
        bias = _row_bias(cv.float_array(c).astype(np.float64) * beta, ref.shape[0], w.shape[0])
        bias_info = cv.info(c) if beta == 1.0 else ConstInfo(c.dtype)
    fc_layer(cv, node, node.inputs[0], w, info, bias, bias_info)


@handles("MatMul")
def _matmul(cv: Converter, node: Node) -> None:
    if node.inputs[0] in cv.consts:
        raise NodeError("constant @ feature map is not a fully connected layer; memplan needs feature map @ weights")
    b = cv.const(node.input(1), "weight")
    w = cv.float_array(b)
    if w.ndim != 2:
        raise NodeError(f"weights of rank {w.ndim}; a fully connected MatMul needs 2-D weights")
    ref, _ = cv.view(node.inputs[0])
    if len(ref.shape) != 2:
        raise NodeError(f"a MatMul on a rank-{len(ref.shape)} input is not a fully connected layer")
    fc_layer(cv, node, node.inputs[0], w.T, transposed_info(cv.info(b)), None, None)


# ---------------------------------------------------------------------------------- resize
def _resize_mode(node: Node) -> str:
    mode = str(node.attr("mode", "nearest")).lower()
    if mode == "bilinear":
        mode = "linear"
    if mode not in ("nearest", "linear"):
        raise NodeError(f"mode {mode!r} is not supported; use nearest or linear")
    return mode


@handles("Resize", "Upsample")
def _resize(cv: Converter, node: Node) -> None:
    base, shape = cv.fmap(node.inputs[0])
    n, c, h, w = shape
    mode = _resize_mode(node)
    scales: np.ndarray | None = None
    sizes: np.ndarray | None = None
    legacy = node.op == "Upsample" or cv.opset < 11
    if node.op == "Upsample" and cv.opset < 9:
        scales = np.asarray(node.attr("scales"), dtype=np.float64)
    elif legacy:
        scales = np.asarray(cv.const(node.input(1), "scales").array, dtype=np.float64)
    else:
        coord = node.attr("coordinate_transformation_mode", "half_pixel")
        if coord == "tf_crop_and_resize":
            raise NodeError("coordinate_transformation_mode tf_crop_and_resize is not supported")
        if int(node.attr("antialias", 0)) or int(node.attr("exclude_outside", 0)):
            raise NodeError("antialias and exclude_outside are not supported")
        if node.attr("keep_aspect_ratio_policy", "stretch") != "stretch":
            raise NodeError("keep_aspect_ratio_policy other than stretch is not supported")
        s_const, z_const = cv.maybe_const(node.input(2)), cv.maybe_const(node.input(3))
        if node.input(3) and z_const is not None and z_const.array.size:
            sizes = np.asarray(z_const.array, dtype=np.int64)
        elif s_const is not None and s_const.array.size:
            scales = np.asarray(s_const.array, dtype=np.float64)
        else:
            raise NodeError("scales or sizes must be constants")
        axes = node.ints("axes")
        if axes is not None:  # opset 18: values only for the listed axes
            full = np.asarray([1.0, 1.0, 1.0, 1.0]) if sizes is None else np.asarray(shape, dtype=np.int64)
            given = sizes if sizes is not None else scales
            assert given is not None
            if len(axes) != len(given):
                raise NodeError(f"axes {axes} do not match {len(given)} scales or sizes")
            for a, v in zip(axes, given, strict=True):
                full[normalize_axis(a, 4)] = v
            sizes, scales = (full, None) if sizes is not None else (None, full)
    if sizes is not None:
        if sizes.shape != (4,) or tuple(sizes[:2]) != (n, c):
            raise NodeError(f"sizes {tuple(sizes)} must keep N and C of {shape}")
        out_hw = (int(sizes[2]), int(sizes[3]))
    else:
        assert scales is not None
        if scales.shape != (4,) or scales[0] != 1 or scales[1] != 1:
            raise NodeError(f"scales {tuple(scales)} must be 1 for N and C")
        out_hw = (math.floor(h * scales[2]), math.floor(w * scales[3]))
        for size, scale, out in zip((h, w), scales[2:], out_hw, strict=True):
            if not math.isclose(size * scale, out, rel_tol=1e-6):
                raise NodeError(
                    f"scale {scale} on size {size} gives a fractional output size; memplan stores output sizes, "
                    "so the scale must map the input to a whole number of pixels: re-export with 'sizes'"
                )
    if legacy:
        # Upsample and Resize-10 sample with asymmetric coordinates; onnxruntime rounds the source
        # index down when enlarging and up when shrinking
        coord = "asymmetric"
        nearest = "floor" if out_hw[0] >= h and out_hw[1] >= w else "ceil"
    else:
        coord = node.attr("coordinate_transformation_mode", "half_pixel")
        nearest = node.attr("nearest_mode", "round_prefer_floor")
    attrs = ResizeAttrs(out_hw, mode, coord, nearest)
    cv.emit(node, OpKind.RESIZE, [base], attrs, (n, c, *out_hw))


# ---------------------------------------------------------------------------------- softmax, concat
@handles("Softmax")
def _softmax(cv: Converter, node: Node) -> None:
    ref, base_shape = cv.view(node.inputs[0])
    rank = len(ref.shape)
    if cv.opset < 13:
        axis = normalize_axis(int(node.attr("axis", 1)), rank)
        axes = list(range(axis, rank))  # the input is coerced to 2-D at ``axis``
    else:
        axes = [normalize_axis(int(node.attr("axis", -1)), rank)]
    if not reduces_channels(ref, base_shape, axes):
        raise NodeError(
            f"softmax over axes {axes} of shape {ref.shape} is not a softmax over the channels of feature map "
            f"{base_shape}; memplan supports channel softmax only"
        )
    cv.emit(node, OpKind.SOFTMAX, [ref.base], NoAttrs(), base_shape, like=ref)


@handles("Concat")
def _concat(cv: Converter, node: Node) -> None:
    names = [n for n in node.inputs if n]
    if any(n in cv.consts for n in names):
        raise NodeError("concatenating a constant with a feature map is not supported")
    views = [cv.view(n) for n in names]
    first, first_base = views[0]
    rank = len(first.shape)
    axis = normalize_axis(int(node.attr("axis")), rank)
    flat = all(r.index is None and len(r.shape) == 2 and b[2:] == (1, 1) for r, b in views)
    if rank == 2 and axis == 1 and flat:
        # (N, K) outputs of fully connected layers: their bases are (N, K, 1, 1)
        bases = [r.base for r, _ in views]
        shapes = tuple(b for _, b in views)
        out = infer_output_shape(OpKind.CONCAT, NoAttrs(), shapes)
        cv.emit(node, OpKind.CONCAT, bases, NoAttrs(), out, onnx_shape=(out[0], out[1]))
        return
    if rank != 4 or axis != 1:
        raise NodeError(f"concat on axis {axis} of rank-{rank} tensors; memplan concatenates channels (axis 1) only")
    maps = [cv.fmap(n) for n in names]
    shapes = tuple(s for _, s in maps)
    try:
        out = infer_output_shape(OpKind.CONCAT, NoAttrs(), shapes)
    except ValueError as exc:
        raise NodeError(str(exc)) from None
    cv.emit(node, OpKind.CONCAT, [b for b, _ in maps], NoAttrs(), out)



@handles("DepthToSpace", "SpaceToDepth")
def _block_move(cv: Converter, node: Node) -> None:
    """DepthToSpace (DCR or CRD) and SpaceToDepth of an NCHW feature map."""
    x, shape = cv.fmap(node.inputs[0])
    to_space = node.op == "DepthToSpace"
    op = OpKind.DEPTH_TO_SPACE if to_space else OpKind.SPACE_TO_DEPTH
    try:
        attrs = BlockAttrs(int(node.attr("blocksize")), str(node.attr("mode", "DCR")).upper() if to_space else "DCR")
        out = infer_output_shape(op, attrs, (shape,))
    except ValueError as exc:
        raise NodeError(str(exc)) from None
    cv.emit(node, op, [x], attrs, out)
