"""Offsets for fixed decisions: a placement-only CP-SAT model.

When the decisions are known (a warm start from the DP, say), every buffer has a fixed size
and a fixed live interval: only addresses remain. First fit can fail where a packing exists;
this model (NoOverlap2D with fixed time intervals, addresses free) finds one or proves there
is none within the time limit.
"""

from __future__ import annotations

from collections.abc import Sequence

from ortools.sat.python import cp_model

from memplan.alloc import Block, first_fit


def place(blocks: Sequence[Block], capacity: int, time_limit_s: float = 10.0, workers: int = 2,
          deterministic: bool = False, alignment: int = 1) -> dict[str, int] | None:
    """Offsets within ``capacity`` for the blocks, or None. The search is interleaved, so the
    offsets found are the same on every run; ``deterministic`` bounds deterministic time
    instead of wall time, so whether they are found does not depend on the machine either.
    Offsets are multiples of ``alignment``."""
    model = cp_model.CpModel()
    live = [b for b in blocks if b.size > 0]
    xs, ys, offs = [], [], {}
    for i, b in enumerate(live):
        off = model.new_int_var(0, capacity - b.size, f"off_{i}") if b.size <= capacity else None
        if off is None:
            return None
        offs[b.name] = off
        if alignment > 1:
            model.add(off == alignment * model.new_int_var(0, capacity // alignment, f"offu_{i}"))
        xs.append(model.new_fixed_size_interval_var(b.t0, b.t1 - b.t0, f"t_{i}"))
        ys.append(model.new_fixed_size_interval_var(off, b.size, f"a_{i}"))
    model.add_no_overlap_2d(xs, ys)
    hint = first_fit(live, alignment)
    for b in live:
        model.add_hint(offs[b.name], min(hint[b.name], capacity - b.size))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = workers
    # interleaved: a search that finishes within its limit gives the same offsets on every run
    solver.parameters.interleave_search = True
    solver.parameters.catch_sigint_signal = False  # Ctrl-C raises KeyboardInterrupt as anywhere else
    if deterministic:
        solver.parameters.max_deterministic_time = time_limit_s
    else:
        solver.parameters.max_time_in_seconds = time_limit_s
    if solver.solve(model) not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    out = {b.name: 0 for b in blocks}
    out.update({name: solver.Value(v) for name, v in offs.items()})
    return out
