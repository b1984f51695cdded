"""``memplan verify``: execute a plan tile by tile and hold it to the untiled reference.

A plan verifies when, on one seeded int8 input,

* every tile the tiled executor computes, every model output and every tensor the plan spills
  (every tensor a STORE writes) is bit-identical to the untiled integer reference;
* the DRAM traffic (feature-map reads and writes, weight reads) and the MACs measured while
  executing equal the plan's totals exactly;
* no command touches SRAM outside a buffer of the plan that belongs to it and is live.

:func:`verify` works on files (the model and the plan JSON ``memplan solve`` wrote, checked to
belong together by the model's sha256); :func:`verify_plan` on objects, with
:func:`prepare` to quantise a graph and run its reference once for several plans.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from memplan.config import HardwareProfile
from memplan.errors import VerificationError
from memplan.execute.quantize import QuantizedGraph, calibration_inputs, quantize_graph
from memplan.execute.reference import run_reference
from memplan.execute.tiled import HOST, UNWRITTEN, Counts, TiledRun, describe_command, execute_plan
from memplan.ir.graph import Graph
from memplan.plan.model import Plan

I8 = npt.NDArray[np.int8]

#: the verification input is drawn like calibration inputs, from this offset of the seed
INPUT_SEED_OFFSET = 1


@dataclass(frozen=True)
class Prepared:
    """A quantised graph, the int8 input of the verification and the untiled reference on it."""

    qgraph: QuantizedGraph
    inputs: Mapping[str, I8]
    reference: Mapping[str, I8]
    seed: int
    times: Mapping[str, float]


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of a verification.

    ``tensors``: the tensors compared with the reference after the run (model outputs and
    spilled tensors). ``failure``: why the plan did not verify (None when it did)."""

    model: str
    strategy: str | None
    sram_bytes: int
    commands: int
    bit_exact: bool
    tensors: tuple[str, ...]
    measured: Counts
    predicted: Counts
    sram_peak: int
    sram_peak_planned: int
    seed: int
    wall_time_s: float
    times: Mapping[str, float] = field(default_factory=dict)
    failure: str | None = None

    @property
    def counts_match(self) -> bool:
        return self.measured == self.predicted

    @property
    def passed(self) -> bool:
        return self.bit_exact and self.counts_match and self.failure is None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "strategy": self.strategy,
            "verified": self.passed,
            "bit_exact": self.bit_exact,
            "counts_match": self.counts_match,
            "failure": self.failure,
            "tensors_compared": list(self.tensors),
            "measured": self.measured.to_json(),
            "predicted": self.predicted.to_json(),
            "sram_bytes": self.sram_bytes,
            "sram_peak": self.sram_peak,
            "sram_peak_planned": self.sram_peak_planned,
            "commands": self.commands,
            "seed": self.seed,
            "wall_time_s": self.wall_time_s,
            "times_s": dict(self.times),
        }


def verification_inputs(qgraph: QuantizedGraph, seed: int = 0) -> dict[str, I8]:
    """The int8 input of a verification: one calibration-like draw, quantised."""
    floats = calibration_inputs(qgraph.graph, seed + INPUT_SEED_OFFSET, num_samples=1)
    return qgraph.quantize_inputs(floats)


def prepare(graph: Graph, seed: int = 0) -> Prepared:
    """Quantise ``graph`` (constant-fill weights are substituted, as :func:`quantize_graph`
    does), draw the input and run the untiled reference."""
    t0 = time.perf_counter()
    qgraph = quantize_graph(graph, seed=seed)
    t1 = time.perf_counter()
    inputs = verification_inputs(qgraph, seed)
    reference = run_reference(qgraph, inputs)
    t2 = time.perf_counter()
    return Prepared(qgraph, inputs, reference, seed, {"quantize": t1 - t0, "reference": t2 - t1})


