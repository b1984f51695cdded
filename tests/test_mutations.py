"""The mutation corpus: corrupted plans, generated from real plans, are every one rejected by
``memplan verify`` with a one-line reason.

Plans: the layer-by-layer, greedy and CP-SAT plans of a residual network (ResNet-8) and of a
network with concatenated skips (a small U-Net), each written as ``memplan solve`` writes it.
Mutants, generated programmatically from each plan document:

* every field of a sample of commands (for each op, its first, middle and last command), of
  buffers (for each kind), of the tensor table (for each home) and of the layer table (for
  each op), every field of the alignment, the DRAM summary, the decisions, the
  totals, the top-level sizes, the solver record's objective, bound, gap and status, the floor
  and the baseline summaries: +1 and -1 on integers, a changed number, another name of the
  same kind for names, a flipped bool, a wrong type (string, fraction, bool, null), deleted;
* whole commands, buffers, tensors, layers and groups deleted, duplicated and swapped with their neighbour;
* buffer lifetimes stretched into a buffer that shares their addresses, buffer offsets moved
  onto a buffer live at the same time, and the SRAM capacity shrunk below the plan's peak;
* a recompute budget (``settings.max_recompute_macs``) one MAC below the plan's recompute (-1,
  which no budget may be, for a plan that recomputes nothing).

Left out, as labels that no result depends on (documented in memplan.execute.verify): the
model's and the profile's name and description, the clock (no total depends on it), and the
solver's counters and timings. A mutant of another hardware figure that this plan's results do
not depend on (rebuilt on the mutated profile, the plan is byte for byte the same: say the MAC
rate when every group waits on its DMA) is reported as equivalent, not as accepted. The greedy baseline's depth (``settings``) is an input, not a
result: it is mutated to values that change the baseline (1) and to wrong types only, since
12 +- 1 gives the same greedy plan on these models.

The test prints how many mutants each plan gave and fails on the first one accepted.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from memplan.config import SolverConfig, load_profile
from memplan.driver import plan_graph
from memplan.errors import MemplanError
from memplan.execute.verify import Prepared, prepare, verify_document
from memplan.frontend import load_model
from memplan.plan.build import block_offsets, build_plan, resolve
from memplan.plan.serialize import plan_from_json
from memplan.ir.graph import Graph
from memplan.zoo import build_zoo_model
from test_tiled import MODELS

Doc = dict[str, Any]
Mutant = tuple[str, Doc]
SHA = "ab" * 32
CPSAT = SolverConfig(time_limit_s=10, deterministic=True, max_fuse_depth=6)


def _resnet8() -> Graph:
    return load_model(MODELS / "resnet8_float.onnx")


def _unet() -> Graph:
    return build_zoo_model("unet", resolution=32, base=4, levels=2)


def _toy() -> Graph:
    return build_zoo_model("toy_chain", n=4, h=24, w=10, c=4)


#: SRAM sizes at which every strategy tiles and spills, with plans small enough to mutate fast;
#: the toy chain with rolling buffers, at a size where the greedy and CP-SAT plans roll (its copy
#: commands and two-slot buffers get mutated too)
CASES = {"resnet8": (_resnet8, 64 * 1024, False), "unet": (_unet, 32 * 1024, False),
         "toy_rolling": (_toy, 2 * 1024, True)}
STRATEGIES = ("layer", "greedy", "cpsat")


def _case(name: str, strategies: tuple[str, ...] = STRATEGIES) -> tuple[str, Graph, Prepared, dict[str, Doc]]:
    make, sram, rolling = CASES[name]
    graph = make()
    hw = load_profile("generic-npu").with_sram(sram).with_tiling(rolling_buffers=rolling)
    docs = {}
    for strategy in strategies:
        outcome = plan_graph(graph, hw, strategy=strategy, config=CPSAT)
        docs[strategy] = json.loads(json.dumps(outcome.to_json(SHA)))
        if rolling and strategy != "layer":
            assert any(c["op"] == "copy" for c in docs[strategy]["commands"]), strategy
    return name, graph, prepare(graph), docs


@pytest.fixture(scope="module", params=["resnet8", "unet"])
def model(request: pytest.FixtureRequest) -> tuple[str, Graph, Prepared, dict[str, Doc]]:
    return _case(request.param)


@pytest.fixture(scope="module")
def rolling_model() -> tuple[str, Graph, Prepared, dict[str, Doc]]:
    """The test gate mutates the CP-SAT plan (a layer-by-layer plan never rolls, and the greedy
    plan has the same command kinds); the slow tier mutates all three."""
    return _case("toy_rolling")


# ---------------------------------------------------------------------------- mutations of values
def _names(doc: Doc) -> dict[str, list[str]]:
    """Names of each kind that occur in the plan: a name mutation swaps in another of its kind
    (references are integer ids in version 2 plans: their +-1 mutations swap in another id)."""
    return {"tensor": sorted(t["name"] for t in doc["tensors"]), "layer": sorted(t["name"] for t in doc["layers"]),
            "buffer": sorted(b["name"] for b in doc["buffers"]),
            "op": ["load", "store", "load_weights", "compute"],
            "kind": ["core", "in_stage", "out_stage", "weight_keep", "weight_reload", "resident"],
            "home": ["dram", "sram", "transient"], "role": ["input", "output", "spill", "host"],
            "status": ["OPTIMAL", "FEASIBLE"], "objective": ["energy", "latency", "memory"],
            "strategy": ["layer", "greedy", "cpsat"]}


def _kind_of(path: tuple[Any, ...]) -> str | None:
    key = next((p for p in reversed(path) if isinstance(p, str)), None)
    if key in ("tensor", "layer", "op", "kind", "status", "objective", "strategy", "home", "role"):
        return key
    if key == "name" and path[0] in ("buffers", "tensors", "layers"):
        return {"buffers": "buffer", "tensors": "tensor", "layers": "layer"}[path[0]]
    if path[:2] in (("decisions", "keep"), ("decisions", "layers")) or path[-2:-1] == ("layers",):
        return "layer"
    if path[:2] == ("decisions", "resident"):
        return "tensor"
    return None


def _value_mutations(value: Any, path: tuple[Any, ...], names: dict[str, list[str]]) -> Iterator[tuple[str, Any]]:
    if isinstance(value, bool):
        yield "flipped", not value
        yield "as int", int(value)
    elif isinstance(value, int):
        yield "+1", value + 1
        yield "-1", value - 1
        yield "as string", str(value)
        yield "as fraction", value + 0.5
        yield "as bool", bool(value)
    elif isinstance(value, float):
        yield "x1.01+1", value * 1.01 + 1
        yield "as string", str(value)
    elif isinstance(value, str):
        kind = _kind_of(path)
        others = [n for n in names.get(kind or "", []) if n != value]
        if others:
            yield "another name", others[len(others) // 2]
        yield "unknown name", value + "_x"
        yield "as int", 1
    elif value is None:
        yield "null as 0", 0
    elif isinstance(value, list):
        if value:
            yield "last item deleted", value[:-1]
            yield "first item repeated", [value[0], *value]
        yield "as object", {}
    if value is not None:
        yield "null", None


def _leaves(node: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, i))


def _set(doc: Doc, path: tuple[Any, ...], value: Any) -> Doc:
    out = copy.deepcopy(doc)
    node = out
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return out


def _delete(doc: Doc, path: tuple[Any, ...]) -> Doc:
    out = copy.deepcopy(doc)
    node = out
    for p in path[:-1]:
        node = node[p]
    del node[path[-1]]
    return out


def _sample(items: list[Doc], key: str) -> list[int]:
    """For each value of ``key``: the first, middle and last item with it."""
    by: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by.setdefault(item[key], []).append(i)
    return sorted({i for idx in by.values() for i in (idx[0], idx[len(idx) // 2], idx[-1])})


#: fields no result depends on (see the module documentation)
LABELS = {("model", "name"), ("hardware", "name"), ("hardware", "description"), ("hardware", "clock_mhz")}
SOLVER_CHECKED = ("status", "objective", "bound", "gap", "objective_units", "proof", "plan_source", "dp_bound_fj",
                  "hint_energy_fj")


def _roots(doc: Doc) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """The subtrees whose every field is mutated."""
    for i in _sample(doc["commands"], "op"):
        yield ("commands", i), doc["commands"][i]
    for i in _sample(doc["buffers"], "kind"):
        yield ("buffers", i), doc["buffers"][i]
    for i in _sample(doc["tensors"], "home"):
        yield ("tensors", i), doc["tensors"][i]
    for i in _sample(doc["layers"], "op"):
        yield ("layers", i), doc["layers"][i]
    for key in ("decisions", "totals", "floor", "baselines", "model", "alignment", "dram"):
        yield (key,), doc[key]
    for key in ("schema_version", "sram_bytes", "elem_bytes", "bias_bytes", "objective", "strategy"):
        yield (key,), doc[key]
    for key in ("sram", "elem_bytes", "bias_bytes", "mac_pj", "dram_pj_per_byte", "sram_pj_per_byte", "macs_per_cycle",
                "dram_bytes_per_cycle", "dma_overlaps_compute"):
        yield ("hardware", key), doc["hardware"][key]
    if doc["solver"] is not None:
        for key in SOLVER_CHECKED:
            if key in doc["solver"]:
                yield ("solver", key), doc["solver"][key]


def field_mutants(doc: Doc) -> Iterator[Mutant]:
    names = _names(doc)
    seen: set[tuple[Any, ...]] = set()
    for root, node in _roots(doc):
        for path, value in _leaves(node, root):
            if path in seen or path in LABELS:
                continue
            seen.add(path)
            where = ".".join(map(str, path))
            for what, new in _value_mutations(value, path, names):
                yield f"{where} {what}", _set(doc, path, new)
            if len(path) > 1 and isinstance(path[-1], str):
                yield f"{where} deleted", _delete(doc, path)


# ---------------------------------------------------------------------------- structural mutations
def structural_mutants(doc: Doc) -> Iterator[Mutant]:
    for key, by in (("commands", "op"), ("buffers", "kind"), ("tensors", "home"), ("layers", "op")):
        items = doc[key]
        for i in _sample(items, by):
            yield f"{key}[{i}] deleted", _delete(doc, (key, i))
            yield f"{key}[{i}] duplicated", _set(doc, (key,), [*items[:i + 1], items[i], *items[i + 1:]])
            if i + 1 < len(items) and items[i] != items[i + 1]:
                swapped = [*items[:i], items[i + 1], items[i], *items[i + 2:]]
                yield f"{key}[{i}] swapped with the next", _set(doc, (key,), swapped)
    groups = doc["decisions"]["groups"]
    for i in {0, len(groups) // 2, len(groups) - 1}:
        yield f"group {i} deleted", _delete(doc, ("decisions", "groups", i))
        yield f"group {i} duplicated", _set(doc, ("decisions", "groups"), [*groups[:i + 1], groups[i], *groups[i + 1:]])
    yield from _buffer_neighbours(doc)
    peak = doc["totals"]["sram_peak"]
    shrunk = _set(_set(doc, ("sram_bytes",), peak - 1), ("hardware", "sram"), peak - 1)
    yield "capacity shrunk below the peak", shrunk
    yield "settings deleted", _delete(doc, ("settings",))
    yield "greedy depth 1 in the settings", _set(doc, ("settings", "max_fuse_depth"), 1)
    yield "greedy depth as a string", _set(doc, ("settings", "max_fuse_depth"), "12")
    # a recompute budget the plan does not honour: one MAC below what it recomputes
    recompute = doc["totals"]["recompute_macs"]
    yield "recompute budget below the plan's recompute", _set(doc, ("settings", "max_recompute_macs"),
                                                                recompute - 1 if recompute > 0 else -1)
    yield "capacity shrunk to the peak, hardware record only", _set(doc, ("hardware", "sram"), peak)
    yield "capacity 32 KiB in the hardware record only", _set(doc, ("hardware", "sram"), 32 * 1024)


def _buffer_neighbours(doc: Doc) -> Iterator[Mutant]:
    """Lifetimes stretched into an address neighbour; offsets moved onto a time neighbour."""
    bufs = doc["buffers"]
    stretched = moved = 0
    for i, a in enumerate(bufs):
        for j, b in enumerate(bufs):
            if i == j:
                continue
            share_addresses = a["offset"] < b["offset"] + b["size"] and b["offset"] < a["offset"] + a["size"]
            share_time = a["t0"] < b["t1"] and b["t0"] < a["t1"]
            if share_addresses and not share_time and a["t1"] <= b["t0"] and stretched < 8:
                stretched += 1
                yield f"buffer {i} lifetime stretched into buffer {j}", _set(doc, ("buffers", i, "t1"), b["t0"] + 1)
            if share_time and not share_addresses and moved < 8:
                moved += 1
                yield f"buffer {i} moved onto buffer {j}", _set(doc, ("buffers", i, "offset"), b["offset"])


def mutants(doc: Doc) -> list[Mutant]:
    return [m for m in (*field_mutants(doc), *structural_mutants(doc)) if m[1] != doc]


def representatives(corpus: list[Mutant]) -> list[Mutant]:
    """One mutant per (field, mutation) with the indexes left out: ``commands[3].offset +1``
    stands for every command's offset +1. The test gate runs these; the slow tier all."""
    seen: dict[str, Mutant] = {}
    for what, doc in corpus:
        seen.setdefault(re.sub(r"\d+", "#", what), (what, doc))
    return list(seen.values())


