"""CostCache and the fast preprocessing change no result.

The feasibility check, the candidate enumeration and both baselines give the same results with
one cache shared between them as each on its own, and the same as before the cache existed:
golden digests recorded with the code before it, and oracles that restate the old, slower
rules (every tiling costed, spans back-propagated tile by tile, the O(k^2 d) Pareto filter).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from memplan.baselines import (
    _Best,
    check_feasible,
    greedy,
    layer_by_layer,
    spilled_energy,
)
from memplan.config import HardwareProfile, load_profile, parse_size
from memplan.cost.candidate import Candidate, CostCache, candidate_cost, footprint
from memplan.errors import InfeasibleError
from memplan.geometry.backprop import input_channel_spans, input_spans
from memplan.geometry.group import (
    CHANNELS,
    COLUMNS,
    ROWS,
    GroupShape,
    SpanCache,
    axis_spans,
    group_shape,
    split_axis,
    tiling_options,
)
from memplan.ir.builder import GraphBuilder
from memplan.ir.graph import Graph
from memplan.plan.model import Decisions
from memplan.solve.candidates import _pareto, enumerate_candidates
from memplan.zoo import build_zoo_model


# ---------------------------------------------------------------------------- cases
def mini_densenet() -> Graph:
    """Two dense blocks (a CONCAT of all earlier features per layer) and a transition."""
    b = GraphBuilder("mini_densenet")
    x = b.conv(b.input((1, 3, 24, 24)), 16, 3, stride=2)
    x = b.max_pool(x, 3, 1, pads=(1, 1, 1, 1))
    for block in range(2):
        features = [x]
        for _ in range(3):
            y = features[0] if len(features) == 1 else b.concat(*features)
            y = b.conv(y, 16, 1)
            features.append(b.conv(y, 8, 3, activation=None, bias=False))
        x = b.concat(*features)
        if block == 0:
            x = b.avg_pool(b.conv(x, b.shape(x)[1] // 2, 1), 2, 2)
    return b.build(b.fc(b.global_avg_pool(x), 10))


def mixed_ops() -> Graph:
    """Every region rule: strided and dilated convs, depthwise, pools, LRN, channel shuffle,
    a transposed conv and a bilinear resize joined by an add, an input read twice."""
    b = GraphBuilder("mixed_ops")
    x = b.conv(b.input((1, 4, 20, 20)), 8, 3, stride=2)  # 10x10
    x = b.lrn(b.conv(x, 8, 3, dilation=2), 3)
    x = b.channel_shuffle(b.depthwise(x), 2)
    down = b.max_pool(x, 2)  # 5x5
    up = b.conv_transpose(b.conv(down, 8, 1), 8, 2, 2)  # 10x10
    x = b.add(up, b.resize(b.avg_pool(x, 2), 2, mode="bilinear"), x)
    x = b.add(x, x)
    return b.build(b.softmax(b.fc(b.global_avg_pool(x), 6)))


def _hw(profile: str, sram: str, **changes: object) -> HardwareProfile:
    hw = load_profile(profile).with_sram(parse_size(sram))
    tiling = changes.pop("tiling", None)
    hw = replace(hw, **changes)
    return hw.with_tiling(**tiling) if tiling else hw  # type: ignore[arg-type]


#: the Ethos-U tiling rules the dscnn-u55 digests were recorded with (the profiles have since
#: followed Vela: row stripes only, with rolling buffers; and 16-channel bricks, which those
#: cases turn off with channel_brick=1)
RECORDED_ETHOS_TILING = {"row_only": False, "rolling_buffers": False}
#: the U55 profile sizes its weights with Vela's codec (memplan.cost.weights) since issue 12 item 6;
#: the digests below were recorded with int8 weights, and they test the cache, not the codec: the
#: dscnn-u55 case keeps int8 weights (test_weight_codec tests the encoded sizes)
INT8_WEIGHTS = {"weight_codec": "none", "weight_encoding": "int8", "scale_bias_bytes": 4}

CASES: dict[str, tuple[Callable[[], Graph], Callable[[], HardwareProfile], int]] = {
    "resnet8": (lambda: build_zoo_model("resnet8"), lambda: _hw("generic-npu", "16KiB"), 6),
    "resnet8-infeasible": (lambda: build_zoo_model("resnet8"), lambda: _hw("generic-npu", "2KiB"), 4),
    # the U55 profile keeps its arena in SRAM since issue 12 (Vela's Shared_Sram); this case keeps
    # testing spills on its figures (1 B/cycle flash, the Ethos-U cycle model)
    # byte-granular (sram_alignment 1, as when the digests were recorded); the profile's own
    # 16-byte alignment: test_a_shared_cache_changes_nothing_on_an_aligned_profile
    "dscnn-u55": (lambda: build_zoo_model("dscnn"),
                  lambda: _hw("ethos-u55-256", "24KiB", feature_maps_in_sram=False, sram_alignment=1,
                              channel_brick=1, tiling=RECORDED_ETHOS_TILING, **INT8_WEIGHTS), 6),
    "dscnn-mcu": (lambda: build_zoo_model("dscnn"), lambda: _hw("mcu-sram", "64KiB"), 4),
    "toy_chain-single-buffer": (lambda: build_zoo_model("toy_chain", n=4, h=32, w=32, c=8),
                                lambda: _hw("generic-npu", "4KiB", dma_overlaps_compute=False), 4),
    "toy_chain-rows": (lambda: build_zoo_model("toy_chain", n=4, h=32, w=32, c=8),
                       lambda: _hw("generic-npu", "6KiB", tiling={"row_only": True, "tile_multiple": 2,
                                                                  "max_tiles": 16}), 4),
    "mini_densenet": (mini_densenet, lambda: _hw("generic-npu", "12KiB"), 6),
    "mixed_ops": (mixed_ops, lambda: _hw("generic-npu", "8KiB"), 6),
    "mixed_ops-in-place": (mixed_ops, lambda: _hw("generic-npu", "6KiB", weights_in_place=True), 5),
}

#: sha256 (first 16 hex digits) of each stage's result as run_stage gives it, in STAGES order,
#: recorded with the code before CostCache (613b024). A deliberate change of the cost model or of
#: a baseline's rule changes them: record them again then.
GOLDEN = {
    # every candidate digest re-recorded when candidates gained compute_cycles (issue 12: the cycle
    # model of memplan.cost.cycles); the feasibility check and both baselines are unchanged
    "resnet8": ("dc937b59892604f5", "325d6d18a50a20e8", "729dfc7ea55f435f", "3c1f2f731d496356"),
    "resnet8-infeasible": ("9839eaeeb4d9c666", "994d6f467b0c7407", "9839eaeeb4d9c666", "9839eaeeb4d9c666"),
    # dscnn-u55's candidates re-recorded when the Ethos-U model followed Vela 5.2's regor core
    # (pooling x4, fractional OFM blocks, one fill per op; its global average pool then as Vela's
    # MEAN, a depthwise sum and a multiply): their compute_cycles changed, the feasibility check
    # and both baselines did not
    "dscnn-u55": ("dc937b59892604f5", "608ee94a5c881ea4", "684d3010dcd0d33e", "f0fc6e80398a6c52"),
    "dscnn-mcu": ("dc937b59892604f5", "5cbbbf23433d6bbe", "c99abbe00a4310d6", "c99abbe00a4310d6"),
    "toy_chain-single-buffer": ("dc937b59892604f5", "87efe5f2b7ab851b", "f38a517cf3e595b3", "eb692627bb5b04d5"),
    "toy_chain-rows": ("dc937b59892604f5", "bb6b8202c275f1ff", "15228ea5ce7efba6", "15228ea5ce7efba6"),
    "mini_densenet": ("dc937b59892604f5", "5bf147aa1faa6d70", "e9e6a74c16837f8d", "80b4a3f96e786aa8"),
    # the candidates of mixed_ops re-recorded when window spans became exact at their padded ends
    # (a one-row tile of its dilated conv no longer counts the row its taps skip): baselines unchanged
    "mixed_ops": ("dc937b59892604f5", "25607fedef8ecfdd", "fc340a67c2564305", "4ed888f60fce8468"),
    "mixed_ops-in-place": ("dc937b59892604f5", "5730bb2b0a5fd830", "68e949da6c6176c9", "e3160cfc8e465a5e"),
}

STAGES = ("check_feasible", "enumerate_candidates", "layer_by_layer", "greedy")


def _decisions(d: Decisions) -> str:
    return repr((d.groups, sorted(d.keep), sorted(d.resident)))


def run_stage(stage: str, g: Graph, hw: HardwareProfile, max_len: int, cache: CostCache | None = None) -> str:
    """A stage's result (or its error) as a canonical string."""
    kw = {} if cache is None else {"cache": cache}
    try:
        if stage == "check_feasible":
            return repr(check_feasible(g, hw, **kw))
        if stage == "enumerate_candidates":
            return repr(enumerate_candidates(g, hw, max_len, **kw))
        if stage == "layer_by_layer":
            return _decisions(layer_by_layer(g, hw, **kw).decisions)
        return _decisions(greedy(g, hw, max_len, **kw).decisions)
    except InfeasibleError as exc:
        return f"InfeasibleError: {exc}"


