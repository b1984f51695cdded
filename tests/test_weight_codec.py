"""Encoded weights on Ethos-U profiles (issue 12 item 6): Vela's codec sizes, lays out and
moves the weight slices; plans verify bit-exactly; the fallback without ethos-u-vela.

Sizes are checked against ``mlw_codec.encode`` called here directly on the quantised graph's
weights, not against memplan.cost.weights' own arithmetic.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import memplan.config
from ethosu import mlw_codec
from hypothesis import given, settings
from hypothesis import strategies as st

from memplan.baselines import floor, greedy, layer_by_layer
from memplan.config import HardwareProfile, SolverConfig, load_profile, profile_from_dict
from memplan.cost import weights
from memplan.cost.candidate import CostCache
from memplan.errors import ConfigError, PlanError, VerificationError
from memplan.execute import prepare, tiled, verify_plan
from memplan.execute.verify import verify_document
from memplan.execute.quantize import QLayer
from memplan.firmware.export import check_exportable
from memplan.frontend import load_model
from memplan.ir.graph import Graph
from memplan.ir.ops import WEIGHTED
from memplan.plan.memory_map import memory_map
from memplan.plan.model import Op, Plan
from memplan.plan.serialize import plan_from_json
from memplan.solve import solve_cpsat
from memplan.solve.run import SolveResult
from memplan.zoo import build_zoo_model

MODELS = Path(__file__).resolve().parent.parent / "models"
MLW = weights.WeightFormat(weights.ETHOS_U_MLW, 1, 4)
RAW = weights.WeightFormat(weights.ETHOS_U_RAW, 1, 4)


def _mlw_size(rows: np.ndarray) -> int:
    """Bytes of an Ethos-U slice of these int8 rows, from Vela's codec directly: 10-byte
    records padded to 16, then the codec's stream."""
    return -(-10 * rows.shape[0] // 16) * 16 + len(mlw_codec.encode(rows.reshape(-1).astype(int).tolist()))


def _weighted(qgraph) -> dict[str, QLayer]:  # type: ignore[no-untyped-def]
    return {ql.layer.id: ql for ql in qgraph.layers if ql.op in WEIGHTED}


def _loads(plan: Plan) -> list[tuple[str, int, int]]:
    return [(c.layer, *c.channels) for c in plan.commands if c.op is Op.LOAD_WEIGHTS]  # type: ignore[misc]


# ---------------------------------------------------------------------------- golden bytes
def test_golden_streams_of_hand_made_weights() -> None:
    """The codec's stream of tiny tensors, byte for byte, and memplan's slice layout around it."""
    zeros = np.zeros((4, 16), dtype=np.int8)
    pattern = np.array([[1, 2], [3, -4]], dtype=np.int8)
    assert weights.encode_stream(MLW, zeros).hex() == "030040001000fe00f0ffffffffffffff"
    assert weights.encode_stream(MLW, pattern).hex() == "1e005c319446b2f1ffffffffffffffff"
    for rows in (zeros, pattern):
        assert weights.encode_stream(MLW, rows) == bytes(mlw_codec.encode([int(v) for v in rows.reshape(-1)]))
    # 100 channels of 9 zero weights: 900 zeros in 32 B (a zero run longer than one chunk)
    big = np.zeros((100, 9), dtype=np.int8)
    assert weights.encode_stream(MLW, big).hex() == "030040001000fefef1" + "ff" * 11 + "1fb0" + "ff" * 10
    assert weights.encode_stream(RAW, pattern) == bytes([1, 2, 3, 252]) + bytes(12)
    # records: bias -2 (40 bits), scale 0x40000000, shift 35
    rec = weights.pack_records(np.array([-2]), np.array([1 << 30]), np.array([35]))
    assert rec.hex() == "feffffffff" + "00000040" + "23"
    data = weights.ethos_u_slice(MLW, pattern, np.array([7, -7]), np.array([1 << 30, 3 << 29]), np.array([31, 40]))
    assert len(data) == 48 and data[20:32] == bytes(12) and data[32:] == weights.encode_stream(MLW, pattern)
    bias, scale, shift = weights.unpack_records(data, 2)
    assert bias.tolist() == [7, -7] and scale.tolist() == [1 << 30, 3 << 29] and shift.tolist() == [31, 40]


def test_records_refuse_what_they_cannot_hold() -> None:
    with pytest.raises(ValueError, match="40 bits"):
        weights.pack_records(np.array([1 << 39]), np.array([0]), np.array([0]))
    with pytest.raises(ValueError, match="6 bits"):
        weights.pack_records(np.array([0]), np.array([0]), np.array([64]))
    with pytest.raises(ValueError, match="reserved"):
        weights.unpack_records(bytes(9) + b"\xc0", 1)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 40), st.floats(0.0, 0.95), st.integers(0, 2**32 - 1))