# ---------------------------------------------------------------------------- the test
def _reject_reason(graph: Graph, prepared: Prepared, doc: Doc) -> str | None:
    try:
        verify_document(graph, doc, SHA, prepared=prepared)
    except MemplanError as exc:
        return exc.message
    return None


def _equivalent(graph: Graph, original: Doc, doc: Doc, what: str) -> bool:
    """A mutant of a hardware figure that no result of this plan depends on: the plan's own
    decisions and offsets, rebuilt on the mutated profile, give exactly the same buffers,
    commands and totals (say, macs_per_cycle when every group waits on its DMA, not its MACs).
    Such a plan states only true things, so verify rightly accepts it: it is a label here."""
    if not what.startswith("hardware."):
        return False
    plan, hw = plan_from_json(original)
    try:
        _, mutated = plan_from_json(doc)
        rebuilt = build_plan(graph, mutated, plan.decisions, block_offsets(resolve(graph, hw, plan.decisions), plan.buffers))
    except MemplanError:
        return False
    return (rebuilt.buffers, rebuilt.commands, rebuilt.totals) == (plan.buffers, plan.commands, plan.totals)


def test_originals_verify(model) -> None:  # type: ignore[no-untyped-def]
    name, graph, prepared, docs = model
    for strategy, doc in docs.items():
        report = verify_document(graph, doc, SHA, prepared=prepared)
        assert report.passed, (name, strategy)


