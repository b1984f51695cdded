"""Fused groups and their tilings.

A group is a range [start, stop) of the graph's topological order (a contiguous range of a
topological order is always convex). It runs tile by tile: each tile is a region of the
group's *anchor*, the output of its last layer; every other tensor the group produces is
consumed inside the group only, so it exists as tile buffers in SRAM and never as a whole.
Residual blocks, inception branches and concats can sit inside one group; a tensor consumed
after the group must be the anchor (a group ends at a fork that leaves it).

Tiles split the anchor into a grid of rows x columns, and (for a group of one layer) into
output-channel splits: for a weighted layer the input is then re-read once per split, as in
the Synopsys seed. The
order is channel splits outermost, then rows, then columns. Because back-propagation through a
layer is independent per axis, each tensor's region in a tile is the product of its row span
for the tile's row, its column span for the tile's column and its channel span: the spans are
computed per axis once, and whole-group sums factorise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

from memplan.config import TilingRules
from memplan.geometry.backprop import Span, input_channel_spans, input_spans
from memplan.geometry.region import Region
from memplan.ir.graph import Graph
from memplan.ir.ops import ceil_div


@dataclass(frozen=True)
class GroupShape:
    """Which tensors a group reads, produces internally and emits."""

    start: int
    stop: int
    anchor: str
    external_inputs: tuple[str, ...]  # produced before the group (or model inputs), first use order
    internal: tuple[str, ...]  # produced and consumed inside the group, production order

    @property
    def layer_range(self) -> range:
        return range(self.start, self.stop)

    def __len__(self) -> int:
        return self.stop - self.start


def group_shape(graph: Graph, start: int, stop: int) -> GroupShape | None:
    """The group [start, stop), or None if a tensor other than the last layer's output is
    needed after the group (or is a model output)."""
    if not 0 <= start < stop <= len(graph.layers):
        raise ValueError(f"bad group range [{start}, {stop})")
    outputs = set(graph.outputs)
    internal: list[str] = []
    for i in range(start, stop - 1):
        t = graph.layers[i].output
        if t in outputs or any(c >= stop for c in graph.consumers.get(t, ())):
            return None
        if not graph.consumers.get(t):
            return None  # dead tensor: no consumer at all
        internal.append(t)
    produced = {graph.layers[i].output for i in range(start, stop)}
    ext: dict[str, None] = {}
    for i in range(start, stop):
        for t in graph.layers[i].inputs:
            if t not in produced:
                ext.setdefault(t, None)
    return GroupShape(start, stop, graph.layers[stop - 1].output, tuple(ext), tuple(internal))


# ---------------------------------------------------------------------------- tilings
@dataclass(frozen=True, order=True)
class Tiling:
    """Tile sizes of the anchor: rows, columns and channels per tile (edge tiles are smaller)."""

    tile_h: int
    tile_w: int
    tile_c: int

    def to_json(self) -> list[int]:
        return [self.tile_h, self.tile_w, self.tile_c]


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


def channel_splittable(graph: Graph, shape: GroupShape) -> bool:
    """Output-channel splits apply to a group of one layer: for a weighted layer they bound the
    weight buffer (the input is re-read per split); for channel-wise ops such as global
    pooling they bound the input that must be held whole."""
    return len(shape) == 1


def tiling_options(graph: Graph, shape: GroupShape, rules: TilingRules) -> list[Tiling]:
    """Every tiling of the group's anchor that the rules allow (at most ``max_tiles`` tiles)."""
    _, c, h, w = graph.shape(shape.anchor)
    rows = _axis_sizes(h, rules.tile_multiple, rules.max_tiles)
    cols = [w] if rules.row_only else _axis_sizes(w, rules.tile_multiple, rules.max_tiles)
    chans = _axis_sizes(c, 1, rules.max_tiles) if channel_splittable(graph, shape) else [c]
    out = []
    for tc in chans:
        nc = ceil_div(c, tc)
        for th in rows:
            nh = ceil_div(h, th)
            for tw in cols:
                if nc * nh * ceil_div(w, tw) <= rules.max_tiles:
                    out.append(Tiling(th, tw, tc))
    return out


