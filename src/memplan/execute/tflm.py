"""TensorFlow Lite Micro as the int8 reference of ``.tflite`` models.

:func:`tflm_reference` runs the TFLite Micro interpreter (the ``tflite-micro`` package, a test
dependency; ``memplan verify`` uses it when it is installed) on the int8 inputs memplan's
reference takes and returns its tensors in the IR's layout; :func:`tflm_softmax_limits` names
the int8 softmaxes the interpreter aborts on whatever the input. The model is read with
:mod:`memplan.frontend.tflite`; the fixed-point checks come from :mod:`memplan.execute`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from memplan.frontend.tflite import NUMPY_DTYPES, TModel, import_tflite, input_order, read_tflite, truncated_model

def tflm_reference(path: str | os.PathLike[str], inputs: Mapping[str, np.ndarray], *,
                   intermediates: bool = False, last_op: int | None = None,
                   timeout: float = 600.0) -> dict[str, np.ndarray]:
    """Run TensorFlow Lite Micro's interpreter (``tflite_micro``) on int8 inputs in the IR's
    layout (what :func:`memplan.execute.verify.verification_inputs` draws) and return, in the
    IR's layout and as int8, every model output (keyed by IR tensor name) and, with
    ``intermediates``, every other IR tensor that holds one TFLite tensor the interpreter keeps
    (``kPreserveAllTensors``).

    The interpreter runs in a child process: TFLite Micro aborts the process (SIGABRT) on
    some models, and that must not take the caller down. ``last_op`` runs the model cut after
    that operator (:func:`truncated_model`) and returns only tensors computed by then: every
    layer before an operator the interpreter aborts on.
    Float interfaces (a QUANTIZE after the input, a DEQUANTIZE before the output) are fed and
    read through the file's parameters. Raises ``ImportError`` when ``tflite_micro`` is not
    installed and ``RuntimeError`` when the interpreter refuses or aborts."""
    import pickle
    import subprocess
    import sys

    import tflite_micro  # noqa: F401 - ImportError here, not in the child

    result = import_tflite(path)
    graph = result.graph
    model = read_tflite(Path(path))
    data = truncated_model(path, last_op) if last_op is not None else Path(path).read_bytes()
    computed = {o for op in model.ops if last_op is None or op.index <= last_op for o in op.outputs}
    feeds: list[np.ndarray] = []
    for i in model.inputs:
        t = model.tensors[i]
        name = t.name
        if name not in graph.tensors:
            raise ValueError(f"model input {name!r} is not an IR input")
        x = np.asarray(inputs[name])
        order = input_order(result, name, graph)
        flat = x.reshape(-1)[order]  # TFLite element k is IR element order[k]
        if t.dtype in ("float32", "float16"):
            q = graph.tensors[name].quant
            if q is None:
                raise ValueError("a float model has no int8 interface to compare with TFLite Micro")
            feeds.append((q.scale[0] * (flat.astype(np.float64) - q.zero_point[0])).astype(np.float32).reshape(t.shape))
        else:
            feeds.append(flat.astype(NUMPY_DTYPES[t.dtype]).reshape(t.shape))
    index_of = {i: k for k, i in enumerate(model.outputs)} if last_op is None else {}
    wanted = {name: ti for name, (ti, _) in result.tensor_views.items()
              if name not in graph.inputs and ti in computed and (intermediates or name in graph.outputs)}
    requests = sorted({ti for ti in wanted.values()})
    payload = pickle.dumps((data, feeds, requests, index_of, intermediates))
    try:
        proc = subprocess.run([sys.executable, "-c", "from memplan.execute.tflm import _tflm_main; _tflm_main()"],
                              input=payload, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the TFLite Micro interpreter took longer than {timeout:.0f} s") from None
    if proc.returncode != 0:
        why = "aborted (SIGABRT)" if proc.returncode in (-6, 134) else f"failed (exit code {proc.returncode})"
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        known = [f"{k}: {r}" for k, r in tflm_softmax_limits(model) if last_op is None or k <= last_op]
        detail = f": {err[-1]}" if err else ""
        if known:
            detail += "; " + "; ".join(known)
        raise RuntimeError(f"the TFLite Micro interpreter {why} on this model" + detail)
    raw: dict[int, np.ndarray] = pickle.loads(proc.stdout)
    out: dict[str, np.ndarray] = {}
    for name, ti in wanted.items():
        arr = raw.get(ti)
        if arr is None:
            continue
        pos = result.tensor_views[name][1]
        if arr.dtype.kind == "f":
            q = graph.tensors[name].quant
            if q is None:
                continue
            arr = np.clip(np.round(arr.astype(np.float64) / q.scale[0]) + q.zero_point[0], -128, 127)
        if arr.size != pos.size:
            continue
        shape = tuple(graph.tensors[name].shape)
        ir = np.zeros(math.prod(shape), dtype=np.int8)
        ir[pos] = arr.reshape(-1).astype(np.int8)
        out[name] = ir.reshape(shape)
    return out


def tflm_softmax_limits(model: TModel | str | os.PathLike[str]) -> list[tuple[int, str]]:
    """The int8 SOFTMAX operators TensorFlow Lite Micro aborts on whatever the input, and why.

    TFLM's int8 softmax (``CalculateSoftmaxParams``, ``reference_ops::Softmax``) stops the
    process (``TFLITE_CHECK``) when

    * Prepare: ``beta * s_in * 2**26 <= 1`` (``PreprocessSoftmaxScaling`` calls
      ``QuantizeMultiplierGreaterThanOne``): an input scale below about 1.5e-8;
    * Invoke: the sum of the exponentials (Q12.19) reaches 512, so the output shift
      ``num_bits_over_unit + 23`` exceeds 31: every output would round to 0. When even the
      smallest possible sum (the maximum's 1 plus ``n - 1`` times ``exp(-255 * s_in)``, or 0 for
      differences below ``diff_min``) reaches it, every input aborts: a flat distribution over
      many classes, as the 1000-class Keras models with collapsed scales have.

    Returns ``(operator index, reason)`` per such operator (inputs that make a sum reach 512
    only for some data are not listed)."""
    from memplan.execute.fixedpoint import rounding_divide_by_pot
    from memplan.execute.quantize import tflm_softmax_exp_table, tflm_softmax_params

    m = model if isinstance(model, TModel) else read_tflite(Path(model))
    out: list[tuple[int, str]] = []
    for op in m.ops:
        if op.name != "SOFTMAX" or not op.inputs:
            continue
        t = m.tensors[op.inputs[0]]
        if t.dtype != "int8" or not t.scale:
            continue
        beta, s_in = float(op.opts.get("Beta", 1.0)), float(t.scale[0])
        n = int(t.shape[-1]) if t.shape else 1
        real = beta * s_in * float(1 << 26)
        if real <= 1.0:
            out.append((op.index, f"SOFTMAX Prepare needs beta * input_scale * 2^26 > 1 (QuantizeMultiplierGreaterThanOne), "
                                  f"this one has {real:.3g} (input scale {s_in:.3g})"))
            continue
        table = tflm_softmax_exp_table(tflm_softmax_params(s_in, beta))
        low = int(rounding_divide_by_pot(int(table[0]), 12)) + (n - 1) * int(rounding_divide_by_pot(int(table[255]), 12))
        if low >= 1 << 28:
            out.append((op.index, f"SOFTMAX over {n} classes with input scale {s_in:.3g}: the sum of exponentials is at "
                                  f"least {low / 2 ** 19:.0f} >= 512 for every input, so TFLM's output shift exceeds 31 "
                                  "(TFLITE_CHECK in reference_ops::Softmax)"))
    return out


def _tflm_child(data: bytes, feeds: list[np.ndarray], requests: list[int], index_of: dict[int, int],
                intermediates: bool) -> dict[int, np.ndarray]:
    """The child process of :func:`tflm_reference`: one TFLite Micro inference."""
    from tflite_micro.python.tflite_micro import runtime

    config = runtime.InterpreterConfig.kPreserveAllTensors if intermediates else \
        runtime.InterpreterConfig.kAllocationRecording
    interp = runtime.Interpreter.from_bytes(data, arena_size=max(64 << 20, 16 * len(data)), intrepreter_config=config)
    for k, x in enumerate(feeds):
        interp.set_input(x, k)
    interp.invoke()
    got: dict[int, np.ndarray] = {}
    for ti in requests:
        if ti in index_of:
            got[ti] = np.array(interp.get_output(index_of[ti]))
        elif intermediates:
            try:
                got[ti] = np.array(interp.GetTensor(ti, 0)["tensor_data"])
            except Exception:  # noqa: BLE001 - the wrapper raises a bare RuntimeError/ValueError for a tensor it
                # does not keep (an unplanned or in-place one): that tensor is left out of the result, and the
                # per-layer tests assert how many layers were compared, so a missing one fails them
                continue
    return got


def _tflm_main() -> None:
    """Entry point of the child process: a pickled request on stdin, the tensors on stdout."""
    import pickle
    import sys

    data, feeds, requests, index_of, intermediates = pickle.loads(sys.stdin.buffer.read())
    got = _tflm_child(data, feeds, requests, index_of, intermediates)
    sys.stdout.buffer.write(pickle.dumps(got))
    sys.stdout.buffer.flush()



__all__ = ["tflm_reference", "tflm_softmax_limits"]