def _check_corpus(model, strategy: str, full: bool, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    name, graph, prepared, docs = model
    corpus = mutants(docs[strategy])
    if not full:
        corpus = representatives(corpus)
    assert len(corpus) >= 150, f"only {len(corpus)} mutants of the {name} {strategy} plan"
    accepted = []
    equivalent = []
    for what, doc in corpus:
        reason = _reject_reason(graph, prepared, doc)
        if reason is None and _equivalent(graph, docs[strategy], doc, what):
            equivalent.append(what)
        elif reason is None:
            accepted.append(what)
        else:
            assert "\n" not in reason and reason.strip(), (what, reason)
    with capsys.disabled():
        print(f"\nmutation corpus {name}/{strategy}{' (full)' if full else ''}: {len(corpus)} mutants, "
              f"{len(corpus) - len(accepted) - len(equivalent)} rejected, {len(equivalent)} equivalent {equivalent}")
    assert not accepted, f"{len(accepted)} of {len(corpus)} mutants accepted, e.g. {accepted[:5]}"


@pytest.mark.parametrize("strategy", ["layer", "greedy", "cpsat"])
def test_every_mutant_is_rejected(model, strategy: str, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    _check_corpus(model, strategy, False, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["layer", "greedy", "cpsat"])
def test_every_mutant_of_the_full_corpus_is_rejected(model, strategy: str, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    _check_corpus(model, strategy, True, capsys)


def test_every_mutant_of_a_rolling_plan_is_rejected(rolling_model, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    _check_corpus(rolling_model, "cpsat", False, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_mutant_of_the_full_corpus_of_a_rolling_plan_is_rejected(rolling_model, strategy: str, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    _check_corpus(rolling_model, strategy, True, capsys)
