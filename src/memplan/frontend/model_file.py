"""Reading an ONNX file: parse, load external data safely, pin input shapes, infer shapes."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import onnx

from memplan.errors import ModelError
from memplan.frontend.common import dtype_name


def read_model(path: Path) -> onnx.ModelProto:
    """Parse the file and load its external data (only from files inside its folder)."""
    if not path.exists():
        raise ModelError("no such file; check the path")
    if not path.is_file():
        raise ModelError("is not a file; give the path of an .onnx model")
    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several unrelated types
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(
            f"not a readable ONNX model, the file is truncated or corrupt ({reason}); re-export or re-download it"
        ) from None
    if not model.graph.node or not model.graph.output:
        raise ModelError("contains no graph (no nodes or no outputs); the file is truncated or not an ONNX model")
    _load_external_data(model, path.parent)
    return model


def _tensors(graph: onnx.GraphProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    """Every tensor stored in a graph: initializers and tensor attributes, subgraphs included."""
    for t in graph.initializer:
        yield t.name, t
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield f"{node.name or node.op_type}.{attr.name}", attr.t
            for t in attr.tensors:
                yield f"{node.name or node.op_type}.{attr.name}", t
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for g in attr.graphs:
                yield from _tensors(g)


def _load_external_data(model: onnx.ModelProto, folder: Path) -> None:
    """Check every external-data location first, then read; a location that is absolute or
    leaves the model's folder (``..``, symlinks) is refused before anything is read."""
    root = folder.resolve()
    plan: list[tuple[onnx.TensorProto, Path, int, int | None]] = []
    for name, tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        if not location:
            raise ModelError(f"tensor {name!r} is stored externally but names no file; re-export the model")
        target = (root / location).resolve()
        escapes = os.path.isabs(location) or Path(location).drive or ".." in Path(location).parts
        if escapes or not target.is_relative_to(root):
            raise ModelError(
                f"tensor {name!r} stores its data at {location!r}, outside the model's folder; memplan reads "
                "external data only from files beside the model: move the data file next to it and re-save "
                "with a relative location"
            )
        if not target.is_file():
            raise ModelError(f"tensor {name!r} stores its data in {location!r}, which is not beside the model")
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else None
            if offset < 0 or (length is not None and length < 0):
                raise ValueError
        except ValueError:
            raise ModelError(
                f"tensor {name!r} has a malformed external-data offset or length; re-export the model"
            ) from None
        plan.append((tensor, target, offset, length))
    for tensor, target, offset, length in plan:
        with open(target, "rb") as f:
            f.seek(offset)
            data = f.read() if length is None else f.read(length)
        if length is not None and len(data) != length:
            raise ModelError(f"external data file {target.name!r} is shorter than the model says; it is truncated")
        tensor.raw_data = data
        tensor.data_location = onnx.TensorProto.DEFAULT
        del tensor.external_data[:]


