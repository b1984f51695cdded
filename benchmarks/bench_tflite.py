"""TFLite models: import, plan with CP-SAT, verify, and agree with TensorFlow Lite Micro.

For every ``.tflite`` under the given folders (default: ``../shared/external`` beside the
checkout), one row per SRAM size:

* ``ops``: operators in the flatbuffer's subgraph 0; ``layers`` / ``host``: layers of the
  imported graph and how many run on the host CPU;
* ``status``, ``gap``: the CP-SAT solve (``--time-limit`` seconds for the whole solve);
* ``verify``: :func:`memplan.verify` on the saved plan (every claim checked, bit-exact);
* ``tflm_match``: memplan's untiled int8 reference on the seeded verification input equals
  TFLite Micro's output bytes on every output (``yes``/``no``; ``aborted``/``refused`` when
  the interpreter cannot run the model; ``float`` for float models, which it does not run);
* ``tflm_layers``: per-layer agreement, ``identical/compared`` IR tensors TFLite Micro keeps
  (the model cut before the operator it aborts on, if it aborts);
* ``t_tflm_s`` / ``t_ref_s``: wall time of one TFLite Micro inference (child process,
  including its start) and of memplan's untiled int8 reference.

Usage::

    python benchmarks/bench_tflite.py [DIR_OR_FILE ...] [--time-limit 20] [--out benchmarks/results/tflite_models.csv]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import memplan
from memplan.errors import MemplanError
from memplan.execute.verify import prepare
from memplan.execute.tflm import tflm_reference
from memplan.frontend.tflite import read_tflite

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "external"
FIELDS = ["model", "ops", "layers", "host", "sram", "status", "gap", "verify", "tflm_match", "tflm_layers",
          "t_tflm_s", "t_ref_s", "solve_s", "error"]


def _tflm(path: Path, graph: memplan.ir.graph.Graph) -> dict[str, object]:  # type: ignore[name-defined]
    t0 = time.perf_counter()
    prep = prepare(graph)
    t_ref = prep.times["reference"]
    del t0
    if any(graph.tensors[t].quant is None for t in graph.inputs):
        return {"tflm_match": "float", "tflm_layers": "", "t_ref_s": round(t_ref, 3), "t_tflm_s": ""}
    t1 = time.perf_counter()
    try:
        out = tflm_reference(path, prep.inputs)
        match = "yes" if all(out[o].tobytes() == prep.reference[o].tobytes() for o in graph.outputs) else "no"
    except RuntimeError as exc:
        match = "aborted" if "abort" in str(exc) else "refused"
    t_tflm = time.perf_counter() - t1
    model = read_tflite(path)
    last = None
    if match == "aborted":
        softmax = [op.index for op in model.ops if op.name == "SOFTMAX"]
        last = softmax[-1] - 1 if softmax else None
    layers = ""
    if match != "refused" and (match != "aborted" or last is not None):
        try:
            inter = tflm_reference(path, prep.inputs, intermediates=True, last_op=last)
            same = sum(inter[t].tobytes() == prep.reference[t].tobytes() for t in inter)
            layers = f"{same}/{len(inter)}" + (f" (cut after op {last})" if last is not None else "")
        except RuntimeError:
            layers = "aborted"
    return {"tflm_match": match, "tflm_layers": layers, "t_tflm_s": round(t_tflm, 3), "t_ref_s": round(t_ref, 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", type=Path)
    ap.add_argument("--time-limit", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "tflite_models.csv")
    args = ap.parse_args(argv)
    roots = args.paths or [SHARED]
    files = sorted({p for r in roots for p in ([r] if r.is_file() else r.rglob("*.tflite"))})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        for path in files:
            base: dict[str, object] = {"model": path.name}
            try:
                graph = memplan.load_model(path)
                base.update(ops=len(read_tflite(path).ops), layers=len(graph.layers), host=len(graph.host_layers))
                base.update(_tflm(path, graph))
            except MemplanError as exc:
                writer.writerow({**base, "error": exc.message})
                f.flush()
                print(path.name, "error:", exc.message, flush=True)
                continue
            mlperf = "mlperf_tiny" in path.parts
            for sram in (["32KiB", "64KiB", "128KiB"] if mlperf else []) + ["256KiB", "1MiB"]:
                row = dict(base, sram=sram)
                try:
                    t0 = time.perf_counter()
                    result = memplan.solve(graph, memplan.hardware("generic-npu", sram=sram), time_limit=args.time_limit)
                    row.update(status=result.status, gap=result.gap, solve_s=round(time.perf_counter() - t0, 1))
                    with tempfile.TemporaryDirectory() as tmp:
                        plan = Path(tmp) / "plan.json"
                        result.save(plan)
                        row["verify"] = "yes" if memplan.verify(path, plan).passed else "no"
                except MemplanError as exc:
                    row["error"] = exc.message
                writer.writerow(row)
                f.flush()
                print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
