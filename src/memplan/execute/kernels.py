"""Integer kernels that compute any box of a layer's output from tiles of its inputs.

:func:`run_layer` computes the cells of ``out_region`` (channels, rows and columns, in
full-tensor coordinates; the batch is always whole) of one quantised layer. Each input is a
:class:`Tile`: an int8 array holding a region of the input tensor. The result is the same
integer array whatever the tiling, so a tiled executor that stitches tiles is bit-exact
against the untiled reference, which calls :func:`run_layer` with the whole output.

Input cells a kernel reads:

* outside the full tensor are padding: the input zero point (real 0) for conv,
  conv-transpose and LRN, excluded from max pools (a window made only of padding gives
  -128), excluded or counted as the zero point for average pools per ``count_include_pad``
  (the ``ceil_pads`` part never counts);
* inside the tensor but outside the tile raise :class:`MissingInputError`: that is how a tile
  planned one halo row short is detected.

:func:`required_input_regions` gives, per input, the bounding box of the in-tensor cells the
kernel reads for an output region (an empty region when it reads none of an input, e.g. a
concat input whose channels are not in the region, or a conv-transpose output that only gets
the bias). Strided, dilated and resized reads are minimal: rows that only padding or a
zero-weight bilinear neighbour would use are not required.

Arithmetic is integer throughout; convolutions and fully connected layers multiply in float64
where it is exact (see :mod:`memplan.execute.windows`) and round-trip to int64.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from memplan.errors import PlanError
from memplan.execute.fixedpoint import (
    INT32_MAX,
    INT32_MIN,
    INT8_MAX,
    INT8_MIN,
    divide_round_half_away,
    one_over_one_plus_x_for_x_in_0_1,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
    wrap_int32,
)
from memplan.execute.quantize import ADD_LEFT_SHIFT, LRN_TABLE_BITS, SOFTMAX_MUL_BITS, QLayer
from memplan.execute.windows import (
    RESIZE_FRAC_BITS,
    assert_exact_float_accumulation,
    conv_transpose_taps,
    conv_transpose_window,
    conv_weight_taps,
    conv_window,
    lrn_channel_window,
    pool_counts,
    resize_linear_fixed,
    resize_nearest_index,
)
from memplan.geometry.backprop import block_region, block_sources
from memplan.geometry.region import Region
from memplan.ir.ops import (
    BlockAttrs,
    ChannelShuffleAttrs,
    ConvAttrs,
    ConvTransposeAttrs,
    ELEMENTWISE,
    LRNAttrs,
    OpKind,
    PoolAttrs,
    ResizeAttrs,
    Shape,
    SliceAttrs,
    ZeroPadAttrs,
    broadcast_span,
    ceil_div,
)

I8 = npt.NDArray[np.int8]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]

EMPTY = Region(0, 0, 0, 0, 0, 0)
#: fill of max-pool padding: below every int8 so it never wins a max against a real cell
_MAX_POOL_PAD = -(1 << 15)
#: largest |activation - zero point| times largest |weight|: bounds every product
_MAX_PRODUCT = 255 * 128


class MissingInputError(PlanError):
    """A kernel needs input cells that the tile it was given does not hold."""


@dataclass(frozen=True)
class Tile:
    """``data`` (int8, ``(N, channels, rows, cols)``) holds ``region`` of a tensor of shape
    ``full_shape``; the region lies inside the tensor."""

    data: I8
    region: Region
    full_shape: Shape

    def __post_init__(self) -> None:
        r = self.region
        if self.data.dtype != np.int8:
            raise TypeError(f"tile data must be int8, got {self.data.dtype}")
        if self.data.ndim != 4 or self.data.shape[1:] != (r.channels, r.rows, r.cols):
            raise ValueError(f"tile data shape {self.data.shape} does not match region {r}")
        if not r.within(self.full_shape):
            raise ValueError(f"tile region {r} leaves the tensor {self.full_shape}")

    @staticmethod
    def whole(array: I8) -> Tile:
        """The whole tensor as one tile."""
        shape = tuple(array.shape)
        return Tile(array, Region.full(shape), shape)  # type: ignore[arg-type]

    @staticmethod
    def cut(array: I8, region: Region) -> Tile:
        """The tile holding ``region`` of a full tensor ``array``."""
        shape = tuple(array.shape)
        return Tile(np.ascontiguousarray(array[(slice(None), *region.slices())]), region, shape)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Access:
    """How a kernel reads one input: it materialises ``box`` (may extend past the tensor; cells
    outside the tensor are ``fill``) and actually reads the in-tensor cells of ``need``."""

    box: Region
    need: Region
    fill: int = 0


# ---------------------------------------------------------------------------- public API
def required_input_regions(ql: QLayer, out_region: Region) -> tuple[Region, ...]:
    """Per input, the bounding box of the in-tensor cells the kernel reads to compute
    ``out_region`` (:data:`EMPTY` when it reads nothing of that input)."""
    _check_out_region(ql, out_region)
    return tuple(a.need if a is not None and not a.need.empty else EMPTY for a in _accesses(ql, out_region))


def run_layer(ql: QLayer, inputs: Sequence[Tile | None], out_region: Region, batch: int = 1) -> I8:
    """Compute ``out_region`` of the layer's output as int8 ``(N, channels, rows, cols)``.

    ``inputs`` has one tile per layer input (``None`` is allowed for an input the region does
    not read). ``N`` is the tiles' batch size, or ``batch`` when no tile is given (a region
    that reads only padding). Raises :class:`MissingInputError` if a tile lacks a cell the
    kernel reads."""
    _check_out_region(ql, out_region)
    if len(inputs) != len(ql.layer.inputs):
        raise ValueError(f"layer {ql.layer.id!r} takes {len(ql.layer.inputs)} inputs, got {len(inputs)}")
    batches = {t.data.shape[0] for t in inputs if t is not None}
    if len(batches) > 1:
        raise ValueError(f"layer {ql.layer.id!r}: input tiles must share one batch size, got {sorted(batches)}")
    n = batches.pop() if batches else batch
    for i, t in enumerate(inputs):
        if t is not None and tuple(t.full_shape[1:]) != tuple(ql.in_shapes[i][1:]):
            raise ValueError(f"layer {ql.layer.id!r}: input {i} tile is of a {t.full_shape} tensor, "
                             f"expected {ql.in_shapes[i]}")
    accesses = _accesses(ql, out_region)
    windows = [None if a is None else _gather(ql, i, inputs[i], a, n) for i, a in enumerate(accesses)]
    out = _KERNELS[ql.op](ql, windows, out_region, accesses)
    assert out.dtype == np.int8 and out.shape == (n, out_region.channels, out_region.rows, out_region.cols)
    return out


# ---------------------------------------------------------------------------- FDT
def partial_sum_input(ql: QLayer, out_region: Region, in_channels: tuple[int, int]) -> Region:
    """The input cells an FDT slice reads: what the layer reads for ``out_region``, restricted
    to input channels ``in_channels``."""
    need = required_input_regions(ql, out_region)[0]
    a, b = in_channels
    return need if need.empty else Region(a, b, need.y0, need.y1, need.x0, need.x1)


def partial_sums(ql: QLayer, tile: Tile, out_region: Region, in_channels: tuple[int, int],
                 weight: I8) -> npt.NDArray[np.int64]:
    """An FDT slice (:mod:`memplan.geometry.fdt`): the exact integer partial sums, without the
    bias, of output region ``out_region`` of a convolution with one group or a fully connected
    layer over its input channels ``[a, b)`` = ``in_channels`` only, as int64
    ``(N, channels, rows, cols)``. ``weight`` holds the weights of the region's output channels
    for those input channels: ``(channels, b - a, kh, kw)`` for a convolution, ``(channels,
    (b - a) * H * W)`` for fully connected (its input flattened channel-major). Summed over
    slices that partition the input channels, the result is the layer's accumulator exactly."""
    _check_out_region(ql, out_region)
    a, b = in_channels
    _, _, h, w = ql.in_shapes[0]
    zp = ql.in_q[0].zero_point
    n = tile.data.shape[0]
    if ql.op is OpKind.CONV:
        attrs = ql.layer.attrs
        assert isinstance(attrs, ConvAttrs) and attrs.groups == 1
        assert_exact_float_accumulation((b - a) * attrs.kernel[0] * attrs.kernel[1], _MAX_PRODUCT)
        access = _window_access(out_region, (h, w), (a, b), attrs.kernel, attrs.stride, attrs.pads, attrs.dilation, zp)
        x = (_gather(ql, 0, tile, access, n) - zp).astype(np.float64)
        acc = conv_window(x, conv_weight_taps(weight, 1), attrs.stride, attrs.dilation, (out_region.rows, out_region.cols))
        return _to_exact_int(acc)
    if ql.op is OpKind.FULLY_CONNECTED:
        access = _same_access(Region(a, b, 0, h, 0, w))
        x = (_gather(ql, 0, tile, access, n) - zp).astype(np.float64)
        assert_exact_float_accumulation(x[0].size, _MAX_PRODUCT)
        return _to_exact_int(x.reshape(n, -1) @ weight.astype(np.float64).T)[:, :, None, None]
    raise ValueError(f"layer {ql.layer.id!r} ({ql.op}) does not reduce over input channels: no partial sums")


