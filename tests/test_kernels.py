"""Integer kernels: hand-computed goldens, and the region property (tiles stitch to the whole).

Golden layers get explicit (QDQ-style) parameters so every number is derivable by hand: with
input and output scale 1, zero point 0 and weight scale 1 a conv's output is its integer
accumulator (multiplier 1.0 = (2**30, shift 1), exact).
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from memplan.execute.kernels import EMPTY, MissingInputError, Tile, required_input_regions, run_layer
from memplan.execute.quantize import QLayer, quantize_graph
from memplan.geometry.region import Region
from memplan.ir.builder import GraphBuilder
from memplan.ir.graph import Graph, QuantParams
from memplan.ir.ops import (
    Activation,
    ActKind,
    Attrs,
    ChannelShuffleAttrs,
    ConvAttrs,
    ConvTransposeAttrs,
    FullyConnectedAttrs,
    LRNAttrs,
    NoAttrs,
    OpKind,
    PoolAttrs,
    ResizeAttrs,
    weight_shape,
)

I8 = np.int8


# ---------------------------------------------------------------------------- helpers
def _with_params(graph: Graph, params: dict[str, tuple[float, int]], weight_scale: float | None = 1.0) -> Graph:
    """The graph with explicit int8 parameters on the named tensors (and on every weight)."""
    tensors = dict(graph.tensors)
    for name, (scale, zp) in params.items():
        t = tensors[name]
        tensors[name] = dataclasses.replace(t, quant=QuantParams((scale,), (zp,)))
    if weight_scale is not None:
        for layer in graph.layers:
            if layer.weight is not None:
                t = tensors[layer.weight]
                tensors[layer.weight] = dataclasses.replace(t, quant=QuantParams((weight_scale,), (0,)))
    return dataclasses.replace(graph, tensors=MappingProxyType(tensors))


def _single(op: OpKind, attrs: Attrs, in_shapes: list[tuple[int, int, int, int]], out_channels: int | None = None,
            weight: np.ndarray | None = None, bias: np.ndarray | None = None, activation: Activation | None = None,
            params: list[tuple[float, int]] | None = None) -> QLayer:
    """One quantised layer; ``params`` lists (scale, zero point) of the inputs then the output."""
    b = GraphBuilder("one", seed=0)
    names = [b.input(s, name=f"x{i}") for i, s in enumerate(in_shapes)]
    out = b.add_layer(op, tuple(names), attrs, out_channels, weight, bias, activation, name="L")
    g = b.build(out)
    if params is not None:
        g = _with_params(g, dict(zip([*names, out], params)))
    return quantize_graph(g).layers[0]


def _full(ql: QLayer, *xs: np.ndarray) -> np.ndarray:
    return run_layer(ql, [Tile.whole(np.asarray(x, dtype=I8)) for x in xs], Region.full(ql.out_shape))


UNIT = (1.0, 0)
X33 = np.arange(1, 10, dtype=I8).reshape(1, 1, 3, 3)  # [[1,2,3],[4,5,6],[7,8,9]]


# ---------------------------------------------------------------------------- goldens
def test_conv3x3_padding_uses_zero_point() -> None:
    w = np.array([[0, 1, 0], [1, -1, 1], [0, 1, 0]], dtype=np.float32).reshape(1, 1, 3, 3)
    attrs = ConvAttrs((3, 3), pads=(1, 1, 1, 1))
    # input zero point 2: q = x + 2, padding holds q = 2 (real 0); output scale 0.5, zp -10: q = 2y - 10
    ql = _single(OpKind.CONV, attrs, [(1, 1, 3, 3)], 1, w, np.array([1.0], np.float32), params=[(1.0, 2), (0.5, -10)])
    # y = up + left - centre + right + down + 1, zero outside:
    # [[6, 8, 6], [10, 16, 12], [6, 14, 6]]
    got = _full(ql, X33 + 2)
    assert got[0, 0].tolist() == [[2, 6, 2], [10, 22, 14], [2, 18, 2]]
    # scale 3: M = 1/3 -> TFLite's double rounding: 10/3 -> SRDHM 7 -> 3.5 -> 4; 16/3 -> 11 -> 5.5 -> 6
    ql3 = _single(OpKind.CONV, attrs, [(1, 1, 3, 3)], 1, w, np.array([1.0], np.float32), params=[(1.0, 2), (3.0, 0)])
    assert _full(ql3, X33 + 2)[0, 0].tolist() == [[2, 3, 2], [4, 6, 4], [2, 5, 2]]
    # saturation: scale 1/16 -> 16y, zp 0: only y <= 7 fits
    ql16 = _single(OpKind.CONV, attrs, [(1, 1, 3, 3)], 1, w, np.array([1.0], np.float32), params=[(1.0, 2), (1 / 16, 0)])
    assert _full(ql16, X33 + 2)[0, 0].tolist() == [[96, 127, 96], [127, 127, 127], [96, 127, 96]]


def test_depthwise_conv() -> None:
    w = np.stack([np.ones((3, 3)), np.diag([1.0, 2.0, 3.0])]).reshape(2, 1, 3, 3).astype(np.float32)
    x = np.stack([X33[0, 0], -X33[0, 0]]).reshape(1, 2, 3, 3)
    ql = _single(OpKind.CONV, ConvAttrs((3, 3), groups=2), [(1, 2, 3, 3)], 2, w, params=[UNIT, UNIT])
    # channel 0: sum 1..9 = 45; channel 1: -(1*1 + 2*5 + 3*9) = -38
    assert _full(ql, x).reshape(-1).tolist() == [45, -38]


def test_strided_conv() -> None:
    x = np.arange(16, dtype=I8).reshape(1, 1, 4, 4)
    ql = _single(OpKind.CONV, ConvAttrs((2, 2), stride=(2, 2)), [(1, 1, 4, 4)], 1,
                 np.ones((1, 1, 2, 2), np.float32), params=[UNIT, UNIT])
    # 2x2 block sums of [[0..3],[4..7],[8..11],[12..15]]
    assert _full(ql, x)[0, 0].tolist() == [[10, 18], [42, 50]]


def test_dilated_conv() -> None:
    w = np.array([[1, 2], [3, 4]], np.float32).reshape(1, 1, 2, 2)
    ql = _single(OpKind.CONV, ConvAttrs((2, 2), dilation=(2, 2)), [(1, 1, 3, 3)], 1, w, params=[UNIT, UNIT])
    # taps at (0,0), (0,2), (2,0), (2,2): 1*1 + 2*3 + 3*7 + 4*9
    assert _full(ql, X33).reshape(-1).tolist() == [64]


def test_max_pool_padding_is_excluded() -> None:
    attrs = PoolAttrs((2, 2), (2, 2), (1, 1, 1, 1))
    ql = _single(OpKind.MAX_POOL, attrs, [(1, 1, 3, 3)], params=[UNIT, UNIT])
    # all-negative input: zero padding would win every window
    assert _full(ql, -X33)[0, 0].tolist() == [[-1, -2], [-4, -5]]


@pytest.mark.parametrize(
    ("zp", "include", "expected"),
    [
        # windows (pads 1): {1}, {2,3}, {4,7}, {5,6,8,9}
        (0, False, [[1, 3], [6, 7]]),  # 2.5 -> 3, 5.5 -> 6
        (0, True, [[0, 1], [3, 7]]),  # divisor 4: 0.25, 1.25, 2.75, 7
        # zero point -3, q = x - 3: rounding is on the integer q sum, as TFLite
        (-3, False, [[-2, -1], [3, 4]]),  # -1/2 -> -1, 5/2 -> 3
        (-3, True, [[-3, -2], [0, 4]]),  # padding counts as q = -3: -11/4, -7/4, -1/4, 16/4
    ],
)
def test_avg_pool_count_include_pad(zp: int, include: bool, expected: list[list[int]]) -> None:
    attrs = PoolAttrs((2, 2), (2, 2), (1, 1, 1, 1), count_include_pad=include)
    ql = _single(OpKind.AVG_POOL, attrs, [(1, 1, 3, 3)], params=[(1.0, zp), (1.0, zp)])
    assert _full(ql, X33 + zp)[0, 0].tolist() == expected


def test_avg_pool_ceil_pads_never_count() -> None:
    # ceil mode on a 3x3 input, kernel 2, stride 2: one extra bottom/right pad row from ceil mode
    attrs = PoolAttrs((2, 2), (2, 2), (0, 0, 1, 1), count_include_pad=True, ceil_pads=(1, 1))
    ql = _single(OpKind.AVG_POOL, attrs, [(1, 1, 3, 3)], params=[UNIT, UNIT])
    # (1+2+4+5)/4, (3+6)/2 = 4.5 -> 5, (7+8)/2 = 7.5 -> 8, 9/1
    assert _full(ql, X33)[0, 0].tolist() == [[3, 5], [8, 9]]


def test_add_tflite() -> None:
    # a: scale 0.5 zp 0, b: scale 0.25 zp 10, out: scale 1 zp -5
    ql = _single(OpKind.ADD, NoAttrs(), [(1, 1, 1, 4)] * 2, params=[(0.5, 0), (0.25, 10), (1.0, -5)])
    a = np.array([3, 1, -1, 127], I8).reshape(1, 1, 1, 4)
    b = np.array([16, 11, 10, -128], I8).reshape(1, 1, 1, 4)
    # reals 1.5+1.5 = 3 -> -2; 0.5+0.25 = 0.75 -> 1 -> -4; -0.5+0 -> -1 (away from 0) -> -6;
    # 63.5 - 34.5 = 29 -> 24
    assert _full(ql, a, b).reshape(-1).tolist() == [-2, -4, -6, 24]
    relu = _single(OpKind.ADD, NoAttrs(), [(1, 1, 1, 4)] * 2, activation=Activation(ActKind.RELU),
                   params=[(0.5, 0), (0.25, 10), (1.0, -5)])
    assert _full(relu, a, b).reshape(-1).tolist() == [-2, -4, -5, 24]


def test_concat_requantises_inputs() -> None:
    ql = _single(OpKind.CONCAT, NoAttrs(), [(1, 1, 1, 3), (1, 2, 1, 3)], params=[UNIT, (0.5, 0), UNIT])
    a = np.array([1, -2, 3], I8).reshape(1, 1, 1, 3)
    b = np.array([3, -3, 4, 100, -100, -128], I8).reshape(1, 2, 1, 3)
    got = _full(ql, a, b)
    assert ql.input_requants[0] is None  # identity fast path
    # b * 0.5 through SRDHM: 1.5 -> 2 but -1.5 -> -1 (negative ties round towards zero)
    assert got[0, :, 0].tolist() == [[1, -2, 3], [2, -1, 2], [50, -50, -64]]
    # the second input alone: the first is not read
    assert required_input_regions(ql, Region(1, 3, 0, 1, 0, 3))[0] == EMPTY
    part = run_layer(ql, [None, Tile.whole(b)], Region(2, 3, 0, 1, 1, 3))
    assert part[0, 0, 0].tolist() == [-50, -64]


def test_resize_nearest_x2() -> None:
    x = np.array([[1, 2], [3, 4]], I8).reshape(1, 1, 2, 2)
    ql = _single(OpKind.RESIZE, ResizeAttrs((4, 4)), [(1, 1, 2, 2)], params=[UNIT, UNIT])
    assert _full(ql, x)[0, 0].tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]


def test_resize_bilinear_fixed_point() -> None:
    x = np.array([[0, 10], [20, -31]], I8).reshape(1, 1, 2, 2)
    ql = _single(OpKind.RESIZE, ResizeAttrs((4, 4), "linear", "half_pixel"), [(1, 1, 2, 2)], params=[UNIT, UNIT])
    got = _full(ql, x)[0, 0]
    # half_pixel x2: sources -0.25 (clamped 0), 0.25, 0.75, 1.25 (clamped 1): weights 0, 1/4, 3/4, 1
    assert got[0].tolist() == [0, 3, 8, 10]  # 2.5 -> 3 (half away from zero), 7.5 -> 8
    assert got[:, 0].tolist() == [0, 5, 15, 20]
    assert got[3].tolist() == [20, 7, -18, -31]  # 20 - 51/4 = 7.25; 20 - 153/4 = -18.25
    # inner point (0.25, 0.25): (9*0 + 3*10 + 3*20 + 1*-31)/16 = 59/16 = 3.69 -> 4
    assert got[1, 1] == 4


def test_fully_connected_flattens_chw() -> None:
    x = np.array([1, 2, 3, 4], I8).reshape(1, 2, 1, 2)  # C, H, W order: [1, 2, 3, 4]
    w = np.array([[1, 0, -1, 2], [3, 3, 3, 3]], np.float32)
    ql = _single(OpKind.FULLY_CONNECTED, FullyConnectedAttrs(2), [(1, 2, 1, 2)], 2, w, np.array([1.0, -2.0], np.float32),
                 params=[UNIT, UNIT])
    # 1 - 3 + 8 + 1 = 7; 3 * 10 - 2 = 28
    assert _full(ql, x).reshape(-1).tolist() == [7, 28]
    assert run_layer(ql, [Tile.whole(x)], Region(1, 2, 0, 1, 0, 1)).reshape(-1).tolist() == [28]


def test_softmax_and_shuffle() -> None:
    ql = _single(OpKind.SOFTMAX, NoAttrs(), [(1, 4, 1, 1)], params=[UNIT, (1 / 256, -128)])
    # equal logits: 1/4 each = 64/256 -> -64; one dominant logit (e^-100 ~ 0): 1 -> 127 (saturated)
    assert _full(ql, np.full((1, 4, 1, 1), 5, I8)).reshape(-1).tolist() == [-64] * 4
    assert _full(ql, np.array([100, 0, 0, 0], I8).reshape(1, 4, 1, 1)).reshape(-1).tolist() == [127, -128, -128, -128]
    sh = _single(OpKind.CHANNEL_SHUFFLE, ChannelShuffleAttrs((2, 0, 3, 1)), [(1, 4, 1, 1)], params=[UNIT, UNIT])
    assert _full(sh, np.array([10, 11, 12, 13], I8).reshape(1, 4, 1, 1)).reshape(-1).tolist() == [12, 10, 13, 11]


def test_lut_activation_applied_after_stage() -> None:
    w = np.ones((1, 1, 1, 1), np.float32)
    ql = _single(OpKind.CONV, ConvAttrs((1, 1)), [(1, 1, 1, 4)], 1, w, activation=Activation(ActKind.LEAKY_RELU, (0.5,)),
                 params=[UNIT, UNIT])
    # stage domain calibrated on the pre-activation; the table then maps to the output domain
    x = np.array([-100, -3, 0, 50], I8).reshape(1, 1, 1, 4)
    got = _full(ql, x).reshape(-1)
    stage = ql.stage_q.quantize(x.reshape(-1).astype(float))
    assert ql.lut is not None and got.tolist() == ql.lut[stage.astype(int) + 128].tolist()
    assert np.allclose(ql.out_q.dequantize(got), [-50, -1.5, 0, 50], atol=ql.stage_q.scale + ql.out_q.scale)


def test_missing_halo_row_raises_and_padding_does_not() -> None:
    ql = _single(OpKind.CONV, ConvAttrs((3, 3), pads=(1, 1, 1, 1)), [(1, 1, 6, 6)], 1,
                 np.ones((1, 1, 3, 3), np.float32), params=[UNIT, (4.0, 0)])
    x = np.arange(36, dtype=I8).reshape(1, 1, 6, 6)
    out = Region(0, 1, 0, 3, 0, 6)
    (need,) = required_input_regions(ql, out)
    assert need == Region(0, 1, 0, 4, 0, 6)  # row -1 is padding, rows 0..3 are read
    full = _full(ql, x)
    assert np.array_equal(run_layer(ql, [Tile.cut(x, need)], out), full[:, :, 0:3])
    with pytest.raises(MissingInputError, match="needs region"):
        run_layer(ql, [Tile.cut(x, dataclasses.replace(need, y1=3))], out)


def test_input_validation() -> None:
    ql = _single(OpKind.MAX_POOL, PoolAttrs((2, 2), (2, 2)), [(1, 1, 4, 4)], params=[UNIT, UNIT])
    x = np.zeros((1, 1, 4, 4), I8)
    with pytest.raises(ValueError, match="output region"):
        run_layer(ql, [Tile.whole(x)], Region(0, 1, 0, 3, 0, 2))
    with pytest.raises(TypeError):
        Tile.whole(x.astype(np.int16))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        run_layer(ql, [Tile.whole(np.zeros((1, 1, 5, 5), I8))], Region(0, 1, 0, 2, 0, 2))


# ---------------------------------------------------------------------------- region property
ACTS = st.sampled_from([None, Activation(ActKind.RELU), Activation(ActKind.CLIP, (0.0, 6.0)),
                        Activation(ActKind.SIGMOID), Activation(ActKind.HARD_SWISH), Activation(ActKind.TANH)])


@st.composite
def _conv_case(draw: st.DrawFn) -> tuple[OpKind, Attrs, list[tuple[int, int, int, int]], int | None, Activation | None]:
    groups = draw(st.integers(1, 3))
    depthwise = draw(st.booleans())
    ci_g = 1 if depthwise else draw(st.integers(1, 3))
    co_g = draw(st.integers(1, 2)) if depthwise else draw(st.integers(1, 3))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pads = tuple(draw(st.integers(0, 3)) for _ in range(4))
    h, w = draw(st.integers(1, 11)), draw(st.integers(1, 11))
    assume(h + pads[0] + pads[2] >= d[0] * (k[0] - 1) + 1 and w + pads[1] + pads[3] >= d[1] * (k[1] - 1) + 1)
    attrs = ConvAttrs(k, s, pads, d, groups)  # type: ignore[arg-type]
    return OpKind.CONV, attrs, [(1, groups * ci_g, h, w)], groups * co_g, draw(ACTS)


@st.composite
def _conv_transpose_case(draw: st.DrawFn) -> tuple[OpKind, Attrs, list[tuple[int, int, int, int]], int | None, Activation | None]:
    groups = draw(st.integers(1, 2))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    op = (draw(st.integers(0, max(s[0], d[0]) - 1)), draw(st.integers(0, max(s[1], d[1]) - 1)))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    attrs = ConvTransposeAttrs(k, s, pads, d, groups, op)  # type: ignore[arg-type]
    oh = s[0] * (h - 1) + op[0] + d[0] * (k[0] - 1) + 1 - pads[0] - pads[2]
    ow = s[1] * (w - 1) + op[1] + d[1] * (k[1] - 1) + 1 - pads[1] - pads[3]
    assume(oh >= 1 and ow >= 1)
    return OpKind.CONV_TRANSPOSE, attrs, [(1, groups * draw(st.integers(1, 2)), h, w)], groups * draw(st.integers(1, 2)), None


@st.composite
def _pool_case(draw: st.DrawFn) -> tuple[OpKind, Attrs, list[tuple[int, int, int, int]], int | None, Activation | None]:
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pads = (draw(st.integers(0, k[0] - 1)), draw(st.integers(0, k[1] - 1)),
            draw(st.integers(0, k[0] - 1)), draw(st.integers(0, k[1] - 1)))
    ceil = (draw(st.integers(0, pads[2])), draw(st.integers(0, pads[3])))
    h, w = draw(st.integers(k[0], 10)), draw(st.integers(k[1], 10))
    is_max = draw(st.booleans())
    attrs = PoolAttrs(k, s, pads, draw(st.booleans()), ceil)  # type: ignore[arg-type]
    # every window must count a cell: the last one starts before the input's end
    assume(((h + pads[0] + pads[2] - k[0]) // s[0]) * s[0] - pads[0] < h)
    assume(((w + pads[1] + pads[3] - k[1]) // s[1]) * s[1] - pads[1] < w)
    act = draw(st.sampled_from([None, Activation(ActKind.RELU)]))
    return (OpKind.MAX_POOL if is_max else OpKind.AVG_POOL), attrs, [(1, draw(st.integers(1, 3)), h, w)], None, act


@st.composite
def _resize_case(draw: st.DrawFn) -> tuple[OpKind, Attrs, list[tuple[int, int, int, int]], int | None, Activation | None]:
    mode = draw(st.sampled_from(["nearest", "linear"]))
    coords = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"]
    coord = draw(st.sampled_from(coords + (["tf_half_pixel_for_nn"] if mode == "nearest" else [])))
    nearest = draw(st.sampled_from(["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]))
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    out_hw = (draw(st.integers(1, 16)), draw(st.integers(1, 16)))
    return OpKind.RESIZE, ResizeAttrs(out_hw, mode, coord, nearest), [(1, draw(st.integers(1, 3)), h, w)], None, None


@st.composite
def _misc_case(draw: st.DrawFn) -> tuple[OpKind, Attrs, list[tuple[int, int, int, int]], int | None, Activation | None]:
    op = draw(st.sampled_from([OpKind.ADD, OpKind.CONCAT, OpKind.LRN, OpKind.SOFTMAX, OpKind.CHANNEL_SHUFFLE,
                               OpKind.GLOBAL_AVG_POOL, OpKind.GLOBAL_MAX_POOL, OpKind.FULLY_CONNECTED,
                               OpKind.SUB, OpKind.MUL, OpKind.MAX, OpKind.MIN]))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    c = draw(st.integers(1, 7))
    n_in = draw(st.integers(2, 3))
    if op is OpKind.ADD:
        return op, NoAttrs(), [(1, c, h, w)] * n_in, None, draw(ACTS)
    if op in (OpKind.SUB, OpKind.MUL, OpKind.MAX, OpKind.MIN):
        # the second input may broadcast: a channel scale (1, C, 1, 1), a spatial gate (1, 1, H, W)
        second = draw(st.sampled_from([(1, c, h, w), (1, c, 1, 1), (1, 1, h, w), (1, 1, 1, w)]))
        return op, NoAttrs(), [(1, c, h, w), second], None, draw(ACTS)
    if op is OpKind.CONCAT:
        return op, NoAttrs(), [(1, draw(st.integers(1, 4)), h, w) for _ in range(n_in)], None, None
    if op is OpKind.LRN:
        return op, LRNAttrs(draw(st.integers(1, 6)), 1e-3, 0.75, draw(st.sampled_from([1.0, 2.0]))), [(1, c, h, w)], None, None
    if op is OpKind.CHANNEL_SHUFFLE:
        perm = tuple(draw(st.permutations(range(c))))
        return op, ChannelShuffleAttrs(perm), [(1, c, h, w)], None, None
    if op is OpKind.FULLY_CONNECTED:
        k = draw(st.integers(1, 6))
        return op, FullyConnectedAttrs(k), [(1, c, h, w)], k, draw(ACTS)
    return op, NoAttrs(), [(1, c, h, w)], None, None


def _build_case(case: tuple[OpKind, Attrs, list[tuple[int, int, int, int]], int | None, Activation | None],
                seed: int) -> QLayer:
    op, attrs, in_shapes, out_channels, act = case
    b = GraphBuilder("case", seed=seed)
    names = [b.input(s, name=f"x{i}") for i, s in enumerate(in_shapes)]
    weight = bias = None
    if op in (OpKind.CONV, OpKind.CONV_TRANSPOSE, OpKind.FULLY_CONNECTED):
        wshape = weight_shape(op, attrs, in_shapes[0], out_channels)  # type: ignore[arg-type]
        assert wshape is not None and out_channels is not None
        weight = b.rng.normal(0, 0.5, size=wshape).astype(np.float32)
        bias = b.rng.normal(0, 0.5, size=(out_channels,)).astype(np.float32)
    out = b.add_layer(op, tuple(names), attrs, out_channels, weight, bias, act, name="L")
    g = b.build(out)
    # inputs of different spreads so add/concat see different scales
    rng = np.random.default_rng(seed)
    calib = {n: rng.standard_normal((2, *s[1:])) * (1 + i) for i, (n, s) in enumerate(zip(names, in_shapes))}
    return quantize_graph(g, inputs=calib).layers[0]


def _cuts(draw: st.DrawFn, n: int) -> list[tuple[int, int]]:
    points = sorted(set(draw(st.lists(st.integers(1, max(n - 1, 1)), max_size=3))) - {n})
    bounds = [0, *points, n]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if a < b]


def _check_region_property(ql: QLayer, data: st.DataObject, seed: int) -> None:
    rng = np.random.default_rng(seed)
    xs = [rng.integers(-128, 128, size=s, dtype=np.int64).astype(I8) for s in ql.in_shapes]
    full = run_layer(ql, [Tile.whole(x) for x in xs], Region.full(ql.out_shape))
    _, c, h, w = ql.out_shape
    stitched = np.zeros_like(full)
    for c0, c1 in _cuts(data.draw, c):
        for y0, y1 in _cuts(data.draw, h):
            for x0, x1 in _cuts(data.draw, w):
                out = Region(c0, c1, y0, y1, x0, x1)
                needs = required_input_regions(ql, out)
                tiles: list[Tile | None] = [Tile.cut(x, r) for x, r in zip(xs, needs)]  # EMPTY -> empty tile
                for r, s in zip(needs, ql.in_shapes):
                    assert r.empty or r.within(s)
                stitched[:, c0:c1, y0:y1, x0:x1] = run_layer(ql, tiles, out)
                # one row short at either end must raise
                for i, r in enumerate(needs):
                    if r.empty:
                        continue
                    for short in (dataclasses.replace(r, y0=r.y0 + 1), dataclasses.replace(r, y1=r.y1 - 1)):
                        bad = list(tiles)
                        bad[i] = Tile.cut(xs[i], short)
                        with pytest.raises(MissingInputError):
                            run_layer(ql, bad, out)
    assert np.array_equal(stitched, full)


SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(case=_conv_case(), data=st.data(), seed=st.integers(0, 2**16))
def test_region_property_conv(case, data, seed) -> None:  # type: ignore[no-untyped-def]
    _check_region_property(_build_case(case, seed), data, seed)


@SETTINGS
@given(case=_conv_transpose_case(), data=st.data(), seed=st.integers(0, 2**16))
def test_region_property_conv_transpose(case, data, seed) -> None:  # type: ignore[no-untyped-def]
    _check_region_property(_build_case(case, seed), data, seed)


@SETTINGS
@given(case=_pool_case(), data=st.data(), seed=st.integers(0, 2**16))
def test_region_property_pool(case, data, seed) -> None:  # type: ignore[no-untyped-def]
    _check_region_property(_build_case(case, seed), data, seed)


@SETTINGS
@given(case=_resize_case(), data=st.data(), seed=st.integers(0, 2**16))
def test_region_property_resize(case, data, seed) -> None:  # type: ignore[no-untyped-def]
    _check_region_property(_build_case(case, seed), data, seed)


@SETTINGS
@given(case=_misc_case(), data=st.data(), seed=st.integers(0, 2**16))
def test_region_property_elementwise_and_global(case, data, seed) -> None:  # type: ignore[no-untyped-def]
    _check_region_property(_build_case(case, seed), data, seed)


def test_region_property_batch_two() -> None:
    ql = _build_case((OpKind.CONV, ConvAttrs((3, 3), (2, 1), (1, 1, 1, 1)), [(1, 2, 7, 5)], 3, None), 0)
    x = np.random.default_rng(0).integers(-128, 128, size=(2, 2, 7, 5)).astype(I8)
    full = run_layer(ql, [Tile.whole(x)], Region.full(ql.out_shape))
    assert full.shape == (2, 3, 4, 5)
    top, bottom = Region(0, 3, 0, 2, 0, 5), Region(0, 3, 2, 4, 0, 5)
    parts = [run_layer(ql, [Tile.cut(x, required_input_regions(ql, r)[0])], r) for r in (top, bottom)]
    assert np.array_equal(np.concatenate(parts, axis=2), full)
    assert np.array_equal(full[1:], run_layer(ql, [Tile.whole(x[1:])], Region.full(ql.out_shape)))


# ---------------------------------------------------------------------------- TFLite Micro transcriptions
# Scalar, line-by-line transcriptions of TensorFlow Lite Micro's int8 kernels (plain Python ints,
# C truncating division), against memplan's vectorised tables and kernels on random int8 inputs
# and random valid float32 scales.
import math  # noqa: E402

from memplan.execute import quantize as Q  # noqa: E402
from memplan.execute.kernels import _softmax_tflm  # noqa: E402

_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1


def _tdiv(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _srdhm(a: int, b: int) -> int:
    if a == b == _I32_MIN:
        return _I32_MAX
    ab = a * b
    return _tdiv(ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30)), 1 << 31)


def _rdbpot(x: int, e: int) -> int:
    mask = (1 << e) - 1
    return (x >> e) + ((x & mask) > (mask >> 1) + (1 if x < 0 else 0))


def _mbqm(x: int, m: int, shift: int) -> int:
    return _rdbpot(_srdhm(x * (1 << max(shift, 0)), m), max(-shift, 0))


def _qm(real: float) -> tuple[int, int]:
    if real == 0:
        return 0, 0
    q, shift = math.frexp(real)
    m = int(math.floor(abs(q) * 2**31 + 0.5))
    if m == 2**31:
        m, shift = m // 2, shift + 1
    return (0, 0) if shift < -31 else (m, shift)


_f32 = st.floats(1e-6, 2.0).map(lambda s: float(np.float32(s)))
_zp = st.integers(-128, 127)


@settings(max_examples=60, deadline=None)
@given(s_in=_f32, z_in=_zp, ratio=st.floats(0.05, 20.0), z_out=_zp, h=st.integers(1, 9), w=st.integers(1, 9),
       seed=st.integers(0, 2**16))
def test_mean_is_tflms_quantized_mean(s_in: float, z_in: int, ratio: float, z_out: int, h: int, w: int,
                                      seed: int) -> None:
    """reference_ops::QuantizedMeanOrSum: QuantizeMultiplier(s_in / s_out), 1/n folded into the
    multiplier, the sum of q - zp once through MultiplyByQuantizedMultiplier."""
    s_out = float(np.float32(s_in * ratio))
    x = np.random.default_rng(seed).integers(-128, 128, size=(1, 3, h, w)).astype(np.int8)
    n = h * w
    m, shift = _qm(s_in / s_out)
    k = min(n.bit_length() - 1, 32, 31 + shift)
    m, shift = (m << k) // n, shift - k
    want = [max(-128, min(127, _mbqm(int(x[0, c].astype(int).sum()) - z_in * n, m, shift) + z_out)) for c in range(3)]
    g = GraphBuilder("mean")
    graph = g.build(g.global_avg_pool(g.input((1, 3, h, w), "x")))
    graph = dataclasses.replace(graph, tensors=MappingProxyType({
        **graph.tensors, **{t: dataclasses.replace(graph.tensors[t], quant=QuantParams((sc,), (zp,)))
                            for t, sc, zp in ((graph.inputs[0], s_in, z_in), (graph.outputs[0], s_out, z_out))}}))
    ql = quantize_graph(graph).layers[0]
    got = run_layer(ql, [Tile.whole(x)], Region.full(ql.out_shape))
    assert got.reshape(-1).tolist() == want


def _exp_neg(v: int, ibits: int) -> int:  # exp_on_negative_values, Q(ibits) -> Q0.31
    frac = 31 - ibits
    quarter = 1 << (frac - 2)
    amod = (v & (quarter - 1)) - quarter
    r0 = amod << ibits if ibits else amod
    r0 = max(_I32_MIN, min(_I32_MAX, r0))
    y = r0 + (1 << 28)
    y2 = _srdhm(y, y)
    y3 = _srdhm(y2, y)
    y4 = _srdhm(y2, y2)
    poly = _rdbpot(_srdhm(_rdbpot(y4, 2) + y3, 715827883) + y2, 1)
    res = 1895147668 + _srdhm(1895147668, y + poly)
    rem = amod - v
    for e, mul in ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535),
                   (3, 720401), (4, 242)):
        if ibits > e and rem & (1 << (frac + e)):
            res = _srdhm(res, mul)
    return _I32_MAX if v == 0 else res


def _sat_shl(v: int, e: int) -> int:
    t = (1 << (31 - e)) - 1
    return _I32_MAX if v > t else (_I32_MIN if v < -t else v << e)


def _newton(v: int) -> int:  # ~ 2 / (1 + v) in Q2.29
    s = v + _I32_MAX
    hd = _tdiv(s + (1 if s >= 0 else -1), 2)
    y = 1515870810 + _srdhm(hd, -1010580540)
    for _ in range(3):
        y = y + _sat_shl(_srdhm(y, (1 << 29) - _srdhm(hd, y)), 2)
    return y


def _logistic_ref(q: int, s_in: float, zp: int, tanh: bool) -> int:
    """reference_integer_ops::Logistic / Tanh on gemmlowp fixed point (scalar transcription)."""
    real = float(np.float32(s_in)) * float(1 << 27)
    mant, left = math.frexp(real)
    mult = int(math.floor(mant * 2**31 + 0.5))
    radius = int(math.floor(15 * 2.0**27 / 2.0**left))
    x = q - zp
    if x <= -radius:
        return -128
    if x >= radius:
        return 127
    a = _mbqm(x, mult, left)  # Q4.27

    if tanh:
        n = a if a < 0 else -a
        t = _sat_shl(_newton(_exp_neg(n, 5)) - (1 << 29), 2)
        out = 0 if a == 0 else (-t if a < 0 else t)
        return max(-128, min(127, _rdbpot(out, 24)))
    ab = a if a > 0 else -a
    pos = _sat_shl(_newton(_exp_neg(-ab, 4)), 1)
    out = (1 << 30) if a == 0 else (pos if a > 0 else _I32_MAX - pos)
    return max(-128, min(127, _rdbpot(out, 23) - 128))


@settings(max_examples=40, deadline=None)
@given(s_in=st.floats(1e-9, 4.0).map(lambda s: float(np.float32(s))), zp=_zp, tanh=st.booleans())
def test_logistic_and_tanh_tables_are_tflms(s_in: float, zp: int, tanh: bool) -> None:
    lut = (Q.tflm_tanh_lut if tanh else Q.tflm_logistic_lut)(Q.QParams(s_in, zp))
    assert lut.tolist() == [_logistic_ref(q, s_in, zp, tanh) for q in range(-128, 128)]


def _hard_swish_ref(q: int, s_in: float, z_in: int, s_out: float, z_out: int) -> int | None:
    """reference_ops::HardSwish (int16 arithmetic) with HardSwishPrepare's parameters."""
    f32 = np.float32
    hires = f32(1.0 / 128.0) * f32(s_in)
    om, oe = _qm(float(f32(hires / f32(s_out))))
    rm, re_ = _qm(float(f32(hires / (f32(3.0) / f32(32768.0)))))
    if oe > 0:
        return None
    down = (lambda m: 32767 if m >= _I32_MAX - (1 << 15) else (m + (1 << 15)) >> 16)
    om16, rm16 = down(om), down(rm)

    def w16(v: int) -> int:
        return ((v + 32768) & 0xFFFF) - 32768

    def srdhm16(a: int, b: int) -> int:
        if a == b == -32768:
            return 32767
        ab = a * b
        return _tdiv(ab + ((1 << 14) if ab >= 0 else 1 - (1 << 14)), 1 << 15)

    def rdbpot16(v: int, e: int) -> int:
        mask = w16((1 << e) - 1)
        return w16((v >> e) + (w16(v & mask) > w16((mask >> 1) + (1 if v < 0 else 0))))

    def shl16(v: int, e: int) -> int:
        return max(-32768, min(32767, v * (1 << e)))

    x = w16(q - z_in)
    hi = w16(x * 128)
    pre = srdhm16(hi, om16)
    r = hi
    if re_ > 0:
        r = shl16(r, re_ - 1)
    r = srdhm16(r, rm16)
    if re_ > 0:
        r = shl16(r, 1)
    if re_ < 0:
        r = rdbpot16(r, -re_)
    r = w16((r + (1 << 15)) >> 1)
    p = 32767 if r == pre == -32768 else _tdiv(r * pre, 1 << 15)
    out = w16(rdbpot16(w16(p), -oe) + z_out)
    return max(-128, min(127, out))


