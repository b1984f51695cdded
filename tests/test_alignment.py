"""SRAM alignment as a profile constraint (``sram_alignment``): every planner places every
buffer at a multiple of it, reserves sizes rounded up to it (the SRAM peak counts reserved
bytes), the plan file states it, and the validator and ``memplan verify`` reject a plan with a
misaligned offset.

Models: the zoo toy chain (odd tensor sizes), ResNet-8 from models/ and a small zoo U-Net
(concatenated skips), each planned layer by layer, greedily and with CP-SAT on generic-npu
copies with alignment 1, 16 and 32.
"""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from pathlib import Path

import pytest

from memplan.alloc import align_up
from memplan.config import HardwareProfile, SolverConfig, load_profile, profile_from_dict
from memplan.driver import plan_graph
from memplan.errors import ConfigError, MemplanError, PlanError
from memplan.execute.verify import Prepared, prepare, verify_document
from memplan.frontend import load_model
from memplan.ir.graph import Graph
from memplan.plan.build import block_offsets, build_plan, resolve
from memplan.plan.model import Plan
from memplan.plan.serialize import CLAIMS, plan_to_json, profile_to_json
from memplan.plan.validate import validate_plan
from memplan.zoo import build_zoo_model

MODELS = Path(__file__).resolve().parent.parent / "models"
SHA = "ab" * 32
CPSAT = SolverConfig(time_limit_s=10, deterministic=True, max_fuse_depth=6)
CASES = {
    "toy_chain": (lambda: build_zoo_model("toy_chain", n=3, h=15, w=15, c=5), 2 * 1024),
    "resnet8": (lambda: load_model(MODELS / "resnet8_float.onnx"), 64 * 1024),
    "unet": (lambda: build_zoo_model("unet", resolution=36, base=4, levels=2), 32 * 1024),
}
STRATEGIES = ("layer", "greedy", "cpsat")


def _hw(alignment: int, sram: int) -> HardwareProfile:
    return replace(load_profile("generic-npu").with_sram(sram), sram_alignment=alignment)


@functools.lru_cache(maxsize=None)
def _model(name: str) -> tuple[Graph, Prepared]:
    graph = CASES[name][0]()
    return graph, prepare(graph)


@functools.lru_cache(maxsize=None)
def _planned(name: str, strategy: str, alignment: int) -> tuple[HardwareProfile, Plan, dict]:  # type: ignore[type-arg]
    graph, _ = _model(name)
    hw = _hw(alignment, CASES[name][1])
    outcome = plan_graph(graph, hw, strategy=strategy, config=CPSAT)
    return hw, outcome.plan, json.loads(json.dumps(outcome.to_json(SHA)))


def _offsets(plan: Plan) -> list[tuple[str, int]]:
    """Every SRAM offset of the plan: buffers, and the commands' (staging slots, weights)."""
    out = [(b.name, b.offset) for b in plan.buffers]
    for k, c in enumerate(plan.commands):
        for what, off in (("offset", c.offset), ("weights_offset", c.weights_offset)):
            if off is not None:
                out.append((f"command {k} {what}", off))
        for op in (*c.inputs, *((c.output,) if c.output is not None else ())):
            out.append((f"command {k} operand {op.tensor}", op.offset))
    return out


def test_the_shipped_profiles_state_their_alignment() -> None:
    assert load_profile("generic-npu").sram_alignment == 1
    assert load_profile("mcu-sram").sram_alignment == 1
    for name in ("ethos-u55-256", "ethos-u65-256", "ethos-u65-256-client-server"):
        assert load_profile(name).sram_alignment == 16, name


