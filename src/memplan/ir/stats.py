"""Per-layer and whole-graph statistics: what ``memplan inspect`` prints."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from memplan.ir.graph import Graph


@dataclass(frozen=True)
class LayerStats:
    id: str
    op: str
    activation: str | None
    input_shapes: tuple[tuple[int, ...], ...]
    output_shape: tuple[int, ...]
    macs: int
    weight_elems: int
    bias_elems: int
    weight_bytes: int
    input_bytes: int
    output_bytes: int


@dataclass(frozen=True)
class GraphStats:
    name: str
    layers: tuple[LayerStats, ...]
    total_macs: int
    parameters: int
    weight_bytes: int
    largest_activation: str
    largest_activation_bytes: int
    sum_activation_bytes: int
    input_bytes: int
    output_bytes: int
    #: element types of the feature maps and of the weights, as stored in the model: the byte
    #: counts above are at these sizes, not at the planned (hardware profile) element size
    feature_map_dtypes: tuple[str, ...] = ()
    weight_dtypes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def graph_stats(graph: Graph) -> GraphStats:
    """Bytes are at the source model's element size (the planner uses the hardware profile's).

    Parameters count weight and bias elements. Activation bytes count every feature map that a
    layer produces (model outputs included, model inputs not)."""
    layers = []
    for layer in graph.layers:
        out_t = graph.tensors[layer.output]
        w = graph.weight_elems(layer)
        b = graph.bias_elems(layer)
        w_bytes = (graph.tensors[layer.weight].elem_bytes * w if layer.weight else 0) + (
            graph.tensors[layer.bias].elem_bytes * b if layer.bias else 0
        )
        layers.append(
            LayerStats(
                id=layer.id,
                op=layer.op.value,
                activation=layer.activation.kind.value if layer.activation else None,
                input_shapes=tuple(graph.tensors[t].shape for t in layer.inputs),
                output_shape=out_t.shape,
                macs=graph.layer_macs(layer),
                weight_elems=w,
                bias_elems=b,
                weight_bytes=w_bytes,
                input_bytes=sum(graph.tensors[t].numel * graph.tensors[t].elem_bytes for t in layer.inputs),
                output_bytes=out_t.numel * out_t.elem_bytes,
            )
        )
    largest = max(layers, key=lambda s: s.output_bytes) if layers else None
    return GraphStats(
        name=graph.name,
        layers=tuple(layers),
        total_macs=sum(s.macs for s in layers),
        parameters=sum(s.weight_elems + s.bias_elems for s in layers),
        weight_bytes=sum(s.weight_bytes for s in layers),
        largest_activation=graph.layers[layers.index(largest)].output if largest else "",
        largest_activation_bytes=largest.output_bytes if largest else 0,
        sum_activation_bytes=sum(s.output_bytes for s in layers),
        input_bytes=sum(graph.tensors[t].numel * graph.tensors[t].elem_bytes for t in graph.inputs),
        output_bytes=sum(graph.tensors[t].numel * graph.tensors[t].elem_bytes for t in graph.outputs),
        feature_map_dtypes=tuple(sorted({t.dtype for t in graph.tensors.values() if t.is_feature_map})),
        weight_dtypes=tuple(sorted({graph.tensors[layer.weight].dtype for layer in graph.layers if layer.weight})),
    )
