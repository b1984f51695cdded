"""Prefetched weight buffers: which layers' weights can stream in during the step before.

A weight buffer that starts at its layer's own step makes compute wait for the load
(:func:`memplan.cost.candidate.serial_weight_bytes`); one live from the step before lets the
DMA engine load it while that step computes. That costs SRAM at the earlier step only, so it is
a placement question. :func:`add_prefetch` answers it for decisions that are otherwise final:
it prefetches every weight buffer it can while the layout still fits (see its docstring for the
order it tries). Energy and traffic do not change; cycles never rise; offsets change only to a
first-fit layout within the capacity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from memplan.alloc import Block, extent, first_fit
from memplan.config import HardwareProfile
from memplan.cost.candidate import prefetchable
from memplan.ir.graph import Graph
from memplan.plan.build import Resolved, build_plan, cost_totals, plan_blocks, resolve
from memplan.plan.model import Decisions, Plan, Provenance


def add_prefetch(graph: Graph, hw: HardwareProfile, decisions: Decisions, offsets: Mapping[str, int] | None = None,
                 capacity: int | None = None) -> tuple[Decisions, dict[str, int] | None]:
    """``decisions`` with weight buffers prefetched where they fit, and the offsets to build
    them with (None: first fit). The layouts tried: every buffer prefetched with first-fit
    offsets; if that does not fit, each buffer extended where its earlier step is free at its
    offset (``offsets`` kept), and one buffer at a time with first-fit offsets, each kept if
    the layout still fits. The one with the fewest cycles wins, the decisions as given on a
    tie. ``capacity``: the bytes a first-fit layout may reach (the SRAM by default; a memory
    objective passes the peak it minimised)."""
    kept = dict(offsets) if offsets is not None else None
    if hw.weights_in_place or not hw.dma_overlaps_compute:
        return decisions, kept
    cap = hw.sram_bytes if capacity is None else capacity
    r = resolve(graph, hw, decisions)
    eligible = [w.layer for c in r.candidates for w in c.weights
                if w.layer not in decisions.prefetch and prefetchable(c, w, w.layer in decisions.keep)]
    if not eligible:
        return decisions, kept

    base = plan_blocks(r)
    names = {f"w.{layer}.keep" if layer in decisions.keep else f"w.{layer}.reload": layer for layer in eligible}

    def with_(layers: set[str] | frozenset[str]) -> Decisions:
        return replace(decisions, prefetch=frozenset(layers))

    def fits(layers: set[str]) -> bool:  # plan_blocks of with_(layers): prefetched buffers a step earlier
        blocks = [Block(b.name, b.size, b.t0 - 1, b.t1) if names.get(b.name) in layers else b for b in base]
        return extent(blocks, first_fit(blocks, hw.sram_alignment)) <= cap

    every = set(decisions.prefetch) | set(eligible)
    options: list[tuple[Decisions, dict[str, int] | None]] = [(decisions, kept)]  # first: wins ties
    if fits(every):
        options.append((with_(every), None))
    else:
        if kept is not None:
            options.append((with_(_extend_in_place(r, eligible, kept)), kept))
        chosen = set(decisions.prefetch)
        if kept is None or fits(chosen):
            for layer in eligible:
                if fits(chosen | {layer}):
                    chosen.add(layer)
            options.append((with_(chosen), None))
    # the fewest cycles (a prefetch moves its first load's DMA into the previous group, which
    # can cost that group a rounding cycle: never more than not prefetching)
    return min(options, key=lambda o: cost_totals(replace(r, decisions=o[0]), 0).cycles)


def _extend_in_place(r: Resolved, eligible: list[str], offsets: Mapping[str, int]) -> set[str]:
    """The prefetch set reached by extending, in schedule order, each eligible weight buffer
    whose SRAM at the earlier step is free at its offset."""
    placed = {b.name: b for b in plan_blocks(r)}
    chosen = set(r.decisions.prefetch)
    for layer in eligible:
        name = f"w.{layer}.keep" if layer in r.decisions.keep else f"w.{layer}.reload"
        blk = placed[name]
        step = blk.t0 - 1
        lo, hi = offsets[name], offsets[name] + blk.size
        if all(not (b.t0 <= step < b.t1 and offsets[b.name] < hi and lo < offsets[b.name] + b.size)
               for b in placed.values() if b.size and b.name != name):
            chosen.add(layer)
            placed[name] = Block(name, blk.size, step, blk.t1)
    return chosen


def build_prefetched(graph: Graph, hw: HardwareProfile, decisions: Decisions, offsets: Mapping[str, int] | None = None,
                     provenance: Provenance = Provenance(), capacity: int | None = None) -> Plan:
    """:func:`memplan.plan.build.build_plan` after :func:`add_prefetch`: how planners finish."""
    dec, offs = add_prefetch(graph, hw, decisions, offsets, capacity)
    return build_plan(graph, hw, dec, offs, provenance)


__all__ = ["add_prefetch", "build_prefetched"]
