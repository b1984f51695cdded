"""Baseline plans and the compulsory-traffic floor.

* layer-by-layer: no fusion; each layer with the fewest tiles that fit (output-channel splits
  when its weights do not fit), weights kept;
* greedy cascading, in the spirit of Vela: from each layer, grow the group while it stays
  fusable, some tiling fits, and fusing costs less than stopping; cascaded layers keep their
  weights when that fits; every tensor between groups is spilled;
* the floor: the network input read once, the outputs written once, each weight read once,
  and the MACs of the untiled network.

Both plans are real :class:`Plan` objects with first-fit offsets. Every function that costs
candidates takes an optional :class:`CostCache`: one shared cache between them (and
:func:`memplan.solve.candidates.enumerate_candidates`) costs each candidate once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from memplan.config import HardwareProfile
from memplan.cost.candidate import Candidate, CostCache, footprint, group_blocks
from memplan.cost.weights import WeightFormat, records_bytes, slice_bytes, spans_bytes
from memplan.errors import InfeasibleError
from memplan.geometry.group import GroupShape, Tiling, channel_tile_sizes, split_axis, tile_count
from memplan.ir.graph import Graph, Layer
from memplan.ir.ops import WEIGHTED
from memplan.plan.build import energy_fj
from memplan.plan.prefetch import build_buffered
from memplan.plan.model import Decisions, GroupDecision, Plan, Provenance

__all__ = ["CostCache", "Floor", "check_feasible", "floor", "footprint", "greedy", "group_blocks", "layer_by_layer",
           "min_sram_for_layer", "spilled_energy"]


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


def least_weight_bytes(graph: Graph, layer: Layer, hw: HardwareProfile, fmt: WeightFormat) -> int:
    """The fewest bytes any plan moves for the layer's weights: each of its weights once, in
    the cheapest set of slices a plan can cut its output channels into. Without a codec every
    split costs the same; an encoded stream's size depends on the split, so the minimum runs
    over the whole layer and every channel split the tiling rules allow (the slices a fused
    group can give a layer are the whole layer, except in an FDT group: there, the bound falls
    back to the scale/bias records alone, which every split carries exactly)."""
    c = graph.out_channels(layer)
    if fmt.linear:
        return slice_bytes(graph, layer, 0, c, fmt)
    if hw.tiling.fdt_slices:
        return records_bytes(c)
    return min(spans_bytes(graph, layer, split_axis(c, tc), fmt)[0] for tc in channel_tile_sizes(c, hw.tiling))


def floor(graph: Graph, hw: HardwareProfile) -> Floor:
    """Compulsory traffic and MACs. On profiles that keep feature maps in SRAM the model's
    input and output never travel; weights read in place are read at least once."""
    eb = hw.elem_bytes
    host = graph.host_layers
    # the accelerator never reads a model input only host layers read, nor writes a host layer's output
    npu_in = [t for t in graph.inputs if any(i not in host for i in graph.consumers.get(t, ()))]
    npu_out = [t for t in graph.outputs if graph.producer[t] not in host]
    fm_in = 0 if hw.feature_maps_in_sram else sum(graph.tensors[t].numel * eb for t in npu_in)
    fm_out = 0 if hw.feature_maps_in_sram else sum(graph.tensors[t].numel * eb for t in npu_out)
    fmt = WeightFormat.of(hw)
    w = sum(least_weight_bytes(graph, layer, hw, fmt) for layer in graph.layers if layer.op in WEIGHTED)
    macs = sum(graph.layer_macs(layer) for layer in graph.layers)
    return Floor(fm_in, fm_out, w, macs, energy_fj(hw, macs, fm_in + fm_out + w, 0))


# ---------------------------------------------------------------------------- fitting
def spilled_energy(c: Candidate, keep: bool, hw: HardwareProfile) -> int:
    """Energy of a candidate with everything spilled (the baselines' residency rule)."""
    w = sum(x.total_bytes if keep and not hw.weights_in_place else x.reload_bytes for x in c.weights)
    dma = sum(i.load_bytes for i in c.inputs) + c.store_bytes + c.escape_bytes + w
    sram = c.compute_sram_bytes + (dma if not hw.weights_in_place else dma - w) + sum(2 * i.copy_bytes for i in c.inputs)
    return energy_fj(hw, c.macs, dma, sram)


def _fit(cache: CostCache, c: Candidate) -> tuple[Candidate, bool] | None:
    """The candidate with the keep choice that fits the SRAM (keep first), or None."""
    for keep in (True, False):
        if cache.footprint(c, keep) <= cache.hw.sram_bytes:
            return c, keep
    return None


def _fewest_tiles_fitting(cache: CostCache, shape: GroupShape) -> list[tuple[Candidate, bool]]:
    """The fitting candidates of a group with the fewest tiles (in tiling order), or [] if
    none fits: tilings are costed by increasing tile count until one fits."""
    by_count: dict[int, list[Tiling]] = {}
    for t in cache.tilings(shape):
        by_count.setdefault(tile_count(cache.graph, shape, t), []).append(t)
    for count in sorted(by_count):
        fits = (_fit(cache, cache.candidate(shape, t)) for t in by_count[count])
        found = [ck for ck in fits if ck is not None]
        if found:
            return found
    return []


def _layer_shape(cache: CostCache, index: int) -> GroupShape:
    shape = cache.shape(index, index + 1)
    assert shape is not None
    return shape


def min_sram_for_layer(graph: Graph, index: int, hw: HardwareProfile, cache: CostCache | None = None) -> int:
    """Smallest SRAM that runs layer ``index`` alone (its finest tiling, weights reloaded)."""
    cache = _cache(graph, hw, cache)
    shape = _layer_shape(cache, index)
    return min(cache.footprint(cache.candidate(shape, t), False) for t in cache.tilings(shape))


def _infeasible(cache: CostCache, index: int) -> InfeasibleError:
    graph, hw = cache.graph, cache.hw
    layer = graph.layers[index]
    need = min_sram_for_layer(graph, index, hw, cache)
    return InfeasibleError(
        f"layer {layer.id!r} ({layer.op.value}) cannot run in {hw.sram_bytes} B of SRAM even with its finest tiling "
        f"and streamed weights: it needs at least {need} B (use --sram {need} or more, or allow more tiles)")


def _cache(graph: Graph, hw: HardwareProfile, cache: CostCache | None) -> CostCache:
    """``cache`` after checking it is for this graph and profile, or a fresh one."""
    if cache is None:
        return CostCache(graph, hw)
    cache.check(graph, hw)
    return cache


def check_feasible(graph: Graph, hw: HardwareProfile, cache: CostCache | None = None) -> None:
    """Raise InfeasibleError naming the first layer that cannot run alone in the SRAM."""
    cache = _cache(graph, hw, cache)
    for i in range(len(graph.layers)):
        # the same tilings layer_by_layer costs: with a shared cache it costs nothing more
        if not _fewest_tiles_fitting(cache, _layer_shape(cache, i)):
            raise _infeasible(cache, i)


# ---------------------------------------------------------------------------- plans
def layer_by_layer(graph: Graph, hw: HardwareProfile, cache: CostCache | None = None) -> Plan:
    if hw.feature_maps_in_sram:
        raise InfeasibleError(f"profile {hw.name} keeps every feature map in SRAM: the layer-by-layer and greedy "
                              "baselines spill them, use the cpsat strategy")
    cache = _cache(graph, hw, cache)
    groups: list[GroupDecision] = []
    keep: set[str] = set()
    for i in range(len(graph.layers)):
        _add_layer_alone(cache, i, groups, keep)
    return build_buffered(graph, hw, Decisions(tuple(groups), frozenset(keep)), provenance=Provenance(strategy="layer"))


def _add_layer_alone(cache: CostCache, index: int, groups: list[GroupDecision], keep: set[str]) -> None:
    """Layer ``index`` as its own group, as layer_by_layer runs it."""
    options = _fewest_tiles_fitting(cache, _layer_shape(cache, index))
    if not options:
        raise _infeasible(cache, index)
    c, k = min(options, key=lambda ck: spilled_energy(ck[0], ck[1], cache.hw))
    groups.append(GroupDecision(c.start, c.stop, c.tiling))
    if k:
        keep.update(w.layer for w in c.weights)


class _Best:
    """Cheapest fitting candidate per group range, memoised for one greedy run."""

    def __init__(self, cache: CostCache) -> None:
        self.cache = cache
        self.memo: dict[tuple[int, int], tuple[int, Candidate, bool] | None] = {}

    def __call__(self, start: int, stop: int) -> tuple[int, Candidate, bool] | None:
        key = (start, stop)
        if key not in self.memo:
            self.memo[key] = self._compute(start, stop)
        return self.memo[key]

    def _compute(self, start: int, stop: int) -> tuple[int, Candidate, bool] | None:
        """Among the fitting candidates of the group (keep first), the least energy, then the
        fewest tiles, then the first in tiling order. A candidate costs at least its energy
        with kept weights (see _energy_bound), so footprints are checked in the order of that
        bound, and only while a candidate left could still beat the best found."""
        shape = self.cache.shape(start, stop)
        if shape is None:
            return None
        hw = self.cache.hw
        bounded = []
        for order, tiling in enumerate(self.cache.tilings(shape)):
            c = self.cache.candidate(shape, tiling)
            bounded.append((_energy_bound(c, hw), c.n_tiles, order, c))
        bounded.sort(key=lambda b: b[:3])
        best: tuple[int, Candidate, bool] | None = None
        best_key = (0, 0, 0)
        for bound, n_tiles, order, c in bounded:
            if best is not None and (bound, n_tiles, order) >= best_key:
                break  # every candidate left costs at least its bound
            fit = _fit(self.cache, c)
            if fit is None:
                continue
            keep = fit[1]
            energy = spilled_energy(c, keep, hw)
            if best is None or (energy, n_tiles, order) < best_key:
                best, best_key = (energy, c, keep), (energy, n_tiles, order)
        return best


def _energy_bound(c: Candidate, hw: HardwareProfile) -> int:
    """A lower bound of spilled_energy(c, keep) over both keep choices. Keeping moves fewer
    weight bytes (each slice once instead of once per spatial tile), which costs no more
    energy when no energy per byte is negative (profiles are validated so)."""
    kept = spilled_energy(c, True, hw)
    if hw.dram_pj_per_byte >= 0 and hw.sram_pj_per_byte >= 0:
        return kept
    return min(kept, spilled_energy(c, False, hw))


def greedy(graph: Graph, hw: HardwareProfile, max_len: int = 12, cache: CostCache | None = None,
           halt: Callable[[], bool] | None = None) -> Plan:
    """Grow each group from its first layer while fusing one more layer costs less energy
    than closing the group and running that layer on its own.

    ``halt`` (for a time limit) is asked before each group: once it is true, the layers left
    run one per group as in layer_by_layer, and the plan's provenance says ``partial``."""
    if hw.feature_maps_in_sram:
        return layer_by_layer(graph, hw)  # raises the explanatory error
    cache = _cache(graph, hw, cache)
    n = len(graph.layers)
    groups: list[GroupDecision] = []
    keep: set[str] = set()
    _best = _Best(cache)
    start = 0
    partial = False
    while start < n:
        if halt is not None and halt():
            for i in range(start, n):
                _add_layer_alone(cache, i, groups, keep)
            partial = True
            break
        best = _best(start, start + 1)
        if best is None:
            raise _infeasible(cache, start)
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
    return build_buffered(graph, hw, Decisions(tuple(groups), frozenset(keep)),
                            provenance=Provenance(strategy="greedy", partial=partial))
