"""Tile geometry and exact candidate costs: goldens derived by hand, and properties."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memplan.config import load_profile
from memplan.cost.candidate import candidate_cost
from memplan.geometry.backprop import input_regions, region_macs
from memplan.geometry.group import Tiling, group_geometry, group_shape, split_axis, tiling_options
from memplan.geometry.region import Region
from memplan.ir.builder import GraphBuilder
from memplan.ir.graph import Graph

HW = load_profile("generic-npu")  # int8, int32 bias, double-buffered staging (2 slots)


def chain(n: int, c: int = 4, hw: int = 12) -> Graph:
    b = GraphBuilder("chain")
    x = b.input((1, c, hw, hw))
    for _ in range(n):
        x = b.conv(x, c, 3)
    return b.build(x)


def residual(c: int = 4, hw: int = 8) -> Graph:
    b = GraphBuilder("res")
    x = b.input((1, c, hw, hw))
    a = b.conv(x, c, 3)
    y = b.conv(a, c, 3, activation=None)
    return b.build(b.add(y, x))


# ---------------------------------------------------------------------------- goldens
def test_two_conv_chain_2x2_tiles_by_hand() -> None:
    """Two 3x3/pad-1 convs, 4 channels, 12x12, tiles 6x6 (2x2 grid).

    conv2 rows [0,6) need conv1 rows [0,7) (halo 1, clipped at the top), [6,12) need [5,12):
    7 rows each. conv1 rows [0,7) need input [0,8), [5,12) need [4,12): 8 rows each. Columns
    alike. Input loaded: 4 tiles x 4 ch x 8 x 8 = 1024 B (untiled: 576). conv1 MACs: 4 tiles x
    (4 x 7 x 7 outputs) x 36 = 28224; conv2: 4 x (4 x 6 x 6) x 36 = 20736. Weights per conv:
    4x4x3x3 int8 + 4 int32 bias = 160 B; reloading for each of 4 tiles costs 640 B per conv."""
    g = chain(2)
    shape = group_shape(g, 0, 2)
    assert shape is not None
    assert shape.external_inputs == ("input",) and shape.internal == (g.layers[0].output,)
    c = candidate_cost(g, shape, Tiling(6, 6, 4), HW)
    assert c.n_tiles == 4
    assert c.inputs[0].load_bytes == 1024
    assert c.inputs[0].stage_bytes == 2 * 256
    assert c.store_bytes == 576 and c.out_stage_bytes == 2 * 144
    assert c.macs == 28224 + 20736
    assert [(w.total_bytes, w.reload_bytes, w.slice_bytes) for w in c.weights] == [(160, 640, 160)] * 2
    assert c.core_bytes == 196  # conv1 tile: 4 x 7 x 7
    geo = group_geometry(g, shape, Tiling(6, 6, 4))
    assert geo.rows["input"] == ((0, 8), (4, 12))
    assert geo.rows[g.layers[0].output] == ((0, 7), (5, 12))


def test_residual_block_row_tiles_by_hand() -> None:
    """x (4 ch, 8x8) -> conv a -> conv b -> add(b, x), tiles of 4 whole rows.

    add rows [0,4) need b [0,4) and x [0,4); b [0,4) needs a [0,5); a [0,5) needs x [0,6).
    Tile 2: add [4,8) -> b [4,8) -> a [3,8) -> x [2,8). x is held as the union of what conv a
    and the add need: [0,6) and [2,8), 6 rows each: 4 x 12 x 8 = 384 B loaded. MACs: a 4 x 10 x 8
    x 36 = 11520, b 4 x 8 x 8 x 36 = 9216. a's tile (160 B) and b's tile (128 B) are both live
    while b runs, so the core workspace is 288 B."""
    g = residual()
    shape = group_shape(g, 0, 3)
    assert shape is not None and shape.external_inputs == ("input",)
    c = candidate_cost(g, shape, Tiling(4, 8, 4), HW)
    assert c.n_tiles == 2
    assert c.inputs[0].load_bytes == 384 and c.inputs[0].last_use == 2
    assert c.macs == 11520 + 9216
    assert c.core_bytes == 288
    assert sorted((b.size, b.t0, b.t1) for b in c.core) == [(128, 1, 3), (160, 0, 2)]


def test_group_ending_inside_a_branch_is_not_fusable() -> None:
    g = residual()
    assert group_shape(g, 0, 1) is not None  # conv a alone
    # [input-conv a, conv b] leaves x needed by the add: fine, x is an external input.
    assert group_shape(g, 0, 2) is not None
    b = GraphBuilder("fork")
    x = b.input((1, 4, 8, 8))
    a = b.conv(x, 4)
    y = b.conv(a, 4)
    z = b.add(y, a)  # a is needed after [0, 2): a group [0, 2) would have to emit a
    g2 = b.build(z)
    assert group_shape(g2, 0, 2) is None
    assert group_shape(g2, 0, 3) is not None


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_samsung_toy_chain_recompute_grows_with_depth(n: int) -> None:
    """Fusing more identical 3x3 convs on the same 3x4 tiling loads more halo and recomputes
    more: input bytes and MACs per conv grow with depth, as in the Samsung seed's table."""
    g = chain(n, c=8, hw=48)
    shape = group_shape(g, 0, n)
    assert shape is not None
    c = candidate_cost(g, shape, Tiling(16, 12, 8), HW)
    untiled_in = 8 * 48 * 48
    # halo: tile rows need n extra rows per internal edge side; exact sum over 3 row tiles:
    rows = sum(min(hi + n, 48) - max(lo - n, 0) for lo, hi in split_axis(48, 16))
    cols = sum(min(hi + n, 48) - max(lo - n, 0) for lo, hi in split_axis(48, 12))
    assert c.inputs[0].load_bytes == 8 * rows * cols
    assert c.inputs[0].load_bytes > untiled_in
    assert c.macs > sum(g.layer_macs(layer) for layer in g.layers)


