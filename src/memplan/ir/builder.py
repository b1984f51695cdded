"""Build IR graphs in Python with inferred shapes and seeded weights.

Used by the model zoo, the tests and the property-test generators. Every method appends one
layer and returns the name of its output tensor.
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

from memplan.ir.check import check_graph
from memplan.ir.graph import Graph, Layer, Role, Tensor
from memplan.ir.ops import (
    Activation,
    ActKind,
    Attrs,
    BlockAttrs,
    ChannelShuffleAttrs,
    ConvAttrs,
    ConvTransposeAttrs,
    FullyConnectedAttrs,
    LRNAttrs,
    NoAttrs,
    OpKind,
    Pair,
    Pads,
    PoolAttrs,
    ResizeAttrs,
    SliceAttrs,
    ZeroPadAttrs,
    infer_output_shape,
    weight_shape,
)

RELU = Activation(ActKind.RELU)
RELU6 = Activation(ActKind.CLIP, (0.0, 6.0))


def prelu(slopes: object) -> Activation:
    """A PRelu activation with one slope per output channel."""
    return Activation(ActKind.PRELU, tuple(float(v) for v in np.asarray(slopes, dtype=np.float64).reshape(-1)))


def _pair(v: int | Pair) -> Pair:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def same_pads(kernel: Pair, dilation: Pair = (1, 1)) -> Pads:
    """Symmetric 'same' padding for odd kernels (extra cell at the end for even ones)."""
    ph = dilation[0] * (kernel[0] - 1)
    pw = dilation[1] * (kernel[1] - 1)
    return (ph // 2, pw // 2, ph - ph // 2, pw - pw // 2)


class GraphBuilder:
    """Accumulates layers; :meth:`build` freezes and checks the graph."""

    def __init__(self, name: str, seed: int = 0, dtype: str = "float32") -> None:
        self.name = name
        self.dtype = dtype
        self.rng = np.random.default_rng(seed)
        self._layers: list[Layer] = []
        self._tensors: dict[str, Tensor] = {}
        self._weights: dict[str, np.ndarray] = {}
        self._inputs: list[str] = []
        self._counter = 0

    # ------------------------------------------------------------------ plumbing
    def _fresh(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    def shape(self, tensor: str) -> tuple[int, ...]:
        return self._tensors[tensor].shape

    def input(self, shape: tuple[int, int, int, int], name: str = "input") -> str:
        self._tensors[name] = Tensor(name, tuple(shape), self.dtype, Role.MODEL_INPUT)
        self._inputs.append(name)
        return name

    def _const(self, name: str, array: np.ndarray, role: Role) -> str:
        self._weights[name] = array.astype(np.float32)
        self._tensors[name] = Tensor(name, tuple(array.shape), self.dtype, role)
        return name

    def add_layer(
        self,
        op: OpKind,
        inputs: tuple[str, ...],
        attrs: Attrs,
        out_channels: int | None = None,
        weight: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        activation: Activation | None = None,
        name: str | None = None,
    ) -> str:
        lid = name or self._fresh(op.value + "_")
        in_shapes = tuple(self.shape(t) for t in inputs)
        out_shape = infer_output_shape(op, attrs, in_shapes, out_channels)  # type: ignore[arg-type]
        w_name = b_name = None
        if weight is not None:
            w_name = self._const(lid + ".weight", weight, Role.WEIGHT)
        if bias is not None:
            b_name = self._const(lid + ".bias", bias, Role.BIAS)
        out = lid + ".out"
        self._tensors[out] = Tensor(out, out_shape, self.dtype, Role.ACTIVATION)
        self._layers.append(Layer(lid, op, tuple(inputs), out, attrs, w_name, b_name, activation))
        return out

    def _init_weight(self, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        return self.rng.normal(0.0, np.sqrt(2.0 / max(fan_in, 1)), size=shape).astype(np.float32)

    def _init_bias(self, n: int) -> np.ndarray:
        return self.rng.normal(0.0, 0.05, size=(n,)).astype(np.float32)

    # ------------------------------------------------------------------ layers
    def conv(
        self,
        x: str,
        out_channels: int,
        kernel: int | Pair = 3,
        stride: int | Pair = 1,
        pads: Pads | None = None,
        dilation: int | Pair = 1,
        groups: int = 1,
        activation: Activation | None = RELU,
        bias: bool = True,
        name: str | None = None,
    ) -> str:
        k, s, d = _pair(kernel), _pair(stride), _pair(dilation)
        attrs = ConvAttrs(k, s, pads if pads is not None else same_pads(k, d), d, groups)
        in_shape = self.shape(x)
        wshape = weight_shape(OpKind.CONV, attrs, in_shape, out_channels)  # type: ignore[arg-type]
        assert wshape is not None
        w = self._init_weight(wshape, wshape[1] * k[0] * k[1])
        b = self._init_bias(out_channels) if bias else None
        return self.add_layer(OpKind.CONV, (x,), attrs, out_channels, w, b, activation, name)

    def depthwise(self, x: str, kernel: int = 3, stride: int = 1, activation: Activation | None = RELU, name: str | None = None) -> str:
        c = self.shape(x)[1]
        return self.conv(x, c, kernel, stride, groups=c, activation=activation, name=name)

    def conv_transpose(
        self, x: str, out_channels: int, kernel: int = 2, stride: int = 2, pads: Pads = (0, 0, 0, 0),
        activation: Activation | None = RELU, name: str | None = None,
    ) -> str:
        k, s = _pair(kernel), _pair(stride)
        attrs = ConvTransposeAttrs(k, s, pads)
        wshape = weight_shape(OpKind.CONV_TRANSPOSE, attrs, self.shape(x), out_channels)  # type: ignore[arg-type]
        assert wshape is not None
        w = self._init_weight(wshape, wshape[0] * k[0] * k[1] // (s[0] * s[1]))
        return self.add_layer(OpKind.CONV_TRANSPOSE, (x,), attrs, out_channels, w, self._init_bias(out_channels), activation, name)

    def max_pool(self, x: str, kernel: int = 2, stride: int | None = None, pads: Pads = (0, 0, 0, 0), name: str | None = None) -> str:
        k = _pair(kernel)
        return self.add_layer(OpKind.MAX_POOL, (x,), PoolAttrs(k, _pair(stride or kernel), pads), name=name)

    def avg_pool(self, x: str, kernel: int = 2, stride: int | None = None, pads: Pads = (0, 0, 0, 0),
                 count_include_pad: bool = False, name: str | None = None) -> str:
        k = _pair(kernel)
        attrs = PoolAttrs(k, _pair(stride or kernel), pads, count_include_pad)
        return self.add_layer(OpKind.AVG_POOL, (x,), attrs, name=name)

    def global_avg_pool(self, x: str, name: str | None = None) -> str:
        return self.add_layer(OpKind.GLOBAL_AVG_POOL, (x,), NoAttrs(), name=name)

    def fc(self, x: str, out_features: int, activation: Activation | None = None, name: str | None = None) -> str:
        n, c, h, w = self.shape(x)
        wt = self._init_weight((out_features, c * h * w), c * h * w)
        return self.add_layer(OpKind.FULLY_CONNECTED, (x,), FullyConnectedAttrs(out_features), out_features,
                              wt, self._init_bias(out_features), activation, name)

    def add(self, *xs: str, activation: Activation | None = None, name: str | None = None) -> str:
        return self.add_layer(OpKind.ADD, tuple(xs), NoAttrs(), activation=activation, name=name)

    def elementwise(self, op: OpKind, *xs: str, activation: Activation | None = None, name: str | None = None) -> str:
        """Add, sub, mul, max or min of feature maps (broadcasting size-1 C, H or W)."""
        return self.add_layer(op, tuple(xs), NoAttrs(), activation=activation, name=name)

    def sub(self, a: str, b: str, activation: Activation | None = None, name: str | None = None) -> str:
        return self.elementwise(OpKind.SUB, a, b, activation=activation, name=name)

    def mul(self, a: str, b: str, activation: Activation | None = None, name: str | None = None) -> str:
        return self.elementwise(OpKind.MUL, a, b, activation=activation, name=name)

    def maximum(self, *xs: str, activation: Activation | None = None, name: str | None = None) -> str:
        return self.elementwise(OpKind.MAX, *xs, activation=activation, name=name)

    def minimum(self, *xs: str, activation: Activation | None = None, name: str | None = None) -> str:
        return self.elementwise(OpKind.MIN, *xs, activation=activation, name=name)

    def pad(self, x: str, channels: Pair = (0, 0), pads: Pads = (0, 0, 0, 0), name: str | None = None) -> str:
        """Zero padding of channels (front, back) and rows / columns (top, left, bottom, right)."""
        return self.add_layer(OpKind.PAD, (x,), ZeroPadAttrs(channels, pads), name=name)

    def depth_to_space(self, x: str, block: int, mode: str = "DCR", name: str | None = None) -> str:
        return self.add_layer(OpKind.DEPTH_TO_SPACE, (x,), BlockAttrs(block, mode), name=name)

    def space_to_depth(self, x: str, block: int, name: str | None = None) -> str:
        return self.add_layer(OpKind.SPACE_TO_DEPTH, (x,), BlockAttrs(block), name=name)

    def slice(self, x: str, channels: Pair | None = None, rows: Pair | None = None, cols: Pair | None = None,
              name: str | None = None) -> str:
        """The box [start, end) of channels, rows and columns (None: the whole axis)."""
        _, c, h, w = self.shape(x)
        attrs = SliceAttrs(channels or (0, c), rows or (0, h), cols or (0, w))
        return self.add_layer(OpKind.SLICE, (x,), attrs, name=name)

    def concat(self, *xs: str, name: str | None = None) -> str:
        return self.add_layer(OpKind.CONCAT, tuple(xs), NoAttrs(), name=name)

    def resize(self, x: str, scale: int = 2, mode: str = "nearest", name: str | None = None) -> str:
        _, _, h, w = self.shape(x)
        coord = "asymmetric" if mode == "nearest" else "half_pixel"
        return self.add_layer(OpKind.RESIZE, (x,), ResizeAttrs((h * scale, w * scale), mode, coord), name=name)

    def lrn(self, x: str, size: int = 5, name: str | None = None) -> str:
        return self.add_layer(OpKind.LRN, (x,), LRNAttrs(size), name=name)

    def softmax(self, x: str, name: str | None = None) -> str:
        return self.add_layer(OpKind.SOFTMAX, (x,), NoAttrs(), name=name)

    def channel_shuffle(self, x: str, groups: int, name: str | None = None) -> str:
        c = self.shape(x)[1]
        per = c // groups
        perm = tuple((o % groups) * per + o // groups for o in range(c))
        return self.add_layer(OpKind.CHANNEL_SHUFFLE, (x,), ChannelShuffleAttrs(perm), name=name)

    # ------------------------------------------------------------------ finish
    def build(self, outputs: tuple[str, ...] | str) -> Graph:
        outs = (outputs,) if isinstance(outputs, str) else tuple(outputs)
        tensors = dict(self._tensors)
        for o in outs:
            t = tensors[o]
            tensors[o] = Tensor(t.name, t.shape, t.dtype, Role.MODEL_OUTPUT, t.quant)
        graph = Graph(
            name=self.name,
            layers=tuple(self._layers),
            tensors=MappingProxyType(tensors),
            inputs=tuple(self._inputs),
            outputs=outs,
            weights=MappingProxyType(dict(self._weights)),
        )
        check_graph(graph)
        return graph
