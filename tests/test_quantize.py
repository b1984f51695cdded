"""Requantisation arithmetic (hand-computed values) and graph quantisation."""

from __future__ import annotations

import math
from types import MappingProxyType

import numpy as np
import pytest

from memplan.execute.fixedpoint import (
    INT32_MAX,
    INT32_MIN,
    divide_round_half_away,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    rounding_divide_by_pot,
    saturate_int8,
    saturating_rounding_doubling_high_mul,
)
from memplan.execute.float_ref import apply_activation
from memplan.execute.quantize import (
    QParams,
    activation_lut,
    activation_range,
    calibration_inputs,
    quantize_graph,
    substitute_constant_weights,
)
from memplan.ir.builder import RELU, GraphBuilder
from memplan.ir.graph import Graph, QuantParams, Tensor
from memplan.ir.ops import Activation, ActKind


# ---------------------------------------------------------------------------- fixed point
@pytest.mark.parametrize(
    ("real", "expected"),
    [
        (0.5, (1 << 30, 0)),  # frexp(0.5) = (0.5, 0)
        (1.0, (1 << 30, 1)),  # frexp(1.0) = (0.5, 1)
        (0.75, (1610612736, 0)),  # 0.75 * 2**31
        (1.0 / 3.0, (1431655765, -1)),  # 2/3 * 2**31 = 1431655765.33
        (0.0, (0, 0)),
        (2.0**-40, (0, 0)),  # shift -39 < -31: all bits shifted out
        (1.0 - 2.0**-40, (1 << 30, 1)),  # q * 2**31 rounds to 2**31: halved, shift + 1
    ],
)
def test_quantize_multiplier(real: float, expected: tuple[int, int]) -> None:
    assert quantize_multiplier(real) == expected


def test_quantize_multiplier_rejects_negative() -> None:
    with pytest.raises(ValueError):
        quantize_multiplier(-0.5)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (3, 1 << 30, 2),  # 1.5 -> 2 (positive tie rounds up)
        (-3, 1 << 30, -1),  # -1.5 -> -1 (negative tie rounds towards zero: nudge 1 - 2**30)
        (-5, 1 << 30, -2),  # -2.5 -> -2
        (5, 1 << 30, 3),  # 2.5 -> 3
        (-7, 1 << 29, -2),  # -1.75 -> -2 (not a tie)
        (100, 1610612736, 75),  # 100 * 0.75
        (INT32_MIN, INT32_MIN, INT32_MAX),  # the only overflow saturates
        (INT32_MAX, INT32_MAX, INT32_MAX - 1),  # (2**31-1)**2 / 2**31 = 2**31 - 2 + 2**-31
    ],
)
def test_srdhm(a: int, b: int, expected: int) -> None:
    assert saturating_rounding_doubling_high_mul(a, b) == expected


@pytest.mark.parametrize(
    ("x", "exponent", "expected"),
    [
        (3, 1, 2),  # 1.5 -> 2
        (-3, 1, -2),  # -1.5 -> -2 (ties away from zero)
        (-5, 2, -1),  # -1.25 -> -1
        (-6, 2, -2),  # -1.5 -> -2
        (5, 2, 1),  # 1.25 -> 1
        (6, 2, 2),  # 1.5 -> 2
        (-1, 1, -1),  # -0.5 -> -1
        (1, 1, 1),  # 0.5 -> 1
        (7, 0, 7),
        (-(2**31), 31, -1),
    ],
)
def test_rounding_divide_by_pot(x: int, exponent: int, expected: int) -> None:
    assert rounding_divide_by_pot(x, exponent) == expected


def test_multiply_by_quantized_multiplier_double_rounding() -> None:
    # M = 1/3 = 1431655765 * 2**(-1-31): SRDHM gives round(2x/3), then a rounding halving.
    m, s = quantize_multiplier(1.0 / 3.0)
    # 16/3 = 5.33 but SRDHM(16) = round(10.67) = 11 and 11/2 = 5.5 -> 6: TFLite's double rounding
    assert [multiply_by_quantized_multiplier(x, m, s) for x in (6, 8, 10, 12, 14, 16, -16)] == [2, 3, 4, 4, 5, 6, -6]
    # a left shift for multipliers >= 1: 3 * 2.0
    assert multiply_by_quantized_multiplier(3, *quantize_multiplier(2.0)) == 6
    # vectorised per channel
    xs = np.array([[10, 10], [-10, -10]], dtype=np.int64)
    got = multiply_by_quantized_multiplier(xs, np.array([1 << 30, 1 << 30]), np.array([0, -1]))
    assert got.tolist() == [[5, 3], [-5, -3]]  # 10*0.5, 10*0.25 = 2.5 -> 3; negatives mirror


