"""Weight buffers that let weight DMA overlap compute: prefetched and double-buffered.

A weight buffer that starts at its layer's own step makes compute wait for the load, and one
with a single slot makes every later load of the layer wait for the compute of the previous
slice (:func:`memplan.cost.candidate.serial_weight_bytes`). Prefetching (the buffer live from
the step before) and a second slot (live over the whole group) cost SRAM only, so they are a
placement question. :func:`buffer_weights` answers it for decisions that are otherwise final;
CP-SAT decides prefetching itself for objectives that count cycles (memplan.solve). Energy and
traffic do not change; cycles never rise; offsets change only to a first-fit layout within the
capacity.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from memplan.alloc import Block, extent, first_fit
from memplan.config import HardwareProfile
from memplan.cost.candidate import CostCache, doublable, prefetchable
from memplan.ir.graph import Graph
from memplan.plan.build import Resolved, build_plan, cost_totals, group_timing, plan_blocks, resolve
from memplan.plan.model import Decisions, Plan, Provenance, Totals

#: a change to the decisions: (layer, "prefetch" or "double")
Change = tuple[str, str]


def buffer_weights(graph: Graph, hw: HardwareProfile, decisions: Decisions, offsets: Mapping[str, int] | None = None,
                   capacity: int | None = None) -> tuple[Decisions, dict[str, int] | None]:
    """``decisions`` with weight buffers prefetched and double-buffered where they fit, and the
    offsets to build them with (None: first fit). The layouts tried: every buffer changed,
    with first-fit offsets; if that does not fit, each change in schedule order (prefetches,
    then second slots) where its new SRAM is free at the buffer's offset (``offsets`` kept),
    and one change at a time with first-fit offsets, each kept if the layout still fits. The
    one with the fewest cycles wins, the decisions as given on a tie. ``capacity``: the bytes a
    first-fit layout may reach (the SRAM by default; a memory objective passes the peak it
    minimised)."""
    kept = dict(offsets) if offsets is not None else None
    if hw.weights_in_place or not hw.dma_overlaps_compute:
        return decisions, kept
    cap = hw.sram_bytes if capacity is None else capacity
    r = resolve(graph, hw, decisions)
    changes: list[Change] = []
    for kind, can, have in (("prefetch", prefetchable, decisions.prefetch), ("double", doublable, decisions.double)):
        changes += [(w.layer, kind) for c in r.candidates for w in c.weights
                    if w.layer not in have and can(c, w, w.layer in decisions.keep)]
    if not changes:
        return decisions, kept

    def with_(chosen: list[Change]) -> Decisions:
        return replace(decisions, prefetch=decisions.prefetch | {layer for layer, k in chosen if k == "prefetch"},
                       double=decisions.double | {layer for layer, k in chosen if k == "double"})

    def blocks(chosen: list[Change]) -> list[Block]:
        return plan_blocks(replace(r, decisions=with_(chosen)))

    def fits(chosen: list[Change]) -> bool:
        bs = blocks(chosen)
        return extent(bs, first_fit(bs, hw.sram_alignment)) <= cap

    options: list[tuple[Decisions, dict[str, int] | None]] = [(decisions, kept)]  # first: wins ties
    if fits(changes):
        options.append((with_(changes), None))
    else:
        if kept is not None:
            options.append((with_(_in_place(r, changes, kept, blocks, cap)), kept))
        chosen: list[Change] = []
        if kept is None or fits(chosen):
            for change in changes:
                if fits([*chosen, change]):
                    chosen.append(change)
            options.append((with_(chosen), None))
    # the fewest cycles (a prefetch moves its first load's DMA into the previous group, which
    # can cost that group a rounding cycle: never more than changing nothing)
    return min(options, key=lambda o: cost_totals(replace(r, decisions=o[0]), 0).cycles)


def _in_place(r: Resolved, changes: list[Change], offsets: Mapping[str, int], blocks,  # type: ignore[no-untyped-def]
              capacity: int) -> list[Change]:
    """The changes kept, in order, when each is made only if its buffer, at its offset, then
    ends within the capacity and overlaps no other block."""
    chosen: list[Change] = []
    placed = {b.name: b for b in blocks(chosen)}
    for change in changes:
        layer = change[0]
        name = f"w.{layer}.keep" if layer in r.decisions.keep else f"w.{layer}.reload"
        new = {b.name: b for b in blocks([*chosen, change])}[name]
        lo, hi = offsets[name], offsets[name] + new.size
        if hi <= capacity and all(not (b.t0 < new.t1 and new.t0 < b.t1 and offsets[b.name] < hi and lo < offsets[b.name] + b.size)
               for b in placed.values() if b.size and b.name != name):
            chosen.append(change)
            placed[name] = new
    return chosen


def stream_weights(graph: Graph, hw: HardwareProfile, decisions: Decisions, offsets: Mapping[str, int] | None = None,
                   capacity: int | None = None, *,
                   better: Callable[[Totals, Totals], bool]) -> tuple[Decisions, dict[str, int] | None]:
    """:func:`buffer_weights`, then, for each group of one weighted layer whose compute waits for
    its weight DMA, every other tiling of that group tried, each buffered: the best of those
    ``better(new totals, current totals)`` accepts (by ``better`` again) is kept, provided its layout fits
    ``capacity`` (the SRAM by default) with first-fit offsets. No other group changes.
    ``better`` is the objective's comparison (an objective that counts cycles: a finer channel
    split whose slices stream into two slots trades a few weight bytes for fewer cycles); it
    must accept whatever fewer cycles alone would make acceptable, since buffering changes only
    cycles: a trial whose totals with 0 cycles it rejects is skipped without buffering it.
    For an energy objective the trade never pays: a split re-reads the layer's input from SRAM
    once per slice."""
    dec, offs = buffer_weights(graph, hw, decisions, offsets, capacity)
    if hw.weights_in_place or not hw.dma_overlaps_compute:
        return dec, offs
    cap = hw.sram_bytes if capacity is None else capacity
    r = resolve(graph, hw, dec)
    current = cost_totals(r, 0)
    cache = CostCache(graph, hw)
    for gi, timing in enumerate(group_timing(r)):
        c = r.candidates[gi]
        if not timing.serial_bytes or c.stop - c.start != 1 or len(c.weights) != 1:
            continue
        shape = cache.shape(c.start, c.stop)
        assert shape is not None
        layer = c.weights[0].layer
        best: tuple[Totals, Decisions] | None = None
        for tiling in cache.tilings(shape):
            other = cache.candidate(shape, tiling)
            if tiling == c.tiling or len(other.weights) != 1:
                continue
            groups = list(dec.groups)
            groups[gi] = replace(groups[gi], tiling=tiling)
            trial = replace(dec, groups=tuple(groups), prefetch=dec.prefetch - {layer}, double=dec.double - {layer})
            cands = (*r.candidates[:gi], other, *r.candidates[gi + 1:])
            # buffering changes cycles only, and lowers them: a plan no cycles could make better is out
            if not better(replace(cost_totals(Resolved(graph, hw, trial, cands), 0), cycles=0), current):
                continue
            trial, _ = buffer_weights(graph, hw, trial, None, cap)
            tr = Resolved(graph, hw, trial, cands)
            blocks = plan_blocks(tr)
            if extent(blocks, first_fit(blocks, hw.sram_alignment)) > cap:
                continue
            found = cost_totals(tr, 0)
            if better(found, current) and (best is None or better(found, best[0])):
                best = (found, trial)
        if best is not None:
            current, dec = best
            offs = None
            r = resolve(graph, hw, dec)
    return dec, offs


def build_buffered(graph: Graph, hw: HardwareProfile, decisions: Decisions, offsets: Mapping[str, int] | None = None,
                   provenance: Provenance = Provenance(), capacity: int | None = None) -> Plan:
    """:func:`memplan.plan.build.build_plan` after :func:`buffer_weights`: how planners finish."""
    dec, offs = buffer_weights(graph, hw, decisions, offsets, capacity)
    return build_plan(graph, hw, dec, offs, provenance)


__all__ = ["buffer_weights", "build_buffered", "stream_weights"]