@settings(max_examples=60, deadline=None)
@given(s_in=st.floats(1e-9, 4.0).map(lambda s: float(np.float32(s))), z_in=_zp,
       ratio=st.floats(0.01, 8.0), z_out=_zp)
def test_hard_swish_table_is_tflms(s_in: float, z_in: int, ratio: float, z_out: int) -> None:
    s_out = float(np.float32(s_in * ratio))
    want = [_hard_swish_ref(q, s_in, z_in, s_out, z_out) for q in range(-128, 128)]
    lut = Q.tflm_hard_swish_lut(Q.QParams(s_in, z_in), Q.QParams(s_out, z_out))
    if want[0] is None:
        assert lut is None  # TFLM's Prepare refuses an output multiplier of 1 or more
    else:
        assert lut is not None and lut.tolist() == want


@settings(max_examples=60, deadline=None)
@given(s_in=_f32, z_in=_zp, ratio=st.floats(0.05, 8.0), z_out=_zp, alpha=st.floats(-2.0, 2.0))
def test_leaky_relu_table_is_tflms(s_in: float, z_in: int, ratio: float, z_out: int, alpha: float) -> None:
    f32 = np.float32
    s_out = float(f32(s_in * ratio))
    real_a = float(f32(f32(f32(s_in) * f32(alpha)) / f32(s_out)))
    am, ash = _qm(abs(real_a))
    im, ish = _qm(float(f32(f32(s_in) / f32(s_out))))
    want = []
    for q in range(-128, 128):
        x = q - z_in
        v = _mbqm(x, im, ish) if x >= 0 else (-_mbqm(x, am, ash) if real_a < 0 else _mbqm(x, am, ash))
        want.append(max(-128, min(127, v + z_out)))
    assert Q.tflm_leaky_relu_lut(Q.QParams(s_in, z_in), Q.QParams(s_out, z_out), alpha).tolist() == want


