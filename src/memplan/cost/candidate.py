"""Exact costs of one candidate: a group with a tiling, on a hardware profile.

Everything here is summed over the real tiles (edge tiles included), using the per-axis spans
of :mod:`memplan.geometry.group`: a tensor's region bytes summed over all tiles factorise into
(sum of channel spans) x (sum of row spans) x (sum of column spans). The numbers are the
coefficients the CP-SAT model and the baselines choose among; :mod:`memplan.plan.build` derives
the same totals again command by command, and tests hold the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass

from memplan.config import HardwareProfile
from memplan.geometry.backprop import input_channel_spans, input_spans, region_macs, transpose_taps
from memplan.geometry.group import GroupGeometry, GroupShape, SpanCache, Tiling, group_geometry
from memplan.geometry.region import Region
from memplan.ir.graph import Graph, Layer
from memplan.ir.ops import WEIGHTED, ConvTransposeAttrs, OpKind
from memplan.plan.alloc import Block, extent, first_fit


@dataclass(frozen=True)
class InputCost:
    """An external input of the group: DMA bytes if it is loaded tile by tile from DRAM, and
    the staging buffer that holds one tile of it (times the staging slots)."""

    tensor: str
    load_bytes: int
    stage_bytes: int
    last_use: int  # index of the last layer in the group that reads it


@dataclass(frozen=True)
class WeightCost:
    """A weighted layer of the group. Weights and bias of an output-channel slice travel
    together; ``slice_bytes`` is the largest slice (the buffer size)."""

    layer: str
    index: int
    total_bytes: int  # whole layer, every slice once: what keeping costs in DMA bytes
    reload_bytes: int  # the slice of every tile: what reloading per tile costs
    slice_bytes: int


@dataclass(frozen=True)
class CoreBuffer:
    """A tile buffer of a tensor produced and consumed inside the group, at a fixed offset
    inside the group's core workspace, live over layer steps [t0, t1)."""

    tensor: str
    offset: int
    size: int
    t0: int
    t1: int


@dataclass(frozen=True)
class Candidate:
    """A (group, tiling) with every exact cost the planner needs."""

    start: int
    stop: int
    tiling: Tiling
    n_tiles: int
    anchor: str
    inputs: tuple[InputCost, ...]
    store_bytes: int  # anchor bytes written when the anchor is spilled (the whole tensor)
    out_stage_bytes: int  # anchor staging buffer (times slots) when it is spilled
    core: tuple[CoreBuffer, ...]
    core_bytes: int
    macs: int
    compute_sram_bytes: int  # bytes compute commands read and write in SRAM (feature maps)
    weights: tuple[WeightCost, ...]

    @property
    def key(self) -> tuple[int, int, Tiling]:
        return (self.start, self.stop, self.tiling)

    @property
    def name(self) -> str:
        t = self.tiling
        return f"g{self.start}_{self.stop}_t{t.tile_h}x{t.tile_w}x{t.tile_c}"


def staging_slots(hw: HardwareProfile) -> int:
    """Tile buffers that DMA fills or drains are double-buffered when DMA overlaps compute."""
    return 2 if hw.dma_overlaps_compute else 1


def weight_slice_bytes(graph: Graph, layer: Layer, channels: int, hw: HardwareProfile) -> int:
    """Bytes of the weights and bias that produce ``channels`` output channels of ``layer``."""
    if layer.op not in WEIGHTED:
        return 0
    per_channel = graph.weight_elems(layer) // graph.out_channels(layer)
    bias = hw.bias_bytes if layer.bias else 0
    return channels * (per_channel * hw.elem_bytes + bias)


def _core_layout(graph: Graph, geo: GroupGeometry, hw: HardwareProfile) -> tuple[tuple[CoreBuffer, ...], int]:
    shape = geo.shape
    blocks = []
    for t in shape.internal:
        p = graph.producer[t]
        q = max(c for c in graph.consumers[t] if c < shape.stop)
        blocks.append(Block(t, geo.max_elems(t) * hw.elem_bytes, p, q + 1))
    offsets = first_fit(blocks)
    core = tuple(CoreBuffer(b.name, offsets[b.name], b.size, b.t0, b.t1) for b in blocks)
    return core, extent(blocks, offsets)


