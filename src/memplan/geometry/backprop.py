"""Back-propagation of regions through one layer, and the MACs a region costs.

For an output region of a layer, :func:`input_regions` gives, per input, the region the layer
reads. Rows and columns are *unclipped*: cells outside the tensor are padding, which the
kernel synthesises and nobody stores; :meth:`Region.clip` gives the part that must be held in
SRAM. These rules are the one truth that the cost model, the plan and the executor share.
"""

from __future__ import annotations

import math

import numpy as np

from memplan.geometry.region import Region
from memplan.ir.graph import Graph, Layer
from memplan.ir.ops import (
    BlockAttrs,
    ChannelShuffleAttrs,
    ConvAttrs,
    ConvTransposeAttrs,
    ELEMENTWISE,
    LRNAttrs,
    OpKind,
    PoolAttrs,
    ResizeAttrs,
    SPATIALLY_GLOBAL,
    Shape,
    SliceAttrs,
    ZeroPadAttrs,
    box_macs,
    broadcast_span,
    deep_channel,
)


def _window(o0: int, o1: int, k: int, s: int, pad_lo: int, d: int, n_in: int) -> tuple[int, int]:
    """Input span [i0, i1) read by outputs [o0, o1) of a sliding window (output ``o``, tap ``t``
    reads ``o*s - pad_lo + t*d``). Unclipped where an end is padding; but where the taps skip
    the input cells next to the padding (a stride longer than the window's reach, a 1x1
    stride-2 convolution with padding), that end is the first (last) input cell actually read,
    so the clipped span is exactly the bounding box of the cells the kernel reads."""
    i0, i1 = o0 * s - pad_lo, (o1 - 1) * s - pad_lo + d * (k - 1) + 1
    if i0 < 0:
        read = [p for o in range(o0, min(o1, o0 + pad_lo // s + 2)) for t in range(k) if 0 <= (p := o * s - pad_lo + t * d) < n_in]
        first = min(read, default=None)
        if first is not None and first > 0:
            i0 = first
    if i1 > n_in:
        last_out = max(o0, o1 - 1 - (i1 - n_in) // s - 1)
        read = [p for o in range(last_out, o1) for t in range(k) if 0 <= (p := o * s - pad_lo + t * d) < n_in]
        last = max(read, default=None)
        if last is not None and last + 1 < n_in:
            i1 = last + 1
    return i0, i1


def _transpose_span(o0: int, o1: int, k: int, s: int, pad_lo: int, d: int, n_in: int) -> tuple[int, int]:
    """Input span of a transposed convolution: output y receives input i via tap j when
    y = i*s - pad_lo + j*d. Clipped to the input (a transposed conv never pads its input)."""
    i0 = math.ceil((o0 + pad_lo - d * (k - 1)) / s)
    i1 = (o1 - 1 + pad_lo) // s + 1
    return max(i0, 0), min(i1, n_in)


def resize_source_coords(attrs: ResizeAttrs, out_len: int, in_len: int, outs: np.ndarray) -> np.ndarray:
    """Source coordinate (float) of output indexes along one axis, as ONNX Resize defines it."""
    scale = out_len / in_len
    o = outs.astype(np.float64)
    mode = attrs.coord
    if mode == "asymmetric":
        return o / scale
    if mode == "half_pixel":
        return (o + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (o + 0.5) / scale - 0.5 if out_len > 1 else np.zeros_like(o)
    if mode == "align_corners":
        return o * (in_len - 1) / (out_len - 1) if out_len > 1 else np.zeros_like(o)
    if mode == "tf_half_pixel_for_nn":
        return (o + 0.5) / scale
    raise ValueError(f"unsupported coordinate_transformation_mode {mode!r}")


def resize_nearest_index(attrs: ResizeAttrs, x: np.ndarray, in_len: int) -> np.ndarray:
    """Nearest source index for source coordinates ``x`` (ONNX nearest_mode), clipped."""
    m = attrs.nearest_mode
    if m == "floor":
        idx = np.floor(x)
    elif m == "ceil":
        idx = np.ceil(x)
    elif m == "round_prefer_floor":
        idx = np.where(x - np.floor(x) == 0.5, np.floor(x), np.round(x))
    elif m == "round_prefer_ceil":
        idx = np.floor(x + 0.5)
    else:
        raise ValueError(f"unsupported nearest_mode {m!r}")
    return np.clip(idx, 0, in_len - 1).astype(np.int64)


def _resize_span(attrs: ResizeAttrs, o0: int, o1: int, out_len: int, in_len: int) -> tuple[int, int]:
    x = resize_source_coords(attrs, out_len, in_len, np.arange(o0, o1))
    if attrs.mode == "nearest":
        idx = resize_nearest_index(attrs, x, in_len)
        return int(idx.min()), int(idx.max()) + 1
    lo = np.clip(np.floor(x), 0, in_len - 1)
    hi = np.clip(np.floor(x) + 1, 0, in_len - 1)
    return int(lo.min()), int(hi.max()) + 1


Span = tuple[int, int]


def input_spans(graph: Graph, layer: Layer, axis: int, lo: int, hi: int) -> tuple[Span, ...]:
    """Per input, the unclipped span along ``axis`` (2 = rows, 3 = columns) that ``layer``
    reads to compute outputs [lo, hi) along that axis. Rows and columns are independent, so
    a region's back-propagation is the product of its two spans (and its channel span)."""
    if hi <= lo:  # nothing of this output is needed: nothing of the inputs either
        return tuple((0, 0) for _ in layer.inputs)
    op, a = layer.op, layer.attrs
    shapes = [graph.shape(t) for t in layer.inputs]
    n_in = shapes[0][axis]
    k = axis - 2  # 0 for rows, 1 for columns; pads are (top, left, bottom, right)
    if op in SPATIALLY_GLOBAL:
        return ((0, n_in),)
    if op is OpKind.CONV:
        assert isinstance(a, ConvAttrs)
        return (_window(lo, hi, a.kernel[k], a.stride[k], a.pads[k], a.dilation[k], n_in),)
    if op is OpKind.CONV_TRANSPOSE:
        assert isinstance(a, ConvTransposeAttrs)
        return (_transpose_span(lo, hi, a.kernel[k], a.stride[k], a.pads[k], a.dilation[k], n_in),)
    if op in (OpKind.MAX_POOL, OpKind.AVG_POOL):
        assert isinstance(a, PoolAttrs)
        return (_window(lo, hi, a.kernel[k], a.stride[k], a.pads[k], 1, n_in),)
    if op is OpKind.RESIZE:
        assert isinstance(a, ResizeAttrs)
        return (_resize_span(a, lo, hi, a.out_hw[k], n_in),)
    if op in ELEMENTWISE:
        return tuple(broadcast_span(s[axis], lo, hi) for s in shapes)
    if op is OpKind.PAD:  # an offset; cells outside the input are the padding
        assert isinstance(a, ZeroPadAttrs)
        return ((lo - a.pads[k], hi - a.pads[k]),)
    if op is OpKind.SLICE:  # an offset into the input
        assert isinstance(a, SliceAttrs)
        start = (a.rows, a.cols)[k][0]
        return ((lo + start, hi + start),)
    if op is OpKind.DEPTH_TO_SPACE:  # output row y copies input row y // b
        assert isinstance(a, BlockAttrs)
        return ((lo // a.block, (hi - 1) // a.block + 1),)
    if op is OpKind.SPACE_TO_DEPTH:  # every cell of the blocks (the block cell is in the channel)
        assert isinstance(a, BlockAttrs)
        return ((lo * a.block, hi * a.block),)
    if op in (OpKind.CONCAT, OpKind.LRN, OpKind.SOFTMAX, OpKind.CHANNEL_SHUFFLE):
        return tuple((lo, hi) for _ in layer.inputs)
    raise ValueError(f"no region rule for {op}")


def input_channel_spans(graph: Graph, layer: Layer, c0: int, c1: int) -> tuple[Span, ...]:
    """Per input, the channel span ``layer`` reads to compute output channels [c0, c1)."""
    if c1 <= c0:
        return tuple((0, 0) for _ in layer.inputs)
    op, a = layer.op, layer.attrs
    shapes = [graph.shape(t) for t in layer.inputs]
    c_in = shapes[0][1]
    if op in (OpKind.CONV, OpKind.CONV_TRANSPOSE):
        assert isinstance(a, (ConvAttrs, ConvTransposeAttrs))
        return (_grouped_channels(c0, c1, a.groups, c_in, graph.out_channels(layer)),)
    if op in (OpKind.FULLY_CONNECTED, OpKind.SOFTMAX):
        return ((0, c_in),)
    if op is OpKind.CONCAT:
        spans = []
        base = 0
        for s in shapes:
            lo, hi = min(max(c0 - base, 0), s[1]), min(c1 - base, s[1])
            spans.append((lo, max(hi, lo)))  # empty (but within the input) when no channel of it is read
            base += s[1]
        return tuple(spans)
    if op is OpKind.LRN:
        assert isinstance(a, LRNAttrs)
        lo = c0 - (a.size - 1) // 2
        hi = c1 + (a.size - 1) - (a.size - 1) // 2
        return ((max(lo, 0), min(hi, c_in)),)
    if op is OpKind.CHANNEL_SHUFFLE:
        assert isinstance(a, ChannelShuffleAttrs)
        src = a.perm[c0:c1]
        return ((min(src), max(src) + 1),)
    if op in ELEMENTWISE:
        return tuple(broadcast_span(s[1], c0, c1) for s in shapes)
    if op is OpKind.PAD:  # channel spans stay inside the tensor: clip (empty when only padding)
        assert isinstance(a, ZeroPadAttrs)
        lo = min(max(c0 - a.channels[0], 0), c_in)
        return ((lo, max(min(c1 - a.channels[0], c_in), lo)),)
    if op is OpKind.SLICE:
        assert isinstance(a, SliceAttrs)
        return ((c0 + a.channels[0], c1 + a.channels[0]),)
    if op is OpKind.DEPTH_TO_SPACE:  # every cell of the block, at any row and column
        assert isinstance(a, BlockAttrs)
        bb, shallow = a.block * a.block, c_in // (a.block * a.block)
        if a.mode == "DCR":
            return ((c0, (bb - 1) * shallow + c1),)
        return ((c0 * bb, c1 * bb),)
    if op is OpKind.SPACE_TO_DEPTH:  # deep channel k * C + c copies shallow channel c
        k0, k1 = c0 // c_in, (c1 - 1) // c_in
        return ((c0 - k0 * c_in, c1 - k0 * c_in) if k0 == k1 else (0, c_in),)
    # pools, global pools, resize: channel-wise
    return tuple((c0, c1) for _ in layer.inputs)


def block_sources(op: OpKind, attrs: BlockAttrs, in_shape: Shape, out: Region) -> tuple[np.ndarray, ...]:
    """For each cell of output region ``out`` of a depth-to-space or space-to-depth layer, the
    input channel, row and column it copies: three int64 arrays that broadcast to
    ``(channels, rows, cols)`` of the region."""
    b = attrs.block
    c = np.arange(out.c0, out.c1, dtype=np.int64)[:, None, None]
    y = np.arange(out.y0, out.y1, dtype=np.int64)[None, :, None]
    x = np.arange(out.x0, out.x1, dtype=np.int64)[None, None, :]
    if op is OpKind.DEPTH_TO_SPACE:
        return deep_channel(attrs, in_shape[1] // (b * b), c, y % b, x % b), y // b, x // b
    cell = c // in_shape[1]  # DCR: deep channel (dy * b + dx) * C + c
    return c % in_shape[1], y * b + cell // b, x * b + cell % b


def block_region(op: OpKind, attrs: BlockAttrs, in_shape: Shape, out: Region) -> Region:
    """The bounding box of the input cells :func:`block_sources` names (exact when the region
    spans whole blocks; a row or column tile narrower than a block reads fewer channels)."""
    if out.empty:
        return Region(0, 0, 0, 0, 0, 0)
    spans = [(int(s.min()), int(s.max()) + 1) for s in block_sources(op, attrs, in_shape, out)]
    return Region(*spans[0], *spans[1], *spans[2])


def input_regions(graph: Graph, layer: Layer, out: Region) -> tuple[Region, ...]:
    """The region of each input that ``layer`` reads to compute output region ``out``
    (rows and columns unclipped: cells outside the tensor are padding)."""
    if layer.op in (OpKind.DEPTH_TO_SPACE, OpKind.SPACE_TO_DEPTH):  # rows and channels are linked
        assert isinstance(layer.attrs, BlockAttrs)
        return (block_region(layer.op, layer.attrs, graph.shape(layer.inputs[0]), out),)
    rows = input_spans(graph, layer, 2, out.y0, out.y1)
    cols = input_spans(graph, layer, 3, out.x0, out.x1)
    chans = input_channel_spans(graph, layer, out.c0, out.c1)
    return tuple(Region(c[0], c[1], r[0], r[1], x[0], x[1]) for c, r, x in zip(chans, rows, cols))


def _grouped_channels(c0: int, c1: int, groups: int, c_in: int, c_out: int) -> tuple[int, int]:
    """Input channels read by output channels [c0, c1) of a grouped convolution."""
    if groups == 1:
        return 0, c_in
    out_per, in_per = c_out // groups, c_in // groups
    g0, g1 = c0 // out_per, (c1 - 1) // out_per + 1
    return g0 * in_per, g1 * in_per


def region_macs(graph: Graph, layer: Layer, out: Region) -> int:
    """Multiply-accumulates to compute output region ``out`` of ``layer`` (the rule:
    :func:`memplan.ir.ops.box_macs`)."""
    if out.empty:
        return 0
    return box_macs(layer.op, layer.attrs, graph.shape(layer.inputs[0]), out.channels, (out.y0, out.y1), (out.x0, out.x1))