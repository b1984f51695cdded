"""Graph invariants, checked after every import and every graph-building step."""

from __future__ import annotations

from memplan.errors import GraphError
from memplan.ir.graph import Graph, Role
from memplan.ir.ops import ATTRS_OF, WEIGHTED, ActKind, OpKind, infer_output_shape, weight_shape


def check_graph(graph: Graph) -> None:
    """Raise :class:`GraphError` unless the graph is well formed.

    Checks: unique layer ids; every tensor produced once; every layer input is a model input or
    produced by an earlier layer (so the order is topological and the graph acyclic); model
    outputs are produced; attribute types match op kinds; only host layers read tensors that
    are not 4-D (or int32), and host layers have no weights; weights exist with the shape the op
    needs; every output shape equals the one inferred from the inputs."""
    seen_ids: set[str] = set()
    available: set[str] = set(graph.inputs)
    integer: set[str] = set()  # int32 outputs of host layers
    for name in graph.inputs:
        if name not in graph.tensors or len(graph.tensors[name].shape) != 4:
            raise GraphError(f"model input {name!r} is not a 4-D feature map")
    for layer in graph.layers:
        where = f"layer {layer.id!r} ({layer.op.value})"
        if layer.id in seen_ids:
            raise GraphError(f"{where}: layer id used twice")
        seen_ids.add(layer.id)
        if not isinstance(layer.attrs, ATTRS_OF[layer.op]):
            raise GraphError(f"{where}: attributes {type(layer.attrs).__name__} do not fit the op")
        for t in layer.inputs:
            if t not in available:
                if t in graph.producer:
                    raise GraphError(f"{where}: input {t!r} is produced later: the graph has a cycle or is not in topological order")
                raise GraphError(f"{where}: input {t!r} is never produced")
        if layer.output in available:
            raise GraphError(f"{where}: tensor {layer.output!r} is produced twice")
        if layer.output not in graph.tensors:
            raise GraphError(f"{where}: output {layer.output!r} has no tensor entry")
        out = graph.tensors[layer.output].shape
        if layer.op is OpKind.HOST:
            if layer.weight is not None or layer.bias is not None or layer.activation is not None:
                raise GraphError(f"{where}: a host layer has no weights, bias or activation")
            if layer.attrs.out_dtype == "int32":
                integer.add(layer.output)
            available.add(layer.output)
            continue
        for t in layer.inputs:
            if len(graph.tensors[t].shape) != 4 or t in integer:
                raise GraphError(f"{where}: input {t!r} is not a 4-D feature map (only host layers read it)")
        in_shapes = tuple(graph.shape(t) for t in layer.inputs)
        try:
            expected = infer_output_shape(layer.op, layer.attrs, in_shapes, out[1])
        except ValueError as exc:
            raise GraphError(f"{where}: {exc}") from None
        if tuple(out) != expected:
            raise GraphError(f"{where}: output shape {tuple(out)} but inputs {in_shapes} give {expected}")
        if layer.op in WEIGHTED:
            if layer.weight is None or layer.weight not in graph.weights:
                raise GraphError(f"{where}: weight tensor missing")
            want = weight_shape(layer.op, layer.attrs, in_shapes[0], out[1])
            got = tuple(graph.weights[layer.weight].shape)
            if got != want:
                raise GraphError(f"{where}: weight shape {got}, expected {want}")
            if graph.tensors[layer.weight].role is not Role.WEIGHT:
                raise GraphError(f"{where}: weight tensor has role {graph.tensors[layer.weight].role.value}")
        elif layer.weight is not None:
            raise GraphError(f"{where}: op takes no weights")
        act = layer.activation
        if act is not None and act.kind is ActKind.PRELU and len(act.params) != out[1]:
            raise GraphError(f"{where}: prelu has {len(act.params)} slopes for {out[1]} channels")
        if layer.bias is not None:
            b = graph.weights.get(layer.bias)
            if b is None or tuple(b.shape) != (out[1],):
                raise GraphError(f"{where}: bias must have shape ({out[1]},)")
        available.add(layer.output)
    for name in graph.outputs:
        if name not in available:
            raise GraphError(f"model output {name!r} is never produced")
