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
* Fused activations: ReLU and Clip clamp the quantised range. Sigmoid, tanh, hard-sigmoid,
  hard-swish, leaky ReLU and SiLU requantise to an intermediate ("stage") int8 scale
  calibrated on the pre-activation values, then look up a 256-entry table:
  ``lut[q + 128] = sat8(round_half_away(f(stage.scale * (q - stage.zp)) / out.scale) + out.zp)``
  (:func:`activation_lut`); PRelu (per-channel slopes) has one such table per channel.
* Softmax over channels: ``d = max_c q - q`` indexes ``E[d] = round(2**20 * exp(-s_in * d))``;
  ``q_out = zp + floor((2 * E * K + S * 2**16) / (S * 2**17))`` with ``S`` the channel sum of
  ``E`` and ``K = round(2**16 / s_out)``: round half up of ``E / S / s_out``.
* LRN: ``v = q - zp_in``, ``S`` the channel-window sum of ``v**2``; a table indexed by ``S``
  holds ``T[S] = round(2**24 * s_in / s_out * (bias + alpha / size * s_in**2 * S) ** -beta)``
  and ``q_out = zp + divide_round_half_away(v * T[S], 2**24)``.
* Average pools: integer sum of ``q`` (counted padding adds the zero point) divided by the
  cell count rounding half away from zero (TFLite); bilinear resize: exact rational source
  coordinates, 10-bit weights per axis, ``round_half_away(sum / 2**20)`` on ``q``.
* Host layers (:mod:`memplan.host`) dequantise their inputs, run in float and quantise the
  result with their output's parameters (calibrated, or the model's); an integer output
  (ArgMax indices) is stored exactly as int32 with scale 1, zero point 0.
* Ops whose output parameters differ from their input's (only possible with model-given
  parameters) requantise their int8 result with ``scale_in / scale_out``. For average pools
  that is a second rounding after the average's (TFLite Micro's int8 Mean and onnxruntime's
  QLinearGlobalAveragePool round once), so a global average pool whose output scale is finer
  than its input's can differ from them by up to ``floor(scale_in / scale_out / 2 + 1)`` LSB.

