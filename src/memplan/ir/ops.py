"""Operator kinds, their typed attributes, and the per-op facts every stage shares.

This module is the single place that knows, for each op kind, how the output shape follows
from the input shapes and attributes, and how many multiply-accumulates it costs. Geometry,
cost, the executor and ``memplan inspect`` all ask here.

Conventions
-----------
* Feature maps are 4-D NCHW. A fully connected layer's output is ``(N, K, 1, 1)``; its input
  may be any ``(N, C, H, W)`` and is flattened in C, H, W order.
* Padding is ``(top, left, bottom, right)``.
* A host layer (:data:`OpKind.HOST`) is an operator memplan does not tile: it runs untiled on
  the host CPU, reading and writing DRAM only; its tensors may have any rank (see
  :mod:`memplan.host`). It counts zero MACs.
* Elementwise ops of feature maps (add, sub, mul, max, min: :data:`ELEMENTWISE`) broadcast
  like numpy over axes of size 1: a squeeze-excite scale ``(N, C, 1, 1)`` or a spatial gate
  ``(N, 1, H, W)`` against ``(N, C, H, W)``. The batch is never broadcast.
* MACs count multiply-accumulates of Conv, ConvTranspose and fully connected layers (a folded
  per-channel scale is a depthwise 1x1 Conv and counts one MAC per element). Pooling, add,
  concat, resize, LRN, softmax and activations count zero MACs: this is the convention behind
  the published figures (ResNet-50 ~4.1 GMACs).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

Shape = tuple[int, int, int, int]
Pair = tuple[int, int]
Pads = tuple[int, int, int, int]


class OpKind(str, enum.Enum):
    CONV = "conv"
    CONV_TRANSPOSE = "conv_transpose"
    MAX_POOL = "max_pool"
    AVG_POOL = "avg_pool"
    GLOBAL_AVG_POOL = "global_avg_pool"
    GLOBAL_MAX_POOL = "global_max_pool"
    FULLY_CONNECTED = "fully_connected"
    ADD = "add"
    CONCAT = "concat"
    RESIZE = "resize"
    LRN = "lrn"
    SOFTMAX = "softmax"
    CHANNEL_SHUFFLE = "channel_shuffle"
    SUB = "sub"
    MUL = "mul"
    MAX = "max"
    MIN = "min"
    PAD = "pad"
    HOST = "host"  # an operator memplan does not tile: it runs untiled on the host CPU (memplan.host)
    DEPTH_TO_SPACE = "depth_to_space"
    SPACE_TO_DEPTH = "space_to_depth"
    SLICE = "slice"


class ActKind(str, enum.Enum):
    RELU = "relu"
    CLIP = "clip"  # params (min, max); ReLU6 is CLIP(0, 6)
    LEAKY_RELU = "leaky_relu"  # params (alpha,)
    SIGMOID = "sigmoid"
    HARD_SIGMOID = "hard_sigmoid"  # params (alpha, beta)
    HARD_SWISH = "hard_swish"
    TANH = "tanh"
    SILU = "silu"  # x * sigmoid(x)
    PRELU = "prelu"  # params: one slope per output channel (ONNX PRelu with per-channel slopes)


@dataclass(frozen=True)
class Activation:
    """An elementwise activation fused into the producing layer's epilogue."""

    kind: ActKind
    params: tuple[float, ...] = ()


