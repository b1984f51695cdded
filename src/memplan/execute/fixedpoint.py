"""Integer requantisation arithmetic, as TFLite Micro and CMSIS-NN define it.

A real multiplier ``M > 0`` is stored as a Q31 integer ``m`` in ``[2**30, 2**31)`` and a power
of two ``shift`` with ``M ~= m * 2**(shift - 31)`` (:func:`quantize_multiplier`). An int32 value
``x`` is multiplied by ``M`` with

* :func:`saturating_rounding_doubling_high_mul` (gemmlowp ``SaturatingRoundingDoublingHighMul``):
  ``(x * m + nudge) / 2**31`` truncated towards zero, ``nudge = 2**30`` when ``x * m >= 0`` and
  ``1 - 2**30`` otherwise. Ties therefore go to +infinity for positive products and towards
  zero for negative ones (``-1.5 -> -1``); ``INT32_MIN * INT32_MIN`` saturates to ``INT32_MAX``.
* :func:`rounding_divide_by_pot` (gemmlowp ``RoundingDivideByPOT``): arithmetic right shift
  rounding to nearest, ties away from zero (``-1.5 -> -2``, ``1.5 -> 2``).

:func:`multiply_by_quantized_multiplier` combines them exactly like TFLite's reference
``MultiplyByQuantizedMultiplier`` (double rounding): left shift for ``shift > 0``, high
multiply, then a rounding right shift for ``shift < 0``.

Every function here is vectorised over numpy int64 arrays (the multiplier and shift may be
arrays broadcasting against ``x``, e.g. one per output channel) and also accepts Python ints.
Values are asserted to be in int32 range where the C code would work in int32.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import numpy.typing as npt

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
INT8_MIN = -128
INT8_MAX = 127

IntArray = npt.NDArray[np.int64]
ArrayLike = TypeVar("ArrayLike", int, IntArray)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """Real multiplier -> (Q31 multiplier, shift) with ``real ~= m * 2**(shift - 31)``.

    As TFLite ``QuantizeMultiplier``: ``frexp`` gives ``real = q * 2**shift`` with
    ``q in [0.5, 1)``; ``m = round(q * 2**31)`` (half away from zero); ``m == 2**31`` is halved
    with ``shift + 1``; shifts below -31 (all bits shifted out) become ``(0, 0)``."""
    if real < 0 or not math.isfinite(real):
        raise ValueError(f"multiplier must be finite and non-negative, got {real}")
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    m = int(round_half_away(q * (1 << 31)))
    if m == 1 << 31:
        m //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    assert (1 << 30) <= m <= INT32_MAX
    return m, shift


def dequantize_multiplier(m: int, shift: int) -> float:
    """The real value a (Q31 multiplier, shift) pair stands for."""
    return m * 2.0 ** (shift - 31)


def _check_int32(x: IntArray, what: str) -> None:
    if x.size and (int(x.min()) < INT32_MIN or int(x.max()) > INT32_MAX):
        raise OverflowError(f"{what} leaves the int32 range")


def saturating_rounding_doubling_high_mul(a: ArrayLike, b: ArrayLike) -> ArrayLike:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int32 values (see module doc)."""
    a64 = np.asarray(a, dtype=np.int64)
    b64 = np.asarray(b, dtype=np.int64)
    _check_int32(a64, "SRDHM operand")
    _check_int32(b64, "SRDHM operand")
    ab = a64 * b64  # |ab| <= 2**62: exact in int64
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    num = ab + nudge
    # C division truncates towards zero; numpy's // floors, so divide magnitudes.
    high = np.sign(num) * (np.abs(num) // np.int64(1 << 31))
    overflow = (a64 == INT32_MIN) & (b64 == INT32_MIN)
    out = np.where(overflow, np.int64(INT32_MAX), high).astype(np.int64)
    return _like(out, a, b)


def rounding_divide_by_pot(x: ArrayLike, exponent: ArrayLike) -> ArrayLike:
    """gemmlowp ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded half away from zero."""
    x64 = np.asarray(x, dtype=np.int64)
    e64 = np.asarray(exponent, dtype=np.int64)
    if e64.size and (int(e64.min()) < 0 or int(e64.max()) > 31):
        raise ValueError("RoundingDivideByPOT exponent must be in [0, 31]")
    mask = (np.int64(1) << e64) - 1
    remainder = x64 & mask
    threshold = (mask >> 1) + (x64 < 0).astype(np.int64)
    out = (x64 >> e64) + (remainder > threshold).astype(np.int64)
    return _like(out, x, exponent)


def multiply_by_quantized_multiplier(x: ArrayLike, multiplier: ArrayLike, shift: ArrayLike) -> ArrayLike:
    """TFLite ``MultiplyByQuantizedMultiplier``: ``x * m * 2**(shift - 31)``, double rounding.

    ``x`` (after the left shift) must be int32; an overflow raises rather than wrapping."""
    x64 = np.asarray(x, dtype=np.int64)
    s64 = np.asarray(shift, dtype=np.int64)
    left = np.maximum(s64, 0)
    right = np.maximum(-s64, 0)
    shifted = x64 << left
    _check_int32(shifted, "left-shifted requantisation input")
    out = rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, np.asarray(multiplier, dtype=np.int64)), right)
    return _like(np.asarray(out, dtype=np.int64), x, multiplier, shift)


def saturate_int8(x: IntArray | int) -> npt.NDArray[np.int8]:
    """Clamp to [-128, 127] and narrow to int8."""
    return np.clip(np.asarray(x, dtype=np.int64), INT8_MIN, INT8_MAX).astype(np.int8)


def round_half_away(x: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Round floats to the nearest integer, ties away from zero (C ``round``), as float64."""
    a = np.asarray(x, dtype=np.float64)
    return np.sign(a) * np.floor(np.abs(a) + 0.5)


def divide_round_half_away(num: IntArray, den: IntArray | int) -> IntArray:
    """Integer ``num / den`` (``den > 0``) rounded half away from zero, as TFLite's average
    pool: ``num > 0 ? (num + den/2) / den : (num - den/2) / den`` with C truncation."""
    n = np.asarray(num, dtype=np.int64)
    d = np.asarray(den, dtype=np.int64)
    if d.size and int(d.min()) <= 0:
        raise ValueError("divisor must be positive")
    return np.sign(n) * ((np.abs(n) + d // 2) // d)


def _like(out: IntArray, *args: object) -> ArrayLike:
    """Return a Python int when every argument was a scalar, else the array."""
    if all(np.ndim(a) == 0 and not isinstance(a, np.ndarray) for a in args):
        return int(out)  # type: ignore[return-value]
    return out  # type: ignore[return-value]