def test_tiling_rules() -> None:
    g = chain(1, c=4, hw=10)
    shape = group_shape(g, 0, 1)
    assert shape is not None
    rules = HW.tiling
    rows_only = tiling_options(g, shape, rules.__class__(row_only=True, tile_multiple=1, max_tiles=64))
    assert all(t.tile_w == 10 for t in rows_only)
    mult = tiling_options(g, shape, rules.__class__(row_only=False, tile_multiple=4, max_tiles=64))
    assert {t.tile_h for t in mult} == {10, 8, 4}  # 10 = whole axis, otherwise multiples of 4
    few = tiling_options(g, shape, rules.__class__(row_only=False, tile_multiple=1, max_tiles=4))
    assert all(-(-10 // t.tile_h) * -(-10 // t.tile_w) * -(-4 // t.tile_c) <= 4 for t in few)
    # a single layer may split output channels; a fused group may not
    assert any(t.tile_c < 4 for t in tiling_options(g, shape, rules))
    g2 = chain(2, c=4, hw=10)
    s2 = group_shape(g2, 0, 2)
    assert s2 is not None and all(t.tile_c == 4 for t in tiling_options(g2, s2, rules))


def test_channel_split_rereads_input_once_per_split() -> None:
    """Synopsys seed: output-channel splits re-read the whole input once per split."""
    g = chain(1, c=8, hw=8)
    shape = group_shape(g, 0, 1)
    assert shape is not None
    c = candidate_cost(g, shape, Tiling(8, 8, 2), HW)
    assert c.n_tiles == 4
    assert c.inputs[0].load_bytes == 4 * 8 * 8 * 8
    per_channel = 8 * 9 + 4
    assert c.weights[0].slice_bytes == 2 * per_channel
    assert c.weights[0].total_bytes == 8 * per_channel == c.weights[0].reload_bytes


def test_region_macs_match_layer_macs_for_every_op() -> None:
    b = GraphBuilder("ops")
    x = b.input((1, 6, 12, 12))
    y = b.conv(x, 6, 3, stride=2, dilation=1)
    z = b.conv_transpose(y, 4, kernel=3, stride=2, pads=(1, 1, 0, 0))
    w = b.depthwise(z)
    f = b.fc(b.global_avg_pool(w), 5)
    g = b.build(f)
    for layer in g.layers:
        shape = g.shape(layer.output)
        whole = region_macs(g, layer, Region.full(shape))
        halves = region_macs(g, layer, Region(0, shape[1], 0, shape[2] // 2 or 1, 0, shape[3])) + (
            region_macs(g, layer, Region(0, shape[1], shape[2] // 2, shape[2], 0, shape[3])) if shape[2] > 1 else 0)
        assert whole == halves == g.layer_macs(layer)


# ---------------------------------------------------------------------------- properties
@st.composite
def random_cnn(draw: st.DrawFn) -> Graph:
    b = GraphBuilder("rand", seed=draw(st.integers(0, 1000)))
    c = draw(st.integers(1, 6))
    h = draw(st.integers(5, 20))
    w = draw(st.integers(5, 20))
    x = b.input((1, c, h, w))
    skip = x
    for _ in range(draw(st.integers(1, 6))):
        _, c, h, w = b.shape(x)
        kind = draw(st.sampled_from(["conv", "dw", "pool", "add", "concat", "up", "convt"]))
        if kind == "conv":
            k = draw(st.sampled_from([1, 3, 5]))
            s = draw(st.sampled_from([1, 1, 2])) if min(h, w) > k else 1
            d = draw(st.sampled_from([1, 2])) if k == 3 and min(h, w) > 6 else 1
            p = draw(st.integers(0, (k - 1) * d // 2 + 1))
            pads = (p, p, (k - 1) * d - p if (k - 1) * d >= p else 0, p)
            if min(h + pads[0] + pads[2], w + pads[1] + pads[3]) < (k - 1) * d + 1:
                continue
            x = b.conv(x, draw(st.integers(1, 6)), k, s, pads=pads, dilation=d)
        elif kind == "dw":
            x = b.depthwise(x, 3, draw(st.sampled_from([1, 2])) if min(h, w) > 3 else 1)
        elif kind == "pool" and min(h, w) >= 2:
            x = b.max_pool(x, 2) if draw(st.booleans()) else b.avg_pool(x, 3, 1, pads=(1, 1, 1, 1))
        elif kind == "add" and b.shape(skip) == b.shape(x) and skip != x:
            x = b.add(x, skip)
        elif kind == "concat" and b.shape(skip)[2:] == (h, w) and skip != x:
            x = b.concat(x, skip)
        elif kind == "up" and max(h, w) <= 12:
            x = b.resize(x, 2, draw(st.sampled_from(["nearest", "linear"])))
        elif kind == "convt" and max(h, w) <= 12:
            x = b.conv_transpose(x, draw(st.integers(1, 4)), kernel=2, stride=2)
        if draw(st.booleans()):
            skip = x
    if x == "input":
        x = b.conv(x, 2, 1)
    return b.build(x)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_cnn(), st.data())
def test_tiles_cover_group_output_exactly_once_and_regions_in_bounds(g: Graph, data: st.DataObject) -> None:
    n = len(g.layers)
    start = data.draw(st.integers(0, n - 1))
    stop = data.draw(st.integers(start + 1, n))
    shape = group_shape(g, start, stop)
    if shape is None:
        return
    options = tiling_options(g, shape, HW.tiling)
    tiling = data.draw(st.sampled_from(options))
    geo = group_geometry(g, shape, tiling)
    anchor_shape = g.shape(shape.anchor)
    covered = {}
    for ci, ri, xi in geo.tiles():
        r = geo.region(shape.anchor, ci, ri, xi)
        for c in range(r.c0, r.c1):
            for y in range(r.y0, r.y1):
                for x in range(r.x0, r.x1):
                    covered[(c, y, x)] = covered.get((c, y, x), 0) + 1
        assert not r.empty
        for t in geo.tensors:
            # may be empty when a tile of a layer reads only padding (pads wider than the kernel)
            assert geo.region(t, ci, ri, xi).within(g.shape(t))
        # every layer's needed input lies inside what the group holds for that input
        for i in shape.layer_range:
            layer = g.layers[i]
            out = geo.region(layer.output, ci, ri, xi)
            for t, need in zip(layer.inputs, input_regions(g, layer, out)):
                assert geo.region(t, ci, ri, xi).contains(need.clip(g.shape(t)))
    _, c, h, w = anchor_shape
    assert len(covered) == c * h * w and set(covered.values()) == {1}


def test_concat_channel_split_past_an_input_reads_nothing_of_it_within_bounds() -> None:
    """Found by hypothesis: a channel split of a concat that lies wholly in its second input
    reads an empty span of the first, and that span must still lie inside the first input
    (it used to start past its channels: [3, 3) of a 2-channel tensor)."""
    b = GraphBuilder("cat")
    x = b.input((1, 2, 5, 5))
    y = b.conv(x, 2, 3, groups=2)
    g = b.build(b.conv(b.concat(y, x), 1, 1))
    shape = group_shape(g, 1, 2)  # the concat alone
    assert shape is not None
    geo = group_geometry(g, shape, Tiling(5, 5, 1))
    assert geo.n_chans == 4
    for ci in range(4):
        for t in geo.tensors:
            assert geo.region(t, ci, 0, 0).within(g.shape(t))
    assert geo.region(y, 3, 0, 0).empty and geo.region(x, 3, 0, 0) == Region(1, 2, 0, 5, 0, 5)


@given(k=st.integers(1, 5), s=st.integers(1, 4), d=st.integers(1, 3), p=st.integers(0, 4), n=st.integers(1, 12),
       data=st.data())
def test_window_span_clips_to_exactly_the_cells_the_taps_read(k: int, s: int, d: int, p: int, n: int,
                                                              data: st.DataObject) -> None:
    """Output ``o``, tap ``t`` reads ``o*s - p + t*d``: the clipped span is the bounding box of
    the in-tensor cells read, even where the taps skip the cells beside the padding."""
    from memplan.geometry.backprop import _window

    out = (n + 2 * p - d * (k - 1) - 1) // s + 1
    if out < 1:
        return
    o0 = data.draw(st.integers(0, out - 1))
    o1 = data.draw(st.integers(o0 + 1, out))
    read = [q for o in range(o0, o1) for t in range(k) if 0 <= (q := o * s - p + t * d) < n]
    i0, i1 = _window(o0, o1, k, s, p, d, n)
    lo, hi = min(max(i0, 0), n), min(i1, n)
    assert (lo, max(hi, lo)) == ((min(read), max(read) + 1) if read else (lo, max(hi, lo)))
    if read:
        assert i0 == o0 * s - p or i0 == min(read)  # padding kept unclipped where the first tap reads it


def test_plan_counts_what_a_strided_1x1_conv_with_padding_reads() -> None:
    """A 1x1 stride-2 convolution with padding skips the input row and column next to the
    padding: every strategy's plan counts exactly the SRAM accesses the executor measures
    (found by the C runtime's random graphs: predicted 482, measured 471)."""
    from memplan.config import SolverConfig
    from memplan.driver import plan_graph
    from memplan.execute.verify import verify_plan

    b = GraphBuilder("strided_1x1")
    x = b.input((1, 1, 5, 5))
    y = b.add(b.add(b.conv(x, 1, 3), x), x)
    g = b.build(b.conv(y, 1, 1, stride=2, pads=(1, 1, 0, 1)))
    hw = load_profile("generic-npu").with_sram(2048)
    for strategy in ("layer", "greedy", "cpsat"):
        plan = plan_graph(g, hw, strategy=strategy, config=SolverConfig(time_limit_s=5, deterministic=True)).plan
        report = verify_plan(g, plan, hw)
        assert report.passed and report.measured == report.predicted, strategy