def finish_partial_sums(ql: QLayer, acc: npt.NDArray[np.int64], out_region: Region,
                        bias: npt.NDArray[np.int32] | None) -> I8:
    """The requantisation after an FDT group's last slice: the summed partial sums of
    ``out_region`` plus ``bias`` (of the region's output channels) -> int8, exactly as the
    untiled kernel finishes its accumulator."""
    if bias is not None:
        acc = acc + bias.astype(np.int64)[None, :, None, None]
    return _finish_accumulator(ql, acc, out_region)


# ---------------------------------------------------------------------------- plumbing
def _check_out_region(ql: QLayer, r: Region) -> None:
    if r.empty or not r.within(ql.out_shape):
        raise ValueError(f"layer {ql.layer.id!r}: output region {r} is empty or leaves the output {ql.out_shape}")


def _span(idx: npt.ArrayLike, n: int) -> tuple[int, int]:
    """Half-open bounding span of the indices that fall inside ``[0, n)`` ((0, 0) if none)."""
    a = np.asarray(idx, dtype=np.int64).ravel()
    inside = a[(a >= 0) & (a < n)]
    return (int(inside.min()), int(inside.max()) + 1) if inside.size else (0, 0)


def _region(c: tuple[int, int], y: tuple[int, int], x: tuple[int, int]) -> Region:
    return Region(c[0], c[1], y[0], y[1], x[0], x[1])


