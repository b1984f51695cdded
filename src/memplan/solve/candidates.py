"""Candidate (group, tiling) pairs for the CP-SAT model, with provable pruning.

Every convex group contiguous in the topological order, up to ``max_len`` layers, with every
tiling the profile allows. A candidate is dropped only when it cannot be part of any feasible
plan (its core workspace plus its largest weight slice exceed the SRAM: both are live at the
step of that layer whatever else is decided) or when another tiling of the same group is at
least as good in every cost and every buffer size (so any plan using it stays feasible, and
costs no more, with the other one instead).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from memplan.config import HardwareProfile
from memplan.cost.candidate import Candidate, CostCache
from memplan.ir.graph import Graph


@dataclass(frozen=True)
class CandidateSet:
    candidates: tuple[Candidate, ...]
    generated: int
    pruned_sram: int
    pruned_dominated: int
    dominator: dict[tuple[int, int, object], int]  # pruned key -> index of a dominating candidate

    def index_of(self, key: tuple[int, int, object]) -> int | None:
        for i, c in enumerate(self.candidates):
            if c.key == key:
                return i
        return self.dominator.get(key)


def _vector(c: Candidate) -> list[int]:
    v = [c.out_stage_bytes, c.core_bytes, c.macs, c.compute_sram_bytes]
    v.append(c.copy_bytes)
    for i in c.inputs:
        v += [i.load_bytes, i.stage_bytes, i.copy_bytes]
    for w in c.weights:
        v += [w.reload_bytes, w.slice_bytes]
    return v


def _pareto(cands: list[Candidate]) -> tuple[list[int], dict[int, int]]:
    """Indexes of the non-dominated candidates of one group, and for each dominated one the
    index of a kept candidate that dominates it. Ties keep the first (fewest-tiles order)."""
    m = np.array([_vector(c) for c in cands], dtype=np.int64)
    k = len(cands)
    le = np.ones((k, k), dtype=bool)  # le[j, i]: j <= i everywhere
    for col in m.T:
        le &= col[:, None] <= col[None, :]
    # where j <= i everywhere, j < i somewhere unless i <= j everywhere too
    idx = np.arange(k)
    dominated_by = le & (~le.T | (idx[:, None] < idx[None, :]))
    np.fill_diagonal(dominated_by, False)
    is_dominated = dominated_by.any(axis=0)
    keep = np.flatnonzero(~is_dominated)
    dropped = np.flatnonzero(is_dominated)
    # a kept dominator exists: domination is transitive and the order is strict; take the first
    first = keep[dominated_by[np.ix_(keep, dropped)].argmax(axis=0)]
    return keep.tolist(), dict(zip(dropped.tolist(), first.tolist()))


def enumerate_candidates(graph: Graph, hw: HardwareProfile, max_len: int = 12,
                         cache: CostCache | None = None) -> CandidateSet:
    """Every candidate of every group of up to ``max_len`` layers, pruned. A ``cache`` shared
    with the baselines saves costing a candidate twice (the result does not depend on it)."""
    if cache is None:
        cache = CostCache(graph, hw)
    cache.check(graph, hw)
    out: list[Candidate] = []
    dominator: dict[tuple[int, int, object], int] = {}
    generated = pruned_sram = pruned_dom = 0
    n = len(graph.layers)
    for start in range(n):
        for stop in range(start + 1, min(start + max_len, n) + 1):
            shape = cache.shape(start, stop)
            if shape is None:
                continue
            group: list[Candidate] = []
            for tiling in cache.tilings(shape):
                c = cache.candidate(shape, tiling)
                generated += 1
                slice_max = 0 if hw.weights_in_place else max((w.slice_bytes for w in c.weights), default=0)
                if c.core_bytes + slice_max > hw.sram_bytes:
                    pruned_sram += 1
                    continue
                group.append(c)
            if not group:
                continue
            keep, dom = _pareto(group)
            base = len(out)
            pos = {i: base + r for r, i in enumerate(keep)}
            out.extend(group[i] for i in keep)
            for i, j in dom.items():
                dominator[group[i].key] = pos[j]
            pruned_dom += len(dom)
    return CandidateSet(tuple(out), generated, pruned_sram, pruned_dom, dominator)


def by_layer(cands: tuple[Candidate, ...], n_layers: int) -> list[list[int]]:
    cover: list[list[int]] = [[] for _ in range(n_layers)]
    for i, c in enumerate(cands):
        for layer in range(c.start, c.stop):
            cover[layer].append(i)
    return cover


def by_start(cands: tuple[Candidate, ...]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for i, c in enumerate(cands):
        out[c.start].append(i)
    return out
