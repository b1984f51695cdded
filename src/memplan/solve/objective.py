"""Energy and latency as linear expressions of the decisions, with the same rules as
:func:`memplan.plan.build.cost_totals`."""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd

from ortools.sat.python import cp_model

from memplan.config import HardwareProfile
from memplan.cost.candidate import Candidate, WeightCost, serial_weight_bytes, serial_weight_loads
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
    """Cycles of the latency model (memplan.plan.build.timeline): per group, compute and DMA
    engines each busy for their work; max of the two with double-buffered staging (compute
    plus the weight DMA it waits for, against the DMA engine's own work), their sum otherwise.
    One counter per group start (at most one selected group starts at a step). The DMA of a
    group needs its store and weight traffic per candidate, so this adds product literals.

    Prefetching and double buffering (``v.prefetch``, ``v.double``): per (group start, layer)
    an integer for the weight DMA compute waits for, at least the cost model's value under the
    chosen keep, prefetch and double (big-M over the literals), and for the group's first
    layer the bytes loaded early,
    during the group before: the DMA engine of that group takes them in its slack (the
    group's cycles less its own DMA cycles; bounded per candidate ending there), the rest
    delays this group. Every bound is one the plan's timeline meets, and minimising makes them
    tight, so the optimum's cycles are the plan's; any solution's are at least the plan's.
    Waited-for weight DMA is counted in cycles x the rate's numerator, the DRAM read latency
    included per load."""
    model = v.model
    num, den = hw.dram_bytes_per_cycle.numerator, hw.dram_bytes_per_cycle.denominator

    def waited(c: Candidate, w: WeightCost, keep: bool, prefetch: bool, double: bool) -> int:
        """The weight DMA compute waits for, in cycles x num: bytes over the DRAM rate and the
        read latency of each load (memplan.plan.build.group_cycles)."""
        return (serial_weight_bytes(c, w, keep, prefetch, double) * den
                + serial_weight_loads(c, w, keep, prefetch, double) * hw.dram_read_latency * num)
    total = []
    base_of: dict[int, cp_model.IntVar] = {}
    own_of: dict[int, cp_model.IntVar] = {}
    top_of: dict[int, int] = {}  # upper bound of base_of
    early_of: dict[int, tuple[cp_model.IntVar, int]] = {}  # cycles of the early loads, their bound
    for a, members in sorted(by_start(v.cands).items()):
        dma_terms: list[tuple[int, cp_model.LinearExprT]] = []
        serial_terms: list[tuple[int, cp_model.LinearExprT]] = []  # weight DMA compute waits for
        prefetched: dict[str, list[tuple[int, WeightCost]]] = {}
        for i in members:
            c = v.cands[i]
            dma_terms += [(inp.dma_bytes, v.loads(i, inp.tensor)) for inp in c.inputs]
            if c.copy_bytes:  # rolling buffers' SRAM-to-SRAM copies (memplan.plan.build.group_cycles)
                dma_terms.append((c.copy_bytes, v.x[i]))
            if c.escape_bytes:  # a multi-output group's stores from inside
                dma_terms.append((c.escape_bytes, v.x[i]))
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
                    if w.layer in v.prefetch or w.layer in v.double:
                        prefetched.setdefault(w.layer, []).append((i, w))
                    else:
                        serial_terms += [(waited(c, w, True, False, False), kept), (waited(c, w, False, False, False), rel)]
                else:
                    dma_terms.append((w.reload_bytes, v.x[i]))
        early_terms: list[cp_model.IntVar] = []
        early_load: cp_model.IntVar | None = None  # the group's first layer loads early (at most one layer can)
        ser_top = 0  # upper bound of the prefetched layers' serial terms
        ser_vars: list[cp_model.IntVar] = []
        for layer, pairs in sorted(prefetched.items()):
            k, p, d = v.keep[layer], v.prefetch.get(layer), v.double.get(layer)
            top = max(waited(v.cands[i], w, kk, False, False) for i, w in pairs for kk in (True, False))
            ser = model.new_int_var(0, top, f"serial_{a}_{safe(layer)}")
            ser_vars.append(ser)
            for kk in (True, False):
                for pp in (True, False) if p is not None else (False,):
                    for dd in (True, False) if d is not None else (False,):
                        vals = [(waited(v.cands[i], w, kk, pp, dd), v.x[i]) for i, w in pairs]
                        big = max(b for b, _ in vals)
                        if big:
                            miss = (1 - k if kk else k)
                            if p is not None:
                                miss += 1 - p if pp else p
                            if d is not None:
                                miss += 1 - d if dd else d
                            model.add(ser >= sum(b * x for b, x in vals) - big * miss)
            ser_top += top
            firsts = [(w.first_bytes if w.index == a else 0, v.x[i]) for i, w in pairs]
            big = max(b for b, _ in firsts)
            if big and p is not None:  # the group's first layer: its first load runs during the group before
                e = model.new_int_var(0, big, f"early_{a}_{safe(layer)}")
                model.add(e <= big * p)
                model.add(e <= sum(b * x for b, x in firsts))
                model.add(e >= sum(b * x for b, x in firsts) - big * (1 - p))
                early_terms.append(e)
                if hw.dram_read_latency:  # and waits the latency once
                    starting = sum(x for b, x in firsts if b)
                    early_load = model.new_bool_var(f"early_load_{a}")
                    model.add(early_load <= p)
                    model.add(early_load <= starting)
                    model.add(early_load >= p + starting - 1)
        # compute cycles per candidate: memplan.cost.cycles summed over its commands
        compute = sum(v.cands[i].compute_cycles * v.x[i] for i in members)
        max_c = max(v.cands[i].compute_cycles for i in members)
        max_dma = sum(b for b, _ in dma_terms)
        dma_cyc = model.new_int_var(0, ceil_div(max_dma * den, num) + 1, f"dma_cycles_{a}")
        model.add(dma_cyc * num >= (sum(b * lit for b, lit in dma_terms) - sum(early_terms)) * den)
        cyc_top = max_c + ceil_div(max_dma * den, num) + 1
        cyc = model.new_int_var(0, cyc_top, f"cycles_{a}")
        if hw.dma_overlaps_compute:
            serial_terms = [(b, lit) for b, lit in serial_terms if b]
            if serial_terms or ser_vars:  # memplan.plan.build.group_cycles: compute plus the DMA it waits for
                max_serial = sum(b for b, _ in serial_terms) + ser_top  # in cycles x num
                serial_cyc = model.new_int_var(0, ceil_div(max_serial, num) + 1, f"serial_cycles_{a}")
                model.add(serial_cyc * num >= sum(b * lit for b, lit in serial_terms) + sum(ser_vars))
                model.add(cyc >= compute + serial_cyc)
            else:
                model.add(cyc >= compute)
            model.add(cyc >= dma_cyc)
        else:
            model.add(cyc >= compute + dma_cyc)
        base_of[a], own_of[a], top_of[a] = cyc, dma_cyc, cyc_top
        if early_terms:
            e_top = ceil_div(max_dma * den, num) + 1 + hw.dram_read_latency
            e_cyc = model.new_int_var(0, e_top, f"early_cycles_{a}")
            latency = early_load * hw.dram_read_latency * num if early_load is not None else 0
            model.add(e_cyc * num >= sum(early_terms) * den + latency)
            early_of[a] = (e_cyc, e_top)
        total.append(cyc)
    ends: dict[int, list[int]] = {}
    for i, c in enumerate(v.cands):
        ends.setdefault(c.stop, []).append(i)
    for a, (e_cyc, e_top) in sorted(early_of.items()):
        # the DMA engine's slack in the group ending at a: its cycles less its own DMA cycles
        enders = ends.get(a, [])
        top = max((top_of[v.cands[i].start] for i in enders), default=0)
        slack = model.new_int_var(0, top, f"slack_before_{a}")
        model.add(slack <= top * sum(v.x[i] for i in enders))
        for i in enders:
            b = v.cands[i].start
            model.add(slack <= base_of[b] - own_of[b] + top * (1 - v.x[i]))
        late = model.new_int_var(0, e_top, f"late_{a}")
        model.add(late >= e_cyc - slack)
        total.append(late)
    return sum(total)