def _intersect(a: Region, b: Region) -> Region:
    return Region(max(a.c0, b.c0), min(a.c1, b.c1), max(a.y0, b.y0), min(a.y1, b.y1), max(a.x0, b.x0), min(a.x1, b.x1))


def _gather(ql: QLayer, index: int, tile: Tile | None, access: _Access, n: int) -> I32:
    """The window ``access.box`` of input ``index`` as int32, padding with ``access.fill``."""
    need, box = access.need, access.box
    if not need.empty and (tile is None or not tile.region.contains(need)):
        have = "no tile" if tile is None else f"tile {tile.region.as_list()}"
        raise MissingInputError(
            f"layer {ql.layer.id!r} input {ql.layer.inputs[index]!r}: needs region {need.as_list()} "
            f"(channels, rows, cols) but was given {have}")
    window = np.full((n, box.channels, box.rows, box.cols), access.fill, dtype=np.int32)
    if tile is not None:
        common = _intersect(box, tile.region)
        if not common.empty:
            window[(slice(None), *common.relative_to(box))] = tile.data[(slice(None), *common.relative_to(tile.region))]
    return window


def _window_access(out: Region, n_in: tuple[int, int], c: tuple[int, int], kernel: tuple[int, int],
                   stride: tuple[int, int], pads: tuple[int, int, int, int], dilation: tuple[int, int],
                   fill: int) -> _Access:
    """Access of a sliding-window op (conv, pools): the padded box and the in-tensor span."""
    (h, w), (kh, kw), (sh, sw), (dh, dw) = n_in, kernel, stride, dilation
    top, left = pads[0], pads[1]
    rows = np.add.outer(np.arange(out.y0, out.y1) * sh - top, np.arange(kh) * dh)
    cols = np.add.outer(np.arange(out.x0, out.x1) * sw - left, np.arange(kw) * dw)
    box = _region(c, (out.y0 * sh - top, (out.y1 - 1) * sh - top + dh * (kh - 1) + 1),
                  (out.x0 * sw - left, (out.x1 - 1) * sw - left + dw * (kw - 1) + 1))
    return _Access(box, _region(c, _span(rows, h), _span(cols, w)), fill)


def _same_access(out: Region, c: tuple[int, int] | None = None) -> _Access:
    """Access of an elementwise op: the output region itself (optionally other channels)."""
    region = out if c is None else _region(c, (out.y0, out.y1), (out.x0, out.x1))
    return _Access(region, region)


def _group_range(ql: QLayer, out: Region, groups: int) -> tuple[int, int, int, int]:
    """Groups ``[g0, g1)`` touched by the output channels, and channels per group (out, in)."""
    co_g = ql.out_shape[1] // groups
    ci_g = ql.in_shapes[0][1] // groups
    return out.c0 // co_g, ceil_div(out.c1, co_g), co_g, ci_g


