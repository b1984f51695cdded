"""The recompute budget (``--max-recompute``): how many MACs a plan may spend beyond the untiled
network.

Fused tiling recomputes the halo of every tile of an inner layer; a plan's ``recompute_macs``
is its MACs less the untiled network's (:func:`untiled_macs`). The budget is given either as a
share of the untiled network's MACs, ``10%`` (a decimal number followed by ``%``), or as a
MAC count, ``250000`` (digits only). A share becomes a MAC count by rounding down,
``floor(untiled x P / 100)``, so a plan honours ``10%`` exactly when its recompute is at most
that integer. ``unlimited`` (or None) is no budget.

The syntax (:class:`~memplan.config.RecomputeBudget`, :func:`~memplan.config.parse_recompute`)
lives with the solver settings, since a solver config may give a budget too
(``max_recompute``); this module turns it into MACs for a graph.

The count is what the plan records (``settings.max_recompute_macs``) and ``memplan verify``
checks; the solver adds it as one linear constraint over the candidates, whose recompute
MACs the candidate cost model knows exactly (:func:`candidate_recompute`).
"""

from __future__ import annotations

from memplan.config import MAX_BUDGET_MACS, RecomputeBudget, parse_recompute
from memplan.cost.candidate import Candidate
from memplan.ir.graph import Graph

def untiled_macs(graph: Graph) -> int:
    """MACs of the untiled network (every layer once, whole; host layers none)."""
    return sum(graph.layer_macs(layer) for layer in graph.layers)


def candidate_recompute(graph: Graph, cands: tuple[Candidate, ...]) -> list[int]:
    """Per candidate, its MACs beyond its layers' untiled MACs (a plan's ``recompute_macs`` is
    the sum over its groups; negative where a group skips outputs nothing reads)."""
    per_layer = [graph.layer_macs(layer) for layer in graph.layers]
    prefix = [0]
    for m in per_layer:
        prefix.append(prefix[-1] + m)
    return [c.macs - (prefix[c.stop] - prefix[c.start]) for c in cands]


def describe(budget: int, graph: Graph) -> str:
    """``at most 1,234 recompute MACs (5.00 % of the untiled network's 24,680)``."""
    base = untiled_macs(graph)
    share = f" ({100 * budget / base:.2f} % of the untiled network's {base:,})" if base else ""
    return f"at most {budget:,} recompute MACs{share}"


def budget_macs(budget: RecomputeBudget, graph: Graph) -> int:
    """The budget in MACs for this graph (a share of its untiled MACs rounds down)."""
    return budget.limit(untiled_macs(graph))


__all__ = ["MAX_BUDGET_MACS", "RecomputeBudget", "budget_macs", "candidate_recompute", "describe", "parse_recompute",
           "untiled_macs"]
