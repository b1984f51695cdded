"""Prefetched weight buffers (issue 12 item 2): weight DMA overlaps compute only where a buffer
is live to load it into before the layer runs.

The latency rule (memplan.cost.candidate.serial_weight_bytes) is checked three ways: by hand on
a two-layer chain, against the command hazards firmware respects (a load the rule counts as
overlapping never waits for the compute it is said to overlap), and by the cost model, the
validator and the executor agreeing on every plan's cycles."""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction

import jsonschema
import pytest

from memplan.baselines import floor
from memplan.config import SolverConfig, load_profile
from memplan.cost.candidate import prefetchable, serial_weight_bytes
from memplan.driver import plan_graph
from memplan.errors import PlanError
from memplan.execute.verify import verify_plan
from memplan.frontend import load_model
from memplan.geometry.group import Tiling
from memplan.ir.builder import GraphBuilder
from memplan.plan.build import block_offsets, build_plan, group_timing, resolve
from memplan.plan.hazards import waits_for
from memplan.plan.memory_map import memory_map
from memplan.plan.model import BufferKind, Decisions, GroupDecision, Op
from memplan.plan.prefetch import buffer_weights
from memplan.plan.serialize import plan_from_json, schema
from memplan.plan.validate import validate_plan
from memplan.solve.run import SolveResult
from test_tiled import MODELS

CONFIG = SolverConfig(time_limit_s=5, deterministic=True, max_fuse_depth=4)


def _chain():  # type: ignore[no-untyped-def]
    """conv 3x3 (8 -> 16 channels) then conv 1x1 (16 -> 32) on 8x8: weights 1,152 + 64 B and 512 + 128 B."""
    b = GraphBuilder("chain")
    x = b.conv(b.input((1, 8, 8, 8)), 16, 3)
    return b.build(b.conv(x, 32, 1))


def _whole(graph, i):  # type: ignore[no-untyped-def]
    """Layer ``i`` untiled (a Tiling gives tile sizes: the whole output)."""
    _, c, h, w = graph.shape(graph.layers[i].output)
    return GroupDecision(i, i + 1, Tiling(h, w, c))


def _layer_plan(graph, hw, prefetch=frozenset()):  # type: ignore[no-untyped-def]
    groups = tuple(_whole(graph, i) for i in range(len(graph.layers)))
    return build_plan(graph, hw, Decisions(groups, prefetch=frozenset(prefetch)))


def test_prefetch_cycles_by_hand() -> None:
    """generic-npu: 256 MACs/cycle, 16 B/cycle DRAM, DMA overlapping compute; layer by layer.
    Layer 0 (3x3, 8 -> 16, 8x8): 73,728 MACs = 288 cycles; DMA: input 512 B, output 1,024 B,
    weights 1,152 + 16 x 4 = 1,216 B, which it waits for (nothing runs before it): 76 cycles;
    max(288 + 76, 2,752 / 16 = 172) = 364. Layer 1 (1x1, 16 -> 32): 32,768 MACs = 128 cycles;
    DMA: input 1,024 B, output 2,048 B, weights 512 + 32 x 4 = 640 B (40 cycles).
    Unprefetched: max(128 + 40, 3,712 / 16 = 232) = 232, total 596. Prefetched, layer 0's DMA
    engine loads the 640 B: layer 0 max(364, 3,392 / 16 = 212) = 364, layer 1 max(128,
    3,072 / 16 = 192) = 192, total 556."""
    graph = _chain()
    hw = load_profile("generic-npu").with_sram(64 * 1024)
    l1 = graph.layers[1].id
    plain = _layer_plan(graph, hw)
    pre = _layer_plan(graph, hw, {l1})
    w1 = next(b for b in pre.buffers if b.kind is BufferKind.WEIGHT_RELOAD and b.layer == l1)
    assert (w1.t0, w1.t1, w1.size) == (0, 2, 640)
    assert next(b for b in plain.buffers if b.layer == l1).t0 == 1
    assert (plain.totals.cycles, pre.totals.cycles) == (596, 556)
    # the intermediate resident, DRAM at 64 B/cycle: layer 0 max(288 + 19, 1,728 / 64 = 27) =
    # 307 either way (+ 640 B prefetched: 37); layer 1 (weights and output, 2,688 B = 42
    # cycles) max(128 + 10, 42) = 138 unprefetched, max(128, 2,048 / 64 = 32) = 128 prefetched
    res = frozenset({graph.layers[0].output})
    groups = tuple(_whole(graph, i) for i in range(2))
    fast = dataclasses.replace(hw, dram_bytes_per_cycle=Fraction(64))
    a = build_plan(graph, fast, Decisions(groups, resident=res))
    b = build_plan(graph, fast, Decisions(groups, resident=res, prefetch=frozenset({l1})))
    assert (a.totals.cycles, b.totals.cycles) == (307 + 138, 307 + 128)
    for p, profile in ((plain, hw), (pre, hw), (a, fast), (b, fast)):
        assert validate_plan(p, graph, profile).cycles == p.totals.cycles
    assert a.totals.energy_fj == b.totals.energy_fj and a.totals.dram_total == b.totals.dram_total


