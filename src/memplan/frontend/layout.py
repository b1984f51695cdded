"""Views: ONNX values that are rearrangements of a feature map.

Layout ops (Reshape, Flatten, Squeeze, Unsqueeze, Transpose) create no layer. Their output is
a :class:`Ref`: a view of a draft feature map (the *base*, 4-D NCHW) with its own ONNX shape
and, when the element order changed, an index array giving for every element of the view its
flat position in the base. When the view is consumed, the consumer asks what it is:

* the base itself (a reshape that changed nothing, or a flatten in C, H, W order that a fully
  connected layer performs anyway);
* a channel permutation of the base (ShuffleNet's Reshape-Transpose-Reshape);
* a flatten in another order before a fully connected layer (tflite2onnx's NHWC flatten):
  the FC weight columns are permuted instead;
* anything else cannot be expressed in the IR and is an error.

Index arrays are only built for views that reorder elements, and they are at most as large
as the feature map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from memplan.frontend.common import NodeError, replace_graph_nodes
from memplan.ir.ops import Shape


@dataclass(frozen=True, eq=False)
class Ref:
    """An ONNX value that holds the elements of feature map ``base``.

    ``index`` is None when the value keeps the base's element order (it is the base, or a
    reshape of it); otherwise ``index[i]`` is the flat base position of the value's element i."""

    base: str
    shape: tuple[int, ...]
    index: np.ndarray | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def positions(ref: Ref) -> np.ndarray:
    """Flat base position of every element of the view, shaped like the view."""
    if ref.index is not None:
        return ref.index
    return np.arange(ref.numel, dtype=np.int64).reshape(ref.shape)


def _simplified(index: np.ndarray) -> np.ndarray | None:
    flat = index.reshape(-1)
    if np.array_equal(flat, np.arange(flat.size)):
        return None
    return index


def reshaped(ref: Ref, shape: tuple[int, ...]) -> Ref:
    index = None if ref.index is None else ref.index.reshape(shape)
    return Ref(ref.base, shape, index)


def transposed(ref: Ref, perm: Sequence[int]) -> Ref:
    if sorted(perm) != list(range(len(ref.shape))):
        raise NodeError(f"Transpose perm {tuple(perm)} does not fit rank {len(ref.shape)}")
    index = positions(ref).transpose(perm)
    return Ref(ref.base, tuple(index.shape), _simplified(np.ascontiguousarray(index)))


def same_view(a: Ref, b: Ref) -> bool:
    """Whether two views (of possibly different bases) pick elements the same way."""
    if a.shape != b.shape:
        return False
    if a.index is None or b.index is None:
        return a.index is None and b.index is None
    return bool(np.array_equal(a.index, b.index))


def nhwc_positions(shape: Shape) -> np.ndarray:
    """For an NCHW shape, the flat position of each element in NHWC memory order."""
    n, c, h, w = shape
    return np.arange(n * h * w * c, dtype=np.int64).reshape(n, h, w, c).transpose(0, 3, 1, 2)


def describe(ref: Ref, base_shape: tuple[int, ...]) -> str:
    kind = "reshape" if ref.index is None else "rearrangement"
    return f"a {kind} {ref.shape} of feature map {ref.base!r} {base_shape}"


def channel_permutation(ref: Ref, base_shape: Shape) -> tuple[int, ...] | None:
    """How a 4-D view relates to its base: None if it is the base, else the channel permutation
    ``perm`` with view channel ``c`` = base channel ``perm[c]``. Raises :class:`NodeError` when
    the view is neither."""
    if ref.shape != base_shape:
        raise NodeError(
            f"input is {describe(ref, base_shape)}, not an NCHW feature map; memplan supports layout ops only "
            "as a flatten before Gemm/MatMul, a channel shuffle, or an NHWC transpose at the model input"
        )
    if ref.index is None:
        return None
    n, c, h, w = base_shape
    perm = ref.index[0, :, 0, 0] // (h * w) % c
    expected = (
        np.arange(n)[:, None, None, None] * (c * h * w)
        + perm[None, :, None, None] * (h * w)
        + np.arange(h)[None, None, :, None] * w
        + np.arange(w)[None, None, None, :]
    )
    if not np.array_equal(ref.index, expected):
        raise NodeError(
            f"input is a Transpose/Reshape of feature map {ref.base!r} that moves elements across H or W; "
            "memplan expresses only channel permutations (channel shuffle)"
        )
    return tuple(int(p) for p in perm)


