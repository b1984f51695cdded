"""SRAM placement in the CP-SAT model: every buffer a rectangle of time x address.

At most one selected group starts at each layer, so the buffers are modelled per *slot*
rather than per candidate: the core workspace of the group starting at step ``a``, its staging
buffer for each external input and for its anchor, each layer's kept or reloaded weights, and
each resident tensor. A slot's presence, size and live interval are linear in the candidate
booleans, which keeps a few hundred optional boxes instead of one per candidate. All boxes go
into one NoOverlap2D (time x address, exact offsets), with a cumulative over time as a
redundant capacity cut that helps propagation.

Alignment (the profile's ``sram_alignment``): an offset is the alignment times an integer
variable, and every size is a reserved size (a multiple of it: the candidates' sizes are,
resident tensors are rounded up here), so the capacity check and the peak stay exact.

Each slot records the name of the plan block it becomes (``g<i>.core``...); group indexes are
only known after solving, so the names are given as (kind, start, tensor/layer) and mapped
when decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

from ortools.sat.python import cp_model

from memplan.config import HardwareProfile
from memplan.ir.graph import Graph
from memplan.cost.candidate import Candidate, resident_reserved_bytes
from memplan.solve.candidates import by_start
from memplan.solve.model import Vars, safe


@dataclass(frozen=True)
class Slot:
    """One optional SRAM box. ``kind`` is core/in/out (keyed by group start and tensor), a
    weight buffer (keyed by layer): keep or reload, then ``_pf`` if prefetched and ``_db`` if
    double-buffered, or res (keyed by tensor)."""

    kind: str
    start: int | None
    key: str | None
    present: cp_model.IntVar
    size: cp_model.IntVar
    offset: cp_model.IntVar
    t0: cp_model.IntVar | int
    t1: cp_model.IntVar | int


def _var_or_const(model: cp_model.CpModel, name: str, lo: int, hi: int, expr, present) -> cp_model.IntVar:  # type: ignore[no-untyped-def]
    var = model.new_int_var(lo, hi, name)
    model.add(var == expr).only_enforce_if(present)
    return var


def _presence(model: cp_model.CpModel, name: str, lits: list[cp_model.IntVar]) -> cp_model.IntVar:
    """A literal equal to the sum of mutually exclusive literals."""
    p = model.new_bool_var(name)
    model.add(p == sum(lits))
    return p


def add_memory(graph: Graph, hw: HardwareProfile, v: Vars, capacity: cp_model.IntVar | int) -> list[Slot]:
    model, cands = v.model, v.cands
    n = len(graph.layers)
    cap_max = hw.sram_bytes
    align = hw.sram_alignment
    overlap = hw.dma_overlaps_compute
    slots: list[Slot] = []

    def box(kind: str, start: int | None, key: str | None, present: cp_model.IntVar, size_terms: list[tuple[int, cp_model.IntVar]],
            t0_terms: list[tuple[int, cp_model.IntVar]] | int, t1_terms: list[tuple[int, cp_model.IntVar]] | int) -> None:
        tag = f"{kind}_{start if start is not None else ''}_{safe(key or '')}"
        sizes = [s for s, _ in size_terms]
        if max(sizes, default=0) == 0:
            return
        size = _var_or_const(model, f"size_{tag}", 0, max(sizes), sum(s * lit for s, lit in size_terms), present)
        t0: cp_model.IntVar | int
        t1: cp_model.IntVar | int
        t0 = t0_terms if isinstance(t0_terms, int) else _var_or_const(model, f"t0_{tag}", 0, n, sum(a * lit for a, lit in t0_terms), present)
        t1 = t1_terms if isinstance(t1_terms, int) else _var_or_const(model, f"t1_{tag}", 1, n, sum(a * lit for a, lit in t1_terms), present)
        off = model.new_int_var(0, cap_max, f"off_{tag}")
        if align > 1:
            model.add(off == align * model.new_int_var(0, cap_max // align, f"offu_{tag}"))
        slots.append(Slot(kind, start, key, present, size, off, t0, t1))

    for a, members in sorted(by_start(cands).items()):
        core_members = [i for i in members if cands[i].core_bytes]
        if core_members:
            p = _presence(model, f"p_core_{a}", [v.x[i] for i in core_members])
            box("core", a, None, p, [(cands[i].core_bytes, v.x[i]) for i in core_members], a,
                [(cands[i].stop, v.x[i]) for i in core_members])
        tensors = sorted({inp.tensor for i in members for inp in cands[i].inputs})
        for t in tensors:
            terms = [(i, inp) for i in members for inp in cands[i].inputs if inp.tensor == t]
            p = _presence(model, f"p_in_{a}_{safe(t)}", [v.loads(i, t) for i, _ in terms])
            box("in", a, t, p, [(inp.stage_bytes, v.loads(i, t)) for i, inp in terms], a,
                [(inp.stage_end(cands[i].stop, hw), v.loads(i, t)) for i, inp in terms])

    # the staging buffer of each stored tensor, in the group that produces it
    by_anchor: dict[str, list[int]] = {}
    for i, c in enumerate(cands):
        by_anchor.setdefault(c.anchor, []).append(i)
    for t, members in sorted(by_anchor.items()):
        p = v.store[t] if t in v.store else _presence(model, f"p_out_{safe(t)}", [v.x[i] for i in members])
        if t in v.res and t not in v.store:
            continue  # always resident (feature maps in SRAM): never staged
        box("out", None, t, p, [(cands[i].out_stage_bytes, v.x[i]) for i in members],
            [((cands[i].start if overlap else cands[i].stop - 1), v.x[i]) for i in members],
            [(cands[i].stop, v.x[i]) for i in members])

    if not hw.weights_in_place:
        for layer_index, layer in enumerate(graph.layers):
            if layer.id not in v.keep:
                continue
            k = v.keep[layer.id]
            members = [i for i in v.cover[layer_index] if any(w.layer == layer.id for w in cands[i].weights)]
            sizes = [(_slice(cands[i], layer.id), v.x[i]) for i in members]
            starts = [(cands[i].start, v.x[i]) for i in members]
            stops = [(cands[i].stop, v.x[i]) for i in members]
            twice = [(2 * size, x) for size, x in sizes]
            p, d = v.prefetch.get(layer.id), v.double.get(layer.id)
            # one box per (keep, prefetch, double): kept from the group's start (prefetched: the
            # step before, its layer then starts the group), reloaded at its own step (prefetched:
            # from the step before); kept or double-buffered until the group's end
            for kept in (True, False):
                for pf in (False, True) if p is not None else (False,):
                    for db in (False, True) if d is not None else (False,):
                        lits = [(k, kept), *([(p, pf)] if p is not None else []), *([(d, db)] if d is not None else [])]
                        kind = ("keep" if kept else "reload") + ("_pf" if pf else "") + ("_db" if db else "")
                        present = _all(model, f"p_{kind}_{safe(layer.id)}", lits)
                        t0: list[tuple[int, cp_model.IntVar]] | int = (
                            layer_index - 1 if pf else (starts if kept else layer_index))
                        t1: list[tuple[int, cp_model.IntVar]] | int = stops if kept or db else layer_index + 1
                        box(kind, None, layer.id, present, twice if db else sizes, t0, t1)

    for t, r in sorted(v.res.items()):
        size = resident_reserved_bytes(graph, t, hw)
        if t in graph.producer:
            t0: list[tuple[int, cp_model.IntVar]] | int = [(cands[i].start, v.x[i]) for i in v.cover[graph.producer[t]]]
        else:
            t0 = 0
        consumers = graph.consumers.get(t, ())
        if t in graph.outputs or not consumers:
            t1: list[tuple[int, cp_model.IntVar]] | int = n
        else:
            t1 = [(cands[i].stop, v.x[i]) for i in v.cover[max(consumers)]]
        box("res", None, t, r, [(size, r)], t0, t1)

    # geometry: each slot is a rectangle; the address end is within the capacity
    x_iv, y_iv = [], []
    for s in slots:
        tag = f"{s.kind}_{s.start}_{safe(s.key or '')}"
        t_size = model.new_int_var(1, n, f"dt_{tag}")
        model.add(t_size == s.t1 - s.t0).only_enforce_if(s.present)
        x_iv.append(model.new_optional_interval_var(s.t0, t_size, s.t1, s.present, f"time_{tag}"))
        end = model.new_int_var(0, cap_max, f"end_{tag}")
        y_iv.append(model.new_optional_interval_var(s.offset, s.size, end, s.present, f"addr_{tag}"))
        model.add(end <= capacity).only_enforce_if(s.present)
    model.add_no_overlap_2d(x_iv, y_iv)
    model.add_cumulative(x_iv, [s.size for s in slots], capacity)
    add_capacity_cuts(graph, hw, v, capacity)
    return slots


def _all(model: cp_model.CpModel, name: str, lits: list[tuple[cp_model.IntVar, bool]]) -> cp_model.IntVar:
    """A literal true exactly when each variable has its value (the variable itself for one)."""
    if len(lits) == 1:
        var, value = lits[0]
        return var if value else var.Not()
    z = model.new_bool_var(name)
    terms = [var if value else 1 - var for var, value in lits]
    for t in terms:
        model.add(z <= t)
    model.add(z >= sum(terms) - (len(terms) - 1))
    return z


def _slice(c: Candidate, layer_id: str) -> int:
    return next(w.slice_bytes for w in c.weights if w.layer == layer_id)


def add_capacity_cuts(graph: Graph, hw: HardwareProfile, v: Vars, capacity: cp_model.IntVar | int) -> None:
    """One linear constraint per schedule step: the bytes of every buffer live at that step fit.

    Redundant with the cumulative, but written over the decision literals, so the LP
    relaxation sees the SRAM capacity (without it the bound ignores memory entirely). Each term
    is at most the true size of a buffer live at that step, so the cut stays valid: a resident
    tensor counts over [producer, last consumer] only, the part of its life every plan shares;
    a staging buffer of a stored tensor counts sum(size x) - max(size) (1 - store)."""
    model, cands = v.model, v.cands
    n = len(graph.layers)
    overlap = hw.dma_overlaps_compute
    terms: list[list[cp_model.LinearExprT]] = [[] for _ in range(n)]

    def live(t0: int, t1: int, expr: cp_model.LinearExprT) -> None:
        for t in range(t0, t1):
            terms[t].append(expr)

    for i, c in enumerate(cands):
        if c.core_bytes:
            live(c.start, c.stop, c.core_bytes * v.x[i])
        for inp in c.inputs:
            live(c.start, inp.stage_end(c.stop, hw), inp.stage_bytes * v.loads(i, inp.tensor))
    by_anchor: dict[str, list[int]] = {}
    for i, c in enumerate(cands):
        by_anchor.setdefault(c.anchor, []).append(i)
    for t, members in by_anchor.items():
        if t in v.res and t not in v.store:
            continue
        worst = max(cands[i].out_stage_bytes for i in members)
        slack = worst * (1 - v.store[t]) if t in v.store else 0
        for step in range(n):
            live_here = [i for i in members if (cands[i].start if overlap else cands[i].stop - 1) <= step < cands[i].stop]
            if live_here:
                terms[step].append(sum(cands[i].out_stage_bytes * v.x[i] for i in live_here) - slack)
    if not hw.weights_in_place:
        for layer_index, layer in enumerate(graph.layers):
            if layer.id not in v.keep:
                continue
            members = [i for i in v.cover[layer_index] if any(w.layer == layer.id for w in cands[i].weights)]
            # at its own step the slice is live whether kept or reloaded
            terms[layer_index].append(sum(_slice(cands[i], layer.id) * v.x[i] for i in members))
            # elsewhere in its group only when kept: keep AND (the group covers that step)
            for step in range(n):
                if step == layer_index:
                    continue
                covering = [i for i in members if cands[i].start <= step < cands[i].stop]
                if not covering:
                    continue
                size = min(_slice(cands[i], layer.id) for i in covering)
                k = model.new_bool_var(f"kept_{safe(layer.id)}_at_{step}")
                y = sum(v.x[i] for i in covering)
                model.add(k <= v.keep[layer.id])
                model.add(k <= y)
                model.add(k >= v.keep[layer.id] + y - 1)
                terms[step].append(size * k)
    for t, r in v.res.items():
        size = resident_reserved_bytes(graph, t, hw)
        lo = graph.producer.get(t, 0)
        consumers = graph.consumers.get(t, ())
        hi = n - 1 if t in graph.outputs or not consumers else max(consumers)
        live(lo, hi + 1, size * r)
    for t in range(n):
        if terms[t]:
            model.add(sum(terms[t]) <= capacity).with_name(f"mem_cap_{t}")