def test_dram_read_latency_by_hand() -> None:
    """The chain layer by layer on generic-npu with a 100-cycle DRAM read latency. Unprefetched,
    each layer waits for its weights and the latency: layer 0 max(288 + 76 + 100, 172) = 464,
    layer 1 max(128 + 40 + 100, 232) = 268. Prefetched, layer 1's load (40 + 100 cycles) runs in
    layer 0's DMA slack (464 - 172 = 292): layer 1 max(128, 3,072 / 16 = 192) = 192."""
    graph = _chain()
    hw = dataclasses.replace(load_profile("generic-npu").with_sram(64 * 1024), dram_read_latency=100)
    plain, pre = _layer_plan(graph, hw), _layer_plan(graph, hw, {graph.layers[1].id})
    assert (plain.totals.cycles, pre.totals.cycles) == (464 + 268, 464 + 192)
    for p in (plain, pre):
        assert validate_plan(p, graph, hw).cycles == p.totals.cycles
        assert verify_plan(graph, p, hw).measured.cycles == p.totals.cycles


def test_serial_bytes_rule() -> None:
    """The three cases of serial_weight_bytes on a two-layer group tiled in two row stripes."""
    graph = _chain()
    hw = load_profile("generic-npu").with_sram(64 * 1024)
    r = resolve(graph, hw, Decisions((GroupDecision(0, 2, Tiling(4, 8, 32)),)))
    (c,) = r.candidates
    w0, w1 = c.weights
    # the group's first layer: reloaded per stripe, every load waits; prefetching is impossible (layer 0)
    assert not prefetchable(c, w0, False) and serial_weight_bytes(c, w0, False, False) == w0.reload_bytes == 2 * 1216
    # kept by the group's first layer: loaded once, at the group's start: serial
    assert serial_weight_bytes(c, w0, True, False) == w0.total_bytes == 1216
    # a later layer: kept is live from the group's start (hidden, nothing to prefetch); reloaded it
    # waits unless prefetched, then each stripe's load runs during layer 0 of the same stripe
    assert not prefetchable(c, w1, True) and serial_weight_bytes(c, w1, True, False) == 0
    assert serial_weight_bytes(c, w1, False, False) == w1.reload_bytes == 2 * 640
    assert prefetchable(c, w1, False) and serial_weight_bytes(c, w1, False, True) == 0


def test_first_layer_of_a_tiled_group_prefetches_only_its_first_load() -> None:
    graph = _chain()
    hw = load_profile("generic-npu").with_sram(64 * 1024)
    dec = Decisions((_whole(graph, 0), GroupDecision(1, 2, Tiling(4, 8, 32))))
    (_, c) = resolve(graph, hw, dec).candidates
    (w,) = c.weights
    assert serial_weight_bytes(c, w, False, True) == w.reload_bytes - w.first_bytes == 640
    plan = build_plan(graph, hw, dataclasses.replace(dec, prefetch=frozenset({w.layer})))
    assert validate_plan(plan, graph, hw).cycles == plan.totals.cycles


