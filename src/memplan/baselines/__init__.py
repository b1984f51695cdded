"""Baseline plans and the compulsory-traffic floor.

* layer-by-layer: no fusion; each layer with the fewest tiles that fit (output-channel splits
  when its weights do not fit), weights kept;
* greedy cascading, in the spirit of Vela: from each layer, grow the group while it stays
  fusable, some tiling fits, and fusing costs less than stopping; cascaded layers keep their
  weights when that fits; every tensor between groups is spilled;
* the floor: the network input read once, the outputs written once, each weight read once,
  and the MACs of the untiled network.

Both plans are real :class:`Plan` objects with first-fit offsets.
"""

from __future__ import annotations

from dataclasses import dataclass

from memplan.config import HardwareProfile
from memplan.cost.candidate import Candidate, candidate_cost
from memplan.errors import InfeasibleError
from memplan.geometry.group import GroupShape, SpanCache, group_shape, tiling_options
from memplan.ir.graph import Graph
from memplan.plan.alloc import Block, extent, first_fit
from memplan.plan.build import build_plan, energy_fj
from memplan.plan.model import Decisions, GroupDecision, Plan


@dataclass(frozen=True)
class Floor:
    dram_read_fm: int
    dram_write_fm: int
    dram_read_weights: int
    macs: int
    energy_fj: int

    @property
    def dram_total(self) -> int:
        return self.dram_read_fm + self.dram_write_fm + self.dram_read_weights

    def to_json(self) -> dict[str, int]:
        return {"dram_read_fm": self.dram_read_fm, "dram_write_fm": self.dram_write_fm,
                "dram_read_weights": self.dram_read_weights, "dram_total": self.dram_total,
                "macs": self.macs, "energy_fj": self.energy_fj}


def floor(graph: Graph, hw: HardwareProfile) -> Floor:
    """Compulsory traffic and MACs. On profiles that keep feature maps in SRAM the model's
    input and output never travel; weights read in place are read at least once."""
    eb = hw.elem_bytes
    fm_in = 0 if hw.feature_maps_in_sram else sum(graph.tensors[t].numel * eb for t in graph.inputs)
    fm_out = 0 if hw.feature_maps_in_sram else sum(graph.tensors[t].numel * eb for t in graph.outputs)
    w = 0
    for layer in graph.layers:
        w += graph.weight_elems(layer) * eb + (graph.bias_elems(layer) * hw.bias_bytes if layer.bias else 0)
    macs = sum(graph.layer_macs(layer) for layer in graph.layers)
    return Floor(fm_in, fm_out, w, macs, energy_fj(hw, macs, fm_in + fm_out + w, 0))


# ---------------------------------------------------------------------------- fitting
def group_blocks(c: Candidate, keep: bool, hw: HardwareProfile) -> list[Block]:
    """SRAM blocks of one candidate when nothing is resident (same rules as plan_blocks)."""
    overlap = hw.dma_overlaps_compute
    blocks = [Block("core", c.core_bytes, c.start, c.stop)] if c.core_bytes else []
    blocks += [Block(f"in.{i.tensor}", i.stage_bytes, c.start, c.stop if overlap else i.last_use + 1) for i in c.inputs]
    blocks.append(Block("out", c.out_stage_bytes, c.start if overlap else c.stop - 1, c.stop))
    if not hw.weights_in_place:
        for w in c.weights:
            if keep:
                blocks.append(Block(f"w.{w.layer}", w.slice_bytes, c.start, c.stop))
            else:
                blocks.append(Block(f"w.{w.layer}", w.slice_bytes, w.index, w.index + 1))
    return blocks


def footprint(c: Candidate, keep: bool, hw: HardwareProfile) -> int:
    blocks = group_blocks(c, keep, hw)
    return extent(blocks, first_fit(blocks))


def spilled_energy(c: Candidate, keep: bool, hw: HardwareProfile) -> int:
    """Energy of a candidate with everything spilled (the baselines' residency rule)."""
    w = sum(x.total_bytes if keep and not hw.weights_in_place else x.reload_bytes for x in c.weights)
    dma = sum(i.load_bytes for i in c.inputs) + c.store_bytes + w
    sram = c.compute_sram_bytes + (dma if not hw.weights_in_place else dma - w)
    return energy_fj(hw, c.macs, dma, sram)


def _fitting(graph: Graph, shape: GroupShape, hw: HardwareProfile, cache: SpanCache | None = None) -> list[tuple[Candidate, bool]]:
    """Candidates of a group that fit the SRAM, with the keep choice that fits (keep first)."""
    out = []
    for tiling in tiling_options(graph, shape, hw.tiling):
        c = candidate_cost(graph, shape, tiling, hw, cache)
        for keep in (True, False):
            if footprint(c, keep, hw) <= hw.sram_bytes:
                out.append((c, keep))
                break
    return out


