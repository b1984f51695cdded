"""A dynamic programme over group boundaries: a proven lower bound and a warm start.

The CP-SAT model's LP relaxation mixes partitions fractionally (a skip tensor half internal,
half resident, at half the memory) and can stall at the compulsory floor. This DP solves a
*relaxation* of the same problem exactly, over the same candidates:

* state at a boundary: the set of resident tensors alive across it (small for chain-like
  networks; the DP gives up when a boundary has more than ``max_states`` states);
* a transition selects a candidate starting at the boundary and whether its anchor stays
  resident; memory is checked per schedule step with the plan's exact buffer intervals
  (a cumulative check: fragmentation is ignored, so it is a relaxation);
* keep/reload is relaxed to a fractional knapsack over the group's weights (savings of
  keeping are over-estimated, memory of keeping under-estimated).

Every relaxation lowers the cost, so the DP value is a valid lower bound on the energy of any
plan over these candidates; CP-SAT receives it as a cut (``energy >= bound``). The DP's path,
completed with a keep choice that fits and first-fit offsets, is a plan: when it validates it
is the warm start.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from memplan.config import HardwareProfile
from memplan.cost.candidate import Candidate
from memplan.ir.graph import Graph
from memplan.plan.model import Decisions, GroupDecision


@dataclass(frozen=True)
class DPResult:
    bound_fj: int  # lower bound on energy (fJ), rounded down
    decisions: Decisions  # the relaxation's path with a keep choice that fits the per-step check


def _fj(x: Fraction) -> Fraction:
    return x * 1000


def dp_bound(graph: Graph, hw: HardwareProfile, cands: tuple[Candidate, ...], max_states: int = 16) -> DPResult | None:
    """The relaxation's optimum (a lower bound), with the decisions of the relaxation's path."""
    return _dp(graph, hw, cands, max_states, relaxed=True, capacity=hw.sram_bytes)


def dp_plan(graph: Graph, hw: HardwareProfile, cands: tuple[Candidate, ...], slack: float = 0.03,
            max_states: int = 16) -> DPResult | None:
    """The cheapest path when every group keeps a set of weights that fits every step, at a
    capacity ``slack`` below the SRAM (first fit needs room for fragmentation): a warm start.
    Where a boundary has more than ``max_states`` residency states (DenseNet) only the cheapest
    are kept (a beam), so the path is good, not optimal. Its ``bound_fj`` is that path's cost,
    not a bound."""
    return _dp(graph, hw, cands, max_states, relaxed=False, capacity=int(hw.sram_bytes * (1 - slack)))


def _dp(graph: Graph, hw: HardwareProfile, cands: tuple[Candidate, ...], max_states: int, relaxed: bool,
        capacity: int) -> DPResult | None:
    if hw.feature_maps_in_sram or hw.weights_in_place:
        return None
    n = len(graph.layers)
    mac, dram, sram = _fj(hw.mac_pj), _fj(hw.dram_pj_per_byte), _fj(hw.sram_pj_per_byte)
    dma = dram + sram
    overlap = hw.dma_overlaps_compute
    eb = hw.elem_bytes
    size = {t: graph.tensors[t].numel * eb for t in graph.tensors}
    last_use = {t: max(cs) for t, cs in graph.consumers.items()}
    outputs = set(graph.outputs)
    by_start: dict[int, list[int]] = {}
    for i, c in enumerate(cands):
        by_start.setdefault(c.start, []).append(i)

    # best[a][R] = (cost, back-pointer)
    best: list[dict[frozenset[str], tuple[Fraction, tuple | None]]] = [dict() for _ in range(n + 1)]
    best[0][frozenset()] = (Fraction(0), None)
    for a in range(n):
        if not best[a]:
            continue
        if len(best[a]) > max_states:
            if relaxed:
                return None  # the bound must be exact over all states
            # a warm start need not be optimal: keep the cheapest states (beam search)
            keep = sorted(best[a].items(), key=lambda kv: kv[1][0])[:max_states]
            best[a] = dict(keep)
        for state, (cost0, _) in best[a].items():
            res_mem = sum(size[t] for t in state)
            for ci in by_start.get(a, ()):
                c = cands[ci]
                anchor_ok = (c.anchor not in outputs and c.anchor in last_use and last_use[c.anchor] >= c.stop
                             and size[c.anchor] <= capacity)
                for rho in ((False, True) if anchor_ok else (False,)):
                    step = _transition(c, state, rho, res_mem, size, capacity, overlap, mac, sram, dma, relaxed)
                    if step is None:
                        continue
                    cost, keep = step
                    alive = set(state) | ({c.anchor} if rho else set())
                    nxt = frozenset(t for t in alive if last_use.get(t, -1) >= c.stop)
                    total = cost0 + cost
                    if nxt not in best[c.stop] or total < best[c.stop][nxt][0]:
                        best[c.stop][nxt] = (total, (a, state, ci, rho, keep))
    if frozenset() not in best[n]:
        return None
    bound, _ = best[n][frozenset()]
    # walk back the path
    groups, keep, resident = [], set(), set()
    b, state = n, frozenset()
    while b > 0:
        _, ptr = best[b][state]
        assert ptr is not None
        a, prev, ci, rho, kept = ptr
        c = cands[ci]
        groups.append(GroupDecision(c.start, c.stop, c.tiling))
        keep.update(kept)
        if rho:
            resident.add(c.anchor)
        b, state = a, prev
    groups.reverse()
    return DPResult(int(bound), Decisions(tuple(groups), frozenset(keep), frozenset(resident)))


def _transition(c: Candidate, state: frozenset[str], rho: bool, res_mem: int, size: dict[str, int], capacity: int,
                overlap: bool, mac: Fraction, sram: Fraction, dma: Fraction,
                relaxed: bool) -> tuple[Fraction, frozenset[str]] | None:
    """Cost of running candidate c from a state, and the keep set it uses; None if even with
    every weight reloaded some step exceeds the capacity.

    Relaxed: the savings of keeping are bounded above, for every step t, by the saving of the
    layer at t (its slice is live at t either way) plus a fractional knapsack of the others in
    t's free room; the smallest of these bounds is used. Not relaxed: weights are kept
    greedily (best saving per byte first) while every step still fits, and that set is costed."""
    base_mem = res_mem + (size[c.anchor] if rho else 0)
    cost = mac * c.macs + sram * c.compute_sram_bytes
    slices = {w.index: w.slice_bytes for w in c.weights}
    room: dict[int, int] = {}
    for t in range(c.start, c.stop):
        m = base_mem + c.core_bytes + slices.get(t, 0)
        for inp in c.inputs:
            if inp.tensor not in state and c.start <= t < (c.stop if overlap else inp.last_use + 1):
                m += inp.stage_bytes
        if not rho and (c.start if overlap else c.stop - 1) <= t:
            m += c.out_stage_bytes
        if m > capacity:
            return None
        room[t] = capacity - m
    for inp in c.inputs:
        if inp.tensor not in state:
            cost += dma * inp.load_bytes
    if not rho:
        cost += dma * c.store_bytes
    cost += sum(dma * w.reload_bytes for w in c.weights)  # all reloaded; keeping saves from here
    items = sorted(((dma * (w.reload_bytes - w.total_bytes), w) for w in c.weights if w.reload_bytes > w.total_bytes),
                   key=lambda vw: (-vw[0] / max(vw[1].slice_bytes, 1), vw[1].index))
    if relaxed:
        best_saving = None
        for t, free in room.items():
            saving = sum((v for v, w in items if w.index == t), Fraction(0))
            cap = Fraction(free)
            for v, w in items:
                if w.index == t or cap <= 0:
                    continue
                take = min(Fraction(1), cap / w.slice_bytes) if w.slice_bytes else Fraction(1)
                saving += v * take
                cap -= take * w.slice_bytes
            best_saving = saving if best_saving is None else min(best_saving, saving)
        return cost - (best_saving or 0), frozenset()
    keep: list[tuple[Fraction, object]] = []
    kept_bytes = {t: 0 for t in room}
    for v, w in items:
        if all(kept_bytes[t] + (w.slice_bytes if t != w.index else 0) <= room[t] for t in room):
            for t in room:
                if t != w.index:
                    kept_bytes[t] += w.slice_bytes
            keep.append((v, w))
    saved = sum((v for v, _ in keep), Fraction(0))
    return cost - saved, frozenset(w.layer for _, w in keep)  # type: ignore[attr-defined]