def test_decode_inverts_encode(channels: int, per: int, zeros: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = rng.integers(-128, 128, size=(channels, per)).astype(np.int8)
    rows[rng.random(rows.shape) < zeros] = 0
    for fmt in (MLW, RAW):
        stream = weights.encode_stream(fmt, rows)
        assert len(stream) % 16 == 0
        decoded = weights.decode_stream(fmt, stream, rows.size, known=stream)  # decoded in this process
        assert np.array_equal(decoded.reshape(rows.shape), rows)


# ---------------------------------------------------------------------------- real models
FAST = SolverConfig(time_limit_s=30, workers=1, deterministic=True)


def _u55(spills: bool = True) -> HardwareProfile:
    """The U55 profile with its codec; ``spills``: feature maps may leave SRAM (as on the U65),
    so that the baselines apply (the profile keeps them all in SRAM)."""
    hw = load_profile("ethos-u55-256")
    assert hw.weight_codec == "ethos-u" and hw.weight_encoding == weights.ETHOS_U_MLW and hw.scale_bias_bytes == 10
    return dataclasses.replace(hw, feature_maps_in_sram=False) if spills else hw


@pytest.fixture(scope="module")
def kws() -> tuple[Graph, HardwareProfile]:
    return load_model(MODELS / "kws_ref_model.tflite"), _u55()


@pytest.fixture(scope="module")
def kws_prepared(kws):  # type: ignore[no-untyped-def]
    return prepare(kws[0])


def test_slices_memplan_makes_decode_to_the_weights(kws, kws_prepared) -> None:  # type: ignore[no-untyped-def]
    """decode(encode(w)) == w for every slice the candidates of a real model size, and the
    graph-side int8 rows the planner encodes are the executor's."""
    g, hw = kws
    cache = CostCache(g, hw.with_sram(8 * 1024))
    from memplan.solve.candidates import enumerate_candidates

    weights._MEMO.pop(id(g), None)
    enumerate_candidates(g, cache.hw, 1, cache=cache)  # every layer alone: its channel splits
    qls = _weighted(kws_prepared.qgraph)
    sizes = weights._MEMO[id(g)].sizes
    assert len({(c0, c1) for _, c0, c1 in sizes}) > len(qls)  # channel splits, not only whole layers
    for (layer, c0, c1), size in sizes.items():
        rows = weights.channel_rows(qls[layer].layer, qls[layer].weight)[c0:c1]
        assert np.array_equal(weights.graph_rows(g, g.layer(layer))[c0:c1], rows)
        assert size == _mlw_size(rows)
        stream = weights.encode_stream(MLW, rows)
        assert np.array_equal(weights.decode_stream(MLW, stream, rows.size, known=stream), rows.reshape(-1))
    # a stream the codec did not make is decoded in a child process, with the same result
    layer, c0, c1 = next(iter(sizes))
    rows = weights.graph_rows(g, g.layer(layer))[c0:c1]
    assert np.array_equal(weights.decode_stream(MLW, weights.encode_stream(MLW, rows), rows.size), rows.reshape(-1))


@pytest.mark.parametrize("model, profile", [("kws_ref_model", "ethos-u55-256"), ("vww_96_int8", "ethos-u65-256")])
def test_weight_dma_is_the_sum_of_encoded_slices(model: str, profile: str) -> None:
    """The plan's weight DMA bytes are the codec's slice sizes summed over its LOAD_WEIGHTS
    (a CP-SAT plan on the U55 as shipped, a layer-by-layer one on the U65), the memory map
    holds each slice once; on VWW (sparse weights) the streams are far smaller than raw."""
    g = load_model(MODELS / f"{model}.tflite")
    hw = load_profile(profile)
    plan = solve_cpsat(g, hw, "energy", FAST).plan if hw.feature_maps_in_sram else layer_by_layer(g, hw)
    qls = _weighted(prepare(g).qgraph)

    def size(layer: str, c0: int, c1: int) -> int:
        return _mlw_size(weights.channel_rows(qls[layer].layer, qls[layer].weight)[c0:c1])

    loads = _loads(plan)
    assert plan.weight_encoding == weights.ETHOS_U_MLW
    assert plan.totals.dram_read_weights == sum(size(*ld) for ld in loads)
    mm = memory_map(plan, g)
    distinct = sorted(set(loads))
    assert sum(len(r.slices) for r in mm.weights) == len(distinct)
    assert mm.weights_bytes >= sum(size(*ld) for ld in distinct)
    for r in mm.weights:
        for sl in r.slices:
            assert sl.size == size(r.layer, sl.c0, sl.c1) and sl.offset % 16 == 0
            assert sl.stream_offset == -(-10 * (sl.c1 - sl.c0) // 16) * 16
    if model == "vww_96_int8":
        raw_weights = sum(g.weight_elems(layer) for layer in g.layers)
        streams = sum(sl.stream_bytes for r in mm.weights for sl in r.slices)
        assert streams < raw_weights / 3  # VWW's weights are 82.8 % zeros


def test_codec_plans_verify_bit_exactly_and_round_trip(kws, kws_prepared, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Greedy and CP-SAT plans at an SRAM that splits channels verify bit-exactly; the plan
    document records the encoding and its slices, and loads back to the same plan."""
    g, hw = kws
    hw = hw.with_sram(8 * 1024)  # small enough that some layers' weights load in channel slices
    plans = [greedy(g, hw), solve_cpsat(g, hw, "energy", FAST).plan]
    baselines = {"layer": layer_by_layer(g, hw), "greedy": plans[0]}
    for plan in plans:
        report = verify_plan(g, plan, hw, prepared=kws_prepared)
        assert report.passed and report.bit_exact and report.counts_match
        plan = dataclasses.replace(plan, provenance=dataclasses.replace(plan.provenance, objective="energy"))
        doc = json.loads(json.dumps(SolveResult(g, hw, plan, floor(g, hw), baselines).to_json("0" * 64)))
        report = verify_document(g, doc, "0" * 64, prepared=kws_prepared)  # every check, the document's too
        assert report.passed and report.bit_exact and report.counts_match
        assert doc["schema_version"] == 3
        assert doc["weight_encoding"] == {"name": "ethos-u-mlw", "encoder": "ethos-u-vela 5.2.0", "record_bytes": 10}
        layers = [layer["weights"] for layer in doc["layers"] if layer["weights"]]
        assert all(w["encoding"] == "ethos-u-mlw" and w["slices"] for w in layers)
        back, hw2 = plan_from_json(doc)
        assert back == plan and hw2 == hw
    assert any(len({(c0, c1) for l2, c0, c1 in _loads(p) if l2 == layer}) > 1
               for p in plans for layer in {ld[0] for ld in _loads(p)})  # some layer is loaded in slices


def _document(g: Graph, hw: HardwareProfile, plan: Plan) -> dict[str, object]:
    """The plan document ``memplan solve`` writes (layer-by-layer and greedy baselines)."""
    plan = dataclasses.replace(plan, provenance=dataclasses.replace(plan.provenance, objective="energy"))
    result = SolveResult(g, hw, plan, floor(g, hw), {"layer": layer_by_layer(g, hw), "greedy": greedy(g, hw)})
    return json.loads(json.dumps(result.to_json("0" * 64)))


def _corrupt(monkeypatch: pytest.MonkeyPatch, layer: str, at: str) -> None:
    original = tiled.encoded_image

    def corrupted(ql, encoding):  # type: ignore[no-untyped-def]
        image = original(ql, encoding)
        if ql.layer.id != layer:
            return image

        def bad_slice(c0: int, c1: int) -> np.ndarray:
            data = original(ql, encoding).slice(c0, c1).copy()
            index = {"stream": weights.records_bytes(c1 - c0), "bias": 3, "scale": 8}[at]
            data[index] ^= 0x01 if at != "stream" else 0x40  # bias: +-2**24; scale: its top byte
            return data

        object.__setattr__(image, "slice", bad_slice)
        return image

    monkeypatch.setattr(tiled, "encoded_image", corrupted)


@pytest.mark.parametrize("at, message", [("stream", r"weights of channels .*: the weight stream|differs from the reference"),
                                         ("bias", r"differs from the reference"),
                                         ("scale", r"scale/bias record of channel \d+ holds scale")])
def test_a_corrupted_weight_buffer_fails_verification(kws, kws_prepared, monkeypatch, at: str, message: str) -> None:  # type: ignore[no-untyped-def]
    g, hw = kws
    plan = layer_by_layer(g, hw)
    layer = next(layer.id for layer in g.layers if layer.op in WEIGHTED)
    verify_plan(g, plan, hw, prepared=kws_prepared)
    _corrupt(monkeypatch, layer, at)
    with pytest.raises(VerificationError, match=message):
        verify_plan(g, plan, hw, prepared=kws_prepared)


def test_a_misplaced_weight_buffer_fails_verification(kws, kws_prepared) -> None:  # type: ignore[no-untyped-def]
    """A weight load 16 bytes off its buffer's start: the static checks and the executor
    (alone) both refuse it."""
    g, hw = kws
    plan = layer_by_layer(g, hw)
    cmds = list(plan.commands)
    lw = [i for i, c in enumerate(cmds) if c.op is Op.LOAD_WEIGHTS]
    a = lw[1]
    cmds[a] = dataclasses.replace(cmds[a], offset=cmds[a].offset + 16)  # type: ignore[operator]
    bad = dataclasses.replace(plan, commands=tuple(cmds))
    with pytest.raises(VerificationError):
        verify_plan(g, bad, hw, prepared=kws_prepared, static_checks=False)
    with pytest.raises(VerificationError):
        verify_plan(g, bad, hw, prepared=kws_prepared)


# ---------------------------------------------------------------------------- fallback
def test_fallback_without_the_codec(kws, kws_prepared, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """ethos-u-vela 'not installed': the profile resolves to raw weights with Ethos-U records,
    plans say so and verify; an ethos-u-mlw plan is refused in one line; the 'error' fallback
    refuses the profile."""
    g, hw_mlw = kws
    mlw_doc = _document(g, hw_mlw, layer_by_layer(g, hw_mlw))
    monkeypatch.setattr(memplan.config, "_import_codec", lambda: None)
    hw = dataclasses.replace(load_profile("ethos-u55-256"), feature_maps_in_sram=False)
    assert hw.weight_encoding == weights.ETHOS_U_RAW and hw != hw_mlw
    plan = layer_by_layer(g, hw)
    assert plan.weight_encoding == weights.ETHOS_U_RAW
    per = {layer.id: weights.per_channel(g, layer) for layer in g.layers if layer.op in WEIGHTED}
    assert plan.totals.dram_read_weights == sum(-(-10 * (c1 - c0) // 16) * 16 + -(-(c1 - c0) * per[layer] // 16) * 16
                                                for layer, c0, c1 in _loads(plan))
    report = verify_plan(g, plan, hw, prepared=kws_prepared)
    assert report.passed and report.bit_exact
    doc = _document(g, hw, plan)
    assert doc["weight_encoding"] == {"name": "ethos-u-raw", "encoder": None, "record_bytes": 10}
    assert plan_from_json(doc)[0] == plan
    assert verify_document(g, doc, "0" * 64, prepared=kws_prepared).bit_exact
    with pytest.raises(PlanError, match=r"Vela's weight codec \(ethos-u-vela 5\.2\.0\), which is not installed"):
        plan_from_json(mlw_doc)
    with pytest.raises(VerificationError, match="not installed"):
        verify_plan(g, layer_by_layer(g, hw_mlw), hw_mlw, prepared=kws_prepared)
    data = {**_profile_dict("ethos-u55-256"), "weight_codec_fallback": "error"}
    with pytest.raises(ConfigError, match=r"^u55\.toml: weight_codec 'ethos-u' needs Vela's weight codec.*memplan\[ethosu\]"):
        profile_from_dict(data, "u55.toml")


def test_a_plan_of_another_codec_version_is_refused(kws) -> None:  # type: ignore[no-untyped-def]
    g, hw = kws
    doc = _document(g, hw, layer_by_layer(g, hw))
    plan_from_json(doc)
    doc["weight_encoding"]["encoder"] = "ethos-u-vela 4.0.0"
    with pytest.raises(PlanError, match=r"encoded by ethos-u-vela 4\.0\.0, but ethos-u-vela 5\.2\.0 is installed"):
        plan_from_json(doc)
    doc["schema_version"] = 2
    with pytest.raises(PlanError, match=r"^plan schema_version 2 is not 3 .*re-run memplan solve$"):
        plan_from_json(doc)


def test_c_export_refuses_encoded_weights(kws) -> None:  # type: ignore[no-untyped-def]
    g, hw = kws
    with pytest.raises(PlanError, match=r"^the C runtime has no Ethos-U weight decoder.*'ethos-u-mlw'.*generic-npu"):
        check_exportable(g, layer_by_layer(g, hw))


# ---------------------------------------------------------------------------- profiles
def _profile_dict(name: str) -> dict[str, object]:
    import tomllib
    from importlib import resources

    return tomllib.loads((resources.files("memplan") / "configs" / "hardware" / f"{name}.toml").read_text())


@pytest.mark.parametrize("change, message", [
    ({"weight_codec": "lz4"}, r"key 'weight_codec' must be one of none, ethos-u, got 'lz4'"),
    ({"weight_codec_fallback": "zip"}, r"key 'weight_codec_fallback' must be one of raw, error, got 'zip'"),
    ({"scale_bias_bytes": 8}, r"key 'scale_bias_bytes' must be 10 with weight_codec 'ethos-u'"),
    ({"weight_codec": 1}, r"key 'weight_codec' must be str, got 1"),
    ({"weights_in_place": True}, r"weight_codec 'ethos-u' needs weights DMA'd into SRAM"),
])
def test_codec_keys_are_validated(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^my\.toml: {message}"):
        profile_from_dict({**_profile_dict("ethos-u55-256"), **change}, "my.toml")


def test_profiles_without_a_codec_keep_int8_weights() -> None:
    for name in ("generic-npu", "mcu-sram"):
        hw = load_profile(name)
        assert (hw.weight_codec, hw.weight_encoding, hw.scale_bias_bytes) == ("none", "int8", hw.bias_bytes)
    with pytest.raises(ConfigError, match=r"^g\.toml: key 'weight_codec_fallback' needs weight_codec 'ethos-u'"):
        profile_from_dict({**_profile_dict("generic-npu"), "weight_codec_fallback": "raw"}, "g.toml")
    with pytest.raises(ConfigError, match=r"^g\.toml: key 'scale_bias_bytes' must equal bias_bytes \(4\)"):
        profile_from_dict({**_profile_dict("generic-npu"), "scale_bias_bytes": 10}, "g.toml")


def test_encoded_sizes_change_the_candidates_on_ethos_u() -> None:
    """The same toy model costs its weights differently with and without the codec: encoded
    slices (records of 10 B per channel, streams of the real encoded length) and int8 ones."""
    g = build_zoo_model("toy_chain", n=3, h=24, w=24, c=8)
    hw = _u55().with_sram(32 * 1024)
    raw = dataclasses.replace(hw, weight_codec="none", weight_encoding="int8", scale_bias_bytes=4)
    plan, plan_raw = layer_by_layer(g, hw), layer_by_layer(g, raw)
    assert plan.decisions == plan_raw.decisions
    assert plan.totals.dram_read_weights != plan_raw.totals.dram_read_weights
    fmt = weights.WeightFormat.of(hw)
    assert plan.totals.dram_read_weights == sum(weights.slice_bytes(g, g.layer(layer), c0, c1, fmt)
                                                for layer, c0, c1 in _loads(plan))


def test_the_floor_bounds_every_plan_with_a_codec() -> None:
    """Encoded sizes depend on the split: the floor counts each layer's cheapest split, so it
    stays below every plan (it proves plans optimal), here VWW on u55, whose plans split layers
    into slices that encode smaller than the whole layer."""
    g = load_model(MODELS / "vww_96_int8.tflite")
    hw = _u55().with_sram(48 * 1024)
    fl = floor(g, hw)
    fmt = weights.WeightFormat.of(hw)
    whole = sum(weights.slice_bytes(g, layer, 0, g.out_channels(layer), fmt) for layer in g.layers if layer.op in WEIGHTED)
    assert fl.dram_read_weights < whole  # some split encodes smaller than its whole layer
    cache = CostCache(g, hw)
    for plan in (layer_by_layer(g, hw, cache), greedy(g, hw, cache=cache)):
        assert fl.dram_read_weights <= plan.totals.dram_read_weights
        assert fl.energy_fj <= plan.totals.energy_fj


def test_a_codec_profile_overridden_to_plain_int8_weights() -> None:
    """api.hardware(..., weight_codec="none") drops the codec's own keys with it (its fallback
    and 10-byte records) unless they are given too, which stays a one-line error."""
    import memplan

    hw = memplan.hardware("ethos-u65-256", weight_codec="none")
    assert (hw.weight_codec, hw.weight_encoding, hw.scale_bias_bytes) == ("none", "int8", hw.bias_bytes)
    with pytest.raises(ConfigError, match="weight_codec_fallback"):
        memplan.hardware("ethos-u65-256", weight_codec="none", weight_codec_fallback="raw")
