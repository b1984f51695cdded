"""The graph IR: frozen tensors, layers and graphs.

A :class:`Graph` never changes after import. Decisions (fusion, tiling, residency) live in a
Plan keyed by layer ids; derived indexes (producers, consumers, positions) are cached
properties computed on first use.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

import numpy as np

from memplan.ir.ops import WEIGHTED, Activation, Attrs, OpKind, Shape, box_macs, prod


class Role(str, enum.Enum):
    MODEL_INPUT = "model_input"
    MODEL_OUTPUT = "model_output"
    ACTIVATION = "activation"
    WEIGHT = "weight"
    BIAS = "bias"


#: bytes per element of the dtypes memplan reads
DTYPE_BYTES: Mapping[str, int] = MappingProxyType(
    {"float32": 4, "float16": 2, "int8": 1, "uint8": 1, "int32": 4, "float64": 8, "int64": 8}
)


@dataclass(frozen=True)
class QuantParams:
    """Affine quantisation ``real = scale * (q - zero_point)``.

    ``axis`` is None for per-tensor parameters (one scale), otherwise the channel axis."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    dtype: str = "int8"
    axis: int | None = None


@dataclass(frozen=True)
class Tensor:
    """A tensor of the graph. Feature maps are 4-D NCHW; weights keep their natural shape. A
    tensor only host layers produce and read (or a model output a host layer produces) may have
    any rank; ``int32`` feature maps hold exact integers (e.g. ArgMax indices) and exist only
    in DRAM, between host layers.

    ``quant`` is the quantisation the model itself gives the tensor, or None. A feature map
    has it when it is stored quantised in the source: a model input or output (see
    :attr:`Graph.io_quant`), or, in a QDQ model, any feature map a QuantizeLinear /
    DequantizeLinear pair follows (the pair after an activation fused into its layer
    quantises that layer's output); int8 execution then uses it instead of calibrating. A
    weight or bias has it when it was stored quantised with parameters memplan's kernels take
    (symmetric weights, int32 biases)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    role: Role
    quant: QuantParams | None = None

    @property
    def elem_bytes(self) -> int:
        """Element size in the source model (the planner uses the hardware profile's size)."""
        return DTYPE_BYTES[self.dtype]

    @property
    def numel(self) -> int:
        return prod(self.shape)

    @property
    def is_feature_map(self) -> bool:
        return self.role in (Role.MODEL_INPUT, Role.MODEL_OUTPUT, Role.ACTIVATION)


@dataclass(frozen=True)
class Layer:
    """One operator. ``inputs`` are feature-map tensors; ``weight`` and ``bias`` name constant
    tensors in :attr:`Graph.weights`. Each layer produces exactly one feature map."""

    id: str
    op: OpKind
    inputs: tuple[str, ...]
    output: str
    attrs: Attrs
    weight: str | None = None
    bias: str | None = None
    activation: Activation | None = None


@dataclass(frozen=True)
class Graph:
    """A CNN as layers in one topological order.

    ``input_layouts`` records, per model input, the layout the caller supplies data in
    (``NCHW`` or ``NHWC`` when a leading transpose was absorbed). ``input_shapes`` are the
    shapes the model's inputs were pinned to, in the model's own layout (what
    ``--input-shape`` takes; a plan records them). ``notes`` are what the import wants the user
    to know without it being an error (a dynamic batch pinned to 1); the frontend never prints
    them, the command line does."""

    name: str
    layers: tuple[Layer, ...]
    tensors: Mapping[str, Tensor]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    weights: Mapping[str, np.ndarray] = field(compare=False)
    input_layouts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    input_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: MappingProxyType({}), compare=False)
    notes: tuple[str, ...] = field(default=(), compare=False)
    #: what an operator memplan does not tile became at import: host layers (``cpu``) or an error
    host_ops: str = field(default="cpu", compare=False)

    # ------------------------------------------------------------------ derived indexes
    @cached_property
    def layer_index(self) -> Mapping[str, int]:
        """Position of each layer id in the topological order."""
        return MappingProxyType({layer.id: i for i, layer in enumerate(self.layers)})

    @cached_property
    def producer(self) -> Mapping[str, int]:
        """Index of the layer producing each feature-map tensor (model inputs absent)."""
        return MappingProxyType({layer.output: i for i, layer in enumerate(self.layers)})

    @cached_property
    def consumers(self) -> Mapping[str, tuple[int, ...]]:
        """Indexes of the layers reading each feature-map tensor, in topological order."""
        out: dict[str, list[int]] = {}
        for i, layer in enumerate(self.layers):
            for t in dict.fromkeys(layer.inputs):
                out.setdefault(t, []).append(i)
        return MappingProxyType({k: tuple(v) for k, v in out.items()})

    @property
    def io_quant(self) -> Mapping[str, QuantParams]:
        """Quantisation the model itself gives its inputs and outputs (a QDQ model, or the int8
        interface of a tf2onnx ``--dequantize`` model whose Cast/Sub/Mul input chain and output
        QuantizeLinear the frontend folded): tensor -> parameters. Int8 execution uses these
        instead of calibrating those tensors."""
        return MappingProxyType({t: q for t in (*self.inputs, *self.outputs)
                                 if (q := self.tensors[t].quant) is not None})

    @cached_property
    def host_layers(self) -> tuple[int, ...]:
        """Indexes of the host layers (op ``host``: run untiled on the host CPU)."""
        return tuple(i for i, layer in enumerate(self.layers) if layer.op is OpKind.HOST)

    @cached_property
    def dram_only(self) -> frozenset[str]:
        """Tensors a host layer reads or writes: they live in DRAM (never resident in SRAM)."""
        out: set[str] = set()
        for i in self.host_layers:
            out.update(self.layers[i].inputs)
            out.add(self.layers[i].output)
        return frozenset(out)

    def layer(self, layer_id: str) -> Layer:
        return self.layers[self.layer_index[layer_id]]

    def shape(self, tensor: str) -> Shape:
        s = self.tensors[tensor].shape
        assert len(s) == 4, f"{tensor} is not a feature map"
        return s  # type: ignore[return-value]

    # ------------------------------------------------------------------ per-layer facts
    def out_channels(self, layer: Layer) -> int:
        return self.tensors[layer.output].shape[1]

    def layer_macs(self, layer: Layer) -> int:
        """Multiply-accumulates of the whole layer (the rule: :func:`memplan.ir.ops.box_macs`)."""
        if layer.op is OpKind.HOST:
            return 0  # runs on the host CPU: no NPU MACs
        _, c, h, w = self.shape(layer.output)
        return box_macs(layer.op, layer.attrs, self.shape(layer.inputs[0]), c, (0, h), (0, w))

    def weight_elems(self, layer: Layer) -> int:
        return self.tensors[layer.weight].numel if layer.weight else 0

    def bias_elems(self, layer: Layer) -> int:
        return self.tensors[layer.bias].numel if layer.bias else 0

    @property
    def has_weights(self) -> bool:
        return any(layer.op in WEIGHTED for layer in self.layers)
