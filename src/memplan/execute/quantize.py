"""Int8 quantisation of a graph: activation parameters, integer weights, requantisation constants.

:func:`quantize_graph` turns a :class:`~memplan.ir.graph.Graph` into a frozen
:class:`QuantizedGraph`: one :class:`QLayer` per layer holding everything the integer kernels
need. Nothing here depends on tiling, so the untiled reference and the tiled executor share
one ``QuantizedGraph`` and therefore every constant and table.

Scheme
------
* Activations: per-tensor asymmetric int8, ``real = scale * (q - zero_point)``. Every tensor
  that carries :class:`~memplan.ir.graph.QuantParams` keeps them, not only the model inputs and
  outputs: in a QDQ model (onnxruntime ``quantize_static``, tf2onnx of a full-int8 TFLite
  model) every feature map between layers does, so nothing is calibrated and the int8 results
  are comparable with onnxruntime's (``tests/test_qdq_ort.py``). uint8 parameters become int8
  with ``q - 128`` and ``zero_point - 128``, the same reals, as TFLite Micro's hybrid uint8 ->
  int8 conversion; the caller's uint8 data must be shifted the same way. Others are
  calibrated: the float reference runs on seeded inputs (:func:`calibration_inputs`,
  recorded in :class:`Calibration`) and the range ``[min(lo, 0), max(hi, 0)]`` maps onto
  [-128, 127] with an integer zero point, so 0.0 is exactly representable.
* Ops that only move or average values (max/avg/global pools, resize, channel shuffle, zero
  pad: the padding is the zero point, slice, depth-to-space and space-to-depth) keep
  their input's parameters when calibrated; softmax outputs use scale 1/256, zero point -128
  (as TFLite). Concat requantises each input to the output parameters (identity fast path).
* Weights: the model's own symmetric int8 weights and (per-tensor or per-channel) scales where
  the import kept them (``Tensor.quant`` of the weight: ``round(w / scale)`` gives back the
  file's integers, -128 included; uint8 weights with zero point 128 become ``q - 128``).
  Asymmetric QDQ weights (a zero point other than 0, or 128 for uint8) keep only their real
  values at import and, like float weights, are quantised again here: per-output-channel
  symmetric int8 in [-127, 127], ``scale = max|w| / 127``.
  Biases: int32 with ``scale = input_scale * weight_scale``; a QDQ int32 bias whose own scale
  agrees with that product to float32 precision is divided by its own scale, which gives back
  the file's integers.
* Requantisation (:mod:`memplan.execute.fixedpoint`): ``input_scale * weight_scale /
  output_scale``, computed in float64 from the float32 scales as TFLite Micro's
  ``PopulateConvolutionQuantizationParams`` does, then as a Q31 multiplier and shift per output
  channel (``QuantizeMultiplier``), applied with TFLite's
  double-rounding ``MultiplyByQuantizedMultiplier``, plus the output zero point, saturated.
  Add follows TFLite: inputs minus zero points shifted left by 20, each scaled by
  ``scale_i / (2 * max scale)``, summed, scaled by ``2 * max scale / (2**20 * output_scale)``.
* Fused activations: ReLU and Clip clamp the quantised range (bounds ``zp + round(b / s)``,
  divided in float32 for a model's float32 scale, as TFLite). Sigmoid, tanh, hard-sigmoid,
  hard-swish, leaky ReLU and SiLU requantise to an intermediate ("stage") int8 scale
  calibrated on the pre-activation values, then look up a 256-entry table:
  ``lut[q + 128] = sat8(round_half_away(f(stage.scale * (q - stage.zp)) / out.scale) + out.zp)``
  (:func:`activation_lut`); PRelu (per-channel slopes) has one such table per channel.
* Identity layers (:func:`identity_role`: the TFLite import's depthwise 1x1 convolution of
  weight 1 carrying a standalone LOGISTIC / TANH / HARD_SWISH / LEAKY_RELU / PRELU, or an ADD
  of an int8 constant) have no stage scale: the table reads the input's own integers and holds
  TensorFlow Lite Micro's int8 result for each (:func:`tflm_logistic_lut`,
  :func:`tflm_tanh_lut`, :func:`tflm_hard_swish_lut`, :func:`tflm_leaky_relu_lut`,
  :func:`tflm_add_constant_lut`, per channel for the constant); PRELU and the activations TFLM
  has no int8 kernel for use the float function rounded once.
* Softmax over channels with TFLite's output parameters (1/256, -128): TensorFlow Lite
  Micro's fixed-point algorithm (:class:`SoftmaxParams`, :func:`tflm_softmax_exp_table`,
  :func:`memplan.execute.kernels`). With other output parameters: ``d = max_c q - q`` indexes
  ``E[d] = round(2**20 * exp(-s_in * d))``;
  ``q_out = zp + floor((2 * E * K + S * 2**16) / (S * 2**17))`` with ``S`` the channel sum of
  ``E`` and ``K = round(2**16 / s_out)``: round half up of ``E / S / s_out``.
* LRN: ``v = q - zp_in``, ``S`` the channel-window sum of ``v**2``; a table indexed by ``S``
  holds ``T[S] = round(2**24 * s_in / s_out * (bias + alpha / size * s_in**2 * S) ** -beta)``
  and ``q_out = zp + divide_round_half_away(v * T[S], 2**24)``.
* Average pools: integer sum of ``q`` (counted padding adds the zero point) divided by the
  cell count rounding half away from zero (TFLite); global average pools as TFLite Micro's
  MEAN: the sum of ``q - zp_in`` times one multiplier of ``s_in / (s_out * n)``
  (:func:`tflm_mean_requant`), one rounding; bilinear resize: exact rational source
  coordinates, 10-bit weights per axis, ``round_half_away(sum / 2**20)`` on ``q``.
* Host layers (:mod:`memplan.host`) dequantise their inputs, run in float and quantise the
  result with their output's parameters (calibrated, or the model's); an integer output
  (ArgMax indices) is stored exactly as int32 with scale 1, zero point 0.
* Ops whose output parameters differ from their input's (only possible with model-given
  parameters) requantise their int8 result with ``scale_in / scale_out`` (for a windowed
  average pool that is a second rounding; the global pool rounds once, see above).

Rounding of floats (weights, biases, tables) is always half away from zero
(:func:`~memplan.execute.fixedpoint.round_half_away`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from memplan.errors import ModelError
from memplan.execute.fixedpoint import (
    INT32_MAX,
    INT32_MIN,
    INT8_MAX,
    INT8_MIN,
    calculate_input_radius,
    fixed_point_logistic,
    fixed_point_tanh,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    round_half_away,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)
from memplan.execute.float_ref import activation_params, apply_activation, run_float_detailed
from memplan.execute.windows import conv_transpose_weight_taps, conv_weight_taps
from memplan.ir.graph import Graph, Layer, QuantParams
from memplan.ir.weights import layer_weight, quantized_weight, substitute_constant_weights
from memplan.ir.ops import (
    ActKind,
    Activation,
    ConvAttrs,
    ConvTransposeAttrs,
    HostAttrs,
    LRNAttrs,
    OpKind,
    ResizeAttrs,
    Shape,
    WEIGHTED,
)

I8 = npt.NDArray[np.int8]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

#: activations applied by clamping the quantised range; every other kind uses a lookup table
CLAMP_ACTIVATIONS = frozenset({ActKind.RELU, ActKind.CLIP})
#: ops whose result lives in their input's quantisation domain (they move or average values)
INPUT_DOMAIN_OPS = frozenset({OpKind.MAX_POOL, OpKind.AVG_POOL, OpKind.GLOBAL_AVG_POOL, OpKind.GLOBAL_MAX_POOL,
                              OpKind.RESIZE, OpKind.CHANNEL_SHUFFLE, OpKind.PAD, OpKind.SLICE,
                              OpKind.DEPTH_TO_SPACE, OpKind.SPACE_TO_DEPTH})
#: TFLite's add: inputs are shifted left by this many bits before scaling
ADD_LEFT_SHIFT = 20
#: fixed-point precision of the softmax exponential table and output multiplier
SOFTMAX_EXP_BITS = 20
SOFTMAX_MUL_BITS = 16
#: fixed-point precision of the LRN factor table
LRN_TABLE_BITS = 24
#: softmax output parameters when calibrated (TFLite's int8 softmax convention)
SOFTMAX_OUT_SCALE = 1.0 / 256.0
SOFTMAX_OUT_ZERO_POINT = -128
#: description of the calibration input distribution (recorded in :class:`Calibration`)
CALIBRATION_DISTRIBUTION = ("numpy default_rng(seed), inputs in graph.inputs order: standard normal, or uniform over "
                            "the representable range of an input with quantisation parameters")


# ---------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class QParams:
    """Per-tensor affine int8 parameters: ``real = scale * (q - zero_point)``."""

    scale: float
    zero_point: int

    def __post_init__(self) -> None:
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"quantisation scale must be positive and finite, got {self.scale}")
        if not INT8_MIN <= self.zero_point <= INT8_MAX:
            raise ValueError(f"int8 zero point {self.zero_point} out of range")

    @staticmethod
    def from_range(lo: float, hi: float) -> QParams:
        """Asymmetric parameters covering ``[min(lo, 0), max(hi, 0)]`` with 0.0 exact."""
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        if hi - lo <= 0.0:  # an all-zero tensor: any scale represents it
            hi = 1.0
        scale = (hi - lo) / 255.0
        zp = int(round_half_away(INT8_MIN - lo / scale))
        return QParams(scale, min(max(zp, INT8_MIN), INT8_MAX))

    def quantize(self, x: npt.ArrayLike) -> I8:
        """Float -> int8, rounding half away from zero, saturating."""
        q = round_half_away(np.asarray(x, dtype=np.float64) / self.scale) + self.zero_point
        return np.clip(q, INT8_MIN, INT8_MAX).astype(np.int8)

    def dequantize(self, q: npt.ArrayLike) -> F64:
        return self.scale * (np.asarray(q, dtype=np.float64) - self.zero_point)


@dataclass(frozen=True, eq=False)
class Requant:
    """Fixed-point multipliers (one, or one per channel): ``x -> x * real``."""

    real: F64
    multiplier: I64
    shift: I64

    @staticmethod
    def of(real: npt.ArrayLike) -> Requant:
        reals = np.atleast_1d(np.asarray(real, dtype=np.float64))
        pairs = [quantize_multiplier(float(r)) for r in reals]
        mult = np.array([m for m, _ in pairs], dtype=np.int64)
        shift = np.array([s for _, s in pairs], dtype=np.int64)
        for a in (reals, mult, shift):
            a.setflags(write=False)
        return Requant(reals, mult, shift)

    def apply(self, x: I64, channels: slice = slice(None), axis: int = 1) -> I64:
        """``MultiplyByQuantizedMultiplier`` of ``x`` (int32 values in int64), broadcasting the
        channels ``channels`` of a per-channel multiplier along ``axis`` of ``x``."""
        m, s = self.multiplier, self.shift
        if m.size > 1:
            shape = [1] * x.ndim
            m, s = m[channels], s[channels]
            shape[axis] = m.size
            m, s = m.reshape(shape), s.reshape(shape)
        else:
            m, s = m[0], s[0]
        return np.asarray(multiply_by_quantized_multiplier(x, m, s), dtype=np.int64)


def activation_lut(act: Activation, stage: QParams, out: QParams) -> I8:
    """The 256-entry int8 -> int8 table of a non-clamping activation (index ``q + 128``); a
    per-channel activation (PRelu) has one table per output channel, ``(C, 256)``."""
    q = np.arange(INT8_MIN, INT8_MAX + 1, dtype=np.float64)
    x = stage.scale * (q - stage.zero_point)
    if act.kind is ActKind.PRELU:
        x = np.broadcast_to(x, (len(act.params), x.size))
    y = apply_activation(x, act, channel_axis=0)
    lut = out.quantize(y)
    lut.setflags(write=False)
    return lut


def activation_range(act: Activation | None, out: QParams) -> tuple[int, int]:
    """Clamp bounds, in the output's quantised domain, of a ReLU/Clip activation: ``zp +
    round(bound / scale)``, the division in float32 when the scale is a float32 (a model's), as
    TFLite's ``CalculateActivationRangeQuantized``."""
    if act is None or act.kind not in CLAMP_ACTIVATIONS:
        return INT8_MIN, INT8_MAX
    lo, hi = (0.0, math.inf) if act.kind is ActKind.RELU else activation_params(act)

    def q(v: float) -> int:
        if math.isinf(v):
            return INT8_MIN if v < 0 else INT8_MAX
        if float(np.float32(out.scale)) == out.scale:  # a file's float32 scale: TFLite's float32 division
            ratio = float(np.float32(np.float32(v) / np.float32(out.scale)))
        else:
            ratio = v / out.scale
        return int(np.clip(round_half_away(ratio) + out.zero_point, INT8_MIN, INT8_MAX))

    return q(lo), q(hi)


# ---------------------------------------------------------------------------- TFLite Micro's int8 functions
# Each returns, for every int8 input q (index q + 128), the int8 TensorFlow Lite Micro computes
# (its Prepare's parameters from the float32 scales, its Eval's integer arithmetic). Every one
# is an elementwise function of one int8 value, so a 256-entry table reproduces it bit for bit.
_Q = np.arange(INT8_MIN, INT8_MAX + 1, dtype=np.int64)
#: TFLite's LOGISTIC / TANH / SOFTMAX fixed-point input formats (kInputIntegerBits, kScaledDiffIntegerBits)
TFLM_LOGISTIC_INPUT_BITS = 4
TFLM_SOFTMAX_DIFF_BITS = 5
TFLM_SOFTMAX_ACCUM_BITS = 12


def _f32(x: float) -> np.float32:
    return np.float32(x)


def _frexp_multiplier(real: float) -> tuple[int, int]:
    """``frexp`` and ``TfLiteRound(q * 2**31)`` without QuantizeMultiplier's carry (LOGISTIC /
    TANH Prepare)."""
    q, shift = math.frexp(real)
    return int(round_half_away(q * (1 << 31))), shift


def _saturate(x: npt.ArrayLike) -> I8:
    lut = np.clip(np.asarray(x, dtype=np.int64), INT8_MIN, INT8_MAX).astype(np.int8)
    lut.setflags(write=False)
    return lut


def _sigmoid_like_lut(in_q: QParams, tanh: bool) -> I8:
    """TFLM int8 LOGISTIC (``reference_integer_ops::Logistic``: output scale 1/256, zero point
    -128) or TANH (``reference_integer_ops::Tanh``: 1/128, 0): the input minus its zero point,
    clamped at ``input_range_radius``, scaled into Q4.27 by ``input_multiplier`` /
    ``input_left_shift`` (``s_in * 2**27``), gemmlowp ``logistic`` / ``tanh`` to Q0.31, then a
    rounding shift to 8 (7) fractional bits."""
    bits = TFLM_LOGISTIC_INPUT_BITS
    mult, left_shift = _frexp_multiplier(float(_f32(in_q.scale)) * float(1 << (31 - bits)))
    radius = calculate_input_radius(bits, left_shift, 31)
    x = _Q - in_q.zero_point
    inside = (x > -radius) & (x < radius)
    xs = np.where(inside, x, 0)
    if left_shift > 0:
        xs = xs << left_shift
        right = 0
    else:
        right = -left_shift
    x_q4 = np.asarray(rounding_divide_by_pot(saturating_rounding_doubling_high_mul(xs, mult), min(right, 31))
                      if right <= 31 else np.zeros_like(xs), dtype=np.int64)
    if tanh:
        y = np.asarray(rounding_divide_by_pot(fixed_point_tanh(x_q4, bits), 31 - 7), dtype=np.int64)
    else:
        y = np.asarray(rounding_divide_by_pot(fixed_point_logistic(x_q4, bits), 31 - 8), dtype=np.int64) - 128
    y = np.where(x <= -radius, INT8_MIN, np.where(x >= radius, INT8_MAX, y))
    return _saturate(y)


def tflm_logistic_lut(in_q: QParams) -> I8:
    """TensorFlow Lite Micro's int8 LOGISTIC of every int8 input (see :func:`_sigmoid_like_lut`)."""
    return _sigmoid_like_lut(in_q, tanh=False)


def tflm_tanh_lut(in_q: QParams) -> I8:
    """TensorFlow Lite Micro's int8 TANH of every int8 input (see :func:`_sigmoid_like_lut`)."""
    return _sigmoid_like_lut(in_q, tanh=True)


def _srdhm16(a: I64, b: int) -> I64:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int16."""
    ab = a * b
    num = ab + np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    out = np.sign(num) * (np.abs(num) // (1 << 15))
    return np.where((a == -32768) & (b == -32768), 32767, out)


def _wrap16(x: I64) -> I64:
    return ((x + 32768) & 0xFFFF) - 32768


def _rdbpot16(x: I64, exponent: int) -> I64:
    """gemmlowp ``RoundingDivideByPOT`` on int16 values, exactly as its int16 instantiation
    computes: the mask ``(1 << exponent) - 1`` is narrowed to int16, so an exponent of 16 or more
    gives 1 for ``x >= 0`` and -1 below (TFLM's HARD_SWISH reaches it with tiny input scales)."""
    mask = int(_wrap16(np.int64((1 << exponent) - 1)))
    remainder = _wrap16(x & mask)
    threshold = _wrap16((mask >> 1) + (x < 0).astype(np.int64))
    return _wrap16((x >> exponent) + (remainder > threshold).astype(np.int64))


def _downscale_to_int16(m: int) -> int:
    """TFLite ``DownScaleInt32ToInt16Multiplier``."""
    if m >= INT32_MAX - (1 << 15):
        return 32767
    return (m + (1 << 15)) >> 16


def tflm_hard_swish_lut(in_q: QParams, out_q: QParams) -> I8 | None:
    """TensorFlow Lite Micro's int8 HARD_SWISH (``reference_ops::HardSwish`` with
    ``HardSwishParams``): int16 arithmetic on the input at a 128x finer ("hires") scale, a
    "reluish" factor at scale 3/32768 and the output multiplier, both as int16 fixed point
    (float32 scale arithmetic, as Prepare). None where TFLM's Prepare refuses the parameters
    (an output multiplier of 1 or more)."""
    hires = _f32(1.0 / 128.0) * _f32(in_q.scale)
    reluish_scale = _f32(3.0) / _f32(32768.0)
    out_m32, out_exp = quantize_multiplier(float(np.float32(hires / _f32(out_q.scale))))
    if out_exp > 0:
        return None
    rel_m32, rel_exp = quantize_multiplier(float(np.float32(hires / reluish_scale)))
    out_m16, rel_m16 = _downscale_to_int16(out_m32), _downscale_to_int16(rel_m32)
    x = _wrap16(_Q - in_q.zero_point)
    hi = _wrap16(x * 128)
    preshift = _srdhm16(hi, out_m16)
    reluish = hi
    if rel_exp > 0:
        reluish = np.clip(reluish * (1 << (rel_exp - 1)), -32768, 32767)
    reluish = _srdhm16(reluish, rel_m16)
    if rel_exp > 0:
        reluish = np.clip(reluish * 2, -32768, 32767)
    if rel_exp < 0:
        reluish = _rdbpot16(reluish, -rel_exp)
    reluish = (reluish + (1 << 15)) >> 1
    prod = reluish * preshift  # SaturatingDoublingHighMul (int16, truncating)
    preshift_out = np.where((reluish == -32768) & (preshift == -32768), 32767, np.sign(prod) * (np.abs(prod) // (1 << 15)))
    y = _rdbpot16(_wrap16(preshift_out), -out_exp)
    return _saturate(_wrap16(y + out_q.zero_point))


def _signed_multiplier(real: float) -> tuple[int, int, bool]:
    m, s = quantize_multiplier(abs(real))
    return m, s, real < 0


def tflm_leaky_relu_lut(in_q: QParams, out_q: QParams, alpha: float) -> I8:
    """TensorFlow Lite Micro's int8 LEAKY_RELU (``reference_ops::QuantizeLeakyRelu``): ``x = q
    - zp_in``; ``x >= 0``: ``x * s_in / s_out``, else ``x * alpha * s_in / s_out`` (a negative
    alpha: its magnitude, negated after), each one fixed-point multiplier from float32
    products, plus the output zero point."""
    s_in, s_out = _f32(in_q.scale), _f32(out_q.scale)
    am, ash, neg = _signed_multiplier(float(np.float32(np.float32(s_in * _f32(alpha)) / s_out)))
    im, ish = quantize_multiplier(float(np.float32(s_in / s_out)))
    x = _Q - in_q.zero_point
    pos = np.asarray(multiply_by_quantized_multiplier(x, im, ish), dtype=np.int64)
    scaled = np.asarray(multiply_by_quantized_multiplier(x, am, ash), dtype=np.int64)
    y = np.where(x >= 0, pos, -scaled if neg else scaled) + out_q.zero_point
    return _saturate(y)


def tflm_add_constant_lut(in_q: QParams, const_q: QParams, const: npt.ArrayLike, out_q: QParams,
                          clamp: tuple[int, int] = (INT8_MIN, INT8_MAX)) -> I8:
    """TensorFlow Lite Micro's int8 ADD of a feature map and an int8 constant (one value per
    channel), per channel: ``(C, 256)``. The ADD arithmetic of :func:`_quantize_layer` (TFLite's
    ``left_shift = 20``, ``twice_max_input_scale``) with the constant as the second input, then
    the fused activation's clamp."""
    c = np.asarray(const, dtype=np.int64).reshape(-1, 1)
    twice_max = 2.0 * max(in_q.scale, const_q.scale)
    r1, r2 = Requant.of(in_q.scale / twice_max), Requant.of(const_q.scale / twice_max)
    rout = Requant.of(twice_max / ((1 << ADD_LEFT_SHIFT) * out_q.scale))
    a = r1.apply((_Q[None, :] - in_q.zero_point) << ADD_LEFT_SHIFT)
    b = r2.apply((c - const_q.zero_point) << ADD_LEFT_SHIFT)
    raw = np.clip(a + b, INT32_MIN, INT32_MAX)
    y = rout.apply(raw) + out_q.zero_point
    return _saturate(np.clip(y, *clamp))


def tflm_mean_requant(in_scale: float, out_scale: float, count: int) -> Requant:
    """TensorFlow Lite Micro's int8 MEAN multiplier (``reference_ops::QuantizedMeanOrSum``):
    ``QuantizeMultiplier(s_in / s_out)``, then ``1 / count`` folded in as
    ``(m << k) / count`` with shift ``shift - k``, ``k = floor(log2(count))`` clamped to 32 and
    to ``31 + shift``. Applied to the integer sum of ``q - zp_in``: one rounding."""
    m, shift = quantize_multiplier(in_scale / out_scale)
    k = min(count.bit_length() - 1, 32, 31 + shift)
    k = max(k, 0)
    mult = (m << k) // count
    arr = (np.array([in_scale / out_scale / count]), np.array([mult], dtype=np.int64),
           np.array([shift - k], dtype=np.int64))
    for a in arr:
        a.setflags(write=False)
    return Requant(*arr)


@dataclass(frozen=True)
class SoftmaxParams:
    """TensorFlow Lite Micro's int8 SOFTMAX parameters (``CalculateSoftmaxParams``):
    ``PreprocessSoftmaxScaling(beta, s_in, 5)`` and ``diff_min``. TFLM requires ``beta * s_in *
    2**26 > 1`` (it aborts otherwise): memplan then uses the same multiplier with a right shift
    (``left_shift < 0``)."""

    multiplier: int
    left_shift: int
    diff_min: int


def tflm_softmax_params(in_scale: float, beta: float = 1.0) -> SoftmaxParams:
    real = min(beta * in_scale * float(1 << (31 - TFLM_SOFTMAX_DIFF_BITS)), float((1 << 31) - 1))
    m, shift = quantize_multiplier(real)
    radius = calculate_input_radius(TFLM_SOFTMAX_DIFF_BITS, shift, 31)
    return SoftmaxParams(m, shift, -radius)


def tflm_softmax_exp_table(params: SoftmaxParams) -> I64:
    """``exp_on_negative_values`` (Q0.31) of every input difference ``-d``, ``d = 0..255``, scaled
    into Q5.26 as TFLM's softmax does; 0 where ``-d < diff_min`` (TFLM skips those: they add
    nothing to the sum and give -128)."""
    from memplan.execute.fixedpoint import exp_on_negative_values

    diff = -np.arange(256, dtype=np.int64)
    d = np.where(diff >= params.diff_min, diff, 0)  # skipped differences would overflow the scaling
    if params.left_shift >= 0:
        scaled = np.asarray(saturating_rounding_doubling_high_mul(d << params.left_shift, params.multiplier),
                            dtype=np.int64)
    else:
        scaled = np.asarray(multiply_by_quantized_multiplier(d, params.multiplier, params.left_shift), dtype=np.int64)
    table = np.where(diff >= params.diff_min, exp_on_negative_values(scaled, TFLM_SOFTMAX_DIFF_BITS), 0).astype(np.int64)
    table.setflags(write=False)
    return table


# ---------------------------------------------------------------------------- layers
@dataclass(frozen=True, eq=False)
class QLayer:
    """Everything the integer kernel of one layer needs.

    The kernel first produces a value in the *stage* domain ``stage_q`` (the output's
    parameters, or for a table activation the intermediate pre-activation parameters),
    clamps it to ``act_range`` and, if ``lut`` is set, maps it through the table into
    ``out_q``.

    ``requant`` takes the op's raw result to the stage domain: the int32 accumulator of
    conv / conv-transpose / fully connected (per output channel), the shifted sum of add, or
    ``q - zero_point`` of input-domain ops (None when input and stage parameters are equal).
    ``input_requants`` are add's per-input multipliers or concat's per-input rescales (None:
    identity). ``table`` / ``table_mul`` are softmax's exponential table and output multiplier
    or LRN's factor table; ``softmax`` is set when the softmax runs TensorFlow Lite Micro's
    algorithm (``table`` then holds its Q0.31 exponentials)."""

    layer: Layer
    in_shapes: tuple[Shape, ...]
    out_shape: Shape
    in_q: tuple[QParams, ...]
    out_q: QParams
    stage_q: QParams
    act_range: tuple[int, int] = (INT8_MIN, INT8_MAX)
    lut: I8 | None = None
    weight: I8 | None = None
    weight_scale: F64 | None = None
    bias: npt.NDArray[np.int32] | None = None
    requant: Requant | None = None
    input_requants: tuple[Requant | None, ...] = ()
    table: I64 | None = None
    table_mul: int = 0
    softmax: SoftmaxParams | None = None

    @property
    def op(self) -> OpKind:
        return self.layer.op

    @cached_property
    def weight_taps(self) -> F64:
        """Conv / ConvTranspose weights as float64 ``(kh, kw, g, C_out/g, C_in/g)``."""
        assert self.weight is not None
        attrs = self.layer.attrs
        if isinstance(attrs, ConvAttrs):
            return conv_weight_taps(self.weight, attrs.groups)
        assert isinstance(attrs, ConvTransposeAttrs)
        return conv_transpose_weight_taps(self.weight, attrs.groups)

    @cached_property
    def weight_f64(self) -> F64:
        assert self.weight is not None
        return self.weight.astype(np.float64)


@dataclass(frozen=True)
class Calibration:
    """How the activation parameters were obtained (enough to reproduce them)."""

    source: str  # "qdq" (all from the model), "calibrated", or "mixed"
    seed: int
    num_samples: int
    distribution: str
    substituted_weights: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class QuantizedGraph:
    """A graph with int8 parameters for every feature map and a :class:`QLayer` per layer.

    ``graph`` is the graph that was quantised: the input graph, or a copy with seeded random
    weights if its weights were constant fills (see :func:`substitute_constant_weights`)."""

    graph: Graph
    params: Mapping[str, QParams]
    layers: tuple[QLayer, ...]
    calibration: Calibration

    def qlayer(self, layer_id: str) -> QLayer:
        return self.layers[self.graph.layer_index[layer_id]]

    def quantize_inputs(self, inputs: Mapping[str, npt.ArrayLike]) -> dict[str, I8]:
        """Float model inputs -> int8 with each input's parameters."""
        return {name: self.params[name].quantize(inputs[name]) for name in self.graph.inputs}

    def dequantize(self, tensor: str, q: npt.ArrayLike) -> F64:
        return self.params[tensor].dequantize(q)


# ---------------------------------------------------------------------------- weights
def _bias_scales(graph: Graph, layer: Layer, acc_scale: F64) -> F64:
    """The scales that turn a layer's real bias back into int32: the model's own (a QDQ int32
    bias, whose scale the converter computed as ``float32(input_scale * weight_scale)``) when
    they agree with ``input_scale * weight_scale`` to float32 precision, so the file's integers
    come back exactly; otherwise ``acc_scale`` (the bias is quantised in the accumulator's
    domain, as TFLite)."""
    assert layer.bias is not None
    qp = graph.tensors[layer.bias].quant
    if qp is None or qp.dtype != "int32" or any(z != 0 for z in qp.zero_point):
        return acc_scale
    if len(qp.scale) not in (1, acc_scale.size):
        return acc_scale
    scales = np.broadcast_to(np.asarray(qp.scale, dtype=np.float64), acc_scale.shape)
    if not np.allclose(scales, acc_scale, rtol=2.0**-20, atol=0.0):
        return acc_scale
    return scales


# ---------------------------------------------------------------------------- calibration
def calibration_inputs(graph: Graph, seed: int = 0, num_samples: int = 2) -> dict[str, F64]:
    """Seeded calibration inputs, ``num_samples`` per model input, drawn in ``graph.inputs``
    order from ``default_rng(seed)``: uniform over the representable reals of an input that
    carries quantisation parameters, standard normal otherwise."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in graph.inputs:
        _, c, h, w = graph.shape(name)
        qp = graph.tensors[name].quant
        if qp is not None:
            p = _ir_params(qp, name)
            out[name] = rng.uniform(p.dequantize(INT8_MIN), p.dequantize(INT8_MAX), size=(num_samples, c, h, w))
        else:
            out[name] = rng.standard_normal((num_samples, c, h, w))
    return out


def _ir_params(qp: QuantParams, tensor: str) -> QParams:
    if len(qp.scale) != 1 or len(qp.zero_point) != 1:
        raise ModelError(f"tensor {tensor!r} has per-channel parameters: feature maps must be per-tensor")
    if qp.dtype == "uint8":
        return QParams(float(qp.scale[0]), int(qp.zero_point[0]) - 128)
    if qp.dtype == "int8":
        return QParams(float(qp.scale[0]), int(qp.zero_point[0]))
    raise ModelError(f"tensor {tensor!r} is quantised to {qp.dtype}: only int8/uint8 are supported")


def _uses_lut(layer: Layer) -> bool:
    return layer.activation is not None and layer.activation.kind not in CLAMP_ACTIVATIONS


#: table activations TensorFlow Lite Micro computes with an integer algorithm memplan reproduces
TFLM_TABLE_ACTIVATIONS = frozenset({ActKind.SIGMOID, ActKind.TANH, ActKind.HARD_SWISH, ActKind.LEAKY_RELU})


def identity_role(graph: Graph, layer: Layer) -> str | None:
    """What an *identity layer* carries, or None if ``layer`` is not one.

    An identity layer is how the TFLite import writes an int8 operator that maps each input
    integer to one output integer: a depthwise 1x1 convolution of weight 1 at weight scale 1
    (model-given), stride 1, no padding, between two tensors with model-given parameters.
    ``"act"``: it carries a table activation (LOGISTIC, TANH, HARD_SWISH, LEAKY_RELU, PRELU),
    computed on the input's integers; ``"add"``: it adds an int8 constant, its bias (one value
    per channel, with the constant's own int8 parameters on the bias tensor), as TFLite's ADD
    with a constant operand (a fused ReLU/Clip allowed). Plain requantisations (QUANTIZE,
    RELU, RELU6) are not identity layers in this sense: the convolution's requantisation is
    already TFLite's."""
    attrs = layer.attrs
    if layer.op is not OpKind.CONV or not isinstance(attrs, ConvAttrs) or layer.weight is None:
        return None
    if (attrs.kernel != (1, 1) or attrs.stride != (1, 1) or any(attrs.pads) or attrs.dilation != (1, 1)):
        return None
    c_in, c_out = graph.shape(layer.inputs[0])[1], graph.out_channels(layer)
    if attrs.groups != c_in or c_in != c_out:
        return None
    wq = graph.tensors[layer.weight].quant
    if wq is None or any(v != 1.0 for v in wq.scale) or any(z != 0 for z in wq.zero_point):
        return None
    if not np.all(np.asarray(graph.weights[layer.weight]) == 1.0):
        return None
    if graph.tensors[layer.inputs[0]].quant is None or graph.tensors[layer.output].quant is None:
        return None
    if layer.bias is None:
        return "act" if _uses_lut(layer) else None
    bq = graph.tensors[layer.bias].quant
    if bq is None or bq.dtype != "int8" or len(bq.scale) != 1 or len(bq.zero_point) != 1:
        return None
    if layer.activation is not None and layer.activation.kind not in CLAMP_ACTIVATIONS:
        return None
    return "add"


def quantize_graph(graph: Graph, *, seed: int = 0, num_samples: int = 2,
                   inputs: Mapping[str, npt.ArrayLike] | None = None,
                   substitute_weights: bool = True) -> QuantizedGraph:
    """Quantise a graph to int8 (see the module documentation for the scheme).

    Constant-fill weights are first replaced by seeded random ones (unless
    ``substitute_weights`` is False; see :func:`substitute_constant_weights`). Calibration
    runs only when some feature map has no model-given parameters or a table activation needs
    its pre-activation range; it uses ``inputs`` if given, else :func:`calibration_inputs`
    with ``seed`` and ``num_samples``."""
    substituted: tuple[str, ...] = ()
    if substitute_weights:
        graph, substituted = substitute_constant_weights(graph, seed)
    fmaps = [*graph.inputs, *(layer.output for layer in graph.layers)]
    explicit = {t for t in fmaps if graph.tensors[t].quant is not None}
    roles = {layer.id: identity_role(graph, layer) for layer in graph.layers}
    need_calibration = len(explicit) < len(fmaps) or any(_uses_lut(layer) and roles[layer.id] is None
                                                         for layer in graph.layers)
    need_calibration = need_calibration or any(graph.layers[i].output not in explicit for i in graph.host_layers)
    values: Mapping[str, F64] = {}
    pre: Mapping[str, F64] = {}
    if need_calibration:
        feed = inputs if inputs is not None else calibration_inputs(graph, seed, num_samples)
        values, pre = run_float_detailed(graph, feed)
    source = "qdq" if len(explicit) == len(fmaps) else ("calibrated" if not explicit else "mixed")

    def calibrated(arr: F64) -> QParams:
        return QParams.from_range(float(arr.min()), float(arr.max()))

    params: dict[str, QParams] = {}
    for name in graph.inputs:
        q = graph.tensors[name].quant
        params[name] = _ir_params(q, name) if q is not None else calibrated(values[name])
    qlayers = []
    for layer in graph.layers:
        in_q = tuple(params[t] for t in layer.inputs)
        q = graph.tensors[layer.output].quant
        if layer.op is OpKind.HOST:  # runs in float on the host (memplan.host): only its output parameters
            params[layer.output] = out_q = _host_params(layer, q, values)
            qlayers.append(QLayer(layer, tuple(graph.tensors[t].shape for t in layer.inputs),  # type: ignore[misc]
                                  graph.tensors[layer.output].shape, in_q, out_q, out_q))  # type: ignore[arg-type]
            continue
        role = roles[layer.id]
        lut = _uses_lut(layer) or role is not None
        # the stage domain: where the op's result lives before a table activation
        if role is not None:  # an identity layer's table reads the input's own integers
            natural = in_q[0]
        elif layer.op in INPUT_DOMAIN_OPS:
            natural = in_q[0]
        elif layer.op is OpKind.SOFTMAX:
            natural = QParams(SOFTMAX_OUT_SCALE, SOFTMAX_OUT_ZERO_POINT)
        else:
            natural = calibrated(pre[layer.output]) if lut else None
        if q is not None:
            out_q = _ir_params(q, layer.output)
        elif natural is not None and not lut:
            out_q = natural
        else:
            out_q = calibrated(values[layer.output])
        stage_q = natural if lut and natural is not None else out_q
        params[layer.output] = out_q
        qlayers.append(_quantize_layer(graph, layer, in_q, out_q, stage_q, role))
    if not need_calibration:
        calib = Calibration(source, seed, 0, "none: every parameter comes from the model", substituted)
    elif inputs is None:
        calib = Calibration(source, seed, num_samples, CALIBRATION_DISTRIBUTION, substituted)
    else:
        calib = Calibration(source, seed, 0, "caller-supplied inputs", substituted)
    return QuantizedGraph(graph, MappingProxyType(params), tuple(qlayers), calib)


def _host_params(layer: Layer, q: QuantParams | None, values: Mapping[str, F64]) -> QParams:
    """A host layer's output parameters: scale 1, zero point 0 for an int32 output (its values
    are stored exactly), the model's own, or calibrated like any other tensor."""
    assert isinstance(layer.attrs, HostAttrs)
    if layer.attrs.out_dtype == "int32":
        return QParams(1.0, 0)
    if q is not None:
        return _ir_params(q, layer.output)
    arr = values[layer.output]
    return QParams.from_range(float(arr.min()), float(arr.max()))


def _identity_lut(graph: Graph, layer: Layer, role: str, in_q: QParams, out_q: QParams) -> I8:
    """The table of an identity layer (:func:`identity_role`): TensorFlow Lite Micro's int8
    function of the input's integers, or (PRELU, SILU, HARD_SIGMOID, or parameters TFLM refuses)
    the float function rounded once from the input's own parameters."""
    if role == "add":
        assert layer.bias is not None
        bq = graph.tensors[layer.bias].quant
        assert bq is not None
        const_q = _ir_params(QuantParams(bq.scale, bq.zero_point, bq.dtype, None), layer.bias)
        real = np.asarray(graph.weights[layer.bias], dtype=np.float64).reshape(-1)
        ints = round_half_away(real / const_q.scale) + const_q.zero_point
        return tflm_add_constant_lut(in_q, const_q, ints, out_q, activation_range(layer.activation, out_q))
    act = layer.activation
    assert act is not None
    table: I8 | None = None
    if act.kind is ActKind.SIGMOID:
        table = tflm_logistic_lut(in_q)
    elif act.kind is ActKind.TANH:
        table = tflm_tanh_lut(in_q)
    elif act.kind is ActKind.HARD_SWISH:
        table = tflm_hard_swish_lut(in_q, out_q)
    elif act.kind is ActKind.LEAKY_RELU:
        table = tflm_leaky_relu_lut(in_q, out_q, activation_params(act)[0])
    return activation_lut(act, in_q, out_q) if table is None else table


def _quantize_layer(graph: Graph, layer: Layer, in_q: tuple[QParams, ...], out_q: QParams,
                    stage_q: QParams, role: str | None = None) -> QLayer:
    op = layer.op
    if role is not None:
        lut = _identity_lut(graph, layer, role, in_q[0], out_q)
    else:
        lut = activation_lut(layer.activation, stage_q, out_q) if _uses_lut(layer) else None
    assert layer.activation is None or lut is not None or stage_q == out_q
    make = functools.partial(
        QLayer,
        layer=layer,
        in_shapes=tuple(graph.shape(t) for t in layer.inputs),
        out_shape=graph.shape(layer.output),
        in_q=in_q,
        out_q=out_q,
        stage_q=stage_q,
        act_range=activation_range(layer.activation, out_q) if lut is None else (INT8_MIN, INT8_MAX),
        lut=lut,
    )
    if op in WEIGHTED:
        assert layer.weight is not None
        w_scale, wq = layer_weight(graph, layer)
        acc_scale = in_q[0].scale * w_scale
        bias = None
        if role == "add":  # the constant is in the table; the convolution passes the input through
            bias = np.zeros(graph.out_channels(layer), dtype=np.int32)
            bias.setflags(write=False)
        elif layer.bias is not None:
            b = round_half_away(graph.weights[layer.bias].astype(np.float64) / _bias_scales(graph, layer, acc_scale))
            bias = np.clip(b, INT32_MIN, INT32_MAX).astype(np.int32)
            bias.setflags(write=False)
        for a in (wq, w_scale):
            a.setflags(write=False)
        return make(weight=wq, weight_scale=w_scale, bias=bias,
                    requant=Requant.of(acc_scale / stage_q.scale))
    if op in (OpKind.ADD, OpKind.SUB):
        twice_max = 2.0 * max(q.scale for q in in_q)
        return make(input_requants=tuple(Requant.of(q.scale / twice_max) for q in in_q),
                    requant=Requant.of(twice_max / ((1 << ADD_LEFT_SHIFT) * stage_q.scale)))
    if op is OpKind.MUL:
        return make(requant=Requant.of(in_q[0].scale * in_q[1].scale / stage_q.scale))
    if op in (OpKind.CONCAT, OpKind.MAX, OpKind.MIN):
        rescales = tuple(None if q == stage_q else Requant.of(q.scale / stage_q.scale) for q in in_q)
        return make(input_requants=rescales)
    if op in INPUT_DOMAIN_OPS:
        if op is OpKind.RESIZE:
            assert isinstance(layer.attrs, ResizeAttrs)
            if layer.attrs.mode not in ("nearest", "linear"):
                raise ModelError(f"layer {layer.id!r}: resize mode {layer.attrs.mode!r} is not supported")
        if op is OpKind.GLOBAL_AVG_POOL:  # TFLite Micro's MEAN: the sum requantised once
            _, _, h, w = graph.shape(layer.inputs[0])
            return make(requant=tflm_mean_requant(in_q[0].scale, stage_q.scale, h * w))
        rescale = None if in_q[0] == stage_q else Requant.of(in_q[0].scale / stage_q.scale)
        return make(requant=rescale)
    if op is OpKind.SOFTMAX:
        if stage_q == QParams(SOFTMAX_OUT_SCALE, SOFTMAX_OUT_ZERO_POINT):  # TFLite's int8 softmax
            params = tflm_softmax_params(in_q[0].scale)
            return make(table=tflm_softmax_exp_table(params), softmax=params)
        d = np.arange(256, dtype=np.float64)
        table = round_half_away((1 << SOFTMAX_EXP_BITS) * np.exp(-in_q[0].scale * d)).astype(np.int64)
        mul = int(round_half_away((1 << SOFTMAX_MUL_BITS) / stage_q.scale))
        if not 0 < mul < 2**40:
            raise ModelError(f"layer {layer.id!r}: softmax output scale {stage_q.scale} is out of range")
        table.setflags(write=False)
        return make(table=table, table_mul=mul)
    if op is OpKind.LRN:
        attrs = layer.attrs
        assert isinstance(attrs, LRNAttrs)
        s_in = in_q[0].scale
        sums = np.arange(attrs.size * 255 * 255 + 1, dtype=np.float64)
        factor = (attrs.bias + attrs.alpha / attrs.size * s_in * s_in * sums) ** (-attrs.beta)
        table = round_half_away((1 << LRN_TABLE_BITS) * (s_in / stage_q.scale) * factor)
        if not np.all(np.isfinite(table)) or table.max() * 255 >= 2**62:
            raise ModelError(f"layer {layer.id!r}: LRN factor out of the fixed-point range")
        table_i = table.astype(np.int64)
        table_i.setflags(write=False)
        return make(table=table_i)
    raise ModelError(f"layer {layer.id!r}: op {op.value} cannot be quantised")


__all__ = [
    "Calibration", "QLayer", "QParams", "QuantizedGraph", "Requant", "activation_lut", "activation_range",
    "calibration_inputs", "quantize_graph", "quantized_weight", "substitute_constant_weights",
]