#: fields added after the digests were recorded, at the value that means "as before" (a tiling
#: without rolling buffers, a core buffer of one slot): left out of the text, so the digests still
#: compare with the code they were recorded with; a non-default value stays in and changes them
#: (copy_bytes: an input or a group without rolling buffers copies nothing)
_NEW_DEFAULTS = (", rolling=False", ", slot=0", ", copy_bytes=0")
#: fields added after the digests were recorded that restate what they cover (a weight's first
#: slice, part of its total, and its channel slices, given by the tiling; memplan.cost.candidate.
#: WeightCost.first_bytes and slices): left out of the text
_DERIVED = re.compile(r", (first_bytes|slices)=\d+")


def _digest(text: str) -> str:
    for field in _NEW_DEFAULTS:
        text = text.replace(field, "")
    text = _DERIVED.sub("", text)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


Case = tuple[str, Graph, HardwareProfile, int, dict[str, str]]  # name, graph, profile, max_len, results


@pytest.fixture(scope="module", params=list(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    """A case and its stages run separately, each with a fresh cache (the default)."""
    make_graph, make_hw, max_len = CASES[request.param]
    g, hw = make_graph(), make_hw()
    return request.param, g, hw, max_len, {s: run_stage(s, g, hw, max_len) for s in STAGES}


# ---------------------------------------------------------------------------- same results
def test_a_shared_cache_changes_nothing_on_an_aligned_profile() -> None:
    g, hw = build_zoo_model("dscnn"), _hw("ethos-u55-256", "24KiB", feature_maps_in_sram=False, channel_brick=1,
                                          tiling=RECORDED_ETHOS_TILING)
    assert hw.sram_alignment == 16
    separate = {s: run_stage(s, g, hw, 6) for s in STAGES}
    cache = CostCache(g, hw)
    assert {s: run_stage(s, g, hw, 6, cache) for s in STAGES} == separate
    unaligned = dataclasses.replace(hw, sram_alignment=1, **INT8_WEIGHTS)
    assert _digest(run_stage(STAGES[1], g, unaligned, 6)) == GOLDEN["dscnn-u55"][1]
    assert _digest(separate[STAGES[1]]) != GOLDEN["dscnn-u55"][1]  # aligned footprints: other candidates


@pytest.mark.parametrize("model", ["dscnn", "unet"])
def test_a_shared_cache_changes_nothing_with_rolling_stripes(model: str) -> None:
    """The shipped Ethos-U rules (row stripes, rolling buffers): rolling spans are cached
    apart from the recomputing ones, so a shared cache gives every stage the same result."""
    g = build_zoo_model(model) if model == "dscnn" else build_zoo_model("unet", resolution=32, base=4, levels=2)
    hw = _hw("ethos-u55-256", "24KiB", feature_maps_in_sram=False)
    assert hw.tiling.rolling_buffers and hw.tiling.row_only
    separate = {s: run_stage(s, g, hw, 6) for s in STAGES}
    assert "rolling=True" in separate["enumerate_candidates"]
    cache = CostCache(g, hw)
    assert {s: run_stage(s, g, hw, 6, cache) for s in STAGES} == separate


def test_results_equal_the_code_before_the_cache(case: Case) -> None:
    name, _, _, _, separate = case
    assert tuple(_digest(separate[s]) for s in STAGES) == GOLDEN[name]


@pytest.mark.parametrize("order", [STAGES, tuple(reversed(STAGES))])
def test_one_cache_shared_by_all_stages_changes_nothing(case: Case, order: tuple[str, ...]) -> None:
    _, g, hw, max_len, separate = case
    cache = CostCache(g, hw)
    assert {s: run_stage(s, g, hw, max_len, cache) for s in order} == separate


def test_cached_candidates_equal_fresh_costs(case: Case) -> None:
    _, g, hw, max_len, _ = case
    cache = CostCache(g, hw)
    enumerate_candidates(g, hw, max_len, cache)
    keys = sorted(cache._candidates)
    for start, stop, tiling in keys[:: max(1, len(keys) // 60)]:
        shape = group_shape(g, start, stop)
        assert shape is not None
        fresh = candidate_cost(g, shape, tiling, hw)  # no span cache at all
        assert cache.candidate(shape, tiling) == fresh
        for keep in (True, False):
            assert cache.footprint(fresh, keep) == footprint(fresh, keep, hw)


def test_a_cache_serves_one_graph_and_profile_only() -> None:
    g = build_zoo_model("resnet8")
    hw = load_profile("generic-npu")
    cache = CostCache(g, hw)
    with pytest.raises(ValueError, match="another graph"):
        check_feasible(g, hw.with_sram(1024 * 1024), cache)
    with pytest.raises(ValueError, match="another graph"):
        enumerate_candidates(build_zoo_model("resnet8"), hw, 4, cache)


# ---------------------------------------------------------------------------- oracles
def _all_fitting(g: Graph, shape: GroupShape, hw: HardwareProfile, spans: SpanCache) -> list[tuple[Candidate, bool]]:
    """The rule before the cache: cost every tiling, keep the weights if that fits."""
    out = []
    for tiling in tiling_options(g, shape, hw.tiling):
        c = candidate_cost(g, shape, tiling, hw, spans)
        for keep in (True, False):
            if footprint(c, keep, hw) <= hw.sram_bytes:
                out.append((c, keep))
                break
    return out


def test_layer_by_layer_walk_picks_what_costing_every_tiling_picks(case: Case) -> None:
    _, g, hw, _, separate = case
    if hw.feature_maps_in_sram:
        return
    chosen = []
    spans: SpanCache = {}
    for i in range(len(g.layers)):
        shape = group_shape(g, i, i + 1)
        assert shape is not None
        options = _all_fitting(g, shape, hw, spans)
        if not options:
            assert separate["check_feasible"].startswith(f"InfeasibleError: layer {g.layers[i].id!r}")
            assert separate["layer_by_layer"] == separate["check_feasible"]
            return
        fewest = min(c.n_tiles for c, _ in options)
        chosen.append(min((ck for ck in options if ck[0].n_tiles == fewest), key=lambda ck: spilled_energy(*ck, hw)))
    assert separate["check_feasible"] == "None"
    groups = [(c.start, c.stop, c.tiling) for c, _ in chosen]
    plan = layer_by_layer(g, hw)
    assert [(d.start, d.stop, d.tiling) for d in plan.decisions.groups] == groups
    assert plan.decisions.keep == {w.layer for c, k in chosen if k for w in c.weights}


def test_greedy_best_first_search_finds_the_cheapest_fitting_candidate(case: Case) -> None:
    _, g, hw, max_len, _ = case
    best = _Best(CostCache(g, hw))
    spans: SpanCache = {}
    n = len(g.layers)
    for start in range(n):
        for stop in range(start + 1, min(n, start + min(max_len, 3)) + 1):
            shape = group_shape(g, start, stop)
            options = _all_fitting(g, shape, hw, spans) if shape is not None else []
            expected = min(((spilled_energy(c, k, hw), c, k) for c, k in options), key=lambda e: (e[0], e[1].n_tiles),
                           default=None)
            assert best(start, stop) == expected


def _old_pareto(m: np.ndarray) -> tuple[list[int], dict[int, int]]:
    le = (m[:, None, :] <= m[None, :, :]).all(axis=2)
    lt = (m[:, None, :] < m[None, :, :]).any(axis=2)
    k = len(m)
    idx = np.arange(k)
    dominated_by = le & (lt | (idx[:, None] < idx[None, :]))
    np.fill_diagonal(dominated_by, False)
    keep = [i for i in range(k) if not dominated_by[:, i].any()]
    dom = {i: next(j for j in keep if dominated_by[j, i]) for i in range(k) if i not in keep}
    return keep, dom


@pytest.mark.parametrize("seed", range(20))
def test_pareto_filter_matches_the_pairwise_definition(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(seed)
    k, d = int(rng.integers(1, 40)), int(rng.integers(1, 6))
    m = rng.integers(0, 4, size=(k, d))  # small values: many ties and duplicates
    monkeypatch.setattr("memplan.solve.candidates._vector", lambda row: list(row))
    assert _pareto(list(m)) == _old_pareto(m)  # type: ignore[arg-type]


def _fresh_axis(g: Graph, shape: GroupShape, axis: int, size: int) -> tuple[dict[str, tuple], dict[int, list[int]]]:
    """Spans back-propagated tile by tile through the whole group, and the clipped length each
    layer reads of each input summed over the tiles (how it was done before AxisSpans)."""
    per_tile = []
    reads = {i: [0] * len(g.layers[i].inputs) for i in shape.layer_range}
    for anchor_span in split_axis(g.shape(shape.anchor)[axis], size):
        need = {shape.anchor: anchor_span}
        for i in reversed(shape.layer_range):
            layer = g.layers[i]
            lo, hi = need[layer.output]
            spans = input_channel_spans(g, layer, lo, hi) if axis == CHANNELS else input_spans(g, layer, axis, lo, hi)
            for k, (t, (a, b)) in enumerate(zip(layer.inputs, spans)):
                n = g.shape(t)[axis]
                reads[i][k] += max(0, min(b, n) - max(a, 0))
                if axis != CHANNELS:  # clip
                    a = min(max(a, 0), n)
                    b = max(min(b, n), a)
                old = need.get(t)
                if old is None or old[0] >= old[1]:
                    need[t] = (a, b)
                elif a < b:
                    need[t] = (min(old[0], a), max(old[1], b))
        per_tile.append(need)
    return {t: tuple(sp[t] for sp in per_tile) for t in per_tile[0]}, reads


def test_spans_extended_layer_by_layer_equal_a_fresh_back_propagation(case: Case) -> None:
    _, g, hw, max_len, _ = case
    cache: SpanCache = {}
    n = len(g.layers)
    checked = 0
    for start in range(n):
        for stop in range(start + 1, min(n, start + max_len) + 1):
            shape = group_shape(g, start, stop)
            if shape is None:
                continue
            for tiling in tiling_options(g, shape, hw.tiling)[::7]:
                for axis, size in ((ROWS, tiling.tile_h), (COLUMNS, tiling.tile_w), (CHANNELS, tiling.tile_c)):
                    got = axis_spans(g, shape, axis, size, cache)
                    spans, reads = _fresh_axis(g, shape, axis, size)
                    assert got.spans == spans
                    assert got.total == {t: sum(b - a for a, b in s) for t, s in spans.items()}
                    assert got.largest == {t: max(b - a for a, b in s) for t, s in spans.items()}
                    assert got.reads == {i: tuple(r) for i, r in reads.items()}
                    checked += 1
    assert checked