def model_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are not initializers (old opsets list weights as inputs too)."""
    initializers = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


#: the most elements a model input may have (64 Mi: 3x4096x4096 fits); larger inputs are far
#: beyond embedded inference and would take the frontend gigabytes of index arrays
MAX_INPUT_ELEMENTS = 1 << 26


def _static(dim: onnx.TensorShapeProto.Dimension) -> bool:
    return dim.HasField("dim_value") and dim.dim_value > 0


def _dims_text(tt: onnx.TypeProto.Tensor) -> str:
    return "x".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim)


def _dynamic_hint(name: str, dims: list[onnx.TensorShapeProto.Dimension], shown: str) -> str:
    """How to give a dynamic input shape: which dimensions are missing, and an example that
    keeps the static ones, with batch 1 and 224 for each other dynamic dimension."""
    if not dims:
        return (f"model input {name!r} has an unknown shape; give it with --input-shape {name}=1x3x224x224 "
                "(the full shape, in the model's own layout)")
    missing = [i for i, d in enumerate(dims) if not _static(d) and (i > 0 or len(dims) == 1)]
    example = "x".join(str(d.dim_value) if _static(d) else ("1" if i == 0 else "224") for i, d in enumerate(dims))
    which = " and ".join(str(i) for i in missing)
    return (f"model input {name!r} has a dynamic shape ({shown}); give dim{'s' if len(missing) > 1 else ''} "
            f"{which} (from 0) with --input-shape, e.g. --input-shape {name}={example} (in the model's own layout)")


def pin_input_shapes(model: onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]]) -> tuple[
        dict[str, tuple[int, ...]], list[str]]:
    """Write the user's shapes into the model's inputs; every input must end up static.

    Shapes are given in the model's own layout (an NHWC model input takes an NHWC shape). A
    given shape may only fill dynamic dimensions: static ones must match. A dynamic leading
    (batch) dimension that is not given is pinned to 1, as Vela and TFLite Micro do; any other
    dynamic dimension must be given. Returns the pinned shape of every model input and one
    note per batch pinned that way (the caller decides how to show them)."""
    inputs = model_inputs(model)
    names = [i.name for i in inputs]
    notes: list[str] = []
    for name in input_shapes:
        if name not in names:
            raise ModelError(
                f"--input-shape names {name!r}, which is not a model input; "
                f"the model's inputs are: {', '.join(names)}"
            )
    for inp in inputs:
        if not inp.type.HasField("tensor_type"):
            raise ModelError(f"model input {inp.name!r} is not a tensor; memplan plans tensor inputs only")
        tt = inp.type.tensor_type
        given = input_shapes.get(inp.name)
        if given is not None:
            given = tuple(int(d) for d in given)
            if tt.HasField("shape") and len(tt.shape.dim) != len(given):
                raise ModelError(
                    f"--input-shape {inp.name}={'x'.join(map(str, given))} has rank {len(given)}, but the input has "
                    f"rank {len(tt.shape.dim)} ({_dims_text(tt)})"
                )
            if tt.HasField("shape"):
                for d, g in zip(tt.shape.dim, given, strict=True):
                    if _static(d) and d.dim_value != g:
                        raise ModelError(
                            f"--input-shape {inp.name}={'x'.join(map(str, given))} contradicts the input's "
                            f"static shape {_dims_text(tt)}; only dynamic dimensions can be set"
                        )
            tt.ClearField("shape")
            for g in given:
                tt.shape.dim.add().dim_value = g
            continue
        dims = list(tt.shape.dim) if tt.HasField("shape") else []
        shown = _dims_text(tt) if dims else "unknown"
        if not dims or not all(_static(d) for d in dims[1:]) or (len(dims) == 1 and not _static(dims[0])):
            raise ModelError(_dynamic_hint(inp.name, dims, shown))
        if not _static(dims[0]):
            dims[0].Clear()
            dims[0].dim_value = 1
            notes.append(f"input {inp.name!r} has a dynamic batch ({shown}); planning batch 1")
    for inp in inputs:
        numel = math.prod(int(d.dim_value) for d in inp.type.tensor_type.shape.dim)
        if numel > MAX_INPUT_ELEMENTS:
            raise ModelError(
                f"model input {inp.name!r} has shape {_dims_text(inp.type.tensor_type)}, {numel:,} elements, more than "
                f"the {MAX_INPUT_ELEMENTS:,} memplan plans; use a smaller input shape"
            )
    pinned = {inp.name: tuple(int(d.dim_value) for d in inp.type.tensor_type.shape.dim) for inp in inputs}
    return pinned, notes


def infer_types(model: onnx.ModelProto) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Static shapes and dtypes ONNX shape inference finds (a cross-check for the converter;
    inference failing is not an error)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - inference is advisory
        inferred = model
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, str] = {}
    g = inferred.graph
    for vi in (*g.value_info, *g.output, *g.input):
        if not vi.type.HasField("tensor_type"):
            continue
        tt = vi.type.tensor_type
        if tt.elem_type:
            dtypes[vi.name] = dtype_name(tt.elem_type)
        if tt.HasField("shape"):
            dims = tt.shape.dim
            if all(_static(d) for d in dims):
                shapes[vi.name] = tuple(int(d.dim_value) for d in dims)
    return shapes, dtypes
