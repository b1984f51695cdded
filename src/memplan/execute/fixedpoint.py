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

from memplan.ir.weights import INT8_MAX, INT8_MIN, round_half_away  # one definition, below the executor and cost

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

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


# ---------------------------------------------------------------------------- gemmlowp FixedPoint
# The transcendental functions TFLite Micro's int8 LOGISTIC, TANH and SOFTMAX evaluate, on
# int32 raw values of gemmlowp ``FixedPoint<int32_t, I>`` (``I`` integer bits, ``31 - I``
# fractional bits), vectorised over int64 arrays. memplan evaluates them at build time only
# (activation tables, the softmax), so they favour clarity over speed.

def wrap_int32(x: npt.ArrayLike) -> IntArray:
    """Two's-complement int32 wrap of int64 values (C int32 arithmetic)."""
    a = np.asarray(x, dtype=np.int64)
    return ((a + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _srdhm(a: IntArray, b: IntArray | int) -> IntArray:
    return np.asarray(saturating_rounding_doubling_high_mul(np.asarray(a, dtype=np.int64),
                                                            np.asarray(b, dtype=np.int64)), dtype=np.int64)


def saturating_rounding_multiply_by_pot(x: IntArray, exponent: int) -> IntArray:
    """gemmlowp ``SaturatingRoundingMultiplyByPOT<exponent>`` on int32 values: a saturating
    left shift for ``exponent > 0``, :func:`rounding_divide_by_pot` for ``exponent < 0``."""
    a = np.asarray(x, dtype=np.int64)
    if exponent == 0:
        return a
    if exponent < 0:
        return np.asarray(rounding_divide_by_pot(a, np.int64(-exponent)), dtype=np.int64)
    threshold = (1 << (31 - exponent)) - 1
    return np.where(a > threshold, INT32_MAX, np.where(a < -threshold, INT32_MIN, a << exponent))


def rounding_half_sum(a: IntArray, b: IntArray | int) -> IntArray:
    """gemmlowp ``RoundingHalfSum`` (int32): ``(a + b + sign) / 2`` with C truncation."""
    s = np.asarray(a, dtype=np.int64) + np.asarray(b, dtype=np.int64)
    num = s + np.where(s >= 0, 1, -1)
    return np.sign(num) * (np.abs(num) // 2)


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a: IntArray) -> IntArray:
    """gemmlowp: exp(a) for a (Q0.31) in [-1/4, 0), by a Taylor expansion around -1/8."""
    constant_term = 1895147668  # exp(-1/8) in Q0.31
    constant_1_over_3 = 715827883
    x = wrap_int32(a + (1 << 28))  # a + 1/8
    x2 = _srdhm(x, x)
    x3 = _srdhm(x2, x)
    x4 = _srdhm(x2, x2)
    x4_over_4 = saturating_rounding_multiply_by_pot(x4, -2)
    poly = saturating_rounding_multiply_by_pot(wrap_int32(_srdhm(wrap_int32(x4_over_4 + x3), constant_1_over_3) + x2), -1)
    return wrap_int32(constant_term + _srdhm(constant_term, wrap_int32(x + poly)))


#: gemmlowp's exp barrel shifter: (exponent E, exp(-2**E) in Q0.31)
_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401),
               (4, 242))


def exp_on_negative_values(a: npt.ArrayLike, integer_bits: int) -> IntArray:
    """gemmlowp ``exp_on_negative_values``: exp of a non-positive ``FixedPoint<int32_t,
    integer_bits>`` raw value, as a Q0.31 raw value."""
    a = np.asarray(a, dtype=np.int64)
    frac = 31 - integer_bits
    one_quarter = 1 << (frac - 2)
    a_mod_quarter_minus_one_quarter = wrap_int32((a & (one_quarter - 1)) - one_quarter)
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(
        saturating_rounding_multiply_by_pot(a_mod_quarter_minus_one_quarter, integer_bits))
    remainder = wrap_int32(a_mod_quarter_minus_one_quarter - a)
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            bit = 1 << (frac + exponent)
            result = np.where((remainder & bit) != 0, _srdhm(result, multiplier), result)
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))  # -32
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, INT32_MAX, result)