Rounding of floats (weights, biases, tables) is always half away from zero
(:func:`~memplan.execute.fixedpoint.round_half_away`).
"""

from __future__ import annotations

import dataclasses
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
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    round_half_away,
)
from memplan.execute.float_ref import activation_params, apply_activation, run_float_detailed
from memplan.execute.windows import conv_transpose_weight_taps, conv_weight_taps
from memplan.ir.graph import Graph, Layer, QuantParams
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
    """Clamp bounds, in the output's quantised domain, of a ReLU/Clip activation."""
    if act is None or act.kind not in CLAMP_ACTIVATIONS:
        return INT8_MIN, INT8_MAX
    lo, hi = (0.0, math.inf) if act.kind is ActKind.RELU else activation_params(act)

    def q(v: float) -> int:
        if math.isinf(v):
            return INT8_MIN if v < 0 else INT8_MAX
        return int(np.clip(round_half_away(v / out.scale) + out.zero_point, INT8_MIN, INT8_MAX))

    return q(lo), q(hi)


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
    or LRN's factor table."""

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
def substitute_constant_weights(graph: Graph, seed: int = 0) -> tuple[Graph, tuple[str, ...]]:
    """If every weight tensor of the graph is a constant fill (all elements equal, as the
    ``ConstantOfShape`` weights of the onnx package's light models), return a copy whose
    weights and biases are seeded random draws (He-normal weights with fan-in = elements per
    output channel, normal(0, 0.05) biases, drawn in layer order from ``default_rng(seed)``)
    and the names replaced. Otherwise (or if the weights carry quantisation parameters, i.e.
    are real QDQ data) return the graph unchanged and ``()``."""
    weighted = [layer for layer in graph.layers if layer.weight is not None]
    names = [layer.weight for layer in weighted if layer.weight is not None]
    if (not names or not all(_constant(graph.weights[n]) for n in names)
            or any(graph.tensors[n].quant is not None for n in names)):
        return graph, ()
    rng = np.random.default_rng(seed)
    new = dict(graph.weights)
    replaced: list[str] = []
    for layer in weighted:
        assert layer.weight is not None
        w = graph.weights[layer.weight]
        c_out = graph.out_channels(layer)
        fan_in = max(w.size // c_out, 1)
        new[layer.weight] = rng.normal(0.0, math.sqrt(2.0 / fan_in), size=w.shape).astype(w.dtype)
        replaced.append(layer.weight)
        if layer.bias is not None:
            b = graph.weights[layer.bias]
            new[layer.bias] = rng.normal(0.0, 0.05, size=b.shape).astype(b.dtype)
            replaced.append(layer.bias)
    return dataclasses.replace(graph, weights=MappingProxyType(new)), tuple(replaced)


def _constant(a: np.ndarray) -> bool:
    return a.size > 1 and bool(np.all(a == a.flat[0]))


def _weight_scales(graph: Graph, layer: Layer, w: F64) -> F64:
    """Per-output-channel weight scales (from the model's parameters if it has them)."""
    c_out = graph.out_channels(layer)
    attrs = layer.attrs
    groups = attrs.groups if isinstance(attrs, ConvTransposeAttrs) else 1
    assert layer.weight is not None
    explicit = graph.tensors[layer.weight].quant
    if explicit is not None:
        _check_symmetric(explicit, layer.weight)
        scales = np.asarray(explicit.scale, dtype=np.float64)
        if scales.size == 1:
            return np.full(c_out, scales[0])
        if scales.size == c_out:
            return scales
        if layer.op is OpKind.CONV_TRANSPOSE and scales.size * groups == c_out:
            return np.tile(scales, groups)
        raise ModelError(f"layer {layer.id!r}: {scales.size} weight scales for {c_out} output channels")
    if layer.op is OpKind.CONV_TRANSPOSE:
        c_in, c_out_g, kh, kw = w.shape
        peak = np.abs(w.reshape(groups, c_in // groups, c_out_g, kh * kw)).max(axis=(1, 3)).reshape(-1)
    else:
        peak = np.abs(w.reshape(c_out, -1)).max(axis=1)
    return np.where(peak > 0, peak / 127.0, 1.0)


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


def _check_symmetric(qp: QuantParams, name: str) -> None:
    neutral = 128 if qp.dtype == "uint8" else 0
    if any(z != neutral for z in qp.zero_point):
        raise ModelError(f"weight {name!r} has a non-zero zero point: only symmetric weights are supported")


def _quantize_weight(layer: Layer, w: F64, scales: F64, explicit: bool) -> I8:
    """Round ``w / scale`` per output channel; model-given weights may use -128."""
    if layer.op is OpKind.CONV_TRANSPOSE:
        assert isinstance(layer.attrs, ConvTransposeAttrs)
        g = layer.attrs.groups
        c_in, c_out_g = w.shape[:2]
        s = scales.reshape(g, 1, c_out_g, 1, 1)
        q = round_half_away(w.reshape(g, c_in // g, c_out_g, *w.shape[2:]) / s).reshape(w.shape)
    else:
        q = round_half_away(w / scales.reshape((-1,) + (1,) * (w.ndim - 1)))
    return np.clip(q, INT8_MIN if explicit else -INT8_MAX, INT8_MAX).astype(np.int8)


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
    need_calibration = len(explicit) < len(fmaps) or any(_uses_lut(layer) for layer in graph.layers)
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
        lut = _uses_lut(layer)
        # the stage domain: where the op's result lives before a table activation
        if layer.op in INPUT_DOMAIN_OPS:
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
        qlayers.append(_quantize_layer(graph, layer, in_q, out_q, stage_q))
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


def _quantize_layer(graph: Graph, layer: Layer, in_q: tuple[QParams, ...], out_q: QParams,
                    stage_q: QParams) -> QLayer:
    op = layer.op
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
        w = graph.weights[layer.weight].astype(np.float64)
        w_scale = _weight_scales(graph, layer, w)
        wq = _quantize_weight(layer, w, w_scale, graph.tensors[layer.weight].quant is not None)
        acc_scale = in_q[0].scale * w_scale
        bias = None
        if layer.bias is not None:
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
        rescale = None if in_q[0] == stage_q else Requant.of(in_q[0].scale / stage_q.scale)
        return make(requant=rescale)
    if op is OpKind.SOFTMAX:
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
    "calibration_inputs", "quantize_graph", "substitute_constant_weights",
]