# ---------------------------------------------------------------------------- accesses
def _accesses(ql: QLayer, out: Region) -> list[_Access | None]:
    op, attrs = ql.op, ql.layer.attrs
    _, c_in, h, w = ql.in_shapes[0]
    if op is OpKind.CONV:
        assert isinstance(attrs, ConvAttrs)
        g0, g1, _, ci_g = _group_range(ql, out, attrs.groups)
        return [_window_access(out, (h, w), (g0 * ci_g, g1 * ci_g), attrs.kernel, attrs.stride, attrs.pads,
                               attrs.dilation, ql.in_q[0].zero_point)]
    if op is OpKind.CONV_TRANSPOSE:
        assert isinstance(attrs, ConvTransposeAttrs)
        return [_conv_transpose_access(ql, attrs, out)]
    if op in (OpKind.MAX_POOL, OpKind.AVG_POOL):
        assert isinstance(attrs, PoolAttrs)
        fill = _MAX_POOL_PAD if op is OpKind.MAX_POOL else 0
        return [_window_access(out, (h, w), (out.c0, out.c1), attrs.kernel, attrs.stride, attrs.pads, (1, 1), fill)]
    if op in (OpKind.GLOBAL_AVG_POOL, OpKind.GLOBAL_MAX_POOL):
        return [_same_access(Region(out.c0, out.c1, 0, h, 0, w))]
    if op is OpKind.FULLY_CONNECTED:
        return [_same_access(Region(0, c_in, 0, h, 0, w))]
    if op in ELEMENTWISE:  # a broadcast axis reads its single cell
        return [_same_access(_region(broadcast_span(s[1], out.c0, out.c1), broadcast_span(s[2], out.y0, out.y1),
                                     broadcast_span(s[3], out.x0, out.x1))) for s in ql.in_shapes]
    if op is OpKind.PAD:  # the output region shifted into the input; outside it: the zero point
        assert isinstance(attrs, ZeroPadAttrs)
        t, l = attrs.pads[0], attrs.pads[1]
        box = Region(out.c0 - attrs.channels[0], out.c1 - attrs.channels[0], out.y0 - t, out.y1 - t, out.x0 - l,
                     out.x1 - l)
        need = box.clip(ql.in_shapes[0])
        return [_Access(box, EMPTY if need.empty else need, ql.in_q[0].zero_point)]
    if op is OpKind.SLICE:  # the output region shifted into the input
        assert isinstance(attrs, SliceAttrs)
        c, y, x = attrs.channels[0], attrs.rows[0], attrs.cols[0]
        return [_same_access(Region(out.c0 + c, out.c1 + c, out.y0 + y, out.y1 + y, out.x0 + x, out.x1 + x))]
    if op in (OpKind.DEPTH_TO_SPACE, OpKind.SPACE_TO_DEPTH):  # the bounding box of the cells copied
        assert isinstance(attrs, BlockAttrs)
        return [_same_access(block_region(op, attrs, ql.in_shapes[0], out))]
    if op is OpKind.CONCAT:
        accesses: list[_Access | None] = []
        offset = 0
        for shape in ql.in_shapes:
            lo, hi = max(out.c0, offset), min(out.c1, offset + shape[1])
            accesses.append(_same_access(out, (lo - offset, hi - offset)) if lo < hi else None)
            offset += shape[1]
        return accesses
    if op is OpKind.RESIZE:
        assert isinstance(attrs, ResizeAttrs)
        rows, cols = _resize_sources(attrs, out, (h, w))
        return [_same_access(_region((out.c0, out.c1), _span(rows, h), _span(cols, w)))]
    if op is OpKind.CHANNEL_SHUFFLE:
        assert isinstance(attrs, ChannelShuffleAttrs)
        return [_same_access(out, _span(attrs.perm[out.c0:out.c1], c_in))]
    if op is OpKind.SOFTMAX:
        return [_same_access(out, (0, c_in))]
    if op is OpKind.LRN:
        assert isinstance(attrs, LRNAttrs)
        lo, _ = lrn_channel_window(out.c0, attrs.size)
        _, hi = lrn_channel_window(out.c1 - 1, attrs.size)
        box = _region((lo, hi), (out.y0, out.y1), (out.x0, out.x1))
        return [_Access(box, box.clip(ql.in_shapes[0]), ql.in_q[0].zero_point)]
    raise NotImplementedError(f"no integer kernel for {op.value}")


def _conv_transpose_inputs(lo: int, hi: int, k: int, s: int, pad: int, d: int) -> I64:
    """Input indices (unclipped) that reach outputs ``[lo, hi)`` along one ConvTranspose axis."""
    used = [np.arange(first, first + count) for _, count, first in conv_transpose_taps(lo, hi, k, s, pad, d) if count]
    return np.concatenate(used) if used else np.zeros(0, dtype=np.int64)


def _conv_transpose_access(ql: QLayer, attrs: ConvTransposeAttrs, out: Region) -> _Access:
    _, _, h, w = ql.in_shapes[0]
    g0, g1, _, ci_g = _group_range(ql, out, attrs.groups)
    c = (g0 * ci_g, g1 * ci_g)
    rows = _conv_transpose_inputs(out.y0, out.y1, attrs.kernel[0], attrs.stride[0], attrs.pads[0], attrs.dilation[0])
    cols = _conv_transpose_inputs(out.x0, out.x1, attrs.kernel[1], attrs.stride[1], attrs.pads[1], attrs.dilation[1])
    if rows.size == 0 or cols.size == 0:  # no tap reaches the region: it only gets the bias
        return _Access(_region(c, (0, 0), (0, 0)), EMPTY, ql.in_q[0].zero_point)
    box = _region(c, (int(rows.min()), int(rows.max()) + 1), (int(cols.min()), int(cols.max()) + 1))
    return _Access(box, _region(c, _span(rows, h), _span(cols, w)), ql.in_q[0].zero_point)


