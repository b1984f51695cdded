"""The graph under construction.

The converter translates ONNX nodes into :class:`DraftLayer` objects: real IR ops plus three
pseudo ops that only live here (a per-channel affine, a standalone activation, a zero pad).
The passes in :mod:`memplan.frontend.normalize` fold the pseudo ops away; :meth:`Draft.freeze`
then builds the frozen IR :class:`Graph` and checks it.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from memplan.errors import GraphError
from memplan.ir.check import check_graph
from memplan.ir.graph import Graph, Layer, QuantParams, Role, Tensor
from memplan.ir.ops import Activation, Attrs, OpKind, Pads


class Pseudo(str, enum.Enum):
    """Draft-only ops, rewritten into IR ops by the normalisation passes."""

    AFFINE = "affine"  # y = scale[c] * x + shift[c]
    ACT = "act"  # y = activation(x)
    PAD = "pad"  # zero padding of H and W


@dataclass(frozen=True, eq=False)
class AffineAttrs:
    scale: np.ndarray  # (C,) float64
    shift: np.ndarray  # (C,) float64


@dataclass(frozen=True)
class PadAttrs:
    pads: Pads  # (top, left, bottom, right)


@dataclass(frozen=True)
class ConstInfo:
    """How a weight or bias is stored in the source model."""

    dtype: str
    quant: QuantParams | None = None


@dataclass
class DraftTensor:
    shape: tuple[int, ...]
    dtype: str
    quant: QuantParams | None = None


@dataclass
class DraftLayer:
    id: str
    op: OpKind | Pseudo
    inputs: list[str]
    output: str
    attrs: Attrs | AffineAttrs | PadAttrs | None = None
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    weight_info: ConstInfo | None = None
    bias_info: ConstInfo | None = None
    activation: Activation | None = None


@dataclass
class Draft:
    """Layers in topological order and the feature maps they read and write."""

    reserved: set[str] = field(default_factory=set)  # names a synthesised tensor must not take
    tensors: dict[str, DraftTensor] = field(default_factory=dict)
    layers: list[DraftLayer] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    input_layouts: dict[str, str] = field(default_factory=dict)

    def fresh_name(self, base: str) -> str:
        """A tensor name not used yet, derived from ``base``."""
        name, i = base, 0
        while name in self.reserved or name in self.tensors:
            i += 1
            name = f"{base}~{i}"
        self.reserved.add(name)
        return name

    def add_layer(self, layer: DraftLayer, shape: tuple[int, ...], dtype: str) -> DraftLayer:
        self.tensors[layer.output] = DraftTensor(shape, dtype)
        self.layers.append(layer)
        return layer

    # ------------------------------------------------------------------ indexes for the passes
    def producers(self) -> dict[str, DraftLayer]:
        return {layer.output: layer for layer in self.layers}

    def consumer_counts(self) -> Counter[str]:
        """How many layers read each tensor; model outputs count as one more reader."""
        counts: Counter[str] = Counter()
        for layer in self.layers:
            counts.update(set(layer.inputs))
        counts.update(self.outputs)
        return counts

    def drop(self, removed: Iterable[DraftLayer]) -> None:
        """Remove layers (and their now unused output tensors)."""
        gone = {id(layer) for layer in removed}
        if not gone:
            return
        self.layers = [layer for layer in self.layers if id(layer) not in gone]
        used = set(self.inputs) | set(self.outputs)
        for layer in self.layers:
            used.update(layer.inputs)
            used.add(layer.output)
        self.tensors = {k: v for k, v in self.tensors.items() if k in used}

    def rename(self, old: str, new: str) -> None:
        """Rename a feature map everywhere."""
        self.tensors[new] = self.tensors.pop(old)
        for layer in self.layers:
            layer.inputs = [new if t == old else t for t in layer.inputs]
            if layer.output == old:
                layer.output = new
        self.inputs = [new if t == old else t for t in self.inputs]
        self.outputs = [new if t == old else t for t in self.outputs]

    # ------------------------------------------------------------------ freeze
    def freeze(self, name: str) -> Graph:
        """The frozen IR graph; raises :class:`GraphError` if an invariant fails."""
        tensors: dict[str, Tensor] = {}
        weights: dict[str, np.ndarray] = {}
        outputs = set(self.outputs)

        def feature_map(t: str, role: Role) -> None:
            d = self.tensors[t]
            tensors[t] = Tensor(t, tuple(d.shape), d.dtype, role, d.quant)

        def constant(layer_id: str, suffix: str, array: np.ndarray, info: ConstInfo | None, role: Role) -> str:
            t = self.fresh_name(f"{layer_id}.{suffix}")
            arr = np.asarray(array, dtype=np.float32)
            if arr.flags.writeable:
                arr.flags.writeable = False
            weights[t] = arr
            info = info or ConstInfo("float32")
            tensors[t] = Tensor(t, tuple(arr.shape), info.dtype, role, info.quant)
            return t

        for t in self.inputs:
            feature_map(t, Role.MODEL_INPUT)
        layers: list[Layer] = []
        for dl in self.layers:
            if isinstance(dl.op, Pseudo):
                raise GraphError(f"internal error: draft op {dl.op.value} of layer {dl.id!r} survived normalisation")
            assert dl.attrs is not None and not isinstance(dl.attrs, (AffineAttrs, PadAttrs))
            feature_map(dl.output, Role.MODEL_OUTPUT if dl.output in outputs else Role.ACTIVATION)
            w = None if dl.weight is None else constant(dl.id, "weight", dl.weight, dl.weight_info, Role.WEIGHT)
            b = None if dl.bias is None else constant(dl.id, "bias", dl.bias, dl.bias_info, Role.BIAS)
            layers.append(Layer(dl.id, dl.op, tuple(dl.inputs), dl.output, dl.attrs, w, b, dl.activation))
        graph = Graph(
            name=name,
            layers=tuple(layers),
            tensors=MappingProxyType(tensors),
            inputs=tuple(self.inputs),
            outputs=tuple(self.outputs),
            weights=MappingProxyType(weights),
            input_layouts=MappingProxyType(dict(self.input_layouts)),
        )
        check_graph(graph)
        return graph