def fc_columns(ref: Ref, base_shape: Shape) -> np.ndarray | None:
    """For a 2-D view (N, F) read by a fully connected layer: None when it flattens the base in
    C, H, W order (what the IR's FC does), else ``cols`` with view column ``p`` = CHW element
    ``cols[p]`` of the base."""
    n, c, h, w = base_shape
    features = c * h * w
    if len(ref.shape) != 2 or ref.shape[0] != n or ref.shape[1] != features:
        raise NodeError(
            f"a fully connected layer needs a 2-D (N, features) input; it reads {describe(ref, base_shape)}"
        )
    if ref.index is None:
        return None
    cols = ref.index - (np.arange(n) * features)[:, None]
    if not (np.all(cols == cols[:1]) and np.array_equal(np.sort(cols[0]), np.arange(features))):
        raise NodeError(f"the flatten before a fully connected layer mixes batch samples: {describe(ref, base_shape)}")
    first: np.ndarray = cols[0]
    return first


def per_channel(ref: Ref, base_shape: Shape, const: np.ndarray) -> np.ndarray | None:
    """The per-channel vector (C,) that ``const`` is when broadcast against the view, or None
    when it varies along N, H or W (or would broadcast the view to a larger shape)."""
    try:
        full_shape = np.broadcast_shapes(const.shape, ref.shape)
    except ValueError:
        return None
    if full_shape != ref.shape:
        return None
    c = base_shape[1]
    if ref.index is None and ref.shape == base_shape:
        k = const.reshape((1,) * (4 - const.ndim) + const.shape)
        if k.shape[0] == 1 and k.shape[2] == 1 and k.shape[3] == 1:
            return np.broadcast_to(k.reshape(-1), (c,)).astype(np.float64)
    full = np.broadcast_to(const, ref.shape).astype(np.float64)
    in_base = np.empty(math.prod(base_shape), dtype=np.float64)
    in_base[positions(ref).reshape(-1)] = full.reshape(-1)
    in_base = in_base.reshape(base_shape)
    vector = in_base[0, :, 0, 0]
    if np.array_equal(in_base, np.broadcast_to(vector[None, :, None, None], base_shape)):
        return vector.copy()
    return None