def _resize_sources(attrs: ResizeAttrs, out: Region, in_hw: tuple[int, int]) -> tuple[I64, I64]:
    """Input rows and columns a resize reads for the output region."""
    (h, w), (oh, ow) = in_hw, attrs.out_hw
    if attrs.mode == "nearest":
        return (resize_nearest_index(oh, h, attrs.coord, attrs.nearest_mode)[out.y0:out.y1],
                resize_nearest_index(ow, w, attrs.coord, attrs.nearest_mode)[out.x0:out.x1])
    y0, y1, _ = resize_linear_fixed(oh, h, attrs.coord)
    x0, x1, _ = resize_linear_fixed(ow, w, attrs.coord)
    sl_y, sl_x = slice(out.y0, out.y1), slice(out.x0, out.x1)
    return np.concatenate([y0[sl_y], y1[sl_y]]), np.concatenate([x0[sl_x], x1[sl_x]])


# ---------------------------------------------------------------------------- epilogues
def _activate(ql: QLayer, stage: I64, out: Region) -> I8:
    """Clamp a stage-domain value (output region ``out``) to the activation range, then apply
    the table if any (a per-channel table: that of each output channel)."""
    lo, hi = ql.act_range
    clamped = np.clip(stage, max(lo, INT8_MIN), min(hi, INT8_MAX))
    if ql.lut is None:
        return clamped.astype(np.int8)
    if ql.lut.ndim == 2:
        return ql.lut[np.arange(out.c0, out.c1)[None, :, None, None], clamped + 128]
    return ql.lut[clamped + 128]


def _finish_accumulator(ql: QLayer, acc: I64, out: Region) -> I8:
    """Bias-added int32 accumulators of output region ``out`` -> int8 output."""
    acc = np.clip(acc, INT32_MIN, INT32_MAX)  # saturating int32 accumulator (never binds in practice)
    assert ql.requant is not None
    return _activate(ql, ql.requant.apply(acc, slice(out.c0, out.c1)) + ql.stage_q.zero_point, out)


def _finish_input_domain(ql: QLayer, q: I64, out: Region) -> I8:
    """A value in the input's quantised domain -> int8 output (identity fast path)."""
    if ql.requant is not None:
        q = ql.requant.apply(q - ql.in_q[0].zero_point) + ql.stage_q.zero_point
    return _activate(ql, q, out)


def _to_exact_int(acc: npt.NDArray[np.float64]) -> I64:
    return np.rint(acc).astype(np.int64)


def _add_bias(ql: QLayer, acc: I64, out: Region) -> I64:
    if ql.bias is None:
        return acc
    return acc + ql.bias[out.c0:out.c1].astype(np.int64)[None, :, None, None]


# ---------------------------------------------------------------------------- kernels
Windows = list[I32 | None]
Accesses = list[_Access | None]


def _offset(ql: QLayer, window: I32 | None, index: int = 0) -> npt.NDArray[np.float64]:
    assert window is not None
    return (window - ql.in_q[index].zero_point).astype(np.float64)


def _conv(ql: QLayer, windows: Windows, out: Region, accesses: Accesses) -> I8:
    attrs = ql.layer.attrs
    assert isinstance(attrs, ConvAttrs)
    g0, g1, co_g, ci_g = _group_range(ql, out, attrs.groups)
    assert_exact_float_accumulation(ci_g * attrs.kernel[0] * attrs.kernel[1], _MAX_PRODUCT)
    acc = conv_window(_offset(ql, windows[0]), ql.weight_taps[:, :, g0:g1], attrs.stride, attrs.dilation,
                      (out.rows, out.cols))
    acc_i = _to_exact_int(acc[:, out.c0 - g0 * co_g: out.c1 - g0 * co_g])
    return _finish_accumulator(ql, _add_bias(ql, acc_i, out), out)


