"""Index arithmetic and tap loops shared by the float reference and the integer kernels.

Both executors call the same functions for "which input cells does an output cell read" and
"accumulate a convolution over a window", so the float reference (checked against
onnxruntime) also checks the integer kernels' indexing.

Convolutions accumulate in float64 one kernel tap at a time with a (grouped) matrix product.
For the integer kernels every operand is an integer of magnitude at most 255 (activation
minus zero point) or 127 (weight), so every partial sum is an integer below 2**53 and float64
arithmetic is exact in any summation order: :func:`assert_exact_float_accumulation` checks the
bound.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: fractional bits of the integer bilinear weights, per axis (weights sum to 2**RESIZE_FRAC_BITS)
RESIZE_FRAC_BITS = 10

COORD_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
               "tf_half_pixel_for_nn")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def assert_exact_float_accumulation(terms: int, max_abs_product: int, extra: int = 0) -> None:
    """Assert that summing ``terms`` integer products of magnitude <= ``max_abs_product`` (plus
    ``extra``) stays below 2**53, where float64 represents every integer exactly."""
    if terms * max_abs_product + extra >= 2**53:
        raise OverflowError(f"{terms} products of up to {max_abs_product} are not exact in float64")


# ---------------------------------------------------------------------------- convolution
def conv_weight_taps(weight: npt.NDArray[np.floating | np.integer], groups: int) -> F64:
    """Conv weight ``(C_out, C_in/g, kh, kw)`` -> float64 ``(kh, kw, g, C_out/g, C_in/g)``."""
    c_out, c_in_g, kh, kw = weight.shape
    w = np.asarray(weight, dtype=np.float64).reshape(groups, c_out // groups, c_in_g, kh, kw)
    return np.ascontiguousarray(w.transpose(3, 4, 0, 1, 2))


def conv_transpose_weight_taps(weight: npt.NDArray[np.floating | np.integer], groups: int) -> F64:
    """ConvTranspose weight ``(C_in, C_out/g, kh, kw)`` -> float64 ``(kh, kw, g, C_out/g, C_in/g)``."""
    c_in, c_out_g, kh, kw = weight.shape
    w = np.asarray(weight, dtype=np.float64).reshape(groups, c_in // groups, c_out_g, kh, kw)
    return np.ascontiguousarray(w.transpose(3, 4, 0, 2, 1))


def _grouped_tap_product(w_tap: F64, x: F64) -> F64:
    """``w_tap (g, co, ci)`` times ``x (N, g, ci, P)`` -> ``(N, g, co, P)``."""
    if w_tap.shape[2] == 1:  # depthwise-like: an elementwise product is far faster than g GEMMs
        return w_tap[None, :, :, :] * x
    return np.matmul(w_tap[None], x)


def conv_window(window: F64, w_taps: F64, stride: tuple[int, int], dilation: tuple[int, int],
                out_hw: tuple[int, int]) -> F64:
    """Convolve a padded window whose cell (0, 0) is the first tap of output (0, 0).

    ``window`` is ``(N, g*ci, Hw, Ww)``, ``w_taps`` ``(kh, kw, g, co, ci)``; the result is
    ``(N, g*co, oh, ow)``."""
    kh, kw, g, co, ci = w_taps.shape
    n = window.shape[0]
    oh, ow = out_hw
    (sh, sw), (dh, dw) = stride, dilation
    acc = np.zeros((n, g, co, oh * ow), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            xs = window[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
            acc += _grouped_tap_product(w_taps[i, j], xs.reshape(n, g, ci, oh * ow))
    return acc.reshape(n, g * co, oh, ow)


def conv_transpose_taps(out_lo: int, out_hi: int, k: int, s: int, pad: int, d: int) -> list[tuple[int, int, int]]:
    """For output positions ``[out_lo, out_hi)`` along one axis of a ConvTranspose, list per
    kernel tap ``i`` the triple ``(first, count, y_first)``: outputs ``first, first + s, ...``
    (``count`` of them, ``first`` relative to ``out_lo``) receive input ``y_first, y_first + 1,
    ...`` through tap ``i`` (``out = y * s - pad + i * d``). Input indices are not clipped."""
    taps = []
    for i in range(k):
        phase = (i * d - pad) % s
        first = (phase - out_lo) % s
        count = len(range(out_lo + first, out_hi, s))
        y_first = (out_lo + first + pad - i * d) // s
        taps.append((first, count, y_first))
    return taps


def conv_transpose_window(window: F64, win_y0: int, win_x0: int, w_taps: F64, stride: tuple[int, int],
                          pads_lo: tuple[int, int], dilation: tuple[int, int], out_rows: tuple[int, int],
                          out_cols: tuple[int, int]) -> F64:
    """ConvTranspose outputs ``out_rows x out_cols`` (full-tensor coordinates) from a window of
    the input whose cell (0, 0) is input ``(win_y0, win_x0)`` and which is zero outside the
    tensor. ``window`` is ``(N, g*ci, Hw, Ww)``; the result is ``(N, g*co, rows, cols)``."""
    kh, kw, g, co, ci = w_taps.shape
    n = window.shape[0]
    (y0, y1), (x0, x1) = out_rows, out_cols
    acc = np.zeros((n, g, co, y1 - y0, x1 - x0), dtype=np.float64)
    row_taps = conv_transpose_taps(y0, y1, kh, stride[0], pads_lo[0], dilation[0])
    col_taps = conv_transpose_taps(x0, x1, kw, stride[1], pads_lo[1], dilation[1])
    for i, (fy, ny, iy) in enumerate(row_taps):
        for j, (fx, nx, ix) in enumerate(col_taps):
            if ny == 0 or nx == 0:
                continue
            xs = window[:, :, iy - win_y0: iy - win_y0 + ny, ix - win_x0: ix - win_x0 + nx]
            prod = _grouped_tap_product(w_taps[i, j], xs.reshape(n, g, ci, ny * nx))
            acc[:, :, :, fy::stride[0], fx::stride[1]] += prod.reshape(n, g, co, ny, nx)
    return acc.reshape(n, g * co, y1 - y0, x1 - x0)


# ---------------------------------------------------------------------------- pooling
def pool_counts(out_lo: int, out_hi: int, n: int, k: int, s: int, pad_lo: int, pad_hi: int, ceil_pad: int,
                include_pad: bool) -> tuple[I64, I64]:
    """Per output position along one axis of an average pool: (cells inside the input,
    cells the average divides by). With ``include_pad`` explicit padding counts but the
    ``ceil_pad`` part of the end padding (from ceil mode) never does."""
    start = np.arange(out_lo, out_hi, dtype=np.int64) * s - pad_lo
    end = start + k
    valid = np.minimum(end, n) - np.maximum(start, 0)
    if include_pad:
        counted = np.minimum(end, n + pad_hi - ceil_pad) - np.maximum(start, -pad_lo)
    else:
        counted = valid
    return np.maximum(valid, 0), np.maximum(counted, 0)


# ---------------------------------------------------------------------------- resize
def _source_coordinate(x: int, out_len: int, in_len: int, coord: str) -> Fraction:
    """ONNX ``coordinate_transformation_mode`` with scale = out_len / in_len, exactly."""
    scale = Fraction(out_len, in_len)
    if coord in ("half_pixel", "half_pixel_symmetric"):
        # with scale = out/in exactly, half_pixel_symmetric's adjustment is 1: same as half_pixel
        return (x + Fraction(1, 2)) / scale - Fraction(1, 2)
    if coord == "pytorch_half_pixel":
        return (x + Fraction(1, 2)) / scale - Fraction(1, 2) if out_len > 1 else Fraction(0)
    if coord == "align_corners":
        return Fraction(x * (in_len - 1), out_len - 1) if out_len > 1 else Fraction(0)
    if coord == "asymmetric":
        return x / scale
    if coord == "tf_half_pixel_for_nn":
        return (x + Fraction(1, 2)) / scale
    raise ValueError(f"unsupported resize coordinate_transformation_mode {coord!r}")


def _round_nearest(v: Fraction, mode: str) -> int:
    if mode == "round_prefer_floor":
        return math.ceil(v - Fraction(1, 2))
    if mode == "round_prefer_ceil":
        return math.floor(v + Fraction(1, 2))
    if mode == "floor":
        return math.floor(v)
    if mode == "ceil":
        return math.ceil(v)
    raise ValueError(f"unsupported resize nearest_mode {mode!r}")


@lru_cache(maxsize=256)
def resize_nearest_index(out_len: int, in_len: int, coord: str, nearest_mode: str) -> I64:
    """Source index of every output position of a nearest resize (clamped to the input)."""
    idx = [min(max(_round_nearest(_source_coordinate(x, out_len, in_len, coord), nearest_mode), 0), in_len - 1)
           for x in range(out_len)]
    arr = np.array(idx, dtype=np.int64)
    arr.setflags(write=False)
    return arr


@lru_cache(maxsize=256)
def resize_linear_taps(out_len: int, in_len: int, coord: str) -> tuple[I64, I64, tuple[Fraction, ...]]:
    """Linear resize along one axis: per output position ``(i0, i1, f)`` with value
    ``(1 - f) * x[i0] + f * x[i1]``. The source coordinate is clamped to ``[0, in_len - 1]``
    (as onnxruntime); ``i1 == i0`` whenever ``f == 0`` so a zero-weight neighbour is never read."""
    i0s, i1s, fs = [], [], []
    for x in range(out_len):
        c = min(max(_source_coordinate(x, out_len, in_len, coord), Fraction(0)), Fraction(in_len - 1))
        i0 = int(c)  # c >= 0: floor
        f = c - i0
        i0s.append(i0)
        i1s.append(min(i0 + 1, in_len - 1) if f else i0)
        fs.append(f)
    a0, a1 = np.array(i0s, dtype=np.int64), np.array(i1s, dtype=np.int64)
    a0.setflags(write=False)
    a1.setflags(write=False)
    return a0, a1, tuple(fs)


@lru_cache(maxsize=256)
def resize_linear_fixed(out_len: int, in_len: int, coord: str) -> tuple[I64, I64, I64]:
    """:func:`resize_linear_taps` with the weight of ``i1`` as an integer
    ``w1 = floor(f * 2**RESIZE_FRAC_BITS + 1/2)`` (exact rational rounding, half up);
    ``i0`` gets ``2**RESIZE_FRAC_BITS - w1``. ``i1`` is reset to ``i0`` when ``w1`` rounds to 0."""
    i0, i1, fs = resize_linear_taps(out_len, in_len, coord)
    one = 1 << RESIZE_FRAC_BITS
    w1 = np.array([math.floor(f * one + Fraction(1, 2)) for f in fs], dtype=np.int64)
    i1 = np.where(w1 == 0, i0, i1)
    # (w1 == 2**bits, f within 2**-11 of 1, gives i0 weight 0 but i0 is still read)
    for a in (i1, w1):
        a.setflags(write=False)
    return i0, i1, w1


# ---------------------------------------------------------------------------- LRN
def lrn_channel_window(c: int, size: int) -> tuple[int, int]:
    """ONNX LRN: channel ``c`` sums squares over ``[c - floor((size-1)/2), c + ceil((size-1)/2)]``
    (inclusive, before clipping to the tensor); returned half-open."""
    return c - (size - 1) // 2, c + (size - 1) - (size - 1) // 2 + 1
