"""The decision variables of the CP-SAT model and the constraints that tie them together.

Variables (stable names, used in infeasibility reports):
* ``x_<cand>``: candidate (group, tiling) selected; every layer is covered exactly once;
* ``keep_<layer>``: the layer's weights stay in SRAM for its whole group (else reloaded per tile);
* ``res_<tensor>``: a tensor that crosses a group boundary stays whole in SRAM;
* ``load_<cand>_<tensor>`` = x AND NOT res: the candidate loads that input tile by tile;
* ``store_<cand>`` = x AND NOT res(anchor): the candidate stores its anchor to DRAM;
* ``kept_<cand>_<layer>`` = x AND keep, ``reload_<cand>_<layer>`` = x AND NOT keep: the
  candidate keeps, or reloads per tile, that layer's weights (kept + reload = x).
Every product is linked both ways, so the objective of any solution equals the cost of the
plan it decodes to, not only at the optimum.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from memplan.config import HardwareProfile
from memplan.cost.candidate import Candidate
from memplan.ir.graph import Graph
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


@dataclass
class Vars:
    model: cp_model.CpModel
    cands: tuple[Candidate, ...]
    x: list[cp_model.IntVar]
    keep: dict[str, cp_model.IntVar] = field(default_factory=dict)
    res: dict[str, cp_model.IntVar] = field(default_factory=dict)
    load: dict[tuple[int, str], cp_model.IntVar] = field(default_factory=dict)
    store: dict[int, cp_model.IntVar] = field(default_factory=dict)
    kept: dict[tuple[int, str], cp_model.IntVar] = field(default_factory=dict)
    reloaded: dict[tuple[int, str], cp_model.IntVar] = field(default_factory=dict)

    def loads(self, ci: int, tensor: str) -> cp_model.IntVar:
        """The literal 'candidate ci loads tensor from DRAM' (x itself when it cannot be resident)."""
        return self.load.get((ci, tensor), self.x[ci])

    def stores(self, ci: int) -> cp_model.IntVar:
        return self.store.get(ci, self.x[ci])


def _and_not(model: cp_model.CpModel, name: str, a: cp_model.IntVar, b: cp_model.IntVar) -> cp_model.IntVar:
    """z = a AND NOT b, linked both ways."""
    z = model.new_bool_var(name)
    model.add_implication(z, a)
    model.add_implication(z, b.Not())
    model.add_bool_or([a.Not(), b, z])
    return z


def _and(model: cp_model.CpModel, name: str, a: cp_model.IntVar, b: cp_model.IntVar) -> cp_model.IntVar:
    z = model.new_bool_var(name)
    model.add_implication(z, a)
    model.add_implication(z, b)
    model.add_bool_or([a.Not(), b.Not(), z])
    return z


def build_decisions(graph: Graph, hw: HardwareProfile, cands: tuple[Candidate, ...], user: UserConstraints) -> Vars:
    model = cp_model.CpModel()
    v = Vars(model, cands, [model.new_bool_var(f"x_{c.name}") for c in cands])
    n = len(graph.layers)

    # cover: each layer in exactly one selected candidate
    for layer_index, members in enumerate(by_layer(cands, n)):
        model.add_exactly_one(v.x[i] for i in members).with_name(f"cover_{safe(graph.layers[layer_index].id)}")

    # keep / reload per weighted layer (weights read in place never occupy SRAM)
    if not hw.weights_in_place:
        weighted = {w.layer for c in cands for w in c.weights}
        for layer in graph.layers:
            if layer.id in weighted:
                k = model.new_bool_var(f"keep_{safe(layer.id)}")
                v.keep[layer.id] = k
                if layer.id in user.force_keep:
                    model.add(k == 1).with_name(f"force_keep_{safe(layer.id)}")
                if layer.id in user.force_reload:
                    model.add(k == 0).with_name(f"force_reload_{safe(layer.id)}")

    # residency: a tensor may stay in SRAM only while it crosses a group boundary
    internal_in: dict[str, list[int]] = {}
    external_in: dict[str, list[int]] = {}
    for i, c in enumerate(cands):
        for cb in c.core:
            internal_in.setdefault(cb.tensor, []).append(i)
        for inp in c.inputs:
            external_in.setdefault(inp.tensor, []).append(i)
    io = set(graph.inputs) | set(graph.outputs)
    for t in sorted(external_in):
        if t in io and not hw.feature_maps_in_sram:
            continue  # model inputs and outputs live in DRAM
        r = model.new_bool_var(f"res_{safe(t)}")
        v.res[t] = r
        crossing = 1 - sum(v.x[i] for i in internal_in.get(t, []))
        model.add(r <= crossing).with_name(f"res_only_if_crossing_{safe(t)}")
        if hw.feature_maps_in_sram or (user.no_spill and t not in io):
            model.add(r >= crossing).with_name(f"no_spill_{safe(t)}")
    if hw.feature_maps_in_sram:
        for t in graph.outputs:
            if t not in v.res:  # an output nobody reads after its group
                v.res[t] = model.new_bool_var(f"res_{safe(t)}")
                model.add(v.res[t] == 1)

    # products
    for i, c in enumerate(cands):
        for inp in c.inputs:
            if inp.tensor in v.res:
                v.load[(i, inp.tensor)] = _and_not(model, f"load_{c.name}_{safe(inp.tensor)}", v.x[i], v.res[inp.tensor])
        if c.anchor in v.res:
            v.store[i] = _and_not(model, f"store_{c.name}", v.x[i], v.res[c.anchor])
        for w in c.weights:
            if w.layer in v.keep:
                kept = _and(model, f"kept_{c.name}_{safe(w.layer)}", v.x[i], v.keep[w.layer])
                reload = _and_not(model, f"reload_{c.name}_{safe(w.layer)}", v.x[i], v.keep[w.layer])
                model.add(kept + reload == v.x[i])
                v.kept[(i, w.layer)] = kept
                v.reloaded[(i, w.layer)] = reload
    return v