@settings(max_examples=40, deadline=None)
@given(s_in=st.floats(2e-8, 2.0).map(lambda s: float(np.float32(s))), n=st.integers(2, 64),
       seed=st.integers(0, 2**16), spread=st.integers(1, 255))
def test_softmax_is_tflms(s_in: float, n: int, seed: int, spread: int) -> None:
    """reference_ops::Softmax (int8 in and out), transcribed with the transcribed exp."""
    params = Q.tflm_softmax_params(s_in)
    real = s_in * float(1 << 26)
    m, left = _qm(min(real, 2.0**31 - 1))
    assert (params.multiplier, params.left_shift) == (m, left)
    radius = int(math.floor(31 * 2.0**26 / 2.0**left))
    assert params.diff_min == -radius
    x = np.random.default_rng(seed).integers(-128, -128 + spread, size=(1, n, 1, 1), endpoint=True)
    x = np.clip(x, -128, 127)
    table = Q.tflm_softmax_exp_table(params)
    for d in range(256):  # the exponential table against the transcription of exp_on_negative_values
        if -d >= params.diff_min:
            assert int(table[d]) == _exp_neg(_srdhm(-d * (1 << left), m), 5)
        else:
            assert int(table[d]) == 0
    mx = int(x.max())
    total = sum(_rdbpot(int(table[mx - int(v)]), 12) for v in x.reshape(-1))
    headroom = 32 - total.bit_length()
    shifted = ((total << headroom) & 0xFFFFFFFF) - (1 << 31)
    s = shifted + _I32_MAX
    hd = _tdiv(s + (1 if s >= 0 else -1), 2)
    y = 1515870810 + _srdhm(hd, -1010580540)

    def sat_shl(v: int, e: int) -> int:
        t = (1 << (31 - e)) - 1
        return _I32_MAX if v > t else (_I32_MIN if v < -t else v << e)

    for _ in range(3):
        y = y + sat_shl(_srdhm(y, (1 << 29) - _srdhm(hd, y)), 2)
    scale = sat_shl(y, 1)
    exponent = 12 - headroom + 23
    want = []
    for v in x.reshape(-1):
        e = int(table[mx - int(v)])
        r = 0 if exponent > 31 else _rdbpot(_srdhm(scale, e), exponent)
        want.append(max(-128, min(127, r - 128)))
    ql = dataclasses.replace(_SOFTMAX_QL, table=table, softmax=params, in_shapes=((1, n, 1, 1),), out_shape=(1, n, 1, 1))
    got = _softmax_tflm(ql, x.astype(np.int64), Region(0, n, 0, 1, 0, 1))
    assert got.reshape(-1).tolist() == want


def _softmax_qlayer() -> QLayer:
    g = GraphBuilder("softmax")
    return quantize_graph(g.build(g.softmax(g.input((1, 4, 1, 1), "x")))).layers[0]


_SOFTMAX_QL = _softmax_qlayer()
