"""ONNX frontend: the only part of memplan that imports onnx.

:func:`load_model` reads an ONNX file and returns the IR :class:`~memplan.ir.graph.Graph`:

1. read the file; external data is read only from files inside the model's folder
   (:mod:`~memplan.frontend.model_file`);
2. pin dynamic input dimensions from ``input_shapes`` (given in the model's own layout, e.g.
   ``{"input_1": (1, 49, 10, 1)}`` for an NHWC model; a dynamic batch not given becomes 1, with
   a note in ``Graph.notes``) and run ONNX shape inference;
3. lower onnxruntime's QOperator contrib ops to QDQ
   (:func:`~memplan.frontend.ops_quant.lower_qoperators`), fold the Cast/Sub/Mul
   dequantisation of an int8 model input (tf2onnx ``--dequantize``) into a DequantizeLinear (:func:`~memplan.frontend.ops_quant.fold_input_dequantize`), move an input
   transpose above the per-element ops before it
   (:func:`~memplan.frontend.layout.hoist_input_transposes`), convert nodes
   into a draft graph, folding constants and absorbing layout ops
   (:mod:`~memplan.frontend.convert` and the ``ops_*`` modules);
4. fold BatchNormalization / per-channel Mul-Add / Pad and fuse activations
   (:mod:`~memplan.frontend.normalize`);
5. freeze the IR graph and check its invariants.

Every failure is a :class:`~memplan.errors.MemplanError` whose one-line message starts with
the model path and says how to fix the problem.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np

from memplan.errors import MemplanError, ModelError
from memplan.frontend import ops_elementwise, ops_nn, ops_quant  # noqa: F401 - register the op handlers
from memplan.frontend.convert import Converter
from memplan.frontend.layout import hoist_input_transposes
from memplan.frontend.model_file import infer_types, pin_input_shapes, read_model
from memplan.frontend.normalize import normalize
from memplan.ir.graph import Graph

__all__ = ["load_model"]


def load_model(path: str | os.PathLike[str], input_shapes: Mapping[str, tuple[int, ...]] | None = None,
               host_ops: str = "cpu") -> Graph:
    """Load an ONNX model as an IR graph.

    ``input_shapes`` pins dynamic input dimensions (``--input-shape NAME=1x3x224x224`` on the
    command line), in the layout of the ONNX input itself. ``host_ops`` says what an operator
    memplan does not tile becomes: a host layer run on the CPU (``cpu``, :mod:`memplan.host`)
    or a one-line :class:`~memplan.errors.UnsupportedOpError` (``error``). Control flow and
    shapes that stay dynamic after pinning are errors either way."""
    if not os.fspath(path):
        raise ModelError("the model path is empty; give the path of an .onnx model")
    file = Path(path)
    if file.suffix.lower() == ".tflite":  # TFLite flatbuffers: memplan.frontend.tflite
        from memplan.frontend.tflite import load_tflite

        return load_tflite(file, input_shapes, host_ops)
    try:
        model = read_model(file)
        pinned, notes = pin_input_shapes(model, input_shapes or {})
        ops_quant.lower_qoperators(model)
        ops_quant.fold_input_dequantize(model)
        hoist_input_transposes(model)
        shapes, dtypes = infer_types(model)
        # folding constants may divide by zero and the like: no numpy warnings on stderr, the
        # weights that result are checked below
        with np.errstate(all="ignore"):
            draft = Converter(model, shapes, dtypes, host_ops).run()
            normalize(draft)
        graph = draft.freeze(file.stem)
        _check_finite_weights(graph)
        return dataclasses.replace(graph, input_shapes=MappingProxyType(pinned), notes=tuple(notes), host_ops=host_ops)
    except MemplanError as exc:
        raise type(exc)(f"{file}: {exc.message}") from None


def _check_finite_weights(graph: Graph) -> None:
    """Weights computed by folding (a BatchNorm with a negative variance, a division by zero,
    float64 constants beyond float32) must be finite, like the initializers they come from."""
    for layer in graph.layers:
        for name in (layer.weight, layer.bias):
            if name is not None and not np.isfinite(graph.weights[name]).all():
                raise ModelError(
                    f"the weights of layer {layer.id!r} are NaN or infinite after folding its constants (a "
                    "division by zero, a negative BatchNormalization variance or a float64 value beyond float32); "
                    "fix the constants that feed it and re-export the model"
                )
