"""ONNX frontend: the only part of memplan that imports onnx.

:func:`load_model` reads an ONNX file and returns the IR :class:`~memplan.ir.graph.Graph`:

1. read the file; external data is read only from files inside the model's folder
   (:mod:`~memplan.frontend.model_file`);
2. pin dynamic input dimensions from ``input_shapes`` (given in the model's own layout, e.g.
   ``{"input_1": (1, 49, 10, 1)}`` for an NHWC model) and run ONNX shape inference;
3. convert nodes into a draft graph, folding constants and absorbing layout ops
   (:mod:`~memplan.frontend.convert` and the ``ops_*`` modules);
4. fold BatchNormalization / per-channel Mul-Add / Pad and fuse activations
   (:mod:`~memplan.frontend.normalize`);
5. freeze the IR graph and check its invariants.

Every failure is a :class:`~memplan.errors.MemplanError` whose one-line message starts with
the model path and says how to fix the problem.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from memplan.errors import MemplanError
from memplan.frontend import ops_elementwise, ops_nn, ops_quant  # noqa: F401 - register the op handlers
from memplan.frontend.convert import Converter
from memplan.frontend.model_file import infer_types, pin_input_shapes, read_model
from memplan.frontend.normalize import normalize
from memplan.ir.graph import Graph

__all__ = ["load_model"]


def load_model(path: str | os.PathLike[str], input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> Graph:
    """Load an ONNX model as an IR graph.

    ``input_shapes`` pins dynamic input dimensions (``--input-shape NAME=1x3x224x224`` on the
    command line), in the layout of the ONNX input itself."""
    file = Path(path)
    try:
        model = read_model(file)
        pin_input_shapes(model, input_shapes or {})
        shapes, dtypes = infer_types(model)
        draft = Converter(model, shapes, dtypes).run()
        normalize(draft)
        return draft.freeze(file.stem)
    except MemplanError as exc:
        raise type(exc)(f"{file}: {exc.message}") from None
