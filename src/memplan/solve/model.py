"""The decision variables of the CP-SAT model and the constraints that tie them together.

Variables (stable names, used in infeasibility reports):
* ``x_<cand>``: candidate (group, tiling) selected; every layer is covered exactly once;
* ``keep_<layer>``: the layer's weights stay in SRAM for its whole group (else reloaded per tile);
* ``reload_<layer>_t<k>``: the layer is reloaded and its group has ``k`` spatial tiles. A
  reload costs k x the layer's weights whatever the tiling's shape, so one literal per tile
  count replaces one product per candidate. With encoded weights (an Ethos-U codec,
  :mod:`memplan.cost.weights`) the layer's weight bytes depend on its channel split: then
  there is one literal per (tile count, weight bytes), ``reload_<layer>_t<k>_w<bytes>``, and
  ``keep_<layer>_w<bytes>`` (summing to ``keep_<layer>``) says which bytes a kept layer loads;
* ``prefetch_<layer>`` (only when the objective counts cycles, ``build_decisions(prefetch=True)``):
  the layer's weight buffer is live from the step before its own (a kept one only when the
  layer starts its group), so its loads overlap compute (memplan.plan.prefetch);
* ``double_<layer>`` (likewise): the buffer has two slots over the whole group, only where the
  chosen candidate loads the layer more than once (kept: several channel slices; reloaded:
  several tiles);
* ``res_<tensor>``: a tensor that crosses a group boundary stays whole in SRAM (only for
  tensors that fit the SRAM at all);
* ``load_<cand>_<tensor>`` = x AND NOT res: the candidate loads that input tile by tile;
* ``store_<tensor>`` = crosses AND NOT res: the tensor is written to DRAM once. A tensor a
  multi-output group stores from inside (Candidate.escapes) crosses when that group is
  selected, and is then never resident (``escape_stored_<tensor>``).
With a recompute budget (``UserConstraints.max_recompute_macs``), one linear constraint
``max_recompute``: the selected candidates' recompute MACs (exact integers of the cost model,
:func:`memplan.solve.budget.candidate_recompute`) sum to at most the budget.
Every product is linked both ways, so the objective of any solution equals the cost of the
plan it decodes to, not only at the optimum.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from memplan.config import HardwareProfile
from memplan.cost.candidate import Candidate, resident_reserved_bytes
from memplan.ir.graph import Graph
from memplan.solve.budget import candidate_recompute
from memplan.solve.candidates import by_layer

_SAFE = re.compile(r"[^A-Za-z0-9_.]")


def safe(name: str) -> str:
    return _SAFE.sub("_", name)


@dataclass(frozen=True)
class UserConstraints:
    """Constraints a user adds on the command line."""

    force_keep: frozenset[str] = frozenset()
    force_reload: frozenset[str] = frozenset()
    no_spill: bool = False  # every intermediate feature map that crosses a group stays in SRAM
    #: the plan's recompute_macs (MACs beyond the untiled network) is at most this (None: no budget)
    max_recompute_macs: int | None = None


@dataclass
class Vars:
    model: cp_model.CpModel
    cands: tuple[Candidate, ...]
    x: list[cp_model.IntVar]
    cover: list[list[int]] = field(default_factory=list)  # per layer: candidates covering it
    internal: dict[str, list[int]] = field(default_factory=dict)  # tensor -> candidates it is internal to
    keep: dict[str, cp_model.IntVar] = field(default_factory=dict)
    #: (layer, spatial tiles, weight bytes loaded once): reloaded with those tiles and bytes
    reload: dict[tuple[str, int, int], cp_model.IntVar] = field(default_factory=dict)
    #: per layer, (weight bytes loaded once, literal: kept with those bytes); one pair, the
    #: keep literal itself, when every candidate loads the same bytes (unencoded weights)
    keep_bytes: dict[str, list[tuple[int, cp_model.IntVar]]] = field(default_factory=dict)
    #: per weighted layer after the first: its weight buffer is prefetched (see build_decisions)
    prefetch: dict[str, cp_model.IntVar] = field(default_factory=dict)
    #: per weighted layer some candidate loads more than once: its weight buffer has two slots
    double: dict[str, cp_model.IntVar] = field(default_factory=dict)
    res: dict[str, cp_model.IntVar] = field(default_factory=dict)
    load: dict[tuple[int, str], cp_model.IntVar] = field(default_factory=dict)
    store: dict[str, cp_model.IntVar] = field(default_factory=dict)

    def loads(self, ci: int, tensor: str) -> cp_model.IntVar:
        """The literal 'candidate ci loads tensor from DRAM' (x itself when it cannot be resident)."""
        return self.load.get((ci, tensor), self.x[ci])

    def crossing(self, tensor: str) -> cp_model.LinearExprT:
        """1 when the tensor leaves the group that produces it (0/1 linear expression)."""
        return 1 - sum(self.x[i] for i in self.internal.get(tensor, []))


def and_not(model: cp_model.CpModel, name: str, a: cp_model.LinearExprT, b: cp_model.IntVar) -> cp_model.IntVar:
    """z = a AND NOT b for a 0/1 literal or 0/1 linear expression a, linked both ways."""
    z = model.new_bool_var(name)
    model.add(z <= a)
    model.add(z <= 1 - b)
    model.add(z >= a - b)
    return z


def build_decisions(graph: Graph, hw: HardwareProfile, cands: tuple[Candidate, ...], user: UserConstraints,
                    prefetch: bool = False) -> Vars:
    """The decision variables and their links; ``prefetch``: add the prefetch literals (for
    objectives that count cycles: prefetching changes nothing else)."""
    model = cp_model.CpModel()
    v = Vars(model, cands, [model.new_bool_var(f"x_{c.name}") for c in cands])
    n = len(graph.layers)
    v.cover = by_layer(cands, n)

    # cover: each layer in exactly one selected candidate
    for layer_index, members in enumerate(v.cover):
        model.add_exactly_one(v.x[i] for i in members).with_name(f"cover_{safe(graph.layers[layer_index].id)}")

    # the recompute budget: one linear sum over the selected candidates
    if user.max_recompute_macs is not None:
        extra = candidate_recompute(graph, cands)
        least = _least_per_layer(extra, v.cover)
        for i, e in enumerate(extra):
            rest = least[-1] - (least[cands[i].stop] - least[cands[i].start])
            if e + rest > user.max_recompute_macs:
                model.add(v.x[i] == 0)  # over the budget whatever else is chosen
        terms = [(e, v.x[i]) for i, e in enumerate(extra) if e]
        if terms:
            model.add(sum(e * x for e, x in terms) <= user.max_recompute_macs).with_name("max_recompute")

    # keep / reload per weighted layer (weights read in place never occupy SRAM)
    if not hw.weights_in_place:
        for layer_index, layer in enumerate(graph.layers):
            classes: dict[tuple[int, int], list[int]] = {}
            for i in v.cover[layer_index]:
                w = next((w for w in cands[i].weights if w.layer == layer.id), None)
                if w is not None:
                    classes.setdefault((_spatial_of(cands[i], layer.id), w.total_bytes), []).append(i)
            if not classes:
                continue
            k = model.new_bool_var(f"keep_{safe(layer.id)}")
            v.keep[layer.id] = k
            totals = sorted({total for _, total in classes})
            by_total = len(totals) > 1  # encoded weights: the bytes depend on the channel split
            reloads = []
            for (tiles, total), members in sorted(classes.items()):
                name = f"reload_{safe(layer.id)}_t{tiles}" + (f"_w{total}" if by_total else "")
                r = model.new_bool_var(name)
                model.add(r <= sum(v.x[i] for i in members))
                v.reload[(layer.id, tiles, total)] = r
                reloads.append(r)
            model.add(k + sum(reloads) == 1).with_name(f"keep_or_reload_{safe(layer.id)}")
            if by_total:
                pairs = []
                for total in totals:
                    kt = model.new_bool_var(f"keep_{safe(layer.id)}_w{total}")
                    model.add(kt <= sum(v.x[i] for (_, t), members in classes.items() if t == total for i in members))
                    pairs.append((total, kt))
                model.add(sum(kt for _, kt in pairs) == k).with_name(f"keep_bytes_{safe(layer.id)}")
                v.keep_bytes[layer.id] = pairs
            else:
                v.keep_bytes[layer.id] = [(totals[0], k)]
            if layer.id in user.force_keep:
                model.add(k == 1).with_name(f"force_keep_{safe(layer.id)}")
            if layer.id in user.force_reload:
                model.add(k == 0).with_name(f"force_reload_{safe(layer.id)}")
            if prefetch and layer_index > 0 and hw.dma_overlaps_compute:
                p = model.new_bool_var(f"prefetch_{safe(layer.id)}")
                v.prefetch[layer.id] = p
                # a kept buffer starts at its group's start: prefetching it means the layer starts its group
                starts = [i for i in v.cover[layer_index] if cands[i].start == layer_index]
                model.add(p + k - sum(v.x[i] for i in starts) <= 1).with_name(f"prefetch_kept_{safe(layer.id)}")
            weighted = [(i, next(w for w in cands[i].weights if w.layer == layer.id)) for i in v.cover[layer_index]
                        if any(w.layer == layer.id for w in cands[i].weights)]
            sliced = [i for i, w in weighted if w.slices > 1]  # kept: loaded once per channel slice
            tiled = [i for i, _ in weighted if cands[i].n_tiles > 1]  # reloaded: once per tile
            if prefetch and hw.dma_overlaps_compute and (sliced or tiled):
                d = model.new_bool_var(f"double_{safe(layer.id)}")
                v.double[layer.id] = d
                model.add(d + k - sum(v.x[i] for i in sliced) <= 1).with_name(f"double_kept_{safe(layer.id)}")
                model.add(d - k - sum(v.x[i] for i in tiled) <= 0).with_name(f"double_reloaded_{safe(layer.id)}")

    # residency: a tensor may stay in SRAM only while it crosses a group boundary
    external_in: dict[str, list[int]] = {}
    escaping: dict[str, list[int]] = {}  # tensor -> candidates that store it from inside
    for i, c in enumerate(cands):
        for cb in c.core:
            if cb.tensor not in c.escapes:
                v.internal.setdefault(cb.tensor, []).append(i)
        for t in c.escapes:
            escaping.setdefault(t, []).append(i)
        for inp in c.inputs:
            external_in.setdefault(inp.tensor, []).append(i)
    io = set(graph.inputs) | set(graph.outputs)
    for t in sorted(external_in):
        if t in graph.dram_only:
            continue  # a host layer reads or writes it: it lives in DRAM
        if t in io and not hw.feature_maps_in_sram:
            continue  # model inputs and outputs live in DRAM
        if resident_reserved_bytes(graph, t, hw) > hw.sram_bytes and not hw.feature_maps_in_sram:
            continue  # cannot fit: it is always spilled
        r = model.new_bool_var(f"res_{safe(t)}")
        v.res[t] = r
        model.add(r <= v.crossing(t)).with_name(f"res_only_if_crossing_{safe(t)}")
        if t in escaping:  # stored from inside a multi-output group: never resident after it
            model.add(r + sum(v.x[i] for i in escaping[t]) <= 1).with_name(f"escape_stored_{safe(t)}")
        if hw.feature_maps_in_sram or (user.no_spill and t not in io):
            model.add(r >= v.crossing(t)).with_name(f"no_spill_{safe(t)}")
    if user.no_spill and not hw.feature_maps_in_sram:
        for t in sorted(external_in):
            if t not in io and t not in v.res:  # too large to stay: no plan without spilling it
                model.add(v.crossing(t) == 0).with_name(f"no_spill_{safe(t)}")
    if hw.feature_maps_in_sram:
        for t in graph.outputs:
            if t not in v.res:  # an output nobody reads after its group
                v.res[t] = model.new_bool_var(f"res_{safe(t)}")
                model.add(v.res[t] == 1)

    # products: loads per candidate input; stores per tensor
    for i, c in enumerate(cands):
        for inp in c.inputs:
            if inp.tensor in v.res:
                v.load[(i, inp.tensor)] = and_not(model, f"load_{c.name}_{safe(inp.tensor)}", v.x[i], v.res[inp.tensor])
    for layer in graph.layers:
        t = layer.output
        if t in v.res:
            s = model.new_bool_var(f"store_{safe(t)}")
            model.add(s == v.crossing(t) - v.res[t])
            v.store[t] = s
    return v


def _least_per_layer(extra: list[int], cover: list[list[int]]) -> list[int]:
    """Prefix sums of, per layer, the most negative recompute of a candidate covering it (0 if
    none is negative): the recompute of the layers outside a candidate is at least the sum over
    them (a candidate of k layers with negative recompute e counts k e <= e), so 0 unless some
    candidate skips outputs nothing reads."""
    prefix = [0]
    for members in cover:
        prefix.append(prefix[-1] + min(0, min((extra[i] for i in members), default=0)))
    return prefix


def _spatial_of(c: Candidate, layer_id: str) -> int:
    w = next(w for w in c.weights if w.layer == layer_id)
    return w.reload_bytes // w.total_bytes if w.total_bytes else 1