@pytest.mark.parametrize("model", sorted(CASES))
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("alignment", [16, 32])
def test_every_offset_aligned_and_the_plan_verifies(model: str, strategy: str, alignment: int) -> None:
    graph, prepared = _model(model)
    hw, plan, doc = _planned(model, strategy, alignment)
    misaligned = [(what, off) for what, off in _offsets(plan) if off % alignment]
    assert not misaligned, misaligned[:5]
    # the peak counts reserved bytes: a multiple of the alignment, and every buffer's fits
    assert plan.totals.sram_peak % alignment == 0
    assert plan.totals.sram_peak == max(b.offset + align_up(b.size, alignment) for b in plan.buffers)
    assert plan.totals.sram_peak <= hw.sram_bytes
    assert doc["alignment"]["sram"] == alignment and doc["hardware"]["sram_alignment"] == alignment
    report = verify_document(graph, doc, SHA, prepared=prepared)
    assert report.passed and report.bit_exact
    # alignment only adds constraints: the same decisions need no less SRAM aligned than byte-
    # granular, placed by the planners' first fit or at the aligned plan's own offsets (which a
    # byte-granular plan may use too). Different decisions may need less: a planner whose
    # byte-granular choice no longer fits picks another (finer tiles, more DRAM traffic).
    hw1 = replace(hw, sram_alignment=1)
    assert build_plan(graph, hw1, plan.decisions).totals.sram_peak <= plan.totals.sram_peak
    at_ours = build_plan(graph, hw1, plan.decisions, block_offsets(resolve(graph, hw, plan.decisions), plan.buffers))
    validate_plan(at_ours, graph, hw1)
    assert at_ours.totals.sram_peak <= plan.totals.sram_peak
    _, unaligned, _ = _planned(model, strategy, 1)
    if plan.decisions == unaligned.decisions:
        assert plan.totals.sram_peak >= unaligned.totals.sram_peak


def test_unaligned_plans_have_misaligned_offsets() -> None:
    """The models exercise alignment: byte-granular plans of them have offsets off 16 B."""
    for model in ("toy_chain", "unet"):
        _, plan, doc = _planned(model, "greedy", 1)
        assert any(off % 16 for _, off in _offsets(plan)), model
        assert doc["alignment"]["sram"] == 1 and "sram_alignment" not in doc["hardware"]


def _shifted(graph: Graph, hw: HardwareProfile, plan: Plan, by: int) -> Plan:
    """The plan rebuilt with its topmost SRAM block moved up by ``by`` bytes (commands moved
    with it: a plan consistent in everything but alignment)."""
    r = resolve(graph, hw, plan.decisions)
    offsets = block_offsets(r, plan.buffers)
    top = max(offsets, key=lambda name: offsets[name])
    offsets[top] += by
    return build_plan(graph, hw, plan.decisions, offsets, plan.provenance)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_misaligned_offset_is_rejected(strategy: str) -> None:
    graph, prepared = _model("unet")
    hw, plan, good = _planned("unet", strategy, 16)
    bad = _shifted(graph, hw, plan, 8)
    assert any(b.offset % 16 for b in bad.buffers)
    with pytest.raises(PlanError, match="not a multiple of the profile's SRAM alignment of 16 B"):
        validate_plan(bad, graph, hw)
    # the same shift on a byte-granular profile is a valid plan: only alignment rejects it
    hw1 = replace(hw, sram_alignment=1)
    validate_plan(_shifted(graph, hw1, build_plan(graph, hw1, plan.decisions), 8), graph, hw1)
    claims = {k: good[k] for k in CLAIMS if k in good}
    doc = json.loads(json.dumps(plan_to_json(replace(bad, provenance=replace(
        bad.provenance, model_sha256=SHA, model_input_shapes=None)), hw, graph, claims)))
    with pytest.raises(MemplanError) as exc:
        verify_document(graph, doc, SHA, prepared=prepared)
    assert "\n" not in exc.value.message and "alignment" in exc.value.message


def test_a_reserved_size_beyond_the_sram_is_rejected() -> None:
    """A buffer whose bytes fit but whose reserved (rounded-up) bytes do not is refused."""
    found = [(m, s, b) for m in ("toy_chain", "unet") for s in STRATEGIES
             for b in _planned(m, s, 16)[1].buffers if b.size % 16]
    assert found  # core buffers hold their exact bytes; the block around them is rounded up
    model, strategy, odd = found[0]
    graph, _ = _model(model)
    hw, plan, _ = _planned(model, strategy, 16)
    tight = replace(hw, sram_bytes=odd.end)
    with pytest.raises(PlanError, match="rounded up to the 16-B alignment"):
        validate_plan(replace(plan, sram_bytes=tight.sram_bytes, buffers=tuple(
            b for b in plan.buffers if b.name == odd.name)), graph, tight)


