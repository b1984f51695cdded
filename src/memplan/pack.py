"""Exact offsets for buffers with fixed lifetimes (dynamic storage allocation).

Every buffer has a size and a half-open lifetime [t0, t1); find offsets such that two buffers
live at the same time never share an address and every buffer ends within the capacity. The
problem is NP-hard; :func:`pack` first tries first fit and two best-fit orders (milliseconds),
then a complete search in the spirit of MiniMalloc (Moffitt, ASPLOS 2023):

- **sections**: time is cut at every start and end; a *section* is an interval between two
  consecutive cut points in which at least one buffer is live. Every buffer spans a contiguous
  range of sections, and the buffers of one section pairwise overlap in time.
- **canonical solutions**: a buffer is only ever placed at its *minimum offset*, the (aligned)
  top of the highest placed buffer it overlaps in time, or 0. Buffers are placed in
  non-decreasing order of (offset, preorder rank). Every packing can be compacted (each buffer
  moved down to the lowest free offset until none can move) into one that this order reaches,
  so searching these solutions alone is complete.
- **inference**: in a section, the unplaced buffers stack on top of each other (they pairwise
  overlap), above the lowest minimum offset among them and above the offset just placed
  (offsets never decrease along a branch). So ``max(offset, lowest min offset) + unplaced
  bytes`` must fit in every section: checked after every placement.
- **dominance**: a candidate whose offset is at or above ``min offset + size`` of some unplaced
  buffer is skipped (that buffer would fit in the gap below forever: the packing is not
  compacted). A placed buffer that overlaps no unplaced buffer ("hatless") leaves the others'
  problem unchanged: if its subtree fails, its siblings fail too.
- **lone buffers and twins**: a free buffer that overlaps no free buffer goes to its minimum
  offset at once (nothing else depends on it; a packing can always move it there), outside the
  canonical order. Buffers with the same lifetime and size are interchangeable: placed in index
  order only.
- **a memo of failed states**: what is left to place depends only on the free buffers and their
  minimum offsets (and the sub-problem's preorder); a state that failed under a canonical
  constraint (last offset, rank) fails again under any constraint at least as strong. Keys are
  128-bit digests; at most 400,000 states are kept.
- **decomposition**: when no unplaced buffer crosses the boundary between two sections any more,
  both sides are independent sub-problems, solved one after the other (each with its own
  preorder); one that fails makes the branch fail.
- **preorders, round robin**: three static preorders (by lifetime width, area and the largest
  section total, in MiniMalloc's three orders) share a node budget that doubles each round, so
  one that suits the instance finishes early; an exhaustive run without the budget cut proves
  that no packing exists.

Sets and per-section data are numpy arrays; a placement changes them in place and the change is
undone on backtrack. The search is deterministic: the same blocks give the same offsets (or the
same node count to a proof), whatever the machine; only whether it finishes within the time
limit depends on the machine. Every packing returned is checked against the blocks.

Known limit: the search proves infeasibility by exhausting canonical solutions, with no energetic
reasoning; on random *tight* instances (load at the capacity at every time, many one-step
buffers) of 25-40 buffers it can run out of time where CP-SAT's NoOverlap2D proves infeasibility
in well under a second. MiniMalloc's instances (feasible, zero slack) are solved.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memplan.alloc import Block, first_fit
from memplan.errors import InfeasibleError, MemplanError

PACKED = "packed"
INFEASIBLE = "infeasible"
TIMEOUT = "timeout"

_FOUND, _NOT_FOUND, _ABORT = 0, 1, 2
_CLOCK_EVERY = 64  # nodes between two looks at the clock
_MEMO_MAX = 400_000  # failed states remembered (about 60 MB at most)


@dataclass(frozen=True)
class PackResult:
    """What :func:`pack_result` found.

    ``status`` is ``"packed"`` (``offsets`` holds one offset per block name), ``"infeasible"``
    (proven: no packing within the capacity exists) or ``"timeout"`` (none found within the
    time limit, not proven impossible). ``method`` says what decided it: ``"first_fit"``,
    ``"best_fit"``, ``"search"`` or ``"bound"`` (a lower bound above the capacity: a buffer
    larger than it, or more bytes live at one time than it holds). ``nodes`` counts the search
    nodes explored (0 when a heuristic or a bound decided)."""

    status: str
    offsets: Mapping[str, int] | None
    nodes: int
    seconds: float
    method: str

    @property
    def packed(self) -> bool:
        return self.status == PACKED


def pack(blocks: Sequence[Block], capacity: int, *, time_limit_s: float,
         alignment: int = 1) -> dict[str, int] | None:
    """Offsets (multiples of ``alignment``) that pack the blocks within ``capacity``, or None
    when none was found within ``time_limit_s`` or none exists (:func:`pack_result` tells
    which)."""
    res = pack_result(blocks, capacity, time_limit_s=time_limit_s, alignment=alignment)
    return dict(res.offsets) if res.offsets is not None else None


def pack_result(blocks: Sequence[Block], capacity: int, *, time_limit_s: float,
                alignment: int = 1, quick: bool = True, max_nodes: int | None = None) -> PackResult:
    """Pack the blocks within ``capacity``: heuristics first (unless ``quick`` is False), then
    the exact search (see the module docstring), stopped by ``time_limit_s`` or after
    ``max_nodes`` search nodes (a stop that does not depend on the machine: reproducible). A block of size 0 or with an empty lifetime (t1 <= t0) is never live: it
    gets offset 0 (and still has to fit: its size at most the capacity)."""
    start = time.perf_counter()
    if alignment < 1:
        raise ValueError(f"alignment must be at least 1, got {alignment}")
    if capacity < 0:
        raise ValueError(f"capacity must be at least 0, got {capacity}")
    names = [b.name for b in blocks]
    if len(set(names)) != len(names):
        dup = next(n for i, n in enumerate(names) if n in names[:i])
        raise ValueError(f"block name {dup!r} appears twice")
    if any(b.size < 0 for b in blocks):
        raise ValueError("block sizes must be at least 0")

    def done(status: str, offsets: Mapping[str, int] | None, nodes: int, method: str) -> PackResult:
        if offsets is not None:
            offsets = {b.name: int(offsets.get(b.name, 0)) for b in blocks}
            problem = find_conflict(blocks, offsets, capacity, alignment)
            if problem is not None:  # pragma: no cover - a bug, never a user's input
                raise AssertionError(f"pack produced an invalid packing ({method}): {problem}")
        return PackResult(status, offsets, nodes, time.perf_counter() - start, method)

    if any(b.size > capacity for b in blocks):
        return done(INFEASIBLE, None, 0, "bound")
    live = [b for b in blocks if b.size > 0 and b.t1 > b.t0]
    if not live:
        return done(PACKED, {}, 0, "first_fit")
    lo = np.array([b.t0 for b in live], dtype=np.int64)
    hi = np.array([b.t1 for b in live], dtype=np.int64)
    size = np.array([b.size for b in live], dtype=np.int64)
    if _peak_load(lo, hi, size) > capacity:
        return done(INFEASIBLE, None, 0, "bound")
    for method, offsets in _heuristics(live, alignment) if quick else ():
        if _extent(live, offsets) <= capacity:
            return done(PACKED, offsets, 0, method)
    deadline = start + max(time_limit_s, 0.0)
    search = _Search(lo, hi, size, capacity, alignment, deadline, max_nodes)
    status = search.run()
    if status == _FOUND:
        return done(PACKED, {b.name: int(search.sol[i]) for i, b in enumerate(live)}, search.nodes, "search")
    return done(INFEASIBLE if status == _NOT_FOUND else TIMEOUT, None, search.nodes, "search")


# ------------------------------------------------------------------------------ the checker
def find_conflict(blocks: Sequence[Block], offsets: Mapping[str, int], capacity: int,
                  alignment: int = 1) -> str | None:
    """None when the offsets pack the blocks (every offset a non-negative multiple of
    ``alignment``, every block within ``capacity``, no two blocks live at the same time sharing
    an address); else what is wrong, in one line."""
    for b in blocks:
        if b.name not in offsets:
            return f"block {b.name!r} has no offset"
        off = offsets[b.name]
        if off < 0 or off % alignment:
            return f"block {b.name!r} at offset {off} (not a non-negative multiple of {alignment})"
        if off + b.size > capacity:
            return f"block {b.name!r} ends at {off + b.size}, beyond the capacity {capacity}"
    live = [b for b in blocks if b.size > 0 and b.t1 > b.t0]
    live.sort(key=lambda b: b.t0)
    active: list[Block] = []
    for b in live:  # sweep in start order: the blocks still live when b starts
        active = [a for a in active if a.t1 > b.t0]
        ob = offsets[b.name]
        for a in active:
            oa = offsets[a.name]
            if oa < ob + b.size and ob < oa + a.size:
                return (f"blocks {a.name!r} [{oa}, {oa + a.size}) and {b.name!r} [{ob}, {ob + b.size}) "
                        f"share addresses while both live")
        active.append(b)
    return None


# ------------------------------------------------------------------------------ heuristics
def _peak_load(lo: np.ndarray, hi: np.ndarray, size: np.ndarray) -> int:
    """The most bytes live at one time."""
    pts, inv = np.unique(np.concatenate([lo, hi]), return_inverse=True)
    delta = np.zeros(len(pts), dtype=np.int64)
    np.add.at(delta, inv[: len(lo)], size)
    np.add.at(delta, inv[len(lo):], -size)
    return int(np.cumsum(delta).max())


def _extent(blocks: Sequence[Block], offsets: Mapping[str, int]) -> int:
    return max((offsets[b.name] + b.size for b in blocks), default=0)


def _heuristics(live: Sequence[Block], alignment: int):
    """(method, offsets) of the quick attempts, cheapest first."""
    yield "first_fit", first_fit(live, alignment)
    yield "best_fit", _best_fit(sorted(live, key=lambda b: (-b.size, b.t0, b.name)), alignment)
    yield "best_fit", _best_fit(sorted(live, key=lambda b: (b.t0, -b.size, b.name)), alignment)


def _best_fit(order: Sequence[Block], alignment: int) -> dict[str, int]:
    """Place the blocks in this order, each in the free gap (among the blocks placed that it
    overlaps in time) that leaves the least room, the top of the stack only when no gap fits."""
    placed: list[tuple[int, int, int, int]] = []  # (t0, t1, offset, end)
    out: dict[str, int] = {}
    for b in order:
        busy = sorted((o, e) for t0, t1, o, e in placed if t0 < b.t1 and b.t0 < t1)
        best, best_room, floor = -1, -1, 0
        for o, e in busy:
            start = -(-floor // alignment) * alignment
            room = o - start - b.size
            if room >= 0 and (best < 0 or room < best_room):
                best, best_room = start, room
            floor = max(floor, e)
        if best < 0:
            best = -(-floor // alignment) * alignment
        out[b.name] = best
        placed.append((b.t0, b.t1, best, best + b.size))
    return out


# ------------------------------------------------------------------------------ the exact search
class _Search:
    """The complete search over canonical solutions (module docstring). Buffers are 0..n-1,
    sections 0..S-1; ``slo[i]:shi[i]`` are buffer i's sections."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, size: np.ndarray, capacity: int, alignment: int,
                 deadline: float, max_nodes: int | None = None) -> None:
        n = len(size)
        self.max_nodes = max_nodes
        self.n, self.size, self.cap, self.align, self.deadline = n, size, capacity, alignment, deadline
        self.width = hi - lo
        pts = np.unique(np.concatenate([lo, hi]))
        a, b = np.searchsorted(pts, lo), np.searchsorted(pts, hi)
        cover = np.zeros(len(pts), dtype=np.int64)
        np.add.at(cover, a, 1)
        np.add.at(cover, b, -1)
        active = np.cumsum(cover)[:-1] > 0  # elementary interval e = [pts[e], pts[e+1])
        sec_of = np.cumsum(active) - 1
        self.slo = sec_of[a].astype(np.int64)
        self.shi = (sec_of[b - 1] + 1).astype(np.int64)
        S = int(active.sum())
        self.S = S
        # (section, buffer) pairs sorted by section: a section range is a slice of them
        spans = self.shi - self.slo
        pb = np.repeat(np.arange(n), spans)
        ps = np.concatenate([np.arange(s0, s1) for s0, s1 in zip(self.slo.tolist(), self.shi.tolist())])
        order = np.lexsort((pb, ps))
        self.pair_buf = pb[order]
        self.pair_start = np.searchsorted(ps[order], np.arange(S + 1))
        self.total = np.zeros(S, dtype=np.int64)  # unplaced bytes per section
        np.add.at(self.total, ps, size[pb])
        # with an alignment, the buffers stacked in a section take their sizes rounded up to it
        # (the offsets are aligned), within the capacity rounded up: a second, padded bound
        self.psize = -(-size // alignment) * alignment
        self.pcap = -(-capacity // alignment) * alignment
        self.ptotal = np.zeros(S, dtype=np.int64)
        np.add.at(self.ptotal, ps, self.psize[pb])
        # twins (same lifetime and size) are interchangeable: they are placed in index order
        self.twin_prev = np.full(n, -1, dtype=np.int64)
        last: dict[tuple[int, int, int], int] = {}
        for i, key in enumerate(zip(lo.tolist(), hi.tolist(), size.tolist())):
            if key in last:
                self.twin_prev[i] = last[key]
            last[key] = i
        self.has_twins = bool((self.twin_prev >= 0).any())
        # time overlaps <=> section ranges intersect
        ov = (self.slo[:, None] < self.shi[None, :]) & (self.slo[None, :] < self.shi[:, None])
        np.fill_diagonal(ov, False)
        self.overlaps = [np.flatnonzero(row) for row in ov]
        self.free_deg = ov.sum(axis=1).astype(np.int64)  # free buffers each buffer overlaps
        # cut[s]: unplaced buffers live in both section s and s + 1
        self.cut = np.zeros(max(S - 1, 0), dtype=np.int64)
        for s0, s1 in zip(self.slo.tolist(), self.shi.tolist()):
            self.cut[s0: s1 - 1] += 1
        self.mo = np.zeros(n, dtype=np.int64)  # minimum offset of each buffer
        self.free = np.ones(n, dtype=bool)  # not placed yet
        self.sol = np.zeros(n, dtype=np.int64)
        self.nodes = 0
        self.budget = 0
        self.timed_out = False
        self.preorder = "WAT"
        self.contexts: dict[tuple[str, bytes], int] = {}
        self.memo: dict[bytes, tuple[int, int]] = {}  # failed state -> weakest constraint it failed under
        self.memo_hits = 0

    # ---------------------------------------------------------------- driver
    def run(self) -> int:
        """_FOUND, _NOT_FOUND (proven) or _ABORT (the deadline)."""
        partitions = self._split(np.arange(self.n), 0, self.S, np.flatnonzero(self.cut == 0))
        limit = max(self.n, 1)
        old_limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(old_limit, 4 * self.n + 1000))
        try:
            while True:
                limit *= 2
                for preorder in ("WAT", "TAW", "TWA"):
                    self.preorder, self.budget = preorder, limit
                    status = _FOUND
                    for members, s0, s1 in partitions:
                        status = self._subsolve(members, s0, s1)
                        if status != _FOUND:
                            break
                    if status != _ABORT:
                        return status
                    if self.timed_out:
                        return _ABORT
        finally:
            sys.setrecursionlimit(old_limit)

    def _split(self, members: np.ndarray, s0: int, s1: int, zero_cuts: np.ndarray):
        """The members grouped by the ranges between the zero cuts (sections s0..s1), as
        (members, first section, end section), empty groups left out."""
        bounds = [s0] + [int(c) + 1 for c in zero_cuts] + [s1]
        group = np.searchsorted(np.asarray(bounds[1:-1], dtype=np.int64), self.slo[members], side="right")
        out = []
        for g in range(len(bounds) - 1):
            sub = members[group == g]
            if sub.size:
                out.append((sub, bounds[g], bounds[g + 1]))
        return out

    def _subsolve(self, members: np.ndarray, s0: int, s1: int) -> int:
        """Search one independent sub-problem: its unplaced members and sections s0..s1."""
        total = self.total
        tmax = np.array([total[a:b].max() for a, b in zip(self.slo[members].tolist(), self.shi[members].tolist())])
        width, area = self.width[members], self.width[members] * self.size[members]
        keys = {"W": -width, "A": -area, "T": -tmax}
        # lexsort: the last key is the primary one; ties by buffer index
        order = np.lexsort((members,) + tuple(keys[c] for c in reversed(self.preorder)))
        ranked = members[order]
        # the ranks are a function of the preorder and the member set: that names the context
        ctx = self.contexts.setdefault((self.preorder, np.sort(members).tobytes()), len(self.contexts))
        p0, p1 = int(self.pair_start[s0]), int(self.pair_start[s1])
        return self._dfs(ranked, s0, s1, self.pair_buf[p0:p1], self.pair_start[s0:s1] - p0, 0, -1,
                         ctx.to_bytes(8, "little"))

    # ---------------------------------------------------------------- the search proper
    def _dfs(self, ranked: np.ndarray, s0: int, s1: int, pair_buf: np.ndarray, starts: np.ndarray,
             last_off: int, last_rank: int, ctx: bytes) -> int:
        self.nodes += 1
        self.budget -= 1
        if self.budget < 0:
            return _ABORT
        if self.nodes % _CLOCK_EVERY == 0 and time.perf_counter() > self.deadline or (
                self.max_nodes is not None and self.nodes > self.max_nodes):
            self.timed_out = True
            self.budget = -1
            return _ABORT
        free, mo, size, cap = self.free, self.mo, self.size, self.cap
        rank = np.flatnonzero(free[ranked])
        if rank.size == 0:
            return _FOUND
        left = ranked[rank]
        alone = self.free_deg[left] == 0
        if alone.any():
            return self._place_alone(ranked, s0, s1, pair_buf, starts, last_off, last_rank, ctx, left, alone)
        lmo = mo[left]
        # what is left depends only on the free buffers and their minimum offsets: a state that
        # failed before under a constraint no stronger than this one fails again
        key = hashlib.blake2b(ctx + rank.tobytes() + lmo.tobytes(), digest_size=16).digest()
        failed = self.memo.get(key)
        if failed is not None and (last_off, last_rank) >= failed:
            self.memo_hits += 1
            return _NOT_FOUND
        status = self._expand(ranked, s0, s1, pair_buf, starts, last_off, last_rank, ctx, rank, left, lmo)
        if status == _NOT_FOUND and (failed is not None or len(self.memo) < _MEMO_MAX):
            self.memo[key] = (last_off, last_rank) if failed is None else min(failed, (last_off, last_rank))
        return status

    def _place_alone(self, ranked: np.ndarray, s0: int, s1: int, pair_buf: np.ndarray, starts: np.ndarray,
                     last_off: int, last_rank: int, ctx: bytes, left: np.ndarray, alone: np.ndarray) -> int:
        """Free buffers that overlap no free buffer go to their minimum offset at once: the
        others' problem does not depend on them, and any packing can move them there."""
        free, mo, size, total, ptotal, cut = self.free, self.mo, self.size, self.total, self.ptotal, self.cut
        lone = left[alone]
        if bool((mo[lone] + size[lone] > self.cap).any()):
            return _NOT_FOUND
        free[lone] = False
        self.sol[lone] = mo[lone]
        spans = list(zip(self.slo[lone].tolist(), self.shi[lone].tolist(), size[lone].tolist(),
                         self.psize[lone].tolist()))
        for a, b, sj, pj in spans:
            total[a:b] -= sj
            ptotal[a:b] -= pj
            cut[a: b - 1] -= 1
        rest = left[~alone]
        zero = np.flatnonzero(cut[s0: s1 - 1] == 0) if rest.size else None
        if rest.size == 0:
            status = _FOUND
        elif zero.size:
            status = _FOUND
            for members, c0, c1 in self._split(rest, s0, s1, zero + s0):
                status = self._subsolve(members, c0, c1)
                if status != _FOUND:
                    break
        else:
            status = self._dfs(ranked, s0, s1, pair_buf, starts, last_off, last_rank, ctx)
        for a, b, sj, pj in spans:
            total[a:b] += sj
            ptotal[a:b] += pj
            cut[a: b - 1] += 1
        free[lone] = True
        return status

    def _expand(self, ranked: np.ndarray, s0: int, s1: int, pair_buf: np.ndarray, starts: np.ndarray,
                last_off: int, last_rank: int, ctx: bytes, rank: np.ndarray, left: np.ndarray,
                lmo: np.ndarray) -> int:
        """The children of a node: every candidate placement that passes the checks."""
        free, mo, size, cap = self.free, self.mo, self.size, self.cap
        min_top = int((lmo + size[left]).min())
        ok = (lmo < min_top) & ((lmo > last_off) | ((lmo == last_off) & (rank > last_rank)))
        if self.has_twins:
            prev = self.twin_prev[left]
            ok &= (prev < 0) | ~free[np.maximum(prev, 0)]
        cand = np.flatnonzero(ok)
        if cand.size == 0:
            return _NOT_FOUND
        if cand.size > 1:
            cand = cand[np.argsort(lmo[cand], kind="stable")]  # by offset, then rank
        total, cut, align, slo, shi = self.total, self.cut, self.align, self.slo, self.shi
        padded, ptotal, psize = align > 1, self.ptotal, self.psize
        # inference before any change: after placing j at `off`, every section still needs
        # off + its unplaced bytes <= cap; only j's own sections lose j's bytes
        sec = total[s0:s1]
        peak = int(sec.max())
        coff = lmo[cand]
        cbuf = left[cand]
        csize = size[cbuf]
        fits = coff + peak <= cap
        if not fits.all():
            maybe = np.flatnonzero(~fits & (coff + peak - csize <= cap))
            for off in np.unique(coff[maybe]).tolist():
                tight = np.flatnonzero(sec > cap - off)
                first, last = int(tight[0]) + s0, int(tight[-1]) + s0
                at = maybe[coff[maybe] == off]
                bs = cbuf[at]
                fits[at] = (slo[bs] <= first) & (shi[bs] > last)
        hatless = self.free_deg[cbuf] == 0
        for k, j, off, sj, fit, alone in zip(cand.tolist(), cbuf.tolist(), coff.tolist(), csize.tolist(),
                                              fits.tolist(), hatless.tolist()):
            if not fit:
                if alone:
                    break
                continue
            a, b = int(slo[j]), int(shi[j])
            top = off + sj
            if align > 1:
                top = -(-top // align) * align
            rest = int(total[a:b].max()) - sj
            if rest and top + rest > cap:  # the others in j's sections stack above j
                if alone:
                    break
                continue
            free[j] = False
            self.sol[j] = off
            ovj = self.overlaps[j]
            above = ovj[free[ovj]]
            raised = above[mo[above] < top]
            old = mo[raised]
            mo[raised] = top
            self.free_deg[ovj] -= 1
            total[a:b] -= sj
            if padded:
                ptotal[a:b] -= psize[j]
            status = _NOT_FOUND
            # every section: its free buffers stack above the lowest minimum offset among them
            vals = np.where(free[pair_buf], mo[pair_buf], cap)
            floor = np.minimum.reduceat(vals, starts)
            if bool((floor + total[s0:s1] <= cap).all()) and (
                    not padded or bool((floor + ptotal[s0:s1] <= self.pcap).all())):
                cuts = cut[a: b - 1]
                cuts -= 1
                zero = np.flatnonzero(cuts == 0)
                if zero.size:
                    status = _FOUND
                    rest = left[left != j]
                    for members, c0, c1 in self._split(rest, s0, s1, zero + a):
                        status = self._subsolve(members, c0, c1)
                        if status != _FOUND:
                            break
                else:
                    status = self._dfs(ranked, s0, s1, pair_buf, starts, off, int(rank[k]), ctx)
                cuts += 1
            total[a:b] += sj
            if padded:
                ptotal[a:b] += psize[j]
            self.free_deg[ovj] += 1
            mo[raised] = old
            free[j] = True
            if status != _NOT_FOUND:
                return status
            if alone:
                break  # hatless: the others' problem did not depend on this buffer
        return _NOT_FOUND


# ------------------------------------------------------------------------------ MiniMalloc CSV
class BufferFileError(MemplanError):
    """A buffers CSV file is malformed (exit 2)."""


class NoPackingError(InfeasibleError):
    """No packing within the capacity: proven impossible, or not found within the time limit."""


COLUMNS = ("id", "lower", "upper", "size")


def read_buffers_csv(path: str | os.PathLike[str]) -> list[Block]:
    """MiniMalloc's buffers CSV: a header row naming ``id,lower,upper,size`` (any order, other
    columns ignored), then one buffer per row, lifetime [lower, upper). A malformed file is a
    one-line :class:`BufferFileError` naming the row."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BufferFileError(f"buffers file {str(p)!r} does not exist; check the path") from None
    except IsADirectoryError:
        raise BufferFileError(f"buffers file {str(p)!r} is a folder; give the CSV file") from None
    except UnicodeDecodeError:
        raise BufferFileError(f"buffers file {str(p)!r} is not UTF-8 text; give a CSV file") from None
    return parse_buffers_csv(text, str(p))


def parse_buffers_csv(text: str, where: str = "buffers") -> list[Block]:
    """:func:`read_buffers_csv` on the file's text; ``where`` names it in errors."""
    rows = csv.reader(io.StringIO(text))
    try:
        header = next(rows)
    except StopIteration:
        raise BufferFileError(f"{where}: the file is empty; it needs a header row id,lower,upper,size") from None
    except csv.Error as exc:
        raise BufferFileError(f"{where}: line 1 is not CSV ({exc})") from None
    header = [h.strip().lower() for h in header]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise BufferFileError(f"{where}: the header row has no column {', '.join(missing)}; "
                              f"it needs id,lower,upper,size")
    col = {c: header.index(c) for c in COLUMNS}
    blocks: list[Block] = []
    seen: dict[str, int] = {}
    line = 1
    try:
        for row in rows:
            line = rows.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) < len(header):
                raise BufferFileError(f"{where}: row at line {line} has {len(row)} fields, the header {len(header)}")
            name = row[col["id"]].strip()
            if not name:
                raise BufferFileError(f"{where}: row at line {line} has an empty id")
            vals = {}
            for c in ("lower", "upper", "size"):
                cell = row[col[c]].strip()
                try:
                    vals[c] = int(cell)
                except ValueError:
                    raise BufferFileError(f"{where}: row at line {line} (id {name!r}): {c} {cell!r} "
                                          "is not an integer") from None
            if vals["size"] < 0:
                raise BufferFileError(f"{where}: row at line {line} (id {name!r}): size {vals['size']} is negative")
            if vals["lower"] >= vals["upper"]:
                raise BufferFileError(f"{where}: row at line {line} (id {name!r}): lower {vals['lower']} is not "
                                      f"below upper {vals['upper']} (lifetimes are [lower, upper))")
            if name in seen:
                raise BufferFileError(f"{where}: row at line {line}: id {name!r} was already given at line "
                                      f"{seen[name]}")
            seen[name] = line
            blocks.append(Block(name, vals["size"], vals["lower"], vals["upper"]))
    except csv.Error as exc:
        raise BufferFileError(f"{where}: line {rows.line_num} is not CSV ({exc})") from None
    return blocks


def format_offsets_csv(blocks: Sequence[Block], offsets: Mapping[str, int]) -> str:
    """The buffers as MiniMalloc's CSV with an ``offset`` column, in the input's order."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS + ("offset",))
    for b in blocks:
        w.writerow((b.name, b.t0, b.t1, b.size, offsets[b.name]))
    return out.getvalue()


def write_text_atomically(path: str | os.PathLike[str], text: str) -> None:
    """Write to a temporary file in the target's folder, fsync, then rename over the target."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def place_file(path: str | os.PathLike[str], capacity: int, time_limit_s: float,
               output: str | os.PathLike[str] | None = None, alignment: int = 1) -> tuple[PackResult, str]:
    """``memplan place``: read the buffers CSV, pack it, return the result and the CSV text
    with offsets (written atomically to ``output`` when given). No packing: a one-line
    :class:`NoPackingError` that says whether it is proven impossible."""
    blocks = read_buffers_csv(path)
    res = pack_result(blocks, capacity, time_limit_s=time_limit_s, alignment=alignment)
    if res.offsets is None:
        if res.status == INFEASIBLE:
            why = ("a lower bound exceeds it" if res.method == "bound"
                   else f"the search was exhaustive, {res.nodes} nodes")
            raise NoPackingError(f"no packing of the {len(blocks)} buffers within {capacity} bytes exists "
                                 f"(proven: {why}); give a larger --capacity")
        raise NoPackingError(f"no packing of the {len(blocks)} buffers within {capacity} bytes found within "
                             f"{time_limit_s:g} s ({res.nodes} nodes; not proven impossible); give a longer "
                             "--time-limit or a larger --capacity")
    text = format_offsets_csv(blocks, res.offsets)
    if output is not None:
        write_text_atomically(output, text)
    return res, text