@pytest.mark.parametrize("profile", ["generic-npu", "ethos-u65-256"])
def test_overlapping_loads_wait_for_no_compute_they_overlap(profile: str) -> None:
    """The rule against the hazards firmware respects: a weight load that the latency model
    counts as overlapping compute does not wait, directly or through other commands, for the
    compute it overlaps: that of the layer before, in the same tile (a step of the group), or,
    for the group's first load of the layer, the previous group's last compute."""
    graph = load_model(MODELS / "resnet8_float.onnx")
    hw = load_profile(profile).with_sram(48 * 1024)
    plans = [plan_graph(graph, hw, strategy=s, config=CONFIG).plan for s in ("layer", "greedy", "cpsat")]
    assert any(plan.decisions.prefetch for plan in plans), "no plan prefetched any weights"
    checked = 0
    for plan in plans:
        shapes = {n: t.shape[1:] for n, t in graph.tensors.items() if t.is_feature_map}
        deps = waits_for(plan, memory_map(plan, graph), shapes)
        r = resolve(graph, hw, plan.decisions)
        computes = {(c.group, c.tile, c.step): k for k, c in enumerate(plan.commands) if c.op is Op.COMPUTE}
        last_of_group = {c.group: k for k, c in enumerate(plan.commands) if c.op in (Op.COMPUTE, Op.REQUANTIZE)}
        seen: set[tuple[int, str]] = set()
        for k, cmd in enumerate(plan.commands):
            if cmd.op is not Op.LOAD_WEIGHTS:
                continue
            c = r.candidates[cmd.group]
            w = next(w for w in c.weights if w.layer == cmd.layer)
            keep = cmd.layer in plan.decisions.keep
            first = (cmd.group, cmd.layer) not in seen
            seen.add((cmd.group, cmd.layer))
            serial = serial_weight_bytes(c, w, keep, cmd.layer in plan.decisions.prefetch)
            moved = w.total_bytes if keep else w.reload_bytes
            if serial == 0 and w.index > c.start:  # every load overlaps layer i - 1 of its tile
                target = computes.get((cmd.group, cmd.tile, w.index - 1))
            elif serial < moved and first and cmd.group > 0:  # the first overlaps the group before
                target = last_of_group[cmd.group - 1]
            else:
                continue
            if target is None or target > k:
                continue  # runs after the load in the stream: nothing to wait for
            stack, ancestors = [k], set()
            while stack:  # everything k waits for, transitively, down to the target's index
                for d in deps[stack.pop()]:
                    if d >= target and d not in ancestors:
                        ancestors.add(d)
                        stack.append(d)
            assert target not in ancestors, f"command {k} ({cmd.layer}) waits for compute {target}, which it overlaps"
            checked += 1
    assert checked >= 5, "too few overlapping loads to check"


def test_prefetch_pass_keeps_offsets_and_energy_and_lowers_cycles() -> None:
    graph = load_model(MODELS / "resnet8_float.onnx")
    hw = load_profile("ethos-u65-256").with_sram(40 * 1024)
    plan = plan_graph(graph, hw, strategy="cpsat", config=CONFIG).plan
    assert plan.decisions.prefetch
    offsets = block_offsets(resolve(graph, hw, plan.decisions), plan.buffers)
    bare = build_plan(graph, hw, dataclasses.replace(plan.decisions, prefetch=frozenset()), offsets)
    dec, kept = buffer_weights(graph, hw, bare.decisions, offsets)
    assert kept == offsets and dec == plan.decisions  # how the solve finished its plan
    again = build_plan(graph, hw, dec, kept)
    assert again.totals.energy_fj == bare.totals.energy_fj and again.totals.sram_peak == bare.totals.sram_peak
    assert again.totals.cycles < bare.totals.cycles
    before = {b.name: b for b in bare.buffers}
    for b in again.buffers:  # same offsets; only prefetched weight buffers start a step earlier
        assert b.offset == before[b.name].offset and b.t1 == before[b.name].t1
        assert b.t0 == before[b.name].t0 - (b.layer in dec.prefetch and b.kind is not BufferKind.CORE)
    assert validate_plan(again, graph, hw) == again.totals