@pytest.mark.parametrize("value", [3, 24, 48, 100])
def test_a_non_power_of_two_alignment_is_refused(value: int) -> None:
    data = {**profile_to_json(load_profile("generic-npu")), "sram_alignment": value}
    with pytest.raises(ConfigError) as exc:
        profile_from_dict(data, "my.toml")
    msg = str(exc.value)
    assert "\n" not in msg and "sram_alignment" in msg and "power of two" in msg and str(value) in msg


@pytest.mark.parametrize("value", [0, -16, 8192])
def test_an_alignment_out_of_range_is_refused(value: int) -> None:
    data = {**profile_to_json(load_profile("generic-npu")), "sram_alignment": value}
    with pytest.raises(ConfigError, match="sram_alignment"):
        profile_from_dict(data, "my.toml")


def test_a_profile_file_with_a_bad_alignment_is_refused(tmp_path: Path) -> None:
    from importlib import resources

    text = (resources.files("memplan") / "configs" / "hardware" / "generic-npu.toml").read_text()
    path = tmp_path / "odd.toml"
    path.write_text(text.replace("sram_alignment = 1", "sram_alignment = 12"))
    with pytest.raises(ConfigError) as exc:
        load_profile(str(path))
    assert "\n" not in str(exc.value) and "power of two" in str(exc.value)


# ---------------------------------------------------------------------------- channel bricks
def test_the_ethos_profiles_reserve_16_channel_bricks() -> None:
    assert load_profile("generic-npu").channel_brick == load_profile("mcu-sram").channel_brick == 1
    for name in ("ethos-u55-256", "ethos-u65-256", "ethos-u65-256-client-server"):
        assert load_profile(name).channel_brick == 16, name


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_bricked_buffers_reserve_whole_bricks_and_verify(strategy: str) -> None:
    """The toy chain has 5 channels: with 16-channel bricks every feature-map buffer reserves
    16 channel planes per region (5 of them hold data, channel-major), the plan verifies
    bit-exactly, and the same decisions need more SRAM than with raw channel counts."""
    graph, prepared = _model("toy_chain")
    hw = replace(_hw(16, 4 * 1024), channel_brick=16)
    outcome = plan_graph(graph, hw, strategy=strategy, config=CPSAT)
    plan = outcome.plan
    doc = json.loads(json.dumps(outcome.to_json(SHA)))
    assert doc["hardware"]["channel_brick"] == 16
    for b in plan.buffers:
        if b.tensor is None:
            continue  # weights are not feature maps
        regions = [op.region for c in plan.commands for op in (*c.inputs, *((c.output,) if c.output else ()))
                   if op.offset == b.offset and op.tensor == b.tensor] + [
            c.region for c in plan.commands if c.op.value in ("load", "store") and c.offset == b.offset
            and c.tensor == b.tensor and c.output is None]
        planes = max((r.rows * r.cols for r in regions), default=0)
        assert b.size % 16 == 0 and (not planes or b.size >= 16 * planes), b.name
    assert verify_document(graph, doc, SHA, prepared=prepared).bit_exact
    raw = replace(hw, channel_brick=1)
    assert build_plan(graph, raw, plan.decisions).totals.sram_peak < plan.totals.sram_peak


def test_a_resident_buffer_holds_the_bricked_tensor() -> None:
    """mcu-sram keeps every feature map resident: with bricks the resident buffers of the
    model input and output are their bricked size, which the executor and validator check."""
    graph, prepared = _model("toy_chain")
    hw = replace(load_profile("mcu-sram").with_sram(64 * 1024), channel_brick=16)
    outcome = plan_graph(graph, hw, strategy="cpsat", config=CPSAT)
    res = {b.tensor: b for b in outcome.plan.buffers if b.kind.value == "resident"}
    _, c, h, w = graph.shape(graph.inputs[0])
    assert res[graph.inputs[0]].size == 16 * h * w and c == 5
    assert verify_document(graph, json.loads(json.dumps(outcome.to_json(SHA))), SHA, prepared=prepared).bit_exact
