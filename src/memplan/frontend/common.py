"""Helpers shared by the ONNX frontend: node views, attributes, dtypes and shape arithmetic."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from memplan.ir.graph import DTYPE_BYTES

if TYPE_CHECKING:
    from memplan.frontend.convert import Converter


class NodeError(Exception):
    """A node cannot be converted. The converter turns it into a :class:`ModelError` that names
    the node and its operator, so messages raised with it only say what is wrong and how to fix it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Node:
    """An ONNX node as the converter sees it: a unique layer id, decoded attributes, and inputs
    where an omitted optional input is the empty string."""

    id: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any]

    def input(self, i: int) -> str | None:
        """Name of input ``i``, or None when it is omitted."""
        return self.inputs[i] if i < len(self.inputs) and self.inputs[i] else None

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    def ints(self, name: str, default: Sequence[int] | None = None) -> tuple[int, ...] | None:
        value = self.attrs.get(name)
        if value is None:
            return None if default is None else tuple(default)
        return tuple(int(v) for v in value)


def decode_attrs(node: onnx.NodeProto) -> dict[str, Any]:
    """Attributes of a node as Python values: strings decoded, tensors as numpy arrays."""
    out: dict[str, Any] = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        elif isinstance(value, onnx.TensorProto):
            value = numpy_helper.to_array(value)
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode("utf-8", errors="replace") for v in value]
        out[attr.name] = value
    return out


#: op type -> converter of a node whose inputs are feature maps (filled by the ``ops_*`` modules)
Handler = Callable[["Converter", Node], None]
HANDLERS: dict[str, Handler] = {}


def handles(*op_types: str) -> Callable[[Handler], Handler]:
    """Register a converter for one or more ONNX operator types."""

    def register(fn: Handler) -> Handler:
        for op in op_types:
            HANDLERS[op] = fn
        return fn

    return register


# ---------------------------------------------------------------------------------- dtypes
def dtype_name(elem_type: int) -> str:
    """The memplan dtype name (``float32``, ``int8``...) of an ONNX element type."""
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name
    except (KeyError, ValueError, TypeError):
        return f"onnx-type-{elem_type}"


def check_dtype(name: str, what: str) -> str:
    if name not in DTYPE_BYTES:
        raise NodeError(f"{what} has dtype {name}; memplan reads {', '.join(sorted(DTYPE_BYTES))}")
    return name


def is_float(dtype: str) -> bool:
    return dtype.startswith("float")


# ---------------------------------------------------------------------------------- shapes
def normalize_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise NodeError(f"axis {axis} is out of range for rank {rank}")
    return axis % rank


def reshape_target(in_shape: Sequence[int], spec: Sequence[int], allowzero: bool = False) -> tuple[int, ...]:
    """Output shape of ONNX Reshape: 0 copies the input dim (unless ``allowzero``), -1 is inferred."""
    dims = [int(d) for d in spec]
    if not allowzero:
        for i, d in enumerate(dims):
            if d == 0:
                if i >= len(in_shape):
                    raise NodeError(
                        f"Reshape target {tuple(spec)} copies dim {i} that the input {tuple(in_shape)} lacks"
                    )
                dims[i] = int(in_shape[i])
    total = math.prod(in_shape)
    if dims.count(-1) > 1 or any(d < -1 for d in dims):
        raise NodeError(f"Reshape target {tuple(spec)} is malformed")
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        if known == 0 or total % known:
            raise NodeError(f"Reshape of {tuple(in_shape)} to {tuple(spec)}: sizes do not divide")
        dims[dims.index(-1)] = total // known
    if math.prod(dims) != total:
        raise NodeError(f"Reshape of {tuple(in_shape)} to {tuple(dims)} changes the element count")
    return tuple(dims)


def squeeze_shape(shape: Sequence[int], axes: Sequence[int] | None) -> tuple[int, ...]:
    if axes is None:
        return tuple(d for d in shape if d != 1)
    drop = {normalize_axis(a, len(shape)) for a in axes}
    for a in drop:
        if shape[a] != 1:
            raise NodeError(f"Squeeze of axis {a} whose size is {shape[a]}, not 1")
    return tuple(d for i, d in enumerate(shape) if i not in drop)


def unsqueeze_shape(shape: Sequence[int], axes: Sequence[int]) -> tuple[int, ...]:
    rank = len(shape) + len(axes)
    add = sorted(normalize_axis(a, rank) for a in axes)
    out = list(shape)
    for a in add:
        out.insert(a, 1)
    return tuple(out)


def flatten_shape(shape: Sequence[int], axis: int) -> tuple[int, int]:
    if axis < 0:
        axis += len(shape)
    return (math.prod(shape[:axis]), math.prod(shape[axis:]))


def replace_graph_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto], gone: set[str]) -> None:
    """Write a rewritten node list back into ``graph`` and drop the shape records of the values
    the rewrite removed (``gone``), so shape inference cannot restate stale shapes."""
    copies = []
    for n in nodes:  # protobuf repeated fields hold copies: copy before clearing the originals
        copy = type(n)()
        copy.CopyFrom(n)
        copies.append(copy)
    del graph.node[:]
    graph.node.extend(copies)
    for vi in [vi for vi in graph.value_info if vi.name in gone]:
        graph.value_info.remove(vi)