def _conv_transpose(ql: QLayer, windows: Windows, out: Region, accesses: Accesses) -> I8:
    attrs = ql.layer.attrs
    assert isinstance(attrs, ConvTransposeAttrs)
    g0, g1, co_g, ci_g = _group_range(ql, out, attrs.groups)
    # an output cell receives at most ceil(k/s) taps per axis from each input channel of its group
    taps = ceil_div(attrs.kernel[0], attrs.stride[0]) * ceil_div(attrs.kernel[1], attrs.stride[1])
    assert_exact_float_accumulation(ci_g * taps, _MAX_PRODUCT)
    access = accesses[0]
    assert access is not None
    acc = conv_transpose_window(_offset(ql, windows[0]), access.box.y0, access.box.x0, ql.weight_taps[:, :, g0:g1],
                                attrs.stride, (attrs.pads[0], attrs.pads[1]), attrs.dilation, (out.y0, out.y1),
                                (out.x0, out.x1))
    acc_i = _to_exact_int(acc[:, out.c0 - g0 * co_g: out.c1 - g0 * co_g])
    return _finish_accumulator(ql, _add_bias(ql, acc_i, out), out)


def _pool_taps(window: I32, attrs: PoolAttrs, out: Region) -> list[I32]:
    (kh, kw), (sh, sw) = attrs.kernel, attrs.stride
    return [window[:, :, i: i + sh * (out.rows - 1) + 1: sh, j: j + sw * (out.cols - 1) + 1: sw]
            for i in range(kh) for j in range(kw)]


def _max_pool(ql: QLayer, windows: Windows, out: Region, accesses: Accesses) -> I8:
    attrs = ql.layer.attrs
    assert isinstance(attrs, PoolAttrs) and windows[0] is not None
    result = np.maximum.reduce(_pool_taps(windows[0], attrs, out)).astype(np.int64)
    return _finish_input_domain(ql, np.maximum(result, INT8_MIN), out)  # all-padding window -> -128


def _avg_pool(ql: QLayer, windows: Windows, out: Region, accesses: Accesses) -> I8:
    attrs = ql.layer.attrs
    assert isinstance(attrs, PoolAttrs) and windows[0] is not None
    _, _, h, w = ql.in_shapes[0]
    t, l, b, r = attrs.pads
    total = np.add.reduce([tap.astype(np.int64) for tap in _pool_taps(windows[0], attrs, out)])
    vy, cy = pool_counts(out.y0, out.y1, h, attrs.kernel[0], attrs.stride[0], t, b, attrs.ceil_pads[0],
                         attrs.count_include_pad)
    vx, cx = pool_counts(out.x0, out.x1, w, attrs.kernel[1], attrs.stride[1], l, r, attrs.ceil_pads[1],
                         attrs.count_include_pad)
    valid, counted = np.outer(vy, vx), np.outer(cy, cx)
    if int(counted.min()) <= 0:
        raise ValueError(f"layer {ql.layer.id!r}: an average-pool window counts no cell")
    # counted padding cells hold real 0, i.e. the zero point
    total = total + ql.in_q[0].zero_point * (counted - valid)
    return _finish_input_domain(ql, divide_round_half_away(total, counted), out)


def _global_avg_pool(ql: QLayer, windows: Windows, out: Region, accesses: Accesses) -> I8:
    """TFLite Micro's int8 MEAN over H and W: the integer sum of ``q - zp_in`` times one
    multiplier of ``s_in / (s_out * count)`` (:func:`~memplan.execute.quantize.tflm_mean_requant`),
    plus the output zero point: one rounding."""
    window = windows[0]
    assert window is not None and ql.requant is not None
    count = window.shape[2] * window.shape[3]
    total = window.astype(np.int64).sum(axis=(2, 3), keepdims=True) - ql.in_q[0].zero_point * count
    total = np.clip(total, INT32_MIN, INT32_MAX)
    return _activate(ql, ql.requant.apply(total) + ql.stage_q.zero_point, out)


def _global_max_pool(ql: QLayer, windows: Windows, out: Region, accesses: Accesses) -> I8:
    window = windows[0]
    assert window is not None
    return _finish_input_domain(ql, window.astype(np.int64).max(axis=(2, 3), keepdims=True), out)


def _fully_connected(ql: QLayer, windows: Windows, out: Region, accesses: Accesses) -> I8:
    x = _offset(ql, windows[0])
    assert_exact_float_accumulation(x[0].size, _MAX_PRODUCT)
    acc = x.reshape(x.shape[0], -1) @ ql.weight_f64[out.c0:out.c1].T
    return _finish_accumulator(ql, _add_bias(ql, _to_exact_int(acc)[:, :, None, None], out), out)


def _broadcast(ql: QLayer, q: I64, out: Region) -> I64:
    """An elementwise result (broadcast inputs may leave size-1 axes) at the output region's shape."""
    return np.broadcast_to(q, (q.shape[0], out.channels, out.rows, out.cols))