def test_multiply_by_quantized_multiplier_overflow_raises() -> None:
    with pytest.raises(OverflowError):
        multiply_by_quantized_multiplier(1 << 30, *quantize_multiplier(4.0))


def test_saturate_and_divide() -> None:
    assert saturate_int8(np.array([-300, -129, -128, 0, 127, 128, 1000])).tolist() == [-128, -128, -128, 0, 127, 127, 127]
    # TFLite average-pool rounding: half away from zero
    got = divide_round_half_away(np.array([5, -5, 7, -7, 1, -1, 6]), np.array([2, 2, 4, 4, 4, 4, 4]))
    assert got.tolist() == [3, -3, 2, -2, 0, 0, 2]


# ---------------------------------------------------------------------------- parameters
def test_qparams_from_range_zero_exact() -> None:
    for lo, hi in [(-1.3, 2.7), (0.5, 3.0), (-4.0, -1.0), (0.0, 0.0), (-0.001, 1000.0)]:
        qp = QParams.from_range(lo, hi)
        assert -128 <= qp.zero_point <= 127
        assert qp.dequantize(qp.quantize(0.0)) == 0.0
        assert qp.quantize(min(lo, 0.0)) >= -128 and qp.quantize(max(hi, 0.0)) <= 127
    qp = QParams.from_range(0.0, 6.0)
    assert qp.zero_point == -128 and math.isclose(qp.scale, 6.0 / 255)
    assert qp.quantize(np.array([-1.0, 0.0, 6.0, 7.0])).tolist() == [-128, -128, 127, 127]


def test_activation_range_and_lut() -> None:
    out = QParams(0.05, -20)
    assert activation_range(Activation(ActKind.RELU), out) == (-20, 127)
    assert activation_range(Activation(ActKind.CLIP, (0.0, 6.0)), QParams(0.01, -128)) == (-128, 127)
    assert activation_range(Activation(ActKind.CLIP, (-1.0, 2.0)), out) == (-40, 20)
    stage = QParams(0.1, 3)
    lut = activation_lut(Activation(ActKind.SIGMOID), stage, QParams(1 / 256, -128))
    assert lut.shape == (256,) and lut.dtype == np.int8
    for q in (-128, -50, 3, 40, 127):  # the recorded definition
        x = 0.1 * (q - 3)
        want = np.clip(np.floor(256 / (1 + math.exp(-x)) + 0.5) - 128, -128, 127)
        assert lut[q + 128] == want


# ---------------------------------------------------------------------------- graphs
def _small_graph(seed: int = 0) -> Graph:
    b = GraphBuilder("small", seed=seed)
    x = b.input((1, 3, 8, 8))
    y = b.conv(x, 4, 3)
    p = b.max_pool(y, 2)
    s = b.conv(p, 4, 3, activation=Activation(ActKind.SIGMOID))
    return b.build(b.softmax(b.add(p, s)))


