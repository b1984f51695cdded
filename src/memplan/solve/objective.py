"""Energy and latency as linear expressions of the decisions, with the same rules as
:func:`memplan.plan.build.cost_totals`."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import gcd

from ortools.sat.python import cp_model

from memplan.config import HardwareProfile
from memplan.ir.ops import ceil_div
from memplan.solve.candidates import by_start
from memplan.solve.model import Vars


@dataclass(frozen=True)
class Terms:
    """``energy`` in femtojoules divided by ``energy_scale`` (exact: every coefficient is a
    multiple of it); ``cycles`` per the profile's latency model."""

    energy: cp_model.LinearExpr
    energy_scale: int
    cycles: cp_model.LinearExpr


def _fj(x: Fraction) -> int:
    v = x * 1000
    assert v.denominator == 1, "energies must have at most three decimals of pJ"
    return int(v)


def _dma_terms(v: Vars, i: int) -> list[tuple[int, cp_model.IntVar, bool]]:
    """DRAM bytes of candidate i as (bytes, literal, is_weight) terms, all non-negative; weights
    read in place from flash count here too (always per tile)."""
    c = v.cands[i]
    terms = [(inp.load_bytes, v.loads(i, inp.tensor), False) for inp in c.inputs]
    terms.append((c.store_bytes, v.stores(i), False))
    for w in c.weights:
        if (i, w.layer) in v.kept:
            terms.append((w.total_bytes, v.kept[(i, w.layer)], True))
            terms.append((w.reload_bytes, v.reloaded[(i, w.layer)], True))
        else:
            terms.append((w.reload_bytes, v.x[i], True))
    return terms


def build_terms(v: Vars, hw: HardwareProfile) -> Terms:
    model = v.model
    mac, dram, sram = _fj(hw.mac_pj), _fj(hw.dram_pj_per_byte), _fj(hw.sram_pj_per_byte)
    dma_fj = dram + sram
    coeffs: dict[int, int] = {}  # var index -> fJ coefficient

    def add(lit: cp_model.IntVar, fj: int) -> None:
        if fj:
            coeffs[lit.Index()] = coeffs.get(lit.Index(), 0) + fj

    lits: dict[int, cp_model.IntVar] = {}
    for i, c in enumerate(v.cands):
        add(v.x[i], mac * c.macs + sram * c.compute_sram_bytes)
        lits[v.x[i].Index()] = v.x[i]
        for b, lit, is_weight in _dma_terms(v, i):
            # weights read in place go from flash to the MACs, never through SRAM
            add(lit, b * (dram if is_weight and hw.weights_in_place else dma_fj))
            lits[lit.Index()] = lit
    g = 0
    for val in coeffs.values():
        g = gcd(g, val)
    g = g or 1
    energy = sum(lits[k] * (val // g) for k, val in coeffs.items() if val)

    # latency: one cycle counter per group start (at most one selected group starts there)
    cycles = []
    num, den = hw.dram_bytes_per_cycle.numerator, hw.dram_bytes_per_cycle.denominator
    for a, members in sorted(by_start(v.cands).items()):
        compute = sum(ceil_div(v.cands[i].macs, hw.macs_per_cycle) * v.x[i] for i in members)
        dma = sum(b * lit for i in members for b, lit, _ in _dma_terms(v, i))
        max_dma = sum(max(b, 0) for i in members for b, _, _ in _dma_terms(v, i))
        max_c = max(ceil_div(v.cands[i].macs, hw.macs_per_cycle) for i in members)
        dma_cyc = model.new_int_var(0, ceil_div(max_dma * den, num) + 1, f"dma_cycles_{a}")
        model.add(dma_cyc * num >= dma * den)
        cyc = model.new_int_var(0, max_c + ceil_div(max_dma * den, num) + 1, f"cycles_{a}")
        if hw.dma_overlaps_compute:
            model.add(cyc >= compute)
            model.add(cyc >= dma_cyc)
        else:
            model.add(cyc >= compute + dma_cyc)
        cycles.append(cyc)
    return Terms(energy, g, sum(cycles))
