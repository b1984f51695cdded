"""The recompute budget (``--max-recompute``): how many MACs a plan may spend beyond the untiled
network.

Fused tiling recomputes the halo of every tile of an inner layer; a plan's ``recompute_macs``
is its MACs less the untiled network's (:func:`untiled_macs`). The budget is given either as a
share of the untiled network's MACs, ``10%`` (a decimal number followed by ``%``), or as a
MAC count, ``250000`` (digits only). A share becomes a MAC count by rounding down,
``floor(untiled x P / 100)``, so a plan honours ``10%`` exactly when its recompute is at most
that integer. ``unlimited`` (or None) is no budget.

The count is what the plan records (``settings.max_recompute_macs``) and ``memplan verify``
checks; the solver adds it as one linear constraint over the candidates, whose recompute
MACs the candidate cost model knows exactly (:func:`candidate_recompute`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from memplan.cost.candidate import Candidate
from memplan.errors import UsageError
from memplan.ir.graph import Graph

_PERCENT = re.compile(r"^\s*([0-9]{1,12}(?:\.[0-9]{1,6})?)\s*%\s*$")
_COUNT = re.compile(r"^\s*([0-9]{1,19})\s*$")
#: the largest MAC count a budget may give (CP-SAT's coefficients are 64-bit)
MAX_BUDGET_MACS = 1 << 60
_HELP = "write a share of the untiled network's MACs such as 10% or 2.5%, a MAC count such as 250000, or unlimited"


@dataclass(frozen=True)
class RecomputeBudget:
    """A share of the untiled MACs (``percent``) or an absolute MAC count (``macs``)."""

    percent: Fraction | None = None
    macs: int | None = None

    def limit(self, graph: Graph) -> int:
        """The budget in MACs for this graph (a share rounds down)."""
        if self.macs is not None:
            return self.macs
        assert self.percent is not None
        return int(untiled_macs(graph) * self.percent // 100)

    def __str__(self) -> str:
        if self.macs is not None:
            return f"{self.macs} MACs"
        assert self.percent is not None
        return f"{float(self.percent):g}%"


def parse_recompute(value: str | int | RecomputeBudget | None) -> RecomputeBudget | None:
    """``10%`` -> a share, ``250000`` (or the int) -> a MAC count, ``unlimited``/None -> None."""
    if value is None or isinstance(value, RecomputeBudget):
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise UsageError(f"--max-recompute {value!r} is not a budget: {_HELP}")
    if isinstance(value, int):
        macs = value
    else:
        if value.strip().lower() in ("unlimited", "none", "inf"):
            return None
        m = _PERCENT.match(value)
        if m:
            return RecomputeBudget(percent=Fraction(m.group(1)))
        m = _COUNT.match(value)
        if not m:
            shown = repr(value) if len(value) <= 40 else repr(f"{value[:30]}...")
            raise UsageError(f"--max-recompute {shown} is not a budget: {_HELP}")
        macs = int(m.group(1))
    if not 0 <= macs <= MAX_BUDGET_MACS:
        raise UsageError(f"--max-recompute {value!r} must be a MAC count from 0 to {MAX_BUDGET_MACS:,}: {_HELP}")
    return RecomputeBudget(macs=macs)


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
