"""A dynamic programme over group boundaries: a proven lower bound and a warm start.

The CP-SAT model's LP relaxation mixes partitions fractionally (a skip tensor half internal,
half resident, at half the memory) and can stall at the compulsory floor. This DP solves a
*relaxation* of the same problem exactly, over the same candidates:

* state at a boundary: the set of resident tensors alive across it;
* a transition selects a candidate starting at the boundary and whether its anchor stays
  resident; memory is checked per schedule step with the plan's exact buffer intervals
  (a cumulative check: fragmentation is ignored, so it is a relaxation);
* keep/reload is relaxed to a fractional knapsack over the group's weights (savings of
  keeping are over-estimated, memory of keeping under-estimated).

**Equivalent states.** Two alive tensors are interchangeable at a boundary when they have the
same size, die at the same step, and every candidate still to come that reads one reads the
other at the same load bytes and staging size (DenseNet's feature maps inside a dense block:
every later concat reads them all). Swapping them changes no future cost and no future
memory, so states are keyed by the multiset of the classes of their tensors, and of two
states with one key only the cheaper is kept: exact, and it turns DenseNet's 2^24 subsets of
a dense block into one state per count. To make such tensors equal everywhere, the relaxation
gives a group's interchangeable inputs the smallest of their staging sizes (a channel split of
a concat cuts them differently): lowering a buffer size only relaxes further.

Every relaxation lowers the cost, so the DP value is a valid lower bound on the energy of any
plan over these candidates; CP-SAT receives it as the lower end of the objective's domain.

The same recursion with exact staging sizes, a keep set chosen greedily so that every step
fits, and a capacity a little below the SRAM (first fit needs room for fragmentation) gives
real plans: the warm start. Past ``max_states`` states at a boundary it keeps the cheapest
(a beam), so that path is good, not optimal. There, merging equivalent states is a heuristic:
the kept state is costed with its own (exact) staging sizes, so every path is a real plan.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from memplan.config import HardwareProfile
from memplan.cost.candidate import Candidate, resident_reserved_bytes
from memplan.ir.graph import Graph
from memplan.plan.model import Decisions, GroupDecision


@dataclass(frozen=True)
class DPResult:
    bound_fj: int  # the relaxation's optimum (a lower bound), or the cost of a plan path
    decisions: Decisions  # the path, with a keep choice that fits the per-step check
    peak_states: int  # the most states held at one boundary


@dataclass(frozen=True)
class _Input:
    tensor: str
    load_fj: int
    stage: int  # exact staging bytes
    stage_relaxed: int  # the smallest staging bytes among the group's interchangeable inputs
    end: int  # first step (relative to the group start) its staging buffer is no longer live


@dataclass(frozen=True)
class _Step:
    """One candidate with its costs in integer femtojoules and its memory per step."""

    index: int
    start: int
    stop: int
    anchor: str
    anchor_size: int
    can_stay: bool  # the anchor may stay resident after the group
    base_fj: int  # MACs, compute SRAM accesses, every weight reloaded per tile, escaping tensors' stores
    store_fj: int
    out_stage: int
    out_from: int  # first step (relative) the anchor's staging buffer is live when it is stored
    mem: tuple[int, ...]  # per step: core workspace + the weight slice of that step's layer
    inputs: tuple[_Input, ...]
    keep: tuple[tuple[int, int, int, str], ...]  # (saving_fj, slice, relative step, layer), best ratio first
    keep_total_fj: int
    keep_total_slice: int
    own_fj: tuple[int, ...]  # per step: the keep saving of the layer at that step
    own_slice: tuple[int, ...]  # per step: its slice
    mem_peak: int  # max(mem): no state with less room than this can run the candidate


class BoundaryDP:
    """The tables of one (graph, profile, candidate set), built once for every DP run."""

    def __init__(self, graph: Graph, hw: HardwareProfile, cands: tuple[Candidate, ...],
                 merge_equivalent: bool = True) -> None:
        """``merge_equivalent=False`` keys states by their tensors' names (for tests: the
        bound must not change)."""
        self.graph, self.hw, self.cands = graph, hw, cands
        self.merge_equivalent = merge_equivalent
        self.n = len(graph.layers)
        self.applicable = not (hw.feature_maps_in_sram or hw.weights_in_place)
        if not self.applicable:
            return
        mac, dram, sram = hw.rates_fj()
        dma = dram + sram
        # reserved SRAM bytes of each tensor when resident (channels bricked, size aligned)
        self.size = {t: resident_reserved_bytes(graph, t, hw) for t in graph.tensors}
        self.last_use = {t: max(cs) for t, cs in graph.consumers.items()}
        outputs = set(graph.outputs)
        overlap = hw.dma_overlaps_compute
        self.by_start: list[list[_Step]] = [[] for _ in range(self.n)]
        for ci, c in enumerate(cands):
            slices = {w.index: w.slice_bytes for w in c.weights}
            mem = tuple(c.core_bytes + slices.get(t, 0) for t in range(c.start, c.stop))
            twins: dict[tuple[object, ...], int] = {}
            for inp in c.inputs:
                k = (graph.tensors[inp.tensor].shape, inp.load_bytes, inp.copy_bytes, inp.last_use)
                twins[k] = min(twins.get(k, inp.stage_bytes), inp.stage_bytes)
            inputs = tuple(
                _Input(inp.tensor, dram * inp.load_bytes + sram * inp.sram_bytes, inp.stage_bytes,
                       twins[(graph.tensors[inp.tensor].shape, inp.load_bytes, inp.copy_bytes, inp.last_use)],
                       inp.stage_end(c.stop, hw) - c.start)
                for inp in c.inputs)
            items = sorted(((dma * (w.reload_bytes - w.total_bytes), w.slice_bytes, w.index - c.start, w.layer)
                            for w in c.weights if w.reload_bytes > w.total_bytes),
                           key=lambda it: (-Fraction(it[0], max(it[1], 1)), it[2]))
            can_stay = (c.anchor not in outputs and c.anchor not in graph.dram_only
                        and self.last_use.get(c.anchor, -1) >= c.stop
                        and self.size[c.anchor] <= hw.sram_bytes)
            self.by_start[c.start].append(_Step(
                ci, c.start, c.stop, c.anchor, self.size[c.anchor], can_stay,
                mac * c.macs + sram * c.compute_sram_bytes + sum(dma * w.reload_bytes for w in c.weights)
                + dma * c.escape_bytes,
                dma * c.store_bytes, c.out_stage_bytes, (0 if overlap else c.stop - 1 - c.start), mem, inputs,
                tuple(items), sum(it[0] for it in items), sum(it[1] for it in items),
                tuple(sum(it[0] for it in items if it[2] == k) for k in range(len(mem))),
                tuple(sum(it[1] for it in items if it[2] == k) for k in range(len(mem))), max(mem)))
        self._classes = _Classes(self)

    # ------------------------------------------------------------------ public runs
    def bound(self, max_states: int = 4096, stop: Callable[[], bool] | None = None) -> DPResult | None:
        """The relaxation's optimum: a lower bound on the energy of every plan over these
        candidates (None when a boundary has more than ``max_states`` inequivalent states, or
        when ``stop()`` turned true: it is asked once per boundary, for a time limit)."""
        return self._run(relaxed=True, capacity=self.hw.sram_bytes, max_states=max_states, stop=stop)

    def plan(self, slack: float = 0.03, max_states: int = 256, stop: Callable[[], bool] | None = None) -> DPResult | None:
        """The cheapest path (beam-limited) at a capacity ``slack`` below the SRAM, each group
        keeping a set of weights that fits every step. ``bound_fj`` is that path's cost. None
        when no path fits, or when ``stop()`` turned true (as for :meth:`bound`)."""
        return self._run(relaxed=False, capacity=int(self.hw.sram_bytes * (1 - slack)), max_states=max_states,
                         stop=stop)

    # ------------------------------------------------------------------ the recursion
    def _run(self, relaxed: bool, capacity: int, max_states: int,
             stop: Callable[[], bool] | None = None) -> DPResult | None:
        if not self.applicable:
            return None
        n, size, last_use = self.n, self.size, self.last_use
        classes = self._classes
        # best[a][key] = (cost, resident set, back-pointer)
        best: list[dict[tuple[object, ...], tuple[int, frozenset[str], tuple | None]]] = [{} for _ in range(n + 1)]
        best[0][()] = (0, frozenset(), None)
        peak = 0
        for a in range(n):
            if stop is not None and stop():
                return None
            here = best[a]
            if not here:
                continue
            if len(here) > max_states:
                if relaxed:
                    return None  # the bound must be exact over all states
                here = dict(sorted(here.items(), key=lambda kv: (kv[1][0], kv[0]))[:max_states])
                best[a] = here
            peak = max(peak, len(here))
            for key, (cost0, state, _) in here.items():
                res_mem = sum(size[t] for t in state)
                successors: dict[tuple[int, str | None], tuple[frozenset[str], tuple[object, ...]]] = {}
                for st in self.by_start[a]:
                    for rho in ((False, True) if st.can_stay else (False,)):
                        step = self._transition(st, state, rho, res_mem, capacity, relaxed)
                        if step is None:
                            continue
                        cost, kept = step
                        # the next state depends on the group's end and the anchor only
                        succ = (st.stop, st.anchor if rho else None)
                        if succ not in successors:
                            alive = state | {st.anchor} if rho else state
                            nxt_state = frozenset(t for t in alive if last_use.get(t, -1) >= st.stop)
                            successors[succ] = (nxt_state, classes.key(nxt_state, st.stop))
                        nxt, nkey = successors[succ]
                        total = cost0 + cost
                        slot = best[st.stop].get(nkey)
                        if slot is None or total < slot[0]:
                            best[st.stop][nkey] = (total, nxt, (a, key, st.index, rho, kept))
        final = best[n].get(())
        if final is None:
            return None
        # walk back the path
        groups, keep, resident = [], set(), set()
        b, key = n, ()
        while b > 0:
            ptr = best[b][key][2]
            assert ptr is not None
            a, key, ci, rho, kept = ptr
            c = self.cands[ci]
            groups.append(GroupDecision(c.start, c.stop, c.tiling))
            keep.update(kept)
            if rho:
                resident.add(c.anchor)
            b = a
        groups.reverse()
        return DPResult(final[0], Decisions(tuple(groups), frozenset(keep), frozenset(resident)), peak)

    def _transition(self, st: _Step, state: frozenset[str], rho: bool, res_mem: int, capacity: int,
                    relaxed: bool) -> tuple[int, tuple[str, ...]] | None:
        """Cost of running a candidate from a state, and the layers whose weights it keeps;
        None if even with every weight reloaded some step exceeds the capacity.

        Relaxed: the saving of keeping is bounded above, for every step t, by the saving of
        the layer at t (its slice is live at t either way) plus a fractional knapsack of the
        others in t's free room; the smallest of these bounds is used. Not relaxed: weights
        are kept greedily (best saving per byte first) while every step still fits."""
        base = res_mem + (st.anchor_size if rho else 0)
        if base + st.mem_peak > capacity:
            return None
        mem = [base + m for m in st.mem]
        cost = st.base_fj
        for inp in st.inputs:
            if inp.tensor in state:
                continue
            cost += inp.load_fj
            s = inp.stage_relaxed if relaxed else inp.stage
            for k in range(inp.end):
                mem[k] += s
        if not rho:
            cost += st.store_fj
            for k in range(st.out_from, len(mem)):
                mem[k] += st.out_stage
        if max(mem) > capacity:
            return None
        if not st.keep:
            return cost, ()
        room = [capacity - m for m in mem]
        if relaxed:
            return cost - _keep_saving_bound(st, room), ()
        kept: list[tuple[int, int, int, str]] = []
        used = [0] * len(room)
        for item in st.keep:
            _, sl, at, _ = item
            if all(used[k] + sl <= room[k] for k in range(len(room)) if k != at):
                for k in range(len(room)):
                    if k != at:
                        used[k] += sl
                kept.append(item)
        return cost - sum(it[0] for it in kept), tuple(it[3] for it in kept)


def _keep_saving_bound(st: _Step, room: list[int]) -> int:
    """An upper bound (integer, rounded up) on what keeping weights can save in this group."""
    best: int | None = None
    for k, free in enumerate(room):
        if free >= st.keep_total_slice - st.own_slice[k]:
            saving = st.keep_total_fj  # everything fits at this step
        else:
            saving, cap = st.own_fj[k], free
            for v, sl, at, _ in st.keep:
                if at == k:
                    continue
                if sl <= cap:
                    saving += v
                    cap -= sl
                else:
                    if cap > 0:
                        saving += -(-v * cap // sl)
                    break
        best = saving if best is None else min(best, saving)
        if best == 0:
            break
    return best or 0


class _Classes:
    """Interchangeability classes of alive tensors (see the module docstring), interned as
    integers: a tensor's class at a boundary is (size, last use, the exact sequence of the
    (candidate, load, relaxed staging, live steps) entries of every candidate from there on
    that reads it)."""

    def __init__(self, dp: BoundaryDP) -> None:
        self.dp = dp
        entries: dict[str, list[tuple[int, int, int, int, int]]] = {}
        for a in range(dp.n):
            for st in dp.by_start[a]:
                for inp in st.inputs:
                    entries.setdefault(inp.tensor, []).append((st.start, st.index, inp.load_fj, inp.stage_relaxed, inp.end))
        intern: dict[tuple[object, ...], int] = {}
        self.starts: dict[str, list[int]] = {}
        self.suffix: dict[str, list[int]] = {}
        for t, es in entries.items():
            ids = [0] * (len(es) + 1)
            ids[-1] = -1  # the empty suffix
            for i in range(len(es) - 1, -1, -1):
                ids[i] = intern.setdefault((es[i][1:], ids[i + 1]), len(intern))
            self.starts[t] = [e[0] for e in es]
            self.suffix[t] = ids
        self.labels: dict[tuple[int, int, int], int] = {}
        self.memo: dict[tuple[str, int], int] = {}

    def of(self, tensor: str, boundary: int) -> int:
        memo = self.memo.get((tensor, boundary))
        if memo is not None:
            return memo
        starts = self.starts.get(tensor, [])
        i = bisect_left(starts, boundary)
        suffix = self.suffix[tensor][i] if starts else -1
        k = (self.dp.size[tensor], self.dp.last_use[tensor], suffix)
        label = self.memo[(tensor, boundary)] = self.labels.setdefault(k, len(self.labels))
        return label

    def key(self, state: frozenset[str], boundary: int) -> tuple[object, ...]:
        if not self.dp.merge_equivalent:
            return tuple(sorted(state))
        return tuple(sorted(self.of(t, boundary) for t in state))


def dp_bound(graph: Graph, hw: HardwareProfile, cands: tuple[Candidate, ...], max_states: int = 4096) -> DPResult | None:
    """The relaxation's optimum (a lower bound), with the decisions of the relaxation's path."""
    return BoundaryDP(graph, hw, cands).bound(max_states)


def dp_plan(graph: Graph, hw: HardwareProfile, cands: tuple[Candidate, ...], slack: float = 0.03,
            max_states: int = 256) -> DPResult | None:
    """A plan path (see :meth:`BoundaryDP.plan`)."""
    return BoundaryDP(graph, hw, cands).plan(slack, max_states)