def test_bad_prefetch_is_a_plan_error() -> None:
    graph = _chain()
    hw = load_profile("generic-npu").with_sram(64 * 1024)
    groups = (GroupDecision(0, 2, Tiling(8, 8, 32)),)
    l0, l1 = (layer.id for layer in graph.layers)
    with pytest.raises(PlanError, match="cannot change"):  # the first layer: no step before it
        build_plan(graph, hw, Decisions(groups, prefetch=frozenset({l0})))
    with pytest.raises(PlanError, match="cannot change"):  # kept by a later layer: live from the group's start
        build_plan(graph, hw, Decisions(groups, keep=frozenset({l1}), prefetch=frozenset({l1})))
    with pytest.raises(PlanError, match="does not overlap DMA"):
        build_plan(graph, dataclasses.replace(hw, dma_overlaps_compute=False), Decisions(groups, prefetch=frozenset({l1})))


def test_prefetch_round_trips_and_old_plans_read_as_none() -> None:
    graph = _chain()
    hw = load_profile("generic-npu").with_sram(64 * 1024)

    def doc(plan):  # type: ignore[no-untyped-def]
        plan = dataclasses.replace(plan, provenance=dataclasses.replace(plan.provenance, strategy="layer", objective="energy"))
        return json.loads(json.dumps(SolveResult(graph, hw, plan, floor(graph, hw), {}).to_json("0" * 64)))

    plan = _layer_plan(graph, hw, {graph.layers[1].id})
    data = doc(plan)
    jsonschema.validate(data, schema())
    assert data["decisions"]["prefetch"] == [graph.layers[1].id]
    back, _ = plan_from_json(data)
    assert back.decisions.prefetch == plan.decisions.prefetch and back.buffers == plan.buffers
    striped = build_plan(graph, hw, _striped(graph, True))
    back, _ = plan_from_json(doc(striped))
    assert back.decisions.double == {graph.layers[1].id} and back.buffers == striped.buffers
    old = doc(_layer_plan(graph, hw))
    del old["decisions"]["prefetch"], old["decisions"]["double"]  # a plan written before they existed
    jsonschema.validate(old, schema())
    assert plan_from_json(old)[0].decisions.prefetch == frozenset()


def test_prefetched_plans_verify_bit_exactly() -> None:
    graph = load_model(MODELS / "resnet8_float.onnx")
    hw = load_profile("ethos-u65-256").with_sram(64 * 1024)
    plan = plan_graph(graph, hw, strategy="layer", config=CONFIG).plan
    assert plan.decisions.prefetch
    report = verify_plan(graph, plan, hw)
    assert report.bit_exact and report.measured.cycles == plan.totals.cycles


# ---------------------------------------------------------------------------- double buffering
def _striped(graph, double: bool):  # type: ignore[no-untyped-def]
    """Layer 0 whole, layer 1 in two row stripes reloading its weights (640 B) per stripe,
    prefetched, the intermediate resident."""
    l1 = graph.layers[1].id
    return Decisions((_whole(graph, 0), GroupDecision(1, 2, Tiling(4, 8, 32))), resident=frozenset({graph.layers[0].output}),
                     prefetch=frozenset({l1}), double=frozenset({l1}) if double else frozenset())


def test_double_buffer_cycles_by_hand() -> None:
    """DRAM at 64 B/cycle. Layer 0: 288 + 1,216 / 64 = 19 -> 307 cycles, own DMA 1,728 B = 27,
    slack 280: the first 640-B load of layer 1 (10 cycles, prefetched) hides in it. Layer 1's
    second load (its second stripe): with one slot it waits for stripe 0's compute, so
    max(128 + 10, (2,048 + 640) / 64 = 42) = 138; with two slots it streams meanwhile: 128."""
    graph = _chain()
    hw = dataclasses.replace(load_profile("generic-npu").with_sram(64 * 1024), dram_bytes_per_cycle=Fraction(64))
    single, double = (build_plan(graph, hw, _striped(graph, d)) for d in (False, True))
    assert (single.totals.cycles, double.totals.cycles) == (307 + 138, 307 + 128)
    l1 = graph.layers[1].id
    buf = next(b for b in double.buffers if b.layer == l1)
    assert (buf.t0, buf.t1, buf.size) == (0, 2, 2 * 640)
    loads = [c.offset for c in double.commands if c.op is Op.LOAD_WEIGHTS and c.layer == l1]
    assert loads == [buf.offset, buf.offset + 640]  # the two slots in turn
    reads = [c.weights_offset for c in double.commands if c.op is Op.COMPUTE and c.layer == l1]
    assert reads == loads
    for p in (single, double):
        assert validate_plan(p, graph, hw).cycles == p.totals.cycles
        report = verify_plan(graph, p, hw)
        assert report.bit_exact and report.measured.cycles == p.totals.cycles
    # the hazards agree: stripe 1's load waits for stripe 0's compute with one slot, not with two
    shapes = {n: t.shape[1:] for n, t in graph.tensors.items() if t.is_feature_map}
    for p, waits in ((single, True), (double, False)):
        k = [i for i, c in enumerate(p.commands) if c.op is Op.LOAD_WEIGHTS and c.layer == l1][1]
        first_compute = next(i for i, c in enumerate(p.commands) if c.op is Op.COMPUTE and c.layer == l1)
        assert (first_compute in waits_for(p, memory_map(p, graph), shapes)[k]) is waits


