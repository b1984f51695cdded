"""Energy and latency as linear expressions of the decisions, with the same rules as
:func:`memplan.plan.build.cost_totals`."""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd

from ortools.sat.python import cp_model

from memplan.config import HardwareProfile
from memplan.ir.graph import Graph
from memplan.ir.ops import OpKind, ceil_div
from memplan.solve.candidates import by_start
from memplan.solve.model import Vars, and_not, safe


@dataclass(frozen=True)
class Terms:
    """``energy`` in femtojoules divided by ``energy_scale`` (exact: every coefficient is a
    multiple of it) plus ``energy_offset`` (already divided); ``cycles`` per the latency model
    (None until :func:`build_cycles` is called: it needs extra product literals)."""

    energy: cp_model.LinearExprT
    energy_scale: int
    energy_max: int  # the largest value the (scaled) expression can take


def build_energy(graph: Graph, v: Vars, hw: HardwareProfile) -> Terms:
    mac, dram, sram = hw.rates_fj()
    dma = dram + sram  # a DMA byte crosses DRAM and lands in (or leaves) SRAM
    coeffs: dict[int, int] = {}
    lits: dict[int, cp_model.IntVar] = {}
    constant = 0

    def add(lit: cp_model.IntVar, fj: int) -> None:
        if fj:
            coeffs[lit.Index()] = coeffs.get(lit.Index(), 0) + fj
            lits[lit.Index()] = lit

    for i, c in enumerate(v.cands):
        add(v.x[i], mac * c.macs + sram * c.compute_sram_bytes)
        for inp in c.inputs:
            add(v.loads(i, inp.tensor), dram * inp.load_bytes + sram * inp.sram_bytes)
        if hw.weights_in_place:  # read from flash for every tile, straight to the MACs
            add(v.x[i], dram * sum(w.reload_bytes for w in c.weights))
    # stores: every tensor that leaves its group and is not resident is written once
    for layer in graph.layers:
        t = layer.output
        size = graph.tensors[t].numel * hw.elem_bytes
        if layer.op is OpKind.HOST:
            continue  # the host writes it to DRAM, not the accelerator
        if t in v.store:
            add(v.store[t], dma * size)
        else:  # crossing(t) = 1 - sum(x of candidates it is internal to)
            constant += dma * size
            for i in v.internal.get(t, []):
                add(v.x[i], -dma * size)
    # weights: kept = loaded once; reloaded with k spatial tiles = loaded k times (the bytes
    # loaded once are the selected candidate's: they depend on its channel split when encoded)
    if not hw.weights_in_place:
        for pairs in v.keep_bytes.values():
            for total, k in pairs:
                add(k, dma * total)
        for (_, tiles, total), r in v.reload.items():
            add(r, dma * total * tiles)
    g = 0
    for val in [*coeffs.values(), constant]:
        g = gcd(g, val)
    g = g or 1
    expr = sum(lits[k] * (val // g) for k, val in coeffs.items() if val) + constant // g
    top = sum(val // g for val in coeffs.values() if val > 0) + constant // g
    return Terms(expr, g, top)


def build_cycles(graph: Graph, v: Vars, hw: HardwareProfile) -> cp_model.LinearExprT:
    """Cycles of the latency model: per group, compute and DMA engines each busy for their
    work; max of the two with double-buffered staging, their sum otherwise. One counter per
    group start (at most one selected group starts at a step). The DMA of a group needs its
    store and weight traffic per candidate, so this adds product literals."""
    model = v.model
    num, den = hw.dram_bytes_per_cycle.numerator, hw.dram_bytes_per_cycle.denominator
    total = []
    for a, members in sorted(by_start(v.cands).items()):
        dma_terms: list[tuple[int, cp_model.LinearExprT]] = []
        for i in members:
            c = v.cands[i]
            dma_terms += [(inp.dma_bytes, v.loads(i, inp.tensor)) for inp in c.inputs]
            if c.copy_bytes:  # rolling buffers' SRAM-to-SRAM copies (memplan.plan.build.group_cycles)
                dma_terms.append((c.copy_bytes, v.x[i]))
            if c.anchor in v.store:
                st = model.new_bool_var(f"stores_{c.name}")
                model.add_implication(st, v.x[i])
                model.add_implication(st, v.store[c.anchor])
                model.add_bool_or([v.x[i].Not(), v.store[c.anchor].Not(), st])
                dma_terms.append((c.store_bytes, st))
            elif c.anchor not in v.res:
                dma_terms.append((c.store_bytes, v.x[i]))
            for w in c.weights:
                if w.layer in v.keep:
                    kept = model.new_bool_var(f"kept_{c.name}_{safe(w.layer)}")
                    model.add_implication(kept, v.x[i])
                    model.add_implication(kept, v.keep[w.layer])
                    model.add_bool_or([v.x[i].Not(), v.keep[w.layer].Not(), kept])
                    rel = and_not(model, f"reloaded_{c.name}_{safe(w.layer)}", v.x[i], v.keep[w.layer])
                    dma_terms += [(w.total_bytes, kept), (w.reload_bytes, rel)]
                else:
                    dma_terms.append((w.reload_bytes, v.x[i]))
        # compute cycles per candidate: memplan.cost.cycles summed over its commands
        compute = sum(v.cands[i].compute_cycles * v.x[i] for i in members)
        max_c = max(v.cands[i].compute_cycles for i in members)
        max_dma = sum(b for b, _ in dma_terms)
        dma_cyc = model.new_int_var(0, ceil_div(max_dma * den, num) + 1, f"dma_cycles_{a}")
        model.add(dma_cyc * num >= sum(b * lit for b, lit in dma_terms) * den)
        cyc = model.new_int_var(0, max_c + ceil_div(max_dma * den, num) + 1, f"cycles_{a}")
        if hw.dma_overlaps_compute:
            model.add(cyc >= compute)
            model.add(cyc >= dma_cyc)
        else:
            model.add(cyc >= compute + dma_cyc)
        total.append(cyc)
    return sum(total)
