"""The DRAM side of a plan: where every tensor that leaves SRAM lives, and the weight blob.

A plan's SRAM buffers have offsets from the planner; firmware also needs DRAM addresses. This
module derives them from the plan and the graph, deterministically, so that the plan file,
``memplan verify`` and the C export agree on one map.

Feature-map arena
-----------------
A tensor has a DRAM home when a command moves it there or reads it from there: a model input
that is not resident in SRAM (the application writes it before the run), a model output that
is not resident (read after the run), a tensor a STORE writes or a LOAD reads (spilled), and
every tensor a host layer reads or writes. Its bytes are the whole tensor, channel-major
``(C, H, W)`` for a feature map (the layout of :mod:`memplan.execute.tiled`), row-major in the
tensor's own shape otherwise, at the profile's element size (int32 host outputs: 4 bytes per
element). Its lifetime is in command indices ``[first, last]``: from the first command that
writes it (0 for a model input) to the last one that reads it (``len(commands)`` for a model
output, which must survive the run). Tensors whose lifetimes are disjoint share addresses: the
arena is packed by :func:`memplan.alloc.first_fit`, each tensor at a multiple of
:data:`DRAM_ALIGN`. Lifetimes are closed intervals here (a command that reads one tensor and
writes another needs both), so the packing uses ``[first, last + 1)``.

Weight blob
-----------
Read-only, separate from the arena (flash or DRAM). One record per layer with weights, in
schedule order, each part at a multiple of :data:`DRAM_ALIGN`: the int8 weights as
``channels`` rows of ``row_bytes`` (output channel after output channel, each row in the
weight tensor's axis order; for a ConvTranspose the ``(C_in/g, kh, kw)`` block of the output
channel), then, when the layer has a bias, ``channels`` int32 little-endian biases. A
LOAD_WEIGHTS of output channels ``[c0, c1)`` copies rows ``c0..c1-1`` and then biases
``c0..c1-1`` into SRAM, back to back.

That is the ``int8`` weight encoding (profiles without a weight codec). With an Ethos-U codec
(``ethos-u-mlw``, or the fallback ``ethos-u-raw``; :mod:`memplan.cost.weights`) a layer's
record holds instead one stream per output-channel slice the plan loads (the distinct
``channels`` of its LOAD_WEIGHTS commands, in order of ``(c0, c1)``), each at a multiple of
:data:`DRAM_ALIGN`: the slice's scale/bias records, padded to 16 bytes, then its encoded
weights. A LOAD_WEIGHTS of ``[c0, c1)`` copies exactly that slice's bytes into SRAM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from memplan.alloc import Block, extent, first_fit
from memplan.cost.weights import INT8, WeightFormat, per_channel, records_bytes, slice_bytes
from memplan.host import tensor_bytes
from memplan.ir.graph import Graph
from memplan.ir.ops import WEIGHTED
from memplan.plan.model import BufferKind, Op, Plan

#: alignment in bytes of every DRAM address this module assigns
DRAM_ALIGN = 16
#: bytes of one bias in the weight blob (int32, little-endian)
BIAS_BYTES = 4

ROLE_INPUT, ROLE_OUTPUT, ROLE_SPILL, ROLE_HOST = "input", "output", "spill", "host"
ROLES = (ROLE_INPUT, ROLE_OUTPUT, ROLE_SPILL, ROLE_HOST)


def align_up(n: int, alignment: int = DRAM_ALIGN) -> int:
    return -(-n // alignment) * alignment


@dataclass(frozen=True)
class DramTensor:
    """A tensor's home in the feature-map arena: ``size`` bytes at ``offset``, needed from
    command ``first`` to command ``last`` (inclusive)."""

    tensor: str
    offset: int
    size: int
    first: int
    last: int
    role: str

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True)
class WeightSlice:
    """One encoded slice of a layer's weights in the blob: output channels ``[c0, c1)``,
    ``size`` bytes at ``offset``: records first, the weight stream at ``offset +
    stream_offset`` (``stream_bytes`` long)."""

    c0: int
    c1: int
    offset: int
    size: int
    stream_offset: int

    @property
    def stream_bytes(self) -> int:
        return self.size - self.stream_offset


@dataclass(frozen=True)
class WeightRecord:
    """A layer's weights in the weight blob (see the module documentation). ``slices``: the
    encoded slices (empty for the int8 encoding, which stores rows and biases whole)."""

    layer: str
    offset: int
    row_bytes: int
    channels: int
    bias_offset: int | None
    encoding: str = INT8
    slices: tuple[WeightSlice, ...] = ()

    @property
    def weight_bytes(self) -> int:
        if self.encoding != INT8:
            return sum(s.size for s in self.slices)
        return self.row_bytes * self.channels

    def slice(self, c0: int, c1: int) -> WeightSlice | None:
        return next((s for s in self.slices if (s.c0, s.c1) == (c0, c1)), None)

    def slice_bytes(self, c0: int, c1: int) -> int:
        """Bytes a LOAD_WEIGHTS of output channels ``[c0, c1)`` moves (0 for an encoded slice
        the plan never loads)."""
        if self.encoding != INT8:
            found = self.slice(c0, c1)
            return 0 if found is None else found.size
        return (c1 - c0) * (self.row_bytes + (BIAS_BYTES if self.bias_offset is not None else 0))


@dataclass(frozen=True)
class MemoryMap:
    """The DRAM arena of feature maps and the weight blob of one plan.

    ``tensor_ids``: every tensor of the graph numbered in the order firmware tables use (model
    inputs, then each layer's output in schedule order)."""

    arena_bytes: int
    tensors: tuple[DramTensor, ...]
    weights: tuple[WeightRecord, ...]
    weights_bytes: int
    tensor_ids: Mapping[str, int]

    def dram(self, tensor: str) -> DramTensor | None:
        return next((t for t in self.tensors if t.tensor == tensor), None)

    def weight(self, layer: str) -> WeightRecord | None:
        return next((w for w in self.weights if w.layer == layer), None)


def tensor_order(graph: Graph) -> tuple[str, ...]:
    """Every tensor a plan can name: model inputs, then layer outputs in schedule order."""
    seen: dict[str, None] = dict.fromkeys(graph.inputs)
    for layer in graph.layers:
        seen.setdefault(layer.output, None)
    return tuple(seen)


def _lifetimes(plan: Plan, graph: Graph) -> dict[str, list[int]]:
    """Tensor -> [first, last] command index of its DRAM home, and its role."""
    end = len(plan.commands)
    resident = {b.tensor for b in plan.buffers if b.kind is BufferKind.RESIDENT}
    span: dict[str, list[int]] = {}

    def touch(tensor: str, k: int) -> None:
        s = span.setdefault(tensor, [k, k])
        s[0], s[1] = min(s[0], k), max(s[1], k)

    for name in graph.inputs:
        if name not in resident:
            touch(name, 0)
    for k, cmd in enumerate(plan.commands):
        if cmd.op in (Op.LOAD, Op.STORE):
            assert cmd.tensor is not None
            touch(cmd.tensor, k)
        elif cmd.op is Op.HOST:
            for t in (*cmd.host_inputs, *cmd.host_outputs):
                touch(t, k)
    for name in graph.outputs:
        if name not in resident:
            touch(name, end)
    return span


def memory_map(plan: Plan, graph: Graph) -> MemoryMap:
    """The DRAM map of ``plan`` (a plan of ``graph``): deterministic, a function of the two."""
    span = _lifetimes(plan, graph)
    host = {t for k in graph.host_layers for t in (*graph.layers[k].inputs, graph.layers[k].output)}
    order = tensor_order(graph)
    sizes = {t: tensor_bytes(graph, t, plan.elem_bytes) for t in span}
    blocks = [Block(t, align_up(sizes[t]), span[t][0], span[t][1] + 1) for t in order if t in span]
    offsets = first_fit(blocks, DRAM_ALIGN)

    def role(t: str) -> str:
        if t in graph.inputs:
            return ROLE_INPUT
        if t in graph.outputs:
            return ROLE_OUTPUT
        return ROLE_HOST if t in host else ROLE_SPILL

    tensors = tuple(DramTensor(t, offsets[t], sizes[t], span[t][0], span[t][1], role(t)) for t in order if t in span)
    weights: list[WeightRecord] = []
    cursor = 0
    fmt = WeightFormat(plan.weight_encoding, plan.elem_bytes, plan.bias_bytes)
    loaded: dict[str, set[tuple[int, int]]] = {}
    for cmd in plan.commands:
        if cmd.op is Op.LOAD_WEIGHTS and cmd.layer is not None and cmd.channels is not None:
            loaded.setdefault(cmd.layer, set()).add((cmd.channels[0], cmd.channels[1]))
    for layer in graph.layers:
        if layer.op not in WEIGHTED or layer.weight is None:
            continue
        channels = graph.out_channels(layer)
        row = per_channel(graph, layer)
        if fmt.encoding != INT8:
            slices = []
            offset = cursor
            for c0, c1 in sorted(loaded.get(layer.id, ())):
                size = slice_bytes(graph, layer, c0, c1, fmt)
                slices.append(WeightSlice(c0, c1, cursor, size, records_bytes(c1 - c0)))
                cursor = align_up(cursor + size)
            weights.append(WeightRecord(layer.id, offset, row, channels, None, fmt.encoding, tuple(slices)))
            continue
        bias_offset = None
        offset, cursor = cursor, align_up(cursor + row * channels)
        if layer.bias is not None:
            bias_offset, cursor = cursor, align_up(cursor + BIAS_BYTES * channels)
        weights.append(WeightRecord(layer.id, offset, row, channels, bias_offset))
    return MemoryMap(align_up(extent(blocks, offsets)), tensors, tuple(weights), cursor,
                     MappingProxyType({t: i for i, t in enumerate(order)}))