def reduces_channels(ref: Ref, base_shape: Shape, axes: Sequence[int]) -> bool:
    """Whether reducing the view over ``axes`` reduces exactly over the base's channels
    (for every N, H, W position one group holding all C channels)."""
    n, c, h, w = base_shape
    rest = [a for a in range(len(ref.shape)) if a not in axes]
    index = positions(ref).transpose(rest + list(axes))
    group = math.prod(ref.shape[a] for a in axes)
    if group != c:
        return False
    rows = np.sort(index.reshape(-1, group), axis=1)
    return bool(np.all(rows - rows[:, :1] == np.arange(c) * (h * w)) and np.all(rows[:, 0] // (h * w) % c == 0))


# ---------------------------------------------------------------------------- model-level rewrite
#: elementwise ops that treat every element alike (their other inputs, if any, are constants)
_ELEMENTWISE_UNARY = ("Relu", "Clip", "Identity", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Tanh")
_ELEMENTWISE_BINARY = ("Mul", "Add", "Sub", "Div")
_PER_TENSOR_QUANT = ("QuantizeLinear", "DequantizeLinear")


def hoist_input_transposes(model: onnx.ModelProto) -> list[str]:
    """Move an NHWC->NCHW Transpose up to the model input it comes from, across the ops between
    them that act on every element alike: per-tensor QuantizeLinear/DequantizeLinear, Mul, Add,
    Sub, Div by a one-element constant, and unary activations (a Keras ``Rescaling`` layer before
    tf2onnx's transpose). Those ops commute with a transpose, so the converter can absorb it
    into the model input as usual. Every value in between must be read by the next node only and
    be no model output. Returns the inputs whose transpose moved."""
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    constant_size = {name: int(np.prod(t.dims)) for name, t in initializers.items()}
    for node in graph.node:
        if node.op_type == "Constant" and len(node.output) == 1:
            value = next((a for a in node.attribute if a.name == "value" and a.HasField("t")), None)
            constant_size[node.output[0]] = int(np.prod(value.t.dims)) if value is not None else 1
        elif node.op_type in (*_PER_TENSOR_QUANT, "Cast", "Identity") and node.input and all(
                i in constant_size for i in node.input if i):  # a dequantised constant keeps its size
            constant_size[node.output[0]] = constant_size[node.input[0]]
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}

    def single(name: str) -> onnx.NodeProto | None:
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in outputs else None

    def passes(node: onnx.NodeProto, value: str) -> bool:
        others = [i for i in node.input if i and i != value]
        if list(node.input).count(value) != 1 or len(node.output) != 1:
            return False
        if node.op_type in _ELEMENTWISE_UNARY:
            return node.input[0] == value and all(i in constant_size for i in others)
        if node.op_type in _ELEMENTWISE_BINARY:
            return len(others) == 1 and constant_size.get(others[0]) == 1
        if node.op_type in _PER_TENSOR_QUANT:
            return node.input[0] == value and all(constant_size.get(i) == 1 for i in others)
        if node.op_type == "Pad":  # constant padding given as an initializer: its pads are permuted
            mode = next((a.s for a in node.attribute if a.name == "mode"), b"constant")
            fill = node.input[2] if len(node.input) > 2 and node.input[2] else None
            return (node.input[0] == value and mode == b"constant" and len(node.input) >= 2 and node.input[1] in
                    initializers and (fill is None or constant_size.get(fill) == 1)
                    and not (len(node.input) > 3 and node.input[3]))
        return False

    moved: list[str] = []
    rewired: list[tuple[list[onnx.NodeProto], onnx.NodeProto, str]] = []
    for inp in (i.name for i in graph.input if i.name not in initializers):
        chain: list[onnx.NodeProto] = []
        value, node = inp, single(inp)
        while node is not None and node.op_type != "Transpose" and passes(node, value) and len(chain) < 16:
            chain.append(node)
            value = node.output[0]
            node = single(value)
        if not chain or node is None or node.op_type != "Transpose" or node.input[0] != value:
            continue
        rewired.append((chain, node, inp))
        moved.append(inp)
    if not rewired:
        return moved
    nodes = list(graph.node)
    gone: set[str] = set()
    for chain, transpose, inp in rewired:
        transposed = f"{inp}.memplan_transposed"
        out = transpose.output[0]
        gone.update(n.output[0] for n in chain)
        first, last = chain[0], chain[-1]
        for k, name in enumerate(first.input):
            if name == inp:
                first.input[k] = transposed
        last.output[0] = out
        perm = next((list(a.ints) for a in transpose.attribute if a.name == "perm"), None)
        for pad in (n for n in chain if n.op_type == "Pad"):
            pads = numpy_helper.to_array(initializers[pad.input[1]]).reshape(2, -1)
            order = perm if perm is not None else list(reversed(range(pads.shape[1])))
            name = f"{pad.input[1]}.memplan_{'_'.join(map(str, order))}"
            if name not in initializers:
                initializers[name] = numpy_helper.from_array(np.ascontiguousarray(pads[:, order].reshape(-1)), name)
                graph.initializer.append(initializers[name])
            pad.input[1] = name
        transpose.input[0], transpose.output[0] = inp, transposed
        nodes = [n for n in nodes if n is not transpose]
        nodes.insert(next(i for i, n in enumerate(nodes) if n is first), transpose)
    replace_graph_nodes(graph, nodes, gone)
    return moved