def _add(ql: QLayer, windows: Windows, out: Region, accesses: Accesses) -> I8:
    """ADD and SUB (TFLite): each input minus its zero point, shifted left by 20, scaled by its
    multiplier; the sum (SUB: first minus second) scaled to the stage domain."""
    raw = None
    for i, (window, rq) in enumerate(zip(windows, ql.input_requants)):
        assert window is not None and rq is not None
        shifted = (window.astype(np.int64) - ql.in_q[i].zero_point) << ADD_LEFT_SHIFT
        scaled = rq.apply(shifted)
        raw = scaled if raw is None else (raw - scaled if ql.op is OpKind.SUB else raw + scaled)
    assert raw is not None and ql.requant is not None
    stage = ql.requant.apply(np.clip(raw, INT32_MIN, INT32_MAX)) + ql.stage_q.zero_point
    return _activate(ql, _broadcast(ql, stage, out), out)


def _mul(ql: QLayer, windows: Windows, out: Region, accesses: Accesses) -> I8:
    """MUL (TFLite): the int32 product of the inputs minus their zero points, times
    ``s1 * s2 / s_out`` with one fixed-point multiplier, plus the output zero point."""
    a, b = (_centred(ql, windows, i) for i in (0, 1))
    assert ql.requant is not None
    return _activate(ql, _broadcast(ql, ql.requant.apply(a * b) + ql.stage_q.zero_point, out), out)


def _extremum(ql: QLayer, windows: Windows, out: Region, accesses: Accesses) -> I8:
    """MAX and MIN: every input rescaled to the stage domain (as concat), then compared."""
    reduce = np.maximum if ql.op is OpKind.MAX else np.minimum
    parts = [_in_stage(ql, i, w) for i, w in enumerate(windows)]
    return _activate(ql, _broadcast(ql, functools.reduce(reduce, parts), out), out)


def _centred(ql: QLayer, windows: Windows, i: int) -> I64:
    window = windows[i]
    assert window is not None
    return window.astype(np.int64) - ql.in_q[i].zero_point


def _in_stage(ql: QLayer, i: int, window: I32 | None) -> I64:
    """Input ``i``'s window in the stage domain (``input_requants[i]`` None: same parameters)."""
    assert window is not None
    q = window.astype(np.int64)
    rq = ql.input_requants[i]
    return q if rq is None else rq.apply(q - ql.in_q[i].zero_point) + ql.stage_q.zero_point


def _concat(ql: QLayer, windows: Windows, out: Region, accesses: Accesses) -> I8:
    return _activate(ql, np.concatenate([_in_stage(ql, i, w) for i, w in enumerate(windows) if w is not None], axis=1), out)


def _resize(ql: QLayer, windows: Windows, out: Region, accesses: Accesses) -> I8:
    attrs = ql.layer.attrs
    window = windows[0]
    assert isinstance(attrs, ResizeAttrs) and window is not None
    access = accesses[0]
    assert access is not None
    oy, ox = access.box.y0, access.box.x0
    (_, _, h, w), (oh, ow) = ql.in_shapes[0], attrs.out_hw
    q = window.astype(np.int64)
    if attrs.mode == "nearest":
        iy, ix = _resize_sources(attrs, out, (h, w))
        return _finish_input_domain(ql, q[:, :, iy - oy][:, :, :, ix - ox], out)
    one = 1 << RESIZE_FRAC_BITS
    y0, y1, wy = (a[out.y0:out.y1] for a in resize_linear_fixed(oh, h, attrs.coord))
    x0, x1, wx = (a[out.x0:out.x1] for a in resize_linear_fixed(ow, w, attrs.coord))
    wy, wx = wy[:, None], wx[None, :]
    rows = q[:, :, y0 - oy] * (one - wy) + q[:, :, y1 - oy] * wy  # scaled by 2**10
    both = rows[:, :, :, x0 - ox] * (one - wx) + rows[:, :, :, x1 - ox] * wx  # scaled by 2**20
    return _finish_input_domain(ql, divide_round_half_away(both, one * one), out)


def _pad(ql: QLayer, windows: Windows, out: Region, accesses: Accesses) -> I8:
    window = windows[0]
    assert window is not None
    return _finish_input_domain(ql, window.astype(np.int64), out)


def _block_move(ql: QLayer, windows: Windows, out: Region, accesses: Accesses) -> I8:
    """DEPTH_TO_SPACE / SPACE_TO_DEPTH (TFLite): a permutation of cells, in the input's domain."""
    attrs, window, access = ql.layer.attrs, windows[0], accesses[0]
    assert isinstance(attrs, BlockAttrs) and window is not None and access is not None
    c, y, x = block_sources(ql.op, attrs, ql.in_shapes[0], out)
    box = access.box
    return _finish_input_domain(ql, window.astype(np.int64)[:, c - box.c0, y - box.y0, x - box.x0], out)