def min_sram_for_layer(graph: Graph, index: int, hw: HardwareProfile) -> int:
    """Smallest SRAM that runs layer ``index`` alone (its finest tiling, weights reloaded)."""
    shape = group_shape(graph, index, index + 1)
    assert shape is not None
    return min(footprint(candidate_cost(graph, shape, t, hw), False, hw) for t in tiling_options(graph, shape, hw.tiling))


def _infeasible(graph: Graph, index: int, hw: HardwareProfile) -> InfeasibleError:
    layer = graph.layers[index]
    need = min_sram_for_layer(graph, index, hw)
    return InfeasibleError(
        f"layer {layer.id!r} ({layer.op.value}) cannot run in {hw.sram_bytes} B of SRAM even with its finest tiling "
        f"and streamed weights: it needs at least {need} B (use --sram {need} or more, or allow more tiles)")


def check_feasible(graph: Graph, hw: HardwareProfile) -> None:
    """Raise InfeasibleError naming the first layer that cannot run alone in the SRAM."""
    for i in range(len(graph.layers)):
        shape = group_shape(graph, i, i + 1)
        assert shape is not None
        if not _fitting(graph, shape, hw):
            raise _infeasible(graph, i, hw)


# ---------------------------------------------------------------------------- plans
def layer_by_layer(graph: Graph, hw: HardwareProfile) -> Plan:
    if hw.feature_maps_in_sram:
        raise InfeasibleError(f"profile {hw.name} keeps every feature map in SRAM: the layer-by-layer and greedy "
                              "baselines spill them, use the cpsat strategy")
    groups, keep = [], set()
    for i in range(len(graph.layers)):
        shape = group_shape(graph, i, i + 1)
        assert shape is not None
        options = _fitting(graph, shape, hw)
        if not options:
            raise _infeasible(graph, i, hw)
        fewest = min(c.n_tiles for c, _ in options)
        c, k = min((ck for ck in options if ck[0].n_tiles == fewest), key=lambda ck: spilled_energy(ck[0], ck[1], hw))
        groups.append(GroupDecision(c.start, c.stop, c.tiling))
        if k:
            keep.update(w.layer for w in c.weights)
    return build_plan(graph, hw, Decisions(tuple(groups), frozenset(keep)), meta={"strategy": "layer"})


class _Best:
    """Cheapest fitting candidate per group range, memoised for one greedy run."""

    def __init__(self, graph: Graph, hw: HardwareProfile) -> None:
        self.graph, self.hw = graph, hw
        self.spans: SpanCache = {}
        self.memo: dict[tuple[int, int], tuple[int, Candidate, bool] | None] = {}

    def __call__(self, start: int, stop: int) -> tuple[int, Candidate, bool] | None:
        key = (start, stop)
        if key not in self.memo:
            self.memo[key] = self._compute(start, stop)
        return self.memo[key]

    def _compute(self, start: int, stop: int) -> tuple[int, Candidate, bool] | None:
        shape = group_shape(self.graph, start, stop)
        if shape is None:
            return None
        options = _fitting(self.graph, shape, self.hw, self.spans)
        if not options:
            return None
        return min(((spilled_energy(c, k, self.hw), c, k) for c, k in options), key=lambda e: (e[0], e[1].n_tiles))


def greedy(graph: Graph, hw: HardwareProfile, max_len: int = 12) -> Plan:
    """Grow each group from its first layer while fusing one more layer costs less energy
    than closing the group and running that layer on its own."""
    if hw.feature_maps_in_sram:
        return layer_by_layer(graph, hw)  # raises the explanatory error
    n = len(graph.layers)
    groups, keep = [], set()
    _best = _Best(graph, hw)
    start = 0
    while start < n:
        best = _best(start, start + 1)
        if best is None:
            raise _infeasible(graph, start, hw)
        stop = start + 1
        while stop < n and stop - start < max_len:
            alone = _best(stop, stop + 1)
            grown = _best(start, stop + 1)
            if grown is None:
                # the group may become fusable again after a branch closes: look ahead
                ahead = next((j for j in range(stop + 2, min(n, start + max_len) + 1)
                              if _best(start, j) is not None), None)
                if ahead is None:
                    break
                grown_ahead = _best(start, ahead)
                split_cost = best[0] + sum(_best(j, j + 1)[0] for j in range(stop, ahead))  # type: ignore[index]
                if grown_ahead is None or grown_ahead[0] >= split_cost:
                    break
                best, stop = grown_ahead, ahead
                continue
            if alone is None or grown[0] >= best[0] + alone[0]:
                break
            best, stop = grown, stop + 1
        _, c, k = best
        groups.append(GroupDecision(c.start, c.stop, c.tiling))
        if k:
            keep.update(w.layer for w in c.weights)
        start = stop
    return build_plan(graph, hw, Decisions(tuple(groups), frozenset(keep)), meta={"strategy": "greedy"})