def test_one_slot_used_twice_is_not_credited() -> None:
    """A double-buffered plan whose second load reuses the first slot: the validator counts the
    load as waited for, so the plan's cycles no longer match its commands."""
    graph = _chain()
    hw = dataclasses.replace(load_profile("generic-npu").with_sram(64 * 1024), dram_bytes_per_cycle=Fraction(64))
    plan = build_plan(graph, hw, _striped(graph, True))
    l1 = graph.layers[1].id
    base = next(b.offset for b in plan.buffers if b.layer == l1)
    cmds = [dataclasses.replace(c, offset=base) if c.op is Op.LOAD_WEIGHTS and c.layer == l1 else
            dataclasses.replace(c, weights_offset=base) if c.op is Op.COMPUTE and c.layer == l1 else c
            for c in plan.commands]
    with pytest.raises(PlanError, match="cycles"):
        validate_plan(dataclasses.replace(plan, commands=tuple(cmds)), graph, hw)


def test_double_names_only_layers_loaded_more_than_once() -> None:
    graph = _chain()
    hw = load_profile("generic-npu").with_sram(64 * 1024)
    l1 = graph.layers[1].id
    with pytest.raises(PlanError, match="loaded once"):  # whole layer: one load
        build_plan(graph, hw, Decisions((_whole(graph, 0), _whole(graph, 1)), double=frozenset({l1})))
    with pytest.raises(PlanError, match="loaded once"):  # kept over two row stripes: one slice, one load
        build_plan(graph, hw, Decisions((_whole(graph, 0), GroupDecision(1, 2, Tiling(4, 8, 32))), keep=frozenset({l1}),
                                        double=frozenset({l1})))


def test_buffer_weights_double_buffers_where_room_allows() -> None:
    graph = _chain()
    hw = dataclasses.replace(load_profile("generic-npu").with_sram(64 * 1024), dram_bytes_per_cycle=Fraction(64))
    bare = dataclasses.replace(_striped(graph, False), prefetch=frozenset())
    dec, offsets = buffer_weights(graph, hw, bare)
    l1 = graph.layers[1].id
    assert dec.prefetch == {l1} and dec.double == {l1} and offsets is None  # 64 KiB: room for all of it
    assert build_plan(graph, hw, dec).totals.cycles == 307 + 128
    tight = build_plan(graph, hw, bare).totals.sram_peak  # no room for anything more
    small = hw.with_sram(tight)
    dec, _ = buffer_weights(graph, small, bare)
    assert build_plan(graph, small, dec).totals.sram_peak <= tight


@pytest.mark.parametrize("latency", [0, 50])
def test_latency_objective_decides_prefetch_and_double_exactly(latency: int) -> None:
    """With cycles in the objective, CP-SAT chooses prefetching and second slots itself (its
    own boxes and cycle terms): its optimum equals the cycles the plan's commands give, DRAM
    read latency included, and beats the energy plan's. Here it slices the first layer by output
    channels so its weights stream into two slots while the previous slice computes."""
    graph = _chain()
    hw = dataclasses.replace(load_profile("generic-npu").with_sram(4 * 1024), dram_bytes_per_cycle=Fraction(64),
                             dram_read_latency=latency)
    config = SolverConfig(time_limit_s=10, deterministic=True, max_fuse_depth=2)
    fast = plan_graph(graph, hw, strategy="cpsat", objective="latency", config=config).plan
    energy = plan_graph(graph, hw, strategy="cpsat", objective="energy", config=config).plan
    solver = fast.provenance.solver
    assert solver["status"] == "OPTIMAL" and solver["plan_source"] == "cpsat"
    assert round(solver["objective"]) == fast.totals.cycles == validate_plan(fast, graph, hw).cycles
    assert fast.decisions.double and fast.decisions.prefetch
    assert fast.totals.cycles < energy.totals.cycles
    assert verify_plan(graph, fast, hw).bit_exact