def _channel_shuffle(ql: QLayer, windows: Windows, out: Region, accesses: Accesses) -> I8:
    attrs = ql.layer.attrs
    window = windows[0]
    assert isinstance(attrs, ChannelShuffleAttrs) and window is not None
    src = np.asarray(attrs.perm[out.c0:out.c1], dtype=np.int64)
    return _finish_input_domain(ql, window.astype(np.int64)[:, src - int(src.min())], out)


def _softmax_tflm(ql: QLayer, q: I64, out: Region) -> I8:
    """TFLite Micro's int8 softmax (``reference_ops::Softmax``, output 1/256, zero point -128):
    per cell, ``E[d]`` (Q0.31 exponentials of the scaled differences to the channel maximum,
    ``ql.table``) summed in Q12.19, the sum's reciprocal by ``GetReciprocal`` (a normalising
    shift and gemmlowp ``one_over_one_plus_x_for_x_in_0_1``), each output ``E[d] * reciprocal``
    shifted right by ``num_bits_over_unit + 23``, minus 128. TFLM aborts when that shift exceeds
    31 (a sum of 512 or more: a flat distribution over many classes); memplan's shift then
    gives 0, the value the rounding tends to."""
    assert ql.table is not None
    e = ql.table[q.max(axis=1, keepdims=True) - q]
    total = np.asarray(rounding_divide_by_pot(e, 12), dtype=np.int64).sum(axis=1, keepdims=True)
    total = wrap_int32(total)
    bits = np.frexp((total & 0xFFFFFFFF).astype(np.float64))[1].astype(np.int64)  # bit length (uint32)
    headroom = 32 - bits
    num_bits_over_unit = 12 - headroom
    shifted = wrap_int32(((total << headroom) & 0xFFFFFFFF) - (1 << 31))
    scale = one_over_one_plus_x_for_x_in_0_1(shifted)
    exponent = num_bits_over_unit + 31 - 8
    prod = np.asarray(saturating_rounding_doubling_high_mul(np.broadcast_to(scale, e.shape), e), dtype=np.int64)
    res = np.asarray(rounding_divide_by_pot(prod, np.clip(exponent, 0, 31)), dtype=np.int64)
    res = np.where(exponent > 31, 0, res)
    return _activate(ql, res[:, out.c0:out.c1] - 128, out)


def _softmax(ql: QLayer, windows: Windows, out: Region, accesses: Accesses) -> I8:
    window = windows[0]
    assert window is not None and ql.table is not None
    q = window.astype(np.int64)
    if ql.softmax is not None:
        return _softmax_tflm(ql, q, out)
    e = ql.table[q.max(axis=1, keepdims=True) - q]
    total = e.sum(axis=1, keepdims=True)
    num = e[:, out.c0:out.c1] * ql.table_mul
    den = total << SOFTMAX_MUL_BITS
    return _activate(ql, (2 * num + den) // (2 * den) + ql.stage_q.zero_point, out)


def _lrn(ql: QLayer, windows: Windows, out: Region, accesses: Accesses) -> I8:
    attrs = ql.layer.attrs
    window = windows[0]
    assert isinstance(attrs, LRNAttrs) and window is not None and ql.table is not None
    v = window.astype(np.int64) - ql.in_q[0].zero_point
    n = out.channels
    csum = np.concatenate([np.zeros_like(v[:, :1]), np.cumsum(v * v, axis=1)], axis=1)
    sq = csum[:, attrs.size: attrs.size + n] - csum[:, :n]  # the box starts at out.c0's window start
    centre = (attrs.size - 1) // 2
    scaled = v[:, centre: centre + n] * ql.table[sq]
    return _activate(ql, divide_round_half_away(scaled, 1 << LRN_TABLE_BITS) + ql.stage_q.zero_point, out)


_KERNELS: dict[OpKind, Callable[[QLayer, Windows, Region, Accesses], I8]] = {
    OpKind.CONV: _conv,
    OpKind.CONV_TRANSPOSE: _conv_transpose,
    OpKind.MAX_POOL: _max_pool,
    OpKind.AVG_POOL: _avg_pool,
    OpKind.GLOBAL_AVG_POOL: _global_avg_pool,
    OpKind.GLOBAL_MAX_POOL: _global_max_pool,
    OpKind.FULLY_CONNECTED: _fully_connected,
    OpKind.ADD: _add,
    OpKind.SUB: _add,
    OpKind.MUL: _mul,
    OpKind.MAX: _extremum,
    OpKind.MIN: _extremum,
    OpKind.PAD: _pad,
    OpKind.SLICE: _pad,
    OpKind.DEPTH_TO_SPACE: _block_move,
    OpKind.SPACE_TO_DEPTH: _block_move,
    OpKind.CONCAT: _concat,
    OpKind.RESIZE: _resize,
    OpKind.CHANNEL_SHUFFLE: _channel_shuffle,
    OpKind.SOFTMAX: _softmax,
    OpKind.LRN: _lrn,
}