def verify_plan(graph: Graph, plan: Plan, hw: HardwareProfile, seed: int = 0, *, prepared: Prepared | None = None,
                strict: bool = True) -> VerifyReport:
    """Verify ``plan`` for ``graph`` on ``hw`` (see the module documentation).

    Raises :class:`VerificationError` naming the first fault: for a differing tensor, the
    tensor, the element and the command (index, group, tile) that wrote it. With ``strict``
    False, a differing tensor or count is reported in the result instead (faults that stop
    the execution still raise)."""
    start = time.perf_counter()
    earlier = 0.0  # time spent preparing before this call
    if prepared is None:
        prepared = prepare(graph, seed)
    else:
        earlier = sum(prepared.times.values())
    if prepared.qgraph.graph.name != graph.name or len(prepared.qgraph.layers) != len(graph.layers):
        raise ValueError("the prepared quantised graph is not of this graph")
    if plan.graph_name != graph.name:
        raise VerificationError(f"the plan is for model {plan.graph_name!r}, not {graph.name!r}")
    t0 = time.perf_counter()
    run = execute_plan(plan, prepared.qgraph, hw, prepared.inputs, expect=prepared.reference)
    t1 = time.perf_counter()
    tensors = tuple(sorted(set(run.dram) | set(run.outputs)))
    failure = _first_difference(plan, run, prepared.reference)
    bit_exact = failure is None
    measured, predicted = run.counts, Counts.of_totals(plan.totals)
    if failure is None and measured != predicted:
        failure = _count_mismatch(measured, predicted)
    t2 = time.perf_counter()
    times = {**prepared.times, "tiled": t1 - t0, "compare": t2 - t1}
    report = VerifyReport(
        model=graph.name, strategy=plan.meta.get("strategy"), sram_bytes=plan.sram_bytes, commands=run.commands,
        bit_exact=bit_exact, tensors=tensors, measured=measured, predicted=predicted, sram_peak=run.sram_peak,
        sram_peak_planned=plan.totals.sram_peak, seed=prepared.seed,
        wall_time_s=earlier + (t2 - start), times=times, failure=failure)
    if strict and failure is not None:
        raise VerificationError(failure)
    return report


def verify(model: str | os.PathLike[str], plan_path: str | os.PathLike[str],
           input_shapes: Mapping[str, tuple[int, ...]] | None = None, seed: int = 0) -> VerifyReport:
    """Verify the plan JSON at ``plan_path`` against the ONNX model it was made for."""
    from memplan.frontend import load_model
    from memplan.plan.serialize import file_sha256, load_plan_file

    start = time.perf_counter()
    plan, hw, _ = load_plan_file(plan_path)
    want = plan.meta.get("model_sha256")
    have = file_sha256(model)
    if want is None:
        raise VerificationError(f"plan {str(plan_path)!r} records no model sha256: re-run memplan solve with the model")
    if want != have:
        raise VerificationError(f"plan {str(plan_path)!r} was made for a model with sha256 {want[:12]}..., but "
                                f"{str(model)!r} has sha256 {have[:12]}...: re-run memplan solve on this model")
    graph = load_model(model, input_shapes)
    if graph.name != plan.graph_name:  # the same bytes under another file name
        graph = dataclasses.replace(graph, name=plan.graph_name)
    loaded = time.perf_counter() - start
    report = verify_plan(graph, plan, hw, seed)
    return dataclasses.replace(report, wall_time_s=report.wall_time_s + loaded, times={"load": loaded, **report.times})


# ---------------------------------------------------------------------------- comparison
def _first_difference(plan: Plan, run: TiledRun, reference: Mapping[str, I8]) -> str | None:
    """The difference from the reference written earliest in the command stream, described."""
    best: tuple[int, str] | None = None
    for tensor in sorted(set(run.dram) | set(run.outputs)):
        got = run.outputs.get(tensor, run.dram.get(tensor))
        assert got is not None
        want = np.asarray(reference[tensor])
        writers = run.writers[tensor]
        bad = got != want
        if not bad.any():
            continue
        order = np.where(bad, writers.astype(np.int64), np.iinfo(np.int64).max)
        order[bad & (writers == UNWRITTEN)] = -1  # a hole is reported before any wrong value
        flat = int(np.argmin(order))
        idx = np.unravel_index(flat, got.shape)
        writer = int(writers[idx])
        at = [int(i) for i in idx[1:]]
        if writer == UNWRITTEN:
            text = (f"tensor {tensor} differs from the reference: element {at} (channel, row, column) was never "
                    f"written by any command ({int(bad.sum())} elements differ)")
        else:
            by = "the host" if writer == HOST else describe_command(writer, plan.commands[writer])
            text = (f"tensor {tensor} differs from the reference at {at} (channel, row, column): got {int(got[idx])}, "
                    f"expected {int(want[idx])}, written by {by} ({int(bad.sum())} elements differ)")
        key = writer if writer != HOST else -1
        if best is None or key < best[0]:
            best = (key, text)
    return None if best is None else best[1]


def _count_mismatch(measured: Counts, predicted: Counts) -> str:
    diffs = [f"{name} measured {getattr(measured, name):,} but the plan predicts {getattr(predicted, name):,}"
             for name in Counts.FIELDS if getattr(measured, name) != getattr(predicted, name)]
    return "the outputs are bit-exact but the counts differ: " + "; ".join(diffs)


__all__ = ["Prepared", "VerifyReport", "prepare", "verification_inputs", "verify", "verify_plan"]