def test_quantize_graph_deterministic_and_conventions() -> None:
    g = _small_graph()
    q1, q2 = quantize_graph(g, seed=3), quantize_graph(g, seed=3)
    assert dict(q1.params) == dict(q2.params)
    assert q1.calibration.source == "calibrated" and q1.calibration.seed == 3
    for a, b in zip(q1.layers, q2.layers):
        for field in ("weight", "bias", "lut", "table"):
            va, vb = getattr(a, field), getattr(b, field)
            assert (va is None and vb is None) or np.array_equal(va, vb)
    conv, pool, conv2, add, soft = q1.layers
    # max pool keeps its input parameters; softmax uses TFLite's fixed output parameters
    assert pool.out_q == pool.in_q[0] and pool.requant is None
    assert soft.out_q == QParams(1 / 256, -128)
    # ReLU clamps at the output zero point; the sigmoid conv has a table and a stage domain
    assert conv.act_range == (conv.out_q.zero_point, 127) and conv.lut is None
    assert conv2.lut is not None and conv2.stage_q != conv2.out_q
    # per-output-channel symmetric weights reach +-127; biases use in_scale * w_scale
    assert conv.weight is not None and conv.weight_scale is not None and conv.bias is not None
    assert np.all(np.abs(conv.weight).reshape(4, -1).max(axis=1) == 127)
    w = g.weights[g.layers[0].weight]  # type: ignore[index]
    assert np.allclose(conv.weight * conv.weight_scale[:, None, None, None], w, atol=conv.weight_scale.max() / 2 + 1e-9)
    b = g.weights[g.layers[0].bias]  # type: ignore[index]
    assert np.allclose(conv.bias * conv.in_q[0].scale * conv.weight_scale, b, atol=conv.in_q[0].scale * conv.weight_scale.max())
    assert add.input_requants and len(add.input_requants) == 2


def test_explicit_qdq_params_are_kept() -> None:
    g = _small_graph()
    tensors = dict(g.tensors)
    for name in (*g.inputs, *(layer.output for layer in g.layers)):
        t = tensors[name]
        tensors[name] = Tensor(t.name, t.shape, t.dtype, t.role, QuantParams((0.02,), (140,), "uint8"))
    g2 = Graph(g.name, g.layers, MappingProxyType(tensors), g.inputs, g.outputs, g.weights)
    qg = quantize_graph(g2)
    assert qg.calibration.source == "qdq"
    assert all(p == QParams(0.02, 12) for p in qg.params.values())  # uint8 zp 140 -> int8 12
    assert qg.layers[2].stage_q != qg.layers[2].out_q  # the sigmoid table still gets a calibrated stage


def test_substitute_constant_weights() -> None:
    g = _small_graph()
    weights = {k: np.full_like(v, 0.25) for k, v in g.weights.items()}
    const = Graph(g.name, g.layers, g.tensors, g.inputs, g.outputs, MappingProxyType(weights))
    new, replaced = substitute_constant_weights(const, seed=1)
    assert set(replaced) == set(g.weights)
    assert all(np.unique(new.weights[k]).size > 1 for k in replaced)
    again, _ = substitute_constant_weights(const, seed=1)
    assert all(np.array_equal(new.weights[k], again.weights[k]) for k in replaced)
    assert substitute_constant_weights(g) == (g, ())  # real weights are kept
    qg = quantize_graph(const, seed=1)
    assert qg.calibration.substituted_weights == replaced and qg.graph is not const


def test_lut_matches_float_activation_within_half_lsb() -> None:
    stage, out = QParams(0.05, 0), QParams(0.004, -128)
    for kind, params in [(ActKind.SIGMOID, ()), (ActKind.TANH, ()), (ActKind.HARD_SWISH, ()),
                         (ActKind.LEAKY_RELU, (0.1,)), (ActKind.SILU, ()), (ActKind.HARD_SIGMOID, (0.2, 0.5))]:
        act = Activation(kind, params)
        lut = activation_lut(act, stage, out)
        x = stage.dequantize(np.arange(-128, 128))
        y = np.clip(apply_activation(x, act), out.dequantize(-128), out.dequantize(127))
        assert np.abs(out.dequantize(lut) - y).max() <= out.scale / 2 + 1e-12


def test_calibration_inputs_seeded() -> None:
    g = _small_graph()
    a, b, c = calibration_inputs(g, 1, 2), calibration_inputs(g, 1, 2), calibration_inputs(g, 2, 2)
    assert a["input"].shape == (2, 3, 8, 8)
    assert np.array_equal(a["input"], b["input"]) and not np.array_equal(a["input"], c["input"])


def test_relu_model_uses_clamp() -> None:
    b = GraphBuilder("r", seed=0)
    x = b.input((1, 2, 4, 4))
    g = b.build(b.conv(x, 2, 1, activation=RELU))
    ql = quantize_graph(g).layers[0]
    assert ql.lut is None and ql.act_range[0] == ql.out_q.zero_point
