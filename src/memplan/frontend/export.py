"""Graph -> ONNX: write an IR graph as a standard ONNX model.

Every IR layer becomes the standard ONNX node(s) with the same semantics, so that onnxruntime
computes what the IR means and :func:`memplan.frontend.load_model` reads the file back to the
same IR:

* Conv / ConvTranspose with weight and bias initializers; a fused activation becomes its own
  node after the layer (ReLU6 as ``Clip(x, 0, 6)``, SiLU as ``Mul(x, Sigmoid(x))``).
* Pooling keeps the IR padding; the part of it that came from ceil mode (``ceil_pads``) is
  exported as ``ceil_mode=1`` instead, and the resulting output size is checked.
* A fully connected layer is ``Flatten(axis=1)`` + ``Gemm(transB=1)``. Its ONNX output is the
  natural 2-D ``(N, K)`` (the IR's ``(N, K, 1, 1)``); softmax, add and concat of such tensors
  stay 2-D, and a 4-D view (``Reshape``) is inserted only for a consumer that needs one.
* Add of two inputs is ``Add``, of more ``Sum``; sub, mul, max and min are ``Sub``, ``Mul``,
  ``Max``, ``Min`` (ONNX broadcasting is the IR's); concat is ``Concat(axis=1)``; resize is
  ``Resize`` with explicit output ``sizes``; softmax is ``Softmax(axis=1)``; a channel shuffle
  is ``Reshape-Transpose-Reshape`` when the permutation is a group shuffle, else ``Gather``;
  depth-to-space, space-to-depth and slice are ``DepthToSpace``, ``SpaceToDepth`` and ``Slice``
  (constant starts / ends on axes 1, 2, 3).
* A model input recorded as NHWC is exported NHWC followed by a ``Transpose`` to NCHW.

The same graph always serialises to the same bytes.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from memplan import __version__
from memplan.errors import ModelError, UsageError
from memplan.ir.graph import Graph, Layer
from memplan.ir.ops import (
    Activation,
    ActKind,
    BlockAttrs,
    ChannelShuffleAttrs,
    ConvAttrs,
    ConvTransposeAttrs,
    LRNAttrs,
    OpKind,
    PoolAttrs,
    ResizeAttrs,
    SliceAttrs,
    ZeroPadAttrs,
    ceil_div,
)

#: first opset with single-axis Softmax and the Resize signature used here
MIN_OPSET = 13

_ONNX_DTYPE: dict[str, int] = {
    "float32": TensorProto.FLOAT,
    "float16": TensorProto.FLOAT16,
    "float64": TensorProto.DOUBLE,
}

#: ops that read a tensor held as 2-D (N, K) as it is; every other op needs the 4-D view
_FLAT_OK = frozenset({OpKind.FULLY_CONNECTED, OpKind.SOFTMAX, OpKind.ADD, OpKind.CONCAT})

#: ONNX operator of each elementwise IR op besides add (all broadcast like the IR)
_ELEMENTWISE_ONNX = {OpKind.SUB: "Sub", OpKind.MUL: "Mul", OpKind.MAX: "Max", OpKind.MIN: "Min"}


def to_onnx(graph: Graph, opset: int = 17) -> onnx.ModelProto:
    """The ONNX model of ``graph`` (default opset 17; any opset from 13 to onnx's newest).

    Raises :class:`ModelError` for graphs ONNX cannot express exactly (quantised or integer
    tensors, a pooling ceil-mode padding ONNX's ceil mode does not reproduce)."""
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise UsageError(f"ONNX opset {opset} is not supported: choose one from {MIN_OPSET} to {newest}")
    onnx_graph = _Exporter(graph, opset).run()
    opsets = [helper.make_opsetid("", opset)]
    return helper.make_model(
        onnx_graph,
        opset_imports=opsets,
        ir_version=helper.find_min_ir_version_for(opsets),
        producer_name="memplan",
        producer_version=__version__,
    )


def save_onnx(graph: Graph, path: str | os.PathLike[str], opset: int = 17) -> None:
    """Write ``graph`` as an ONNX file (see :func:`to_onnx`)."""
    data = to_onnx(graph, opset).SerializeToString()
    target = os.fspath(path)
    tmp = None
    try:  # a temporary file beside the target, renamed: never a half-written model
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", dir=os.path.dirname(target) or ".")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except OSError as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise UsageError(f"cannot write {target!r}: {exc.strerror or exc}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pool_out_len(n: int, k: int, s: int, lo: int, hi: int, ceil_mode: bool) -> int:
    """ONNX (onnxruntime, PyTorch) pooling output length; in ceil mode a window that would start
    past the input and its leading padding is dropped."""
    span = n + lo + hi - k
    out = (ceil_div(span, s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + lo:
        out -= 1
    return out


def _shuffle_groups(perm: tuple[int, ...]) -> int | None:
    """The group count ``g`` for which ``perm`` is the ShuffleNet channel shuffle, if any."""
    c = len(perm)
    for g in range(2, c):
        if c % g == 0 and all(p == (o % g) * (c // g) + o // g for o, p in enumerate(perm)):
            return g
    return None


class _Exporter:
    """Accumulates ONNX nodes and initializers for one graph, in layer order."""

    def __init__(self, graph: Graph, opset: int) -> None:
        self.graph = graph
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        #: value names in use (the graph's tensors and every name made here)
        self._taken: set[str] = set(graph.tensors)
        self._node_names: set[str] = set()
        #: IR feature map -> the ONNX value holding it (differs only for NHWC inputs)
        self._value: dict[str, str] = {}
        #: IR feature maps that ONNX holds as 2-D (N, K)
        self._flat: set[str] = set()
        #: IR feature map held 2-D -> its 4-D view
        self._view4d: dict[str, str] = {}
        #: (dtype, value) -> name of a scalar constant
        self._scalars: dict[tuple[str, float], str] = {}
        #: weight and bias initializers already written
        self._written: set[str] = set()

    # ------------------------------------------------------------------ names and constants
    def _fresh(self, base: str) -> str:
        name, i = base, 0
        while name in self._taken:
            i += 1
            name = f"{base}_{i}"
        self._taken.add(name)
        return name

    def _node(self, op_type: str, inputs: list[str], outputs: list[str], name: str, **attrs: object) -> None:
        node_name, i = name, 0
        while node_name in self._node_names:
            i += 1
            node_name = f"{name}_{i}"
        self._node_names.add(node_name)
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=node_name, **attrs))

    def _initializer(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def _int64s(self, base: str, values: list[int]) -> str:
        return self._initializer(self._fresh(base), np.asarray(values, dtype=np.int64))

    def _scalar(self, dtype: str, value: float) -> str:
        key = (dtype, float(value))
        if key not in self._scalars:
            name = self._fresh(f"const.{dtype}.{float(value)!r}")
            self._scalars[key] = self._initializer(name, np.asarray(value, dtype=dtype))
        return self._scalars[key]

    def _dtype(self, tensor: str) -> str:
        t = self.graph.tensors[tensor]
        if t.quant is not None or t.dtype not in _ONNX_DTYPE:
            what = "quantised" if t.quant is not None else t.dtype
            raise ModelError(f"tensor {tensor!r} is {what}: ONNX export supports float tensors only")
        return t.dtype

    def _value_info(self, name: str, tensor: str, shape: tuple[int, ...]) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, _ONNX_DTYPE[self._dtype(tensor)], list(shape))

    def _onnx_shape(self, tensor: str) -> tuple[int, ...]:
        shape = self.graph.tensors[tensor].shape
        return shape[:2] if tensor in self._flat else shape

    # ------------------------------------------------------------------ feature-map views
    def _read(self, tensor: str, consumer: OpKind, siblings: tuple[str, ...] = ()) -> str:
        """The ONNX value a layer of kind ``consumer`` reads for IR tensor ``tensor``.

        2-D tensors are read as they are by ops in ``_FLAT_OK``, except add and concat with a
        4-D sibling input: those get the 4-D view, made once per tensor."""
        value = self._value[tensor]
        if tensor not in self._flat:
            return value
        if consumer in _FLAT_OK and all(s in self._flat for s in siblings):
            return value
        if tensor not in self._view4d:
            view = self._fresh(f"{tensor}.4d")
            shape = self._int64s(f"{tensor}.4d_shape", list(self.graph.tensors[tensor].shape))
            self._node("Reshape", [value, shape], [view], f"{tensor}.4d")
            self._view4d[tensor] = view
        return self._view4d[tensor]

    # ------------------------------------------------------------------ driver
    def run(self) -> onnx.GraphProto:
        g = self.graph
        inputs = [self._model_input(name) for name in g.inputs]
        for layer in g.layers:
            self._layer(layer)
        outputs = [self._value_info(self._value[o], o, self._onnx_shape(o)) for o in g.outputs]
        inner = [
            self._value_info(layer.output, layer.output, self._onnx_shape(layer.output))
            for layer in g.layers
            if layer.output not in g.outputs
        ]
        return helper.make_graph(
            self.nodes, g.name, inputs, outputs, initializer=self.initializers, value_info=inner
        )

    def _model_input(self, name: str) -> onnx.ValueInfoProto:
        n, c, h, w = self.graph.shape(name)
        layout = self.graph.input_layouts.get(name, "NCHW")
        if layout == "NCHW":
            self._value[name] = name
            return self._value_info(name, name, (n, c, h, w))
        if layout == "NHWC":
            nchw = self._fresh(f"{name}.nchw")
            self._node("Transpose", [name], [nchw], f"{name}.to_nchw", perm=[0, 3, 1, 2])
            self._value[name] = nchw
            return self._value_info(name, name, (n, h, w, c))
        raise ModelError(f"model input {name!r} has layout {layout!r}: ONNX export supports NCHW and NHWC")

    # ------------------------------------------------------------------ layers
    def _layer(self, layer: Layer) -> None:
        op = layer.op
        if op is OpKind.FULLY_CONNECTED or (
            op in (OpKind.SOFTMAX, OpKind.ADD, OpKind.CONCAT) and all(t in self._flat for t in layer.inputs)
        ):
            self._flat.add(layer.output)
        self._value[layer.output] = layer.output
        ins = [self._read(t, op, layer.inputs) for t in layer.inputs]
        out = layer.output
        if layer.activation is not None:
            out = self._fresh(f"{layer.output}.pre_act")
        emit = {
            OpKind.CONV: self._conv,
            OpKind.CONV_TRANSPOSE: self._conv_transpose,
            OpKind.MAX_POOL: self._pool,
            OpKind.AVG_POOL: self._pool,
            OpKind.GLOBAL_AVG_POOL: self._global_pool,
            OpKind.GLOBAL_MAX_POOL: self._global_pool,
            OpKind.FULLY_CONNECTED: self._fully_connected,
            OpKind.ADD: self._add,
            OpKind.SUB: self._elementwise,
            OpKind.MUL: self._elementwise,
            OpKind.MAX: self._elementwise,
            OpKind.MIN: self._elementwise,
            OpKind.PAD: self._pad,
            OpKind.SLICE: self._slice,
            OpKind.DEPTH_TO_SPACE: self._block_move,
            OpKind.SPACE_TO_DEPTH: self._block_move,
            OpKind.CONCAT: self._concat,
            OpKind.RESIZE: self._resize,
            OpKind.LRN: self._lrn,
            OpKind.SOFTMAX: self._softmax,
            OpKind.CHANNEL_SHUFFLE: self._channel_shuffle,
        }[op]
        emit(layer, ins, out)
        if layer.activation is not None:
            self._activation(layer, layer.activation, out, layer.output)

    def _weights(self, layer: Layer) -> list[str]:
        """Initializer names of the layer's weight and bias (each written once, even if shared)."""
        names = [name for name in (layer.weight, layer.bias) if name is not None]
        for name in names:
            if name not in self._written:
                self._written.add(name)
                self._initializer(name, np.asarray(self.graph.weights[name], dtype=self._dtype(name)))
        return names

    def _conv(self, layer: Layer, ins: list[str], out: str) -> None:
        a = layer.attrs
        assert isinstance(a, ConvAttrs)
        self._node("Conv", ins + self._weights(layer), [out], layer.id, kernel_shape=list(a.kernel),
                   strides=list(a.stride), pads=list(a.pads), dilations=list(a.dilation), group=a.groups)

    def _conv_transpose(self, layer: Layer, ins: list[str], out: str) -> None:
        a = layer.attrs
        assert isinstance(a, ConvTransposeAttrs)
        self._node("ConvTranspose", ins + self._weights(layer), [out], layer.id, kernel_shape=list(a.kernel),
                   strides=list(a.stride), pads=list(a.pads), dilations=list(a.dilation), group=a.groups,
                   output_padding=list(a.output_padding))

    def _pool(self, layer: Layer, ins: list[str], out: str) -> None:
        a = layer.attrs
        assert isinstance(a, PoolAttrs)
        top, left, bottom, right = a.pads
        ceil_bottom, ceil_right = a.ceil_pads
        pads = [top, left, bottom - ceil_bottom, right - ceil_right]
        ceil_mode = ceil_bottom > 0 or ceil_right > 0
        _, _, h, w = self.graph.shape(layer.inputs[0])
        got = (
            _pool_out_len(h, a.kernel[0], a.stride[0], pads[0], pads[2], ceil_mode),
            _pool_out_len(w, a.kernel[1], a.stride[1], pads[1], pads[3], ceil_mode),
        )
        want = self.graph.shape(layer.output)[2:]
        if got != want:
            raise ModelError(
                f"layer {layer.id!r}: pooling with pads {a.pads} and ceil pads {a.ceil_pads} gives "
                f"{want[0]}x{want[1]} but ONNX ceil_mode={int(ceil_mode)} gives {got[0]}x{got[1]}"
            )
        attrs: dict[str, object] = {
            "kernel_shape": list(a.kernel), "strides": list(a.stride), "pads": pads, "ceil_mode": int(ceil_mode),
        }
        if layer.op is OpKind.AVG_POOL:
            self._node("AveragePool", ins, [out], layer.id, count_include_pad=int(a.count_include_pad), **attrs)
        else:
            self._node("MaxPool", ins, [out], layer.id, **attrs)

    def _global_pool(self, layer: Layer, ins: list[str], out: str) -> None:
        op_type = "GlobalAveragePool" if layer.op is OpKind.GLOBAL_AVG_POOL else "GlobalMaxPool"
        self._node(op_type, ins, [out], layer.id)

    def _fully_connected(self, layer: Layer, ins: list[str], out: str) -> None:
        flat = self._fresh(f"{layer.id}.flat")
        self._node("Flatten", ins, [flat], f"{layer.id}.flatten", axis=1)
        self._node("Gemm", [flat, *self._weights(layer)], [out], layer.id, transB=1)

    def _add(self, layer: Layer, ins: list[str], out: str) -> None:
        self._node("Add" if len(ins) == 2 else "Sum", ins, [out], layer.id)

    def _elementwise(self, layer: Layer, ins: list[str], out: str) -> None:
        self._node(_ELEMENTWISE_ONNX[layer.op], ins, [out], layer.id)

    def _pad(self, layer: Layer, ins: list[str], out: str) -> None:
        a = layer.attrs
        assert isinstance(a, ZeroPadAttrs)
        t, l, b, r = a.pads
        pads = self._int64s(f"{layer.id}.pads", [0, a.channels[0], t, l, 0, a.channels[1], b, r])
        self._node("Pad", [ins[0], pads], [out], layer.id, mode="constant")

    def _slice(self, layer: Layer, ins: list[str], out: str) -> None:
        a = layer.attrs
        assert isinstance(a, SliceAttrs)
        spans = (a.channels, a.rows, a.cols)
        starts = self._int64s(f"{layer.id}.starts", [lo for lo, _ in spans])
        ends = self._int64s(f"{layer.id}.ends", [hi for _, hi in spans])
        axes = self._int64s(f"{layer.id}.axes", [1, 2, 3])
        self._node("Slice", [ins[0], starts, ends, axes], [out], layer.id)

    def _block_move(self, layer: Layer, ins: list[str], out: str) -> None:
        a = layer.attrs
        assert isinstance(a, BlockAttrs)
        if layer.op is OpKind.SPACE_TO_DEPTH:
            self._node("SpaceToDepth", ins, [out], layer.id, blocksize=a.block)
        else:
            self._node("DepthToSpace", ins, [out], layer.id, blocksize=a.block, mode=a.mode)

    def _concat(self, layer: Layer, ins: list[str], out: str) -> None:
        self._node("Concat", ins, [out], layer.id, axis=1)

    def _resize(self, layer: Layer, ins: list[str], out: str) -> None:
        a = layer.attrs
        assert isinstance(a, ResizeAttrs)
        if a.coord == "tf_crop_and_resize":
            raise ModelError(f"layer {layer.id!r}: resize mode tf_crop_and_resize needs a crop box the IR does not keep")
        n, c, _, _ = self.graph.shape(layer.inputs[0])
        sizes = self._int64s(f"{layer.id}.sizes", [n, c, *a.out_hw])
        # nearest_mode only matters for nearest, but is always written so the IR round-trips
        self._node("Resize", [ins[0], "", "", sizes], [out], layer.id, mode=a.mode,
                   coordinate_transformation_mode=a.coord, nearest_mode=a.nearest_mode)

    def _lrn(self, layer: Layer, ins: list[str], out: str) -> None:
        a = layer.attrs
        assert isinstance(a, LRNAttrs)
        self._node("LRN", ins, [out], layer.id, size=a.size, alpha=a.alpha, beta=a.beta, bias=a.bias)

    def _softmax(self, layer: Layer, ins: list[str], out: str) -> None:
        self._node("Softmax", ins, [out], layer.id, axis=1)

    def _channel_shuffle(self, layer: Layer, ins: list[str], out: str) -> None:
        a = layer.attrs
        assert isinstance(a, ChannelShuffleAttrs)
        n, c, h, w = self.graph.shape(layer.inputs[0])
        groups = _shuffle_groups(a.perm)
        if groups is None:
            perm = self._int64s(f"{layer.id}.perm", list(a.perm))
            self._node("Gather", [ins[0], perm], [out], layer.id, axis=1)
            return
        split = self._fresh(f"{layer.id}.split")
        swapped = self._fresh(f"{layer.id}.swapped")
        shape5 = self._int64s(f"{layer.id}.shape5", [n, groups, c // groups, h, w])
        shape4 = self._int64s(f"{layer.id}.shape4", [n, c, h, w])
        self._node("Reshape", [ins[0], shape5], [split], f"{layer.id}.split")
        self._node("Transpose", [split], [swapped], f"{layer.id}.transpose", perm=[0, 2, 1, 3, 4])
        self._node("Reshape", [swapped, shape4], [out], layer.id)

    # ------------------------------------------------------------------ activations
    def _activation(self, layer: Layer, act: Activation, x: str, y: str) -> None:
        name = f"{layer.id}.{act.kind.value}"
        p = act.params
        kind = act.kind
        if kind is ActKind.RELU:
            self._node("Relu", [x], [y], name)
        elif kind is ActKind.CLIP:
            if len(p) != 2:
                raise ModelError(f"layer {layer.id!r}: clip activation needs (min, max), got {p}")
            dtype = self._dtype(layer.output)
            self._node("Clip", [x, self._scalar(dtype, p[0]), self._scalar(dtype, p[1])], [y], name)
        elif kind is ActKind.LEAKY_RELU:
            self._node("LeakyRelu", [x], [y], name, alpha=p[0] if p else 0.01)
        elif kind is ActKind.PRELU:
            slope = self._fresh(f"{name}.slope")
            self._initializer(slope, np.asarray(p, dtype=self._dtype(layer.output)).reshape(-1, 1, 1))
            self._node("PRelu", [x, slope], [y], name)
        elif kind is ActKind.SIGMOID:
            self._node("Sigmoid", [x], [y], name)
        elif kind is ActKind.TANH:
            self._node("Tanh", [x], [y], name)
        elif kind is ActKind.HARD_SIGMOID:
            alpha, beta = p if len(p) == 2 else (0.2, 0.5)
            self._node("HardSigmoid", [x], [y], name, alpha=alpha, beta=beta)
        elif kind is ActKind.HARD_SWISH and self.opset >= 14:
            self._node("HardSwish", [x], [y], name)
        elif kind in (ActKind.HARD_SWISH, ActKind.SILU):
            gate = self._fresh(f"{layer.output}.gate")
            if kind is ActKind.SILU:
                self._node("Sigmoid", [x], [gate], f"{name}.sigmoid")
            else:  # HardSwish before opset 14: x * HardSigmoid(x, 1/6, 1/2)
                self._node("HardSigmoid", [x], [gate], f"{name}.hard_sigmoid", alpha=1.0 / 6.0, beta=0.5)
            self._node("Mul", [x, gate], [y], name)
        else:  # pragma: no cover - ActKind is closed
            raise ModelError(f"layer {layer.id!r}: activation {kind.value} has no ONNX export")