def _newton_reciprocal_f2(a: IntArray) -> IntArray:
    """gemmlowp's Newton-Raphson iteration for 1 / (1 + a), a in Q0.31 [0, 1): the result
    ``x ~= 2 / (1 + a)`` in Q2.29."""
    half_denominator = rounding_half_sum(a, INT32_MAX)
    constant_48_over_17 = 1515870810
    constant_neg_32_over_17 = -1010580540
    x = wrap_int32(constant_48_over_17 + _srdhm(half_denominator, constant_neg_32_over_17))
    one_f2 = 1 << 29
    for _ in range(3):
        half_denominator_times_x = _srdhm(half_denominator, x)
        one_minus = wrap_int32(one_f2 - half_denominator_times_x)
        x = wrap_int32(x + saturating_rounding_multiply_by_pot(_srdhm(x, one_minus), 2))
    return x


def one_over_one_plus_x_for_x_in_0_1(a: npt.ArrayLike) -> IntArray:
    """gemmlowp ``one_over_one_plus_x_for_x_in_0_1``: Q0.31 in, Q0.31 out."""
    x = _newton_reciprocal_f2(np.asarray(a, dtype=np.int64))
    return saturating_rounding_multiply_by_pot(x, 1)  # ExactMulByPot<-1> then Rescale<0> of a Q1.30


def one_minus_x_over_one_plus_x_for_x_in_0_1(a: npt.ArrayLike) -> IntArray:
    """gemmlowp ``one_minus_x_over_one_plus_x_for_x_in_0_1``: Q0.31 in, Q0.31 out."""
    x = _newton_reciprocal_f2(np.asarray(a, dtype=np.int64))
    return saturating_rounding_multiply_by_pot(wrap_int32(x - (1 << 29)), 2)


def fixed_point_logistic(a: npt.ArrayLike, integer_bits: int) -> IntArray:
    """gemmlowp ``logistic`` of a ``FixedPoint<int32_t, integer_bits>`` raw value, Q0.31 out."""
    a = np.asarray(a, dtype=np.int64)
    positive = a > 0
    abs_input = np.where(positive, a, wrap_int32(-a))
    result_if_positive = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(wrap_int32(-abs_input), integer_bits))
    result_if_negative = wrap_int32(INT32_MAX - result_if_positive)
    return np.where(a == 0, 1 << 30, np.where(positive, result_if_positive, result_if_negative))


def fixed_point_tanh(a: npt.ArrayLike, integer_bits: int) -> IntArray:
    """gemmlowp ``tanh`` of a ``FixedPoint<int32_t, integer_bits>`` raw value, Q0.31 out."""
    a = np.asarray(a, dtype=np.int64)
    negative = a < 0
    n = np.where(negative, a, wrap_int32(-a))  # -|a|
    t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(n, integer_bits + 1))  # ExactMulByPot<1>
    return np.where(a == 0, 0, np.where(negative, wrap_int32(-t), t))


def calculate_input_radius(input_integer_bits: int, input_left_shift: int, total_signed_bits: int = 31) -> int:
    """TFLite ``CalculateInputRadius``: the largest input magnitude a fixed-point function
    with ``input_integer_bits`` integer bits takes after a left shift of ``input_left_shift``."""
    max_input_rescaled = (1.0 * ((1 << input_integer_bits) - 1) * float(1 << (total_signed_bits - input_integer_bits))
                          / float(1 << input_left_shift) if input_left_shift >= 0 else
                          1.0 * ((1 << input_integer_bits) - 1) * float(1 << (total_signed_bits - input_integer_bits))
                          * float(1 << -input_left_shift))
    return int(math.floor(max_input_rescaled))