@dataclass(frozen=True)
class ConvAttrs:
    kernel: Pair
    stride: Pair = (1, 1)
    pads: Pads = (0, 0, 0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1


@dataclass(frozen=True)
class ConvTransposeAttrs:
    kernel: Pair
    stride: Pair = (1, 1)
    pads: Pads = (0, 0, 0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1
    output_padding: Pair = (0, 0)


@dataclass(frozen=True)
class PoolAttrs:
    """Max or average pooling. ``ceil_mode`` is folded into extra bottom/right padding by the
    frontend; ``count_include_pad`` says whether padded cells count in an average, and
    ``ceil_pads`` (bottom, right) is the part of the bottom/right padding that came from ceil
    mode: those cells never count in an average, whatever ``count_include_pad`` says."""

    kernel: Pair
    stride: Pair = (1, 1)
    pads: Pads = (0, 0, 0, 0)
    count_include_pad: bool = False
    ceil_pads: Pair = (0, 0)


@dataclass(frozen=True)
class FullyConnectedAttrs:
    out_features: int


@dataclass(frozen=True)
class ResizeAttrs:
    """Spatial resize by integer or fractional scale.

    ``mode`` is ``nearest`` or ``linear``; ``coord`` is the ONNX
    coordinate_transformation_mode; ``nearest_mode`` the ONNX rounding for nearest."""

    out_hw: Pair
    mode: str = "nearest"
    coord: str = "asymmetric"
    nearest_mode: str = "floor"


@dataclass(frozen=True)
class LRNAttrs:
    size: int
    alpha: float = 1e-4
    beta: float = 0.75
    bias: float = 1.0


@dataclass(frozen=True)
class ChannelShuffleAttrs:
    """Output channel ``c`` takes input channel ``perm[c]``."""

    perm: tuple[int, ...]


@dataclass(frozen=True)
class ZeroPadAttrs:
    """Zero padding of a feature map: ``channels`` (front, back) and spatial ``pads`` (top,
    left, bottom, right), all >= 0 (a pad folded into a following conv never becomes a layer)."""

    channels: Pair = (0, 0)
    pads: Pads = (0, 0, 0, 0)

    def __post_init__(self) -> None:
        if min(*self.channels, *self.pads) < 0:
            raise ValueError(f"negative padding {self.channels} {self.pads}")


@dataclass(frozen=True)
class BlockAttrs:
    """DepthToSpace / SpaceToDepth with block size ``block`` (b). ``mode`` orders the channels
    of the deep side, C being the channels of the shallow side: ``DCR`` (TensorFlow's, and
    SpaceToDepth's only order) puts shallow channel c of block cell (dy, dx) at deep channel
    ``(dy * b + dx) * C + c``, ``CRD`` at ``c * b * b + dy * b + dx`` (see :func:`deep_channel`)."""

    block: int
    mode: str = "DCR"

    def __post_init__(self) -> None:
        if self.block < 1 or self.mode not in ("DCR", "CRD"):
            raise ValueError(f"block size {self.block} / mode {self.mode!r} (block >= 1, DCR or CRD)")


def deep_channel(attrs: BlockAttrs, shallow: int, c: int, dy: int, dx: int) -> int:
    """The deep-side channel holding shallow channel ``c`` of block cell (``dy``, ``dx``)
    (works elementwise on integer arrays too)."""
    b = attrs.block
    return (dy * b + dx) * shallow + c if attrs.mode == "DCR" else (c * b + dy) * b + dx


@dataclass(frozen=True)
class SliceAttrs:
    """The box of the input that a slice copies: channels, rows and columns, each [start, end)."""

    channels: Pair
    rows: Pair
    cols: Pair


@dataclass(frozen=True)
class HostAttrs:
    """A host layer: ``model`` is a serialised ONNX model that computes the layer's output from
    its inputs in float (inputs ``x0``, ``x1``... with the IR tensors' shapes, output ``y``;
    see :mod:`memplan.host`). ``op_type`` is the ONNX operator, ``reason`` why memplan does not
    tile it, ``out_dtype`` the DRAM dtype of the output: ``int8`` (quantised) or ``int32``
    (integer values, e.g. ArgMax indices, stored exactly)."""

    op_type: str
    reason: str
    model: bytes = field(repr=False)
    out_dtype: str = "int8"


@dataclass(frozen=True)
class NoAttrs:
    """Ops without attributes (add, concat on channels, softmax over channels, global pools)."""


Attrs = (
    ConvAttrs
    | ConvTransposeAttrs
    | PoolAttrs
    | FullyConnectedAttrs
    | ResizeAttrs
    | LRNAttrs
    | ChannelShuffleAttrs
    | ZeroPadAttrs
    | BlockAttrs
    | SliceAttrs
    | HostAttrs
    | NoAttrs
)

ATTRS_OF: dict[OpKind, type] = {
    OpKind.CONV: ConvAttrs,
    OpKind.CONV_TRANSPOSE: ConvTransposeAttrs,
    OpKind.MAX_POOL: PoolAttrs,
    OpKind.AVG_POOL: PoolAttrs,
    OpKind.GLOBAL_AVG_POOL: NoAttrs,
    OpKind.GLOBAL_MAX_POOL: NoAttrs,
    OpKind.FULLY_CONNECTED: FullyConnectedAttrs,
    OpKind.ADD: NoAttrs,
    OpKind.CONCAT: NoAttrs,
    OpKind.RESIZE: ResizeAttrs,
    OpKind.LRN: LRNAttrs,
    OpKind.SOFTMAX: NoAttrs,
    OpKind.CHANNEL_SHUFFLE: ChannelShuffleAttrs,
    OpKind.SUB: NoAttrs,
    OpKind.MUL: NoAttrs,
    OpKind.MAX: NoAttrs,
    OpKind.MIN: NoAttrs,
    OpKind.PAD: ZeroPadAttrs,
    OpKind.DEPTH_TO_SPACE: BlockAttrs,
    OpKind.SPACE_TO_DEPTH: BlockAttrs,
    OpKind.SLICE: SliceAttrs,
    OpKind.HOST: HostAttrs,
}

#: ops whose output at a pixel depends on the whole input plane: they cannot be row/col tiled
SPATIALLY_GLOBAL = frozenset(
    {OpKind.GLOBAL_AVG_POOL, OpKind.GLOBAL_MAX_POOL, OpKind.FULLY_CONNECTED}
)
#: elementwise ops of feature maps, broadcasting over size-1 axes (see :func:`broadcast_shape`)
ELEMENTWISE = frozenset({OpKind.ADD, OpKind.SUB, OpKind.MUL, OpKind.MAX, OpKind.MIN})
#: how many inputs each elementwise op takes (None: two or more)
ELEMENTWISE_ARITY: dict[OpKind, int | None] = {
    OpKind.ADD: None, OpKind.SUB: 2, OpKind.MUL: 2, OpKind.MAX: None, OpKind.MIN: None,
}
#: ops that carry a weight tensor
WEIGHTED = frozenset({OpKind.CONV, OpKind.CONV_TRANSPOSE, OpKind.FULLY_CONNECTED})


def conv_out_len(n: int, k: int, s: int, pad_lo: int, pad_hi: int, d: int = 1) -> int:
    """Output length of a convolution/pooling window along one axis."""
    eff = d * (k - 1) + 1
    return (n + pad_lo + pad_hi - eff) // s + 1


def conv_transpose_out_len(n: int, k: int, s: int, pad_lo: int, pad_hi: int, d: int, op: int) -> int:
    return s * (n - 1) + op + d * (k - 1) + 1 - pad_lo - pad_hi


def weight_shape(op: OpKind, attrs: Attrs, in_shape: Shape, out_channels: int) -> tuple[int, ...] | None:
    """The weight tensor shape an op of this kind must have (None: no weights)."""
    c_in = in_shape[1]
    if op is OpKind.CONV:
        assert isinstance(attrs, ConvAttrs)
        return (out_channels, c_in // attrs.groups, *attrs.kernel)
    if op is OpKind.CONV_TRANSPOSE:
        assert isinstance(attrs, ConvTransposeAttrs)
        return (c_in, out_channels // attrs.groups, *attrs.kernel)
    if op is OpKind.FULLY_CONNECTED:
        return (out_channels, c_in * in_shape[2] * in_shape[3])
    return None


def broadcast_shape(in_shapes: tuple[Shape, ...]) -> Shape:
    """Numpy broadcast of feature-map shapes: along C, H and W every input has the output's
    length or 1; the batch must agree."""
    out = tuple(max(s[axis] for s in in_shapes) for axis in range(4))
    for s in in_shapes:
        if s[0] != out[0] or any(s[a] not in (1, out[a]) for a in (1, 2, 3)):
            raise ValueError(f"shapes {in_shapes} do not broadcast (C, H, W of length 1 or equal; same batch)")
    return out  # type: ignore[return-value]


def broadcast_span(n_in: int, lo: int, hi: int) -> tuple[int, int]:
    """The span of an elementwise input of length ``n_in`` along one axis that outputs
    [lo, hi) read: the same span, or the single cell of a broadcast (length-1) axis."""
    return (0, 1) if n_in == 1 and hi > lo else (lo, hi)


def infer_output_shape(
    op: OpKind, attrs: Attrs, in_shapes: tuple[Shape, ...], out_channels: int | None = None
) -> Shape:
    """Output shape of an op; ``out_channels`` is required for weighted ops."""
    n, c, h, w = in_shapes[0]
    if op is OpKind.CONV:
        assert isinstance(attrs, ConvAttrs) and out_channels is not None
        t, l, b, r = attrs.pads
        return (
            n,
            out_channels,
            conv_out_len(h, attrs.kernel[0], attrs.stride[0], t, b, attrs.dilation[0]),
            conv_out_len(w, attrs.kernel[1], attrs.stride[1], l, r, attrs.dilation[1]),
        )
    if op is OpKind.CONV_TRANSPOSE:
        assert isinstance(attrs, ConvTransposeAttrs) and out_channels is not None
        t, l, b, r = attrs.pads
        return (
            n,
            out_channels,
            conv_transpose_out_len(h, attrs.kernel[0], attrs.stride[0], t, b, attrs.dilation[0], attrs.output_padding[0]),
            conv_transpose_out_len(w, attrs.kernel[1], attrs.stride[1], l, r, attrs.dilation[1], attrs.output_padding[1]),
        )
    if op in (OpKind.MAX_POOL, OpKind.AVG_POOL):
        assert isinstance(attrs, PoolAttrs)
        t, l, b, r = attrs.pads
        return (
            n,
            c,
            conv_out_len(h, attrs.kernel[0], attrs.stride[0], t, b),
            conv_out_len(w, attrs.kernel[1], attrs.stride[1], l, r),
        )
    if op in (OpKind.GLOBAL_AVG_POOL, OpKind.GLOBAL_MAX_POOL):
        return (n, c, 1, 1)
    if op is OpKind.FULLY_CONNECTED:
        assert isinstance(attrs, FullyConnectedAttrs)
        return (n, attrs.out_features, 1, 1)
    if op in ELEMENTWISE:
        arity = ELEMENTWISE_ARITY[op]
        if len(in_shapes) < 2 or (arity is not None and len(in_shapes) != arity):
            raise ValueError(f"{op.value} takes {arity or 'two or more'} inputs, got {len(in_shapes)}")
        return broadcast_shape(in_shapes)
    if op is OpKind.CONCAT:
        if any(s[0] != n or s[2:] != (h, w) for s in in_shapes):
            raise ValueError(f"concat inputs differ in N, H or W: {in_shapes}")
        return (n, sum(s[1] for s in in_shapes), h, w)
    if op is OpKind.RESIZE:
        assert isinstance(attrs, ResizeAttrs)
        return (n, c, *attrs.out_hw)
    if op in (OpKind.LRN, OpKind.SOFTMAX):
        return (n, c, h, w)
    if op is OpKind.PAD:
        assert isinstance(attrs, ZeroPadAttrs)
        t, l, b, r = attrs.pads
        return (n, c + sum(attrs.channels), h + t + b, w + l + r)
    if op is OpKind.DEPTH_TO_SPACE:
        assert isinstance(attrs, BlockAttrs)
        bb = attrs.block * attrs.block
        if c % bb:
            raise ValueError(f"depth_to_space: {c} channels do not divide into blocks of {bb}")
        return (n, c // bb, h * attrs.block, w * attrs.block)
    if op is OpKind.SPACE_TO_DEPTH:
        assert isinstance(attrs, BlockAttrs)
        b = attrs.block
        if h % b or w % b or attrs.mode != "DCR":
            raise ValueError(f"space_to_depth: {h}x{w} is not a multiple of block {b}, or mode is not DCR")
        return (n, c * b * b, h // b, w // b)
    if op is OpKind.SLICE:
        assert isinstance(attrs, SliceAttrs)
        spans = (attrs.channels, attrs.rows, attrs.cols)
        if any(not 0 <= lo < hi <= size for (lo, hi), size in zip(spans, (c, h, w))):
            raise ValueError(f"slice {spans} is empty or leaves the input {(c, h, w)}")
        return (n, *(hi - lo for lo, hi in spans))  # type: ignore[return-value]
    if op is OpKind.CHANNEL_SHUFFLE:
        assert isinstance(attrs, ChannelShuffleAttrs)
        if sorted(attrs.perm) != list(range(c)):
            raise ValueError(f"channel permutation is not a permutation of {c} channels")
        return (n, c, h, w)
    raise ValueError(f"unknown op kind {op}")


def transpose_taps(o0: int, o1: int, k: int, s: int, pad_lo: int, d: int, n_in: int) -> int:
    """Number of (input index, tap) pairs landing on outputs [o0, o1) of a transposed conv."""
    count = 0
    for j in range(k):
        # y = i*s - pad_lo + j*d in [o0, o1), 0 <= i < n_in
        lo = max(0, math.ceil((o0 + pad_lo - j * d) / s))
        hi = min(n_in, (o1 - 1 + pad_lo - j * d) // s + 1)
        count += max(0, hi - lo)
    return count


def box_macs(op: OpKind, attrs: Attrs, in_shape: Shape, channels: int, rows: Pair, cols: Pair) -> int:
    """Multiply-accumulates to compute ``channels`` output channels over output rows
    ``[rows[0], rows[1])`` and columns ``[cols[0], cols[1])`` (the whole batch): the one MAC
    rule, used for whole layers (:meth:`memplan.ir.graph.Graph.layer_macs`) and for tiles
    (:func:`memplan.geometry.backprop.region_macs`)."""
    if channels <= 0 or rows[1] <= rows[0] or cols[1] <= cols[0]:
        return 0
    if op is OpKind.CONV_TRANSPOSE:
        assert isinstance(attrs, ConvTransposeAttrs)
        ty = transpose_taps(rows[0], rows[1], attrs.kernel[0], attrs.stride[0], attrs.pads[0], attrs.dilation[0], in_shape[2])
        tx = transpose_taps(cols[0], cols[1], attrs.kernel[1], attrs.stride[1], attrs.pads[1], attrs.dilation[1], in_shape[3])
        return ty * tx * (in_shape[1] // attrs.groups) * channels * in_shape[0]
    numel = channels * (rows[1] - rows[0]) * (cols[1] - cols[0])
    return macs_per_output_element(op, attrs, in_shape) * numel * in_shape[0]


def macs_per_output_element(op: OpKind, attrs: Attrs, in_shape: Shape) -> int:
    """MACs spent per output element for ops whose cost is uniform over output elements.

    Conv and fully connected are uniform (padding is counted as computed, as hardware does);
    ConvTranspose is not: see :func:`box_macs`."""
    if op is OpKind.CONV:
        assert isinstance(attrs, ConvAttrs)
        return (in_shape[1] // attrs.groups) * attrs.kernel[0] * attrs.kernel[1]
    if op is OpKind.FULLY_CONNECTED:
        return in_shape[1] * in_shape[2] * in_shape[3]
    return 0


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def prod(xs: tuple[int, ...]) -> int:
    return math.prod(xs)
