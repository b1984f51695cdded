"""Real third-party ONNX models: import, plan with CP-SAT, verify, and agree with onnxruntime.

For every ``.onnx`` file under the given folders (default: ``../shared/external`` beside the
checkout, when it is there), one row per SRAM size:

* ``layers`` / ``host``: layers of the imported graph, and how many run on the host CPU;
* ``status``, ``gap``: the CP-SAT solve (``--time-limit`` seconds for the whole solve);
* ``verify``: ``memplan verify``'s verdict on the plan file (every claim checked, bit-exact);
* ``ort_rel``: memplan's float reference of the imported graph against onnxruntime on the
  original file, max |difference| / max |onnxruntime output| over all outputs, one seeded input
  (int8 model inputs are fed the same int8 data to both; int8 model outputs are compared as
  onnxruntime computes them, dequantised with the model's own output parameters).

A file that does not import gets one row with the one-line error. Usage::

    python benchmarks/bench_real_models.py [DIR_OR_FILE ...] [--sram 256KiB 1MiB] [--time-limit 60]
        [--input-shape FILE.onnx:NAME=1x3x48x192] [--out benchmarks/results/real_models.csv]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from memplan.errors import MemplanError
from memplan.execute.float_ref import run_float
from memplan.frontend import load_model
from memplan.ir.graph import Graph
from memplan.ir.ops import OpKind

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "external"
#: dynamic dimensions other than the batch, as the model's users feed it
KNOWN_SHAPES = {"rapidocr_cls.onnx": {"x": (1, 3, 48, 192)}}
ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int8)": np.int8,
             "tensor(uint8)": np.uint8}


def _host_layers(graph: Graph) -> int:
    host = getattr(OpKind, "HOST", None)
    return sum(1 for layer in graph.layers if host is not None and layer.op is host)


def _to_ir(graph: Graph, name: str, data: np.ndarray) -> np.ndarray:
    """The caller's data (the ONNX input's own shape and dtype) as the IR's float NCHW input."""
    x = data.astype(np.float64)
    q = graph.tensors[name].quant
    if q is not None and data.dtype.kind in "iu":
        x = (x - q.zero_point[0]) * q.scale[0]
    shape = graph.tensors[name].shape
    if graph.input_layouts.get(name) == "NHWC":
        n, c, h, w = shape
        return x.reshape(n, h, w, c).transpose(0, 3, 1, 2)
    return x.reshape(shape)


def ort_agreement(path: Path, graph: Graph, shapes: dict[str, tuple[int, ...]]) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds, ir_inputs = {}, {}
    for inp in session.get_inputs():
        shape = tuple(shapes.get(inp.name) or graph.input_shapes.get(inp.name) or inp.shape)
        dtype = ORT_TYPES[inp.type]
        if np.dtype(dtype).kind in "iu":
            info = np.iinfo(dtype)
            data = rng.integers(info.min, info.max + 1, size=shape).astype(dtype)
        else:
            data = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
        feeds[inp.name] = data
        ir_inputs[inp.name] = _to_ir(graph, inp.name, data)
    want = session.run(None, feeds)
    got = run_float(graph, ir_inputs)
    worst = 0.0
    for meta, w in zip(session.get_outputs(), want, strict=True):
        w = w.astype(np.float64)
        q = graph.tensors[meta.name].quant if meta.name in graph.tensors else None
        if q is not None and meta.type in ("tensor(int8)", "tensor(uint8)"):
            w = (w - q.zero_point[0]) * q.scale[0]
        have = got[meta.name].reshape(-1)
        if have.size != w.size:  # an NHWC output: compare in the model's layout
            raise ValueError(f"output {meta.name}: {have.size} vs {w.size} elements")
        h = got[meta.name]
        if h.ndim == 4 and w.ndim == 4 and h.shape != w.shape and h.shape == (w.shape[0], w.shape[3], w.shape[1], w.shape[2]):
            h = h.transpose(0, 2, 3, 1)
        worst = max(worst, float(np.abs(h.reshape(w.shape) - w).max() / (np.abs(w).max() or 1.0)))
    return worst


def _memplan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memplan", *args], capture_output=True, text=True, check=False)


def bench_file(path: Path, srams: list[str], limit: float, shapes: dict[str, tuple[int, ...]]) -> list[dict[str, object]]:
    shape_args = [a for name, dims in shapes.items() for a in ("--input-shape", f"{name}={'x'.join(map(str, dims))}")]
    base: dict[str, object] = {"model": path.name}
    try:
        graph = load_model(path, shapes)
    except MemplanError as exc:
        return [{**base, "imports": "no", "error": exc.message}]
    base.update(imports="yes", layers=len(graph.layers), host=_host_layers(graph))
    try:
        base["ort_rel"] = f"{ort_agreement(path, graph, shapes):.2e}"
    except Exception as exc:  # noqa: BLE001 - a benchmark row, not a crash
        base["ort_rel"] = f"n/a ({type(exc).__name__}: {str(exc)[:60]})"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for sram in srams:
            plan = Path(tmp) / "plan.json"
            t0 = time.perf_counter()
            solved = _memplan("solve", str(path), "--sram", sram, "--time-limit", str(limit), "--json", "-o", str(plan),
                              *shape_args)
            wall = time.perf_counter() - t0
            row = {**base, "sram": sram, "solve_s": round(wall, 1)}
            if solved.returncode != 0:
                rows.append({**row, "status": "no plan", "error": solved.stderr.strip().splitlines()[-1][:160]})
                continue
            summary = json.loads(solved.stdout)
            doc = json.loads(plan.read_text())
            solver = doc["solver"] or {}
            t0 = time.perf_counter()
            checked = _memplan("verify", str(path), str(plan))
            row.update(status=solver.get("status"), gap_pct=round(100 * float(solver.get("gap", 0.0)), 2),
                       plan_source=solver.get("plan_source"), energy_uJ=round(doc["totals"]["energy_fj"] / 1e9, 3),
                       dram_total=doc["totals"]["dram_total"], groups=len(doc["decisions"]["groups"]),
                       verify="yes" if checked.returncode == 0 else "FAILED", verify_s=round(time.perf_counter() - t0, 1))
            if checked.returncode != 0:
                row["error"] = checked.stderr.strip()[:160]
            del summary
            rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", type=Path, default=[SHARED])
    ap.add_argument("--sram", nargs="+", default=["256KiB", "1MiB"])
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--input-shape", action="append", default=[], metavar="FILE.onnx:NAME=DxDx..")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "real_models.csv")
    args = ap.parse_args()
    shapes = {k: dict(v) for k, v in KNOWN_SHAPES.items()}
    for spec in args.input_shape:
        file, _, rest = spec.partition(":")
        name, _, dims = rest.partition("=")
        shapes.setdefault(file, {})[name] = tuple(int(d) for d in dims.split("x"))
    files = sorted(p for root in args.paths for p in ([root] if root.is_file() else root.rglob("*.onnx")))
    if not files:
        sys.exit(f"no .onnx files under {', '.join(map(str, args.paths))}")
    rows: list[dict[str, object]] = []
    for f in files:
        for row in bench_file(f, args.sram, args.time_limit, shapes.get(f.name, {})):
            rows.append(row)
            print(" | ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
