"""Fused groups and their tilings.

A group is a range [start, stop) of the graph's topological order (a contiguous range of a
topological order is always convex). It runs tile by tile: each tile is a region of the
group's *anchor*, the output of its last layer; every other tensor the group produces is
consumed inside the group only, so it exists as tile buffers in SRAM and never as a whole.
A host layer (:mod:`memplan.host`) is always a group of its own, with :data:`HOST_TILING`.
Residual blocks, inception branches and concats can sit inside one group; a tensor consumed
after the group must be the anchor (a group ends at a fork that leaves it), unless the group
is a *multi-output* group (``multi_output``, the profile's tiling rule of that name): then a
tensor produced inside and also read after it (or a model output) *escapes*. It is held in
tile buffers like every internal tensor, and each tile stores the part of it that no earlier
tile stored (:func:`store_spans`), so the tiles write it to DRAM exactly once; a tiling whose
tiles do not cover it whole (a strided reader skips rows) cannot store it and is not offered.

Tiles split the anchor into a grid of rows x columns, and (for a group of one layer) into
output-channel splits: for a weighted layer the input is then re-read once per split, as in
the Synopsys seed. The
order is channel splits outermost, then rows, then columns. Because back-propagation through a
layer is independent per axis, each tensor's region in a tile is the product of its row span
for the tile's row, its column span for the tile's column and its channel span: the spans are
computed per axis once, and whole-group sums factorise.

A group whose last layer reduces over its input's channels may instead run in channel slices of
that input (fused depthwise tiling, :mod:`memplan.geometry.fdt`): ``Tiling.fdt_c`` > 0, the
channel axis then holds the slices (:func:`fdt_spans`) and they run innermost, all slices of a
spatial tile before the next tile.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

from memplan.config import TilingRules
from memplan.geometry.backprop import Span, input_channel_spans, input_spans
from memplan.geometry.fdt import FDT_AXIS, accumulated_tensor, fdt_consumer, slice_spans
from memplan.geometry.region import Region
from memplan.ir.graph import Graph
from memplan.ir.ops import OpKind, ceil_div


@dataclass(frozen=True)
class GroupShape:
    """Which tensors a group reads, produces internally and emits."""

    start: int
    stop: int
    anchor: str
    external_inputs: tuple[str, ...]  # produced before the group (or model inputs), first use order
    internal: tuple[str, ...]  # produced and consumed inside the group, production order
    #: the internal tensors that are also read after the group (or are model outputs): a
    #: multi-output group stores them from inside (production order)
    escapes: tuple[str, ...] = ()

    @property
    def layer_range(self) -> range:
        return range(self.start, self.stop)

    def __len__(self) -> int:
        return self.stop - self.start


def group_shape(graph: Graph, start: int, stop: int, multi_output: bool = False) -> GroupShape | None:
    """The group [start, stop), or None if a tensor other than the last layer's output is
    needed after the group (or is a model output), unless ``multi_output``: then such a tensor
    escapes (GroupShape.escapes), provided a layer of the group reads it too (its tiles are
    what the group's readers need of it: one nobody inside reads has none)."""
    if not 0 <= start < stop <= len(graph.layers):
        raise ValueError(f"bad group range [{start}, {stop})")
    if stop - start > 1 and any(start <= i < stop for i in graph.host_layers):
        return None  # a host layer runs alone: it is never fused
    outputs = set(graph.outputs)
    internal: list[str] = []
    escapes: list[str] = []
    for i in range(start, stop - 1):
        t = graph.layers[i].output
        consumers = graph.consumers.get(t, ())
        if t in outputs or any(c >= stop for c in consumers):
            if not multi_output or not any(c < stop for c in consumers):
                return None
            escapes.append(t)
        if not consumers and t not in outputs:
            return None  # dead tensor: no consumer at all
        internal.append(t)
    produced = {graph.layers[i].output for i in range(start, stop)}
    ext: dict[str, None] = {}
    for i in range(start, stop):
        for t in graph.layers[i].inputs:
            if t not in produced:
                ext.setdefault(t, None)
    return GroupShape(start, stop, graph.layers[stop - 1].output, tuple(ext), tuple(internal), tuple(escapes))


# ---------------------------------------------------------------------------- tilings
@dataclass(frozen=True, order=True)
class Tiling:
    """Tile sizes of the anchor: rows, columns and channels per tile (edge tiles are smaller).

    ``rolling``: the group runs in row stripes (one column tile, one channel split) and every
    tensor produced and consumed inside it keeps the rows the next stripe needs again in SRAM
    (a rolling, or line, buffer: Vela's cascades, DeFiNES's "H-cached" mode) instead of
    recomputing them; see :func:`roll`.

    ``fdt_c`` > 0 makes the group a fused depthwise tiling (:mod:`memplan.geometry.fdt`): its
    consumer's input is cut into slices of ``fdt_c`` channels (``tile_c`` is then all the
    anchor's channels); 0 for every other tiling."""

    tile_h: int
    tile_w: int
    tile_c: int
    fdt_c: int = 0
    rolling: bool = False

    def __repr__(self) -> str:  # new fields only when set: reprs (and digests of them) of other tilings unchanged
        fdt = f", fdt_c={self.fdt_c}" if self.fdt_c else ""
        rolling = ", rolling=True" if self.rolling else ""
        return f"Tiling(tile_h={self.tile_h}, tile_w={self.tile_w}, tile_c={self.tile_c}{fdt}{rolling})"

    def to_json(self) -> list[int]:
        if self.fdt_c:
            return [self.tile_h, self.tile_w, self.tile_c, self.fdt_c]
        return [self.tile_h, self.tile_w, self.tile_c]


#: the tiling of a host layer's group: the layer runs once, untiled, on the host CPU
HOST_TILING = Tiling(1, 1, 1)


def is_host(graph: Graph, shape: GroupShape) -> bool:
    """Whether the group is a host layer (always a group of its own)."""
    return len(shape) == 1 and graph.layers[shape.start].op is OpKind.HOST


def split_axis(length: int, size: int) -> tuple[Span, ...]:
    """Consecutive spans of ``size`` covering [0, length) (the last may be shorter)."""
    return tuple((lo, min(lo + size, length)) for lo in range(0, length, size))


def _axis_sizes(length: int, multiple: int, max_count: int) -> list[int]:
    """Distinct tile sizes giving 1..max_count tiles, sizes multiples of ``multiple``."""
    sizes: dict[int, None] = {}
    for n in range(1, min(length, max_count) + 1):
        size = ceil_div(ceil_div(length, n), multiple) * multiple
        size = min(size, length)
        if ceil_div(length, size) <= max_count:
            sizes[size] = None
    return sorted(sizes, reverse=True)


def channel_tile_sizes(channels: int, rules: TilingRules) -> list[int]:
    """The output channels per tile a single-layer group may be split into (largest first)."""
    return _axis_sizes(channels, 1, rules.max_tiles)


def channel_splittable(graph: Graph, shape: GroupShape) -> bool:
    """Output-channel splits apply to a group of one layer: for a weighted layer they bound the
    weight buffer (the input is re-read per split); for channel-wise ops such as global
    pooling they bound the input that must be held whole."""
    return len(shape) == 1


def tiling_options(graph: Graph, shape: GroupShape, rules: TilingRules, cache: SpanCache | None = None) -> list[Tiling]:
    """Every tiling of the group's anchor that the rules allow (at most ``max_tiles`` tiles);
    a host layer runs untiled: :data:`HOST_TILING` only. A multi-output group keeps only the
    tilings whose tiles cover each escaping tensor whole (:meth:`GroupGeometry.storable`;
    ``cache`` as for :func:`group_geometry`)."""
    if is_host(graph, shape):
        return [HOST_TILING]
    _, c, h, w = graph.shape(shape.anchor)
    rows = _axis_sizes(h, rules.tile_multiple, rules.max_tiles)
    cols = [w] if rules.row_only else _axis_sizes(w, rules.tile_multiple, rules.max_tiles)
    chans = channel_tile_sizes(c, rules) if channel_splittable(graph, shape) else [c]
    out = []
    if rules.fdt_slices:
        out += fdt_tilings(graph, shape, rules, rows, cols)
    for tc in chans:
        nc = ceil_div(c, tc)
        for th in rows:
            nh = ceil_div(h, th)
            for tw in cols:
                if nc * nh * ceil_div(w, tw) <= rules.max_tiles:  # tile_count
                    out.append(Tiling(th, tw, tc))
    if rules.rolling_buffers and shape.internal:
        out += [Tiling(t.tile_h, w, c, rolling=True) for t in out
                if not t.fdt_c and t.tile_w == w and t.tile_c == c and t.tile_h < h]
    if shape.escapes:
        out = [t for t in out if group_geometry(graph, shape, t, cache).storable]
    return out


def tile_count(graph: Graph, shape: GroupShape, tiling: Tiling) -> int:
    """Tiles the group runs with this tiling (edge tiles included): what GroupGeometry.n_tiles
    counts, without the spans."""
    if is_host(graph, shape):
        return 1
    _, c, h, w = graph.shape(shape.anchor)
    chans = ceil_div(c, tiling.tile_c)
    if tiling.fdt_c:  # slices of the consumer's input instead of channel splits of the anchor
        chans = ceil_div(graph.shape(graph.layers[shape.stop - 1].inputs[0])[1], tiling.fdt_c)
    return chans * ceil_div(h, tiling.tile_h) * ceil_div(w, tiling.tile_w)


def fdt_tilings(graph: Graph, shape: GroupShape, rules: TilingRules, rows: list[int], cols: list[int]) -> list[Tiling]:
    """The FDT tilings of the group (:mod:`memplan.geometry.fdt`): 2..``fdt_slices`` slices of
    its consumer's input, times every spatial tiling, at most ``max_tiles`` tiles in all; only
    when each slice count partitions every tensor produced inside the group (no channel is
    computed twice)."""
    consumer = fdt_consumer(graph, shape.start, shape.stop, shape.internal)
    if consumer is None:
        return []
    _, c, h, w = graph.shape(shape.anchor)
    acc_c = graph.shape(accumulated_tensor(consumer))[1]
    out = []
    for size in _axis_sizes(acc_c, 1, min(rules.fdt_slices, rules.max_tiles)):
        k = ceil_div(acc_c, size)
        if k < 2:
            continue
        spans = fdt_spans(graph, shape, size)
        if any(spans.total[t] != graph.shape(t)[1] for t in shape.internal):
            continue  # some channel would be computed in more than one slice
        for th in rows:
            for tw in cols:
                if k * ceil_div(h, th) * ceil_div(w, tw) <= rules.max_tiles:
                    out.append(Tiling(th, tw, c, size))
    return out


# ---------------------------------------------------------------------------- spans
CHANNELS, ROWS, COLUMNS = 1, 2, 3  # the NCHW axes tiles split
ROLLING_ROWS = -ROWS  # the SpanCache key of rolling row stripes (memplan.geometry.group.roll)


@dataclass(frozen=True)
class AxisSpans:
    """The spans of every tensor of a group along one axis, for one tile size of the anchor.

    ``spans[t][i]`` is the span tensor ``t`` must hold for tile ``i`` along the axis (rows and
    columns clipped to the tensor). ``total`` and ``largest`` are the sum and the maximum of
    the span lengths per tensor. ``reads[i][k]`` is the length of input ``k`` that layer ``i``
    reads (clipped to the tensor) summed over the tiles: a layer may read less than its group
    holds of an input another layer also reads."""

    axis: int
    count: int  # tiles along the axis
    spans: dict[str, tuple[Span, ...]]
    total: dict[str, int]
    largest: dict[str, int]
    reads: dict[int, tuple[int, ...]]
    #: rolling row stripes only (:func:`roll`): per internal tensor, the rows its producer
    #: computes in each tile and the rows copied from the previous tile's slot; a tensor not
    #: named here is computed whole in every tile (computed = spans, nothing cached)
    computed: dict[str, tuple[Span, ...]] = field(default_factory=dict)
    cached: dict[str, tuple[Span, ...]] = field(default_factory=dict)

    def computed_spans(self, tensor: str) -> tuple[Span, ...]:
        """The spans the tensor's producer computes, tile by tile."""
        return self.computed.get(tensor, self.spans[tensor])

    def computed_total(self, tensor: str) -> int:
        return sum(b - a for a, b in self.computed_spans(tensor))

    def cached_total(self, tensor: str) -> int:
        return sum(b - a for a, b in self.cached.get(tensor, ()))


#: AxisSpans of the groups of one graph, by (start, stop, axis, tile size along the axis)
SpanCache = dict[tuple[int, int, int, int], AxisSpans]


@dataclass(frozen=True)
class GroupGeometry:
    """Per-axis spans of every tensor of a group for one tiling.

    ``rows[t][i]`` is the (clipped) row span tensor ``t`` must hold for row tile ``i``;
    likewise ``cols`` per column tile and ``chans`` per channel split. For a layer's output
    this is exactly what the layer computes in that tile."""

    graph: Graph
    shape: GroupShape
    tiling: Tiling
    row_axis: AxisSpans
    col_axis: AxisSpans
    chan_axis: AxisSpans

    @property
    def rows(self) -> dict[str, tuple[Span, ...]]:
        return self.row_axis.spans

    @property
    def cols(self) -> dict[str, tuple[Span, ...]]:
        return self.col_axis.spans

    @property
    def chans(self) -> dict[str, tuple[Span, ...]]:
        return self.chan_axis.spans

    @property
    def n_rows(self) -> int:
        return self.row_axis.count

    @property
    def n_cols(self) -> int:
        return self.col_axis.count

    @property
    def n_chans(self) -> int:
        return self.chan_axis.count

    @property
    def n_tiles(self) -> int:
        return self.n_rows * self.n_cols * self.n_chans

    @cached_property
    def tensors(self) -> tuple[str, ...]:
        return (*self.shape.external_inputs, *self.shape.internal, self.shape.anchor)

    def region(self, tensor: str, ci: int, ri: int, xi: int) -> Region:
        c, r, x = self.chans[tensor][ci], self.rows[tensor][ri], self.cols[tensor][xi]
        return Region(c[0], c[1], r[0], r[1], x[0], x[1])

    def computed_region(self, tensor: str, ci: int, ri: int, xi: int) -> Region:
        """What the tensor's producer computes in the tile: its held region, except in a
        rolling group, where the rows copied from the previous stripe are left out."""
        c, x = self.chans[tensor][ci], self.cols[tensor][xi]
        r = self.row_axis.computed_spans(tensor)[ri]
        return Region(c[0], c[1], r[0], r[1], x[0], x[1])

    def cached_region(self, tensor: str, ci: int, ri: int, xi: int) -> Region:
        """The rows of the tensor's tile copied from the previous stripe's slot (empty if none)."""
        c, x = self.chans[tensor][ci], self.cols[tensor][xi]
        spans = self.row_axis.cached.get(tensor)
        r = spans[ri] if spans else (0, 0)
        return Region(c[0], c[1], r[0], r[1], x[0], x[1])

    def rolled(self, tensor: str) -> bool:
        """Whether the tensor keeps rows from one stripe to the next: it then has two slots,
        the stripe's own and the previous one's, alternating."""
        return self.row_axis.cached_total(tensor) > 0

    def computed_elems(self, tensor: str) -> int:
        """Elements of the tensor its producer computes summed over all tiles."""
        return self.chan_axis.total[tensor] * self.row_axis.computed_total(tensor) * self.col_axis.total[tensor]

    def cached_elems(self, tensor: str) -> int:
        """Elements of the tensor copied between slots summed over all tiles."""
        return self.chan_axis.total[tensor] * self.row_axis.cached_total(tensor) * self.col_axis.total[tensor]

    def tiles(self) -> Iterator[tuple[int, int, int]]:
        """Tile coordinates (channel split, row, column) in execution order. An FDT group runs
        its slices innermost: all slices of a spatial tile before the next one."""
        if self.tiling.fdt_c:
            for ri in range(self.n_rows):
                for xi in range(self.n_cols):
                    for ci in range(self.n_chans):
                        yield ci, ri, xi
            return
        for ci in range(self.n_chans):
            for ri in range(self.n_rows):
                for xi in range(self.n_cols):
                    yield ci, ri, xi

    @cached_property
    def _store_spans(self) -> dict[str, tuple[tuple[Span, ...] | None, ...]]:
        return {t: tuple(store_spans(spans[t], self.graph.shape(t)[axis])
                         for axis, spans in ((CHANNELS, self.chans), (ROWS, self.rows), (COLUMNS, self.cols)))
                for t in self.shape.escapes}

    @property
    def storable(self) -> bool:
        """Whether the tiles cover every escaping tensor whole, so that storing the part of it
        no earlier tile stored (:meth:`store_region`) writes each of its elements once."""
        return all(s is not None for spans in self._store_spans.values() for s in spans)

    def store_region(self, tensor: str, ci: int, ri: int, xi: int) -> Region:
        """The part of an escaping tensor the tile stores: per axis, the part of its span that
        no earlier tile along that axis covered (:func:`store_spans`). Over the tiles these
        partition the tensor; each lies inside what the tile holds."""
        c, r, x = self._store_spans[tensor]
        assert c is not None and r is not None and x is not None, f"{tensor} is not storable from this group"
        return Region(c[ci][0], c[ci][1], r[ri][0], r[ri][1], x[xi][0], x[xi][1])

    def max_elems(self, tensor: str) -> int:
        """Largest region of ``tensor`` over the tiles (its tile buffer size in elements)."""
        return self.chan_axis.largest[tensor] * self.row_axis.largest[tensor] * self.col_axis.largest[tensor]

    def sum_elems(self, tensor: str) -> int:
        """Elements of ``tensor`` held summed over all tiles (what loading it per tile costs)."""
        return self.chan_axis.total[tensor] * self.row_axis.total[tensor] * self.col_axis.total[tensor]

    def read_elems(self, index: int) -> int:
        """Feature-map elements layer ``index`` reads over all tiles: per distinct input, the
        clipped region it needs for each tile's output region (separable per axis)."""
        inputs = self.graph.layers[index].inputs
        c, r, x = self.chan_axis.reads[index], self.row_axis.reads[index], self.col_axis.reads[index]
        if len(inputs) == 1:
            return c[0] * r[0] * x[0]
        total = 0
        for k, t in enumerate(inputs):
            if t not in inputs[:k]:
                total += c[k] * r[k] * x[k]
        return total


def store_spans(spans: tuple[Span, ...], length: int) -> tuple[Span, ...] | None:
    """Per tile along one axis, the part of a tensor's span that no earlier tile covered:
    these partition [0, length) if the spans, in order, leave no gap (each starts at or
    before the end of those before it, and together they reach ``length``); else None. Each
    part lies inside its tile's span (it is empty where the span adds nothing)."""
    covered = 0
    out: list[Span] = []
    for lo, hi in spans:
        if lo < hi and lo > covered:
            return None  # rows between covered and lo are in no tile
        top = max(covered, hi)
        out.append((covered, top) if lo < hi else (covered, covered))
        covered = top
    return tuple(out) if covered == length else None


def _clip(span: Span, length: int) -> Span:
    lo, hi = min(max(span[0], 0), length), min(span[1], length)
    return (lo, max(hi, lo))


def _union(a: Span, b: Span) -> Span:
    if a[0] >= a[1]:
        return b
    if b[0] >= b[1]:
        return a
    return (min(a[0], b[0]), max(a[1], b[1]))


def _anchor_spans(graph: Graph, stop: int, axis: int, size: int) -> AxisSpans:
    """The spans of a group with no layers yet: the anchor (output of layer ``stop - 1``) cut
    every ``size`` along ``axis``."""
    anchor = graph.layers[stop - 1].output
    tiles = split_axis(graph.shape(anchor)[axis], size)
    lengths = [b - a for a, b in tiles]
    return AxisSpans(axis, len(tiles), {anchor: tiles}, {anchor: sum(lengths)}, {anchor: max(lengths)}, {})


def roll(need: tuple[Span, ...]) -> tuple[tuple[Span, ...], tuple[Span, ...]]:
    """Split what a tensor must hold in each row stripe (``need``) into the rows copied from
    the previous stripe's slot (``cached``) and the rows its producer computes (``computed``).

    The previous slot holds exactly ``need[j - 1]``. Rows of ``need[j]`` that it holds and
    that form a prefix of ``need[j]`` are copied; the rest is computed. Anything else (no
    previous stripe, an empty one, or an overlap that is not a prefix) is computed whole:
    that recomputes, but it is always correct, whatever the strides do to the spans."""
    computed: list[Span] = []
    cached: list[Span] = []
    for j, (lo, hi) in enumerate(need):
        plo, phi = need[j - 1] if j else (0, 0)
        if j and lo < hi and plo < phi and plo <= lo < phi:
            top = min(hi, phi)
            cached.append((lo, top))
            computed.append((top, hi) if top < hi else (hi, hi))
        else:
            cached.append((lo, lo))
            computed.append((lo, hi))
    return tuple(computed), tuple(cached)


def _prepend_layer(graph: Graph, inner: AxisSpans, index: int, rolling: bool = False, anchor: bool = False) -> AxisSpans:
    """The spans of ``inner``'s group with layer ``index`` added in front. Back-propagation
    visits the layers from the anchor backwards, so this is the last step of the group's own
    sweep: the output of layer ``index`` is needed only by later layers, whose spans are final.
    Per tile, each input's span is the union of what the readers need (rows and columns
    clipped; channel spans are always inside the tensor).

    ``rolling`` (rows of a rolling group): the layer's output, unless it is the ``anchor``, is
    rolled first and the layer's inputs are back-propagated from the rows it computes; its
    inputs are rolled too (an input produced before the group is loaded stripe by stripe, the
    kept rows copied between its two staging slots)."""
    layer = graph.layers[index]
    axis = inner.axis
    computed, cached = dict(inner.computed), dict(inner.cached)
    if rolling and not anchor:
        computed[layer.output], cached[layer.output] = roll(inner.spans[layer.output])
    outs = computed.get(layer.output, inner.spans[layer.output])
    lengths = [graph.shape(t)[axis] for t in layer.inputs]
    empty = (0, 0)  # the union with an empty span is the other span
    need = {t: list(inner.spans.get(t, (empty,) * len(outs))) for t in layer.inputs}
    read = [0] * len(layer.inputs)
    for j, (lo, hi) in enumerate(outs):
        reads = input_channel_spans(graph, layer, lo, hi) if axis == CHANNELS else input_spans(graph, layer, axis, lo, hi)
        for k, (t, span) in enumerate(zip(layer.inputs, reads)):
            read[k] += max(0, min(span[1], lengths[k]) - max(span[0], 0))
            need[t][j] = _union(need[t][j], span if axis == CHANNELS else _clip(span, lengths[k]))
    spans, total, largest = dict(inner.spans), dict(inner.total), dict(inner.largest)
    for t, tiles in need.items():
        sizes = [b - a for a, b in tiles]
        spans[t], total[t], largest[t] = tuple(tiles), sum(sizes), max(sizes)
        if rolling:
            computed[t], cached[t] = roll(spans[t])
    return AxisSpans(axis, inner.count, spans, total, largest, {index: tuple(read), **inner.reads}, computed, cached)


def axis_spans(graph: Graph, shape: GroupShape, axis: int, size: int, cache: SpanCache | None = None,
               rolling: bool = False) -> AxisSpans:
    """The spans of the group's tensors along ``axis`` when the anchor is cut every ``size``
    along it. They depend on nothing else of the tiling, and the spans of [start, stop) extend
    those of [start + 1, stop) by one layer: a ``cache`` shared across the tilings and the
    groups of one graph computes each step once (it keeps the groups in between too).

    ``rolling`` (rows only): every tensor produced inside the group is rolled (:func:`roll`)
    before its producer's inputs are back-propagated from the rows it computes."""
    if rolling and axis != ROWS:
        raise ValueError("rolling buffers cut rows only")
    if cache is None:
        cache = {}
    key_axis = ROLLING_ROWS if rolling else axis
    start, stop = shape.start, shape.stop
    first = start  # [first, stop) is the longest group inside [start, stop) in the cache
    while first < stop and (first, stop, key_axis, size) not in cache:
        first += 1
    spans = cache[(first, stop, key_axis, size)] if first < stop else _anchor_spans(graph, stop, axis, size)
    for i in range(first - 1, start - 1, -1):
        spans = cache[(i, stop, key_axis, size)] = _prepend_layer(graph, spans, i, rolling, i == stop - 1)
    return spans


def fdt_spans(graph: Graph, shape: GroupShape, size: int, cache: SpanCache | None = None) -> AxisSpans:
    """Channel spans of an FDT group (:mod:`memplan.geometry.fdt`) with slices of ``size``
    channels of its consumer's input: the anchor spans all its channels in every slice, the
    consumer reads slice ``i`` of its input in slice ``i``, and the layers before it are
    back-propagated as any group's."""
    key = (shape.start, shape.stop, FDT_AXIS, size)
    if cache is not None and key in cache:
        return cache[key]
    consumer = fdt_consumer(graph, shape.start, shape.stop, shape.internal)
    if consumer is None:
        raise ValueError(f"group [{shape.start}, {shape.stop}) has no FDT consumer")
    src = accumulated_tensor(consumer)
    c_out, c_in = graph.shape(shape.anchor)[1], graph.shape(src)[1]
    slices = slice_spans(c_in, size)
    k = len(slices)
    spans = AxisSpans(CHANNELS, k, {shape.anchor: ((0, c_out),) * k, src: slices},
                      {shape.anchor: c_out * k, src: c_in}, {shape.anchor: c_out, src: max(b - a for a, b in slices)},
                      {shape.stop - 1: (c_in,)})
    for i in range(shape.stop - 2, shape.start - 1, -1):
        spans = _prepend_layer(graph, spans, i)
    if cache is not None:
        cache[key] = spans
    return spans


def group_geometry(graph: Graph, shape: GroupShape, tiling: Tiling, cache: SpanCache | None = None) -> GroupGeometry:
    """Spans of every tensor of the group. Row spans depend only on the tile height, column
    spans only on the tile width and channel spans only on the channels per tile (or per FDT
    slice), so a ``cache`` shared across the tilings of one graph saves recomputing them."""
    chans = (fdt_spans(graph, shape, tiling.fdt_c, cache) if tiling.fdt_c
             else axis_spans(graph, shape, CHANNELS, tiling.tile_c, cache))
    return GroupGeometry(graph, shape, tiling,
                         axis_spans(graph, shape, ROWS, tiling.tile_h, cache, tiling.rolling),
                         axis_spans(graph, shape, COLUMNS, tiling.tile_w, cache),
                         chans)