def _pool_fc():  # type: ignore[no-untyped-def]
    """conv 3x3 (16 -> 64, 8x8), global average pool, fully connected 64 -> 512: the FC's weights
    (32 KiB + 2 KiB of bias) dwarf its input (64 B)."""
    b = GraphBuilder("pool_fc", seed=4)
    x = b.global_avg_pool(b.conv(b.input((1, 16, 8, 8)), 64, 3))
    return b.build(b.fc(x, 512))


def test_stream_weights_re_tiles_only_where_its_comparison_gains() -> None:
    """At 12 KiB the layer plan loads the FC in slices no second slot fits beside, each waited
    for. stream_weights with a cycles comparison picks another tiling of the FC's group whose
    slices stream (fewer cycles; only groups whose compute waited for weights change); the plan validates (the
    validator derives its cycles from the commands) and verifies bit-exactly. With a comparison
    that demands equal energy it changes nothing here: a finer split re-reads the FC's input
    from SRAM per slice."""
    from memplan.baselines import layer_by_layer
    from memplan.plan.prefetch import stream_weights

    graph = _pool_fc()
    hw = dataclasses.replace(load_profile("generic-npu").with_sram(12 * 1024), dram_bytes_per_cycle=Fraction(64))
    plan = layer_by_layer(graph, hw)
    offsets = block_offsets(resolve(graph, hw, plan.decisions), plan.buffers)
    dec, offs = stream_weights(graph, hw, plan.decisions, offsets, better=lambda new, old: new.cycles < old.cycles)
    fast = build_plan(graph, hw, dec, offs)
    fc = len(graph.layers) - 1
    waited = [t.serial_bytes > 0 for t in group_timing(resolve(graph, hw, plan.decisions))]
    changed = [i for i, (a, b) in enumerate(zip(dec.groups, plan.decisions.groups)) if a != b]
    assert fc in changed and all(waited[i] for i in changed)  # only groups whose compute waited for weights
    assert graph.layers[fc].id in dec.double  # the FC's slices now stream into two slots
    assert fast.totals.cycles < plan.totals.cycles and fast.totals.sram_peak <= hw.sram_bytes
    assert validate_plan(fast, graph, hw) == fast.totals
    report = verify_plan(graph, fast, hw)
    assert report.bit_exact and report.measured.cycles == fast.totals.cycles
    same, _ = stream_weights(graph, hw, plan.decisions, offsets,
                             better=lambda new, old: new.energy_fj == old.energy_fj and new.cycles < old.cycles)
    assert same.groups == plan.decisions.groups


def test_latency_objective_starts_from_the_streamed_plan() -> None:
    """The latency objective's hint is the best warm start re-tiled by stream_weights: the plan
    CP-SAT returns is at least as fast as that re-tiled layer plan."""
    from memplan.baselines import layer_by_layer
    from memplan.plan.prefetch import stream_weights

    graph = _pool_fc()
    hw = dataclasses.replace(load_profile("generic-npu").with_sram(12 * 1024), dram_bytes_per_cycle=Fraction(64))
    plan = layer_by_layer(graph, hw)
    dec, offs = stream_weights(graph, hw, plan.decisions, None, better=lambda new, old: new.cycles < old.cycles)
    streamed = build_plan(graph, hw, dec, offs).totals.cycles
    fast = plan_graph(graph, hw, strategy="cpsat", objective="latency", config=CONFIG).plan
    assert fast.totals.cycles <= streamed < plan.totals.cycles
    assert verify_plan(graph, fast, hw).bit_exact