# ---------------------------------------------------------------------------- spans
@dataclass(frozen=True)
class GroupGeometry:
    """Per-axis spans of every tensor of a group for one tiling.

    ``rows[t][i]`` is the (clipped) row span tensor ``t`` must hold for row tile ``i``;
    likewise ``cols`` per column tile and ``chans`` per channel split. For a layer's output
    this is exactly what the layer computes in that tile."""

    graph: Graph
    shape: GroupShape
    tiling: Tiling
    rows: dict[str, tuple[Span, ...]]
    cols: dict[str, tuple[Span, ...]]
    chans: dict[str, tuple[Span, ...]]

    @property
    def n_rows(self) -> int:
        return len(self.rows[self.shape.anchor])

    @property
    def n_cols(self) -> int:
        return len(self.cols[self.shape.anchor])

    @property
    def n_chans(self) -> int:
        return len(self.chans[self.shape.anchor])

    @property
    def n_tiles(self) -> int:
        return self.n_rows * self.n_cols * self.n_chans

    @cached_property
    def tensors(self) -> tuple[str, ...]:
        return (*self.shape.external_inputs, *self.shape.internal, self.shape.anchor)

    def region(self, tensor: str, ci: int, ri: int, xi: int) -> Region:
        c, r, x = self.chans[tensor][ci], self.rows[tensor][ri], self.cols[tensor][xi]
        return Region(c[0], c[1], r[0], r[1], x[0], x[1])

    def tiles(self) -> Iterator[tuple[int, int, int]]:
        """Tile coordinates (channel split, row, column) in execution order."""
        for ci in range(self.n_chans):
            for ri in range(self.n_rows):
                for xi in range(self.n_cols):
                    yield ci, ri, xi

    def max_elems(self, tensor: str) -> int:
        """Largest region of ``tensor`` over the tiles (its tile buffer size in elements)."""
        return (max(b - a for a, b in self.chans[tensor]) * max(b - a for a, b in self.rows[tensor])
                * max(b - a for a, b in self.cols[tensor]))

    def sum_elems(self, tensor: str) -> int:
        """Elements of ``tensor`` held summed over all tiles (what loading it per tile costs)."""
        return (sum(b - a for a, b in self.chans[tensor]) * sum(b - a for a, b in self.rows[tensor])
                * sum(b - a for a, b in self.cols[tensor]))


def _clip(span: Span, length: int) -> Span:
    lo, hi = min(max(span[0], 0), length), min(span[1], length)
    return (lo, max(hi, lo))


def _union(a: Span | None, b: Span) -> Span:
    if a is None or a[0] >= a[1]:
        return b
    if b[0] >= b[1]:
        return a
    return (min(a[0], b[0]), max(a[1], b[1]))


def _backprop_axis(graph: Graph, shape: GroupShape, axis: int, anchor_span: Span) -> dict[str, Span]:
    """Clipped span of every tensor of the group for one anchor span along a spatial axis."""
    need: dict[str, Span | None] = {shape.anchor: anchor_span}
    for i in reversed(shape.layer_range):
        layer = graph.layers[i]
        out = need[layer.output]
        assert out is not None
        for t, span in zip(layer.inputs, input_spans(graph, layer, axis, *out)):
            need[t] = _union(need.get(t), _clip(span, graph.shape(t)[axis]))
    return need  # type: ignore[return-value]


def _backprop_channels(graph: Graph, shape: GroupShape, anchor_span: Span) -> dict[str, Span]:
    need: dict[str, Span | None] = {shape.anchor: anchor_span}
    for i in reversed(shape.layer_range):
        layer = graph.layers[i]
        out = need[layer.output]
        assert out is not None
        for t, span in zip(layer.inputs, input_channel_spans(graph, layer, *out)):
            need[t] = _union(need.get(t), span)
    return need  # type: ignore[return-value]


SpanCache = dict[tuple[int, int, int, int], dict[str, tuple[Span, ...]]]


def group_geometry(graph: Graph, shape: GroupShape, tiling: Tiling, cache: SpanCache | None = None) -> GroupGeometry:
    """Spans of every tensor of the group. Row spans depend only on the tile height and
    column spans only on the tile width, so a ``cache`` shared across the tilings of one
    graph saves recomputing them (key: start, stop, axis, size)."""
    _, c, h, w = graph.shape(shape.anchor)
    per_axis: list[dict[str, tuple[Span, ...]]] = []
    for axis, length, size in ((2, h, tiling.tile_h), (3, w, tiling.tile_w)):
        key = (shape.start, shape.stop, axis, size)
        if cache is not None and key in cache:
            per_axis.append(cache[key])
            continue
        spans = [_backprop_axis(graph, shape, axis, s) for s in split_axis(length, size)]
        result = {t: tuple(sp[t] for sp in spans) for t in spans[0]}
        if cache is not None:
            cache[key] = result
        per_axis.append(result)
    ch = [_backprop_channels(graph, shape, s) for s in split_axis(c, tiling.tile_c)]
    chans = {t: tuple(sp[t] for sp in ch) for t in ch[0]}
    return GroupGeometry(graph, shape, tiling, per_axis[0], per_axis[1], chans)