def _layer_macs(graph: Graph, geo: GroupGeometry, layer: Layer) -> int:
    """MACs of one layer summed over all tiles. Separable for every op: for a ConvTranspose
    the taps landing in a row span do not depend on the columns, and vice versa."""
    t = layer.output
    rows, cols, chans = geo.rows[t], geo.cols[t], geo.chans[t]
    c_sum = sum(b - a for a, b in chans)
    if layer.op is OpKind.CONV_TRANSPOSE:
        a = layer.attrs
        assert isinstance(a, ConvTransposeAttrs)
        n, c_in, h_in, w_in = graph.shape(layer.inputs[0])
        ty = sum(transpose_taps(y0, y1, a.kernel[0], a.stride[0], a.pads[0], a.dilation[0], h_in) for y0, y1 in rows)
        tx = sum(transpose_taps(x0, x1, a.kernel[1], a.stride[1], a.pads[1], a.dilation[1], w_in) for x0, x1 in cols)
        return n * ty * tx * (c_in // a.groups) * c_sum
    per = region_macs(graph, layer, Region(0, 1, 0, 1, 0, 1))
    return per * c_sum * sum(b - a for a, b in rows) * sum(b - a for a, b in cols)


def _read_elems(graph: Graph, geo: GroupGeometry, layer: Layer) -> int:
    """Feature-map elements ``layer`` reads over all tiles: per distinct input, the clipped
    region it needs for each tile's output region (separable like everything else)."""
    out = layer.output
    shapes = [graph.shape(t) for t in layer.inputs]
    k = len(layer.inputs)
    sums = [[0] * k for _ in range(3)]  # channels, rows, columns
    for a, b in geo.chans[out]:
        for idx, span in enumerate(input_channel_spans(graph, layer, a, b)):
            sums[0][idx] += _clipped_len(span, shapes[idx][1])
    for axis, spans in ((2, geo.rows[out]), (3, geo.cols[out])):
        for a, b in spans:
            for idx, span in enumerate(input_spans(graph, layer, axis, a, b)):
                sums[axis - 1][idx] += _clipped_len(span, shapes[idx][axis])
    seen: set[str] = set()
    total = 0
    for idx, t in enumerate(layer.inputs):
        if t not in seen:
            seen.add(t)
            total += sums[0][idx] * sums[1][idx] * sums[2][idx]
    return total


def _clipped_len(span: tuple[int, int], length: int) -> int:
    return max(0, min(span[1], length) - max(span[0], 0))


def candidate_cost(graph: Graph, shape: GroupShape, tiling: Tiling, hw: HardwareProfile,
                   cache: SpanCache | None = None) -> Candidate:
    geo = group_geometry(graph, shape, tiling, cache)
    eb = hw.elem_bytes
    slots = staging_slots(hw)
    n = geo.n_tiles
    inputs = []
    for t in shape.external_inputs:
        last = max(c for c in graph.consumers[t] if shape.start <= c < shape.stop)
        inputs.append(InputCost(t, geo.sum_elems(t) * eb, geo.max_elems(t) * eb * slots, last))
    anchor = shape.anchor
    core, core_bytes = _core_layout(graph, geo, hw)
    macs = 0
    compute_sram = 0
    weights = []
    for i in shape.layer_range:
        layer = graph.layers[i]
        macs += _layer_macs(graph, geo, layer)
        compute_sram += (geo.sum_elems(layer.output) + _read_elems(graph, geo, layer)) * eb
        if layer.op in WEIGHTED:
            spans = geo.chans[layer.output]
            per_split = [weight_slice_bytes(graph, layer, b - a, hw) for a, b in spans]
            spatial = geo.n_rows * geo.n_cols
            weights.append(WeightCost(layer.id, i, sum(per_split), spatial * sum(per_split), max(per_split)))
    return Candidate(
        start=shape.start,
        stop=shape.stop,
        tiling=tiling,
        n_tiles=n,
        anchor=anchor,
        inputs=tuple(inputs),
        store_bytes=geo.sum_elems(anchor) * eb,
        out_stage_bytes=geo.max_elems(anchor) * eb * slots,
        core=core,
        core_bytes=core_bytes,
        macs=macs,
        compute_sram_bytes=compute_sram,
        weights=tuple(weights),
    )
