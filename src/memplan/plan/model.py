"""The plan: decisions, derived SRAM buffers, the command stream and the totals.

Time is counted in *schedule steps*: layer ``i`` of the topological order runs at step ``i``;
a group [a, b) occupies steps [a, b). A buffer is live over [t0, t1). Inside a buffer a
feature-map region is stored channel-major (C, H, W), one element per ``elem_bytes``; a weight
slice is stored as int8 weights of each output channel in turn, then its int32 biases.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from memplan.geometry.group import Tiling
from memplan.geometry.region import Region

SCHEMA_VERSION = 3


@dataclass(frozen=True)
class GroupDecision:
    start: int
    stop: int
    tiling: Tiling


@dataclass(frozen=True)
class Decisions:
    """What a planner chooses. ``keep``: layers whose weights stay in SRAM for the whole group
    (others are reloaded every tile). ``resident``: tensors that cross a group boundary and
    stay whole in SRAM from their producer's group to their last consumer's group (others are
    spilled: written to DRAM and read back with halos). ``prefetch``: layers whose weight
    buffer is live from the step before its own, so that its loads run during that step's
    compute. ``double``: layers whose weight buffer has two slots, live over the whole group,
    loads alternating between them, so that each load after the first runs while the previous
    slice computes (:func:`memplan.cost.candidate.serial_weight_bytes`)."""

    groups: tuple[GroupDecision, ...]
    keep: frozenset[str] = frozenset()
    resident: frozenset[str] = frozenset()
    prefetch: frozenset[str] = frozenset()
    double: frozenset[str] = frozenset()


class BufferKind(str, enum.Enum):
    CORE = "core"  # tile buffer of a tensor produced and consumed inside a group
    IN_STAGE = "in_stage"  # tile of an external input, loaded by DMA (per slot)
    OUT_STAGE = "out_stage"  # tile of the group's anchor, stored by DMA (per slot)
    WEIGHT_KEEP = "weight_keep"  # a layer's weights, resident while its group runs
    WEIGHT_RELOAD = "weight_reload"  # a layer's weight slice, reloaded every tile
    RESIDENT = "resident"  # a whole tensor kept in SRAM across groups
    ACCUMULATOR = "accumulator"  # an FDT group's int32 partial sums of one anchor tile (memplan.geometry.fdt)


@dataclass(frozen=True)
class Buffer:
    name: str
    kind: BufferKind
    offset: int
    size: int
    t0: int
    t1: int
    tensor: str | None = None
    layer: str | None = None

    @property
    def end(self) -> int:
        return self.offset + self.size


class Op(str, enum.Enum):
    LOAD = "load"  # DRAM -> SRAM, a feature-map region
    STORE = "store"  # SRAM -> DRAM, a feature-map region
    LOAD_WEIGHTS = "load_weights"  # DRAM -> SRAM, weights and biases of output channels [c0, c1)
    COMPUTE = "compute"
    COPY = "copy"  # SRAM -> SRAM: rows of a rolling buffer, from the previous stripe's slot to this one's
    HOST = "host"  # the host CPU runs a host layer: its inputs from DRAM, its output to DRAM
    REQUANTIZE = "requantize"  # an FDT group's accumulator + bias -> int8 anchor tile, after the last slice


@dataclass(frozen=True)
class Operand:
    """A buffer view: ``region`` of ``tensor`` stored at SRAM ``offset`` (channel-major)."""

    tensor: str
    region: Region
    offset: int


@dataclass(frozen=True)
class Command:
    """One command of the stream. Fields not used by an op are None.

    load/store: ``tensor``, ``region``, ``offset``; a load into a rolling buffer's slot, and a
    store from a multi-output group's tile buffer, also have ``output``, the SRAM view the
    region sits in (the slot's or tile buffer's whole region, at ``offset``).
    copy: ``tensor``, ``region`` (the cells
    copied), ``inputs`` (one operand: the slot copied from) and ``output`` (the slot copied
    into). load_weights: ``layer``, ``channels``,
    ``offset``. compute: ``layer``, ``region`` (the output region computed), ``inputs``
    (one operand per layer input), ``output`` (the operand written into), ``weights_offset``
    (None when the layer has no weights or reads them in place from DRAM/flash). host:
    ``layer``, ``host_inputs`` (the tensors it reads from DRAM) and ``host_outputs`` (the
    tensors it writes there).

    FDT groups (:mod:`memplan.geometry.fdt`): the consumer's compute has ``in_channels``, the
    slice of its input channels it multiplies, and ``accumulate``: False for the first slice of
    a tile (it writes its int32 partial sums), True for the others (they add theirs); its
    ``output`` is the accumulator (``region`` of the anchor, int32 little-endian, channel-major).
    requantize: ``layer`` (the consumer), ``region`` (the anchor tile), ``inputs`` (one operand:
    the accumulator) and ``output`` (where the int8 tile goes); the biases are read in place."""

    op: Op
    step: int
    group: int
    tile: int
    tensor: str | None = None
    region: Region | None = None
    offset: int | None = None
    layer: str | None = None
    channels: tuple[int, int] | None = None
    inputs: tuple[Operand, ...] = ()
    output: Operand | None = None
    weights_offset: int | None = None
    host_inputs: tuple[str, ...] = ()
    host_outputs: tuple[str, ...] = ()
    in_channels: tuple[int, int] | None = None
    accumulate: bool | None = None


@dataclass(frozen=True)
class Totals:
    """Exact totals of a plan. Energy is in femtojoules (integers: profile energies have at
    most three decimals of pJ); cycles follow the profile's latency model. ``recompute_macs``
    is MACs beyond the untiled network: negative when a fused group skips outputs of an inner
    layer that nothing reads (a strided 1x1 conv after it, say)."""

    dram_read_fm: int
    dram_write_fm: int
    dram_read_weights: int
    macs: int
    recompute_macs: int
    sram_peak: int
    sram_access: int
    energy_fj: int
    cycles: int

    @property
    def dram_total(self) -> int:
        return self.dram_read_fm + self.dram_write_fm + self.dram_read_weights

    @property
    def energy_pj(self) -> float:
        return self.energy_fj / 1000

    def to_json(self) -> dict[str, Any]:
        return {
            "dram_read_fm": self.dram_read_fm,
            "dram_write_fm": self.dram_write_fm,
            "dram_read_weights": self.dram_read_weights,
            "dram_total": self.dram_total,
            "macs": self.macs,
            "recompute_macs": self.recompute_macs,
            "sram_peak": self.sram_peak,
            "sram_access": self.sram_access,
            "energy_fj": self.energy_fj,
            "energy_pj": self.energy_pj,
            "cycles": self.cycles,
        }


@dataclass(frozen=True)
class HostTotals:
    """What the host layers of a plan move, apart from the accelerator's totals (which stay
    comparable with plans of models without host layers): DRAM bytes the host reads and
    writes (int8 tensors at the profile's element size, int32 ones at 4 bytes). No profile
    gives host energy or cycles yet, so none are reported."""

    layers: int = 0
    dram_read: int = 0
    dram_write: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"layers": self.layers, "dram_read": self.dram_read, "dram_write": self.dram_write}


@dataclass(frozen=True)
class Provenance:
    """Where a plan came from, as the plan file records it: the strategy and objective, the
    solver's record (``memplan.solve.run.SolverStats.to_json()``; None for a baseline), the
    model file's sha256 and the input shapes it was loaded at. ``partial``: a greedy plan cut
    short by the deadline (the solver's business only; never written). None of it follows
    from the decisions, so plans compare equal without it."""

    strategy: str | None = None
    objective: str | None = None
    solver: Mapping[str, Any] | None = None
    model_sha256: str | None = None
    model_input_shapes: Mapping[str, tuple[int, ...]] | None = None
    partial: bool = False


@dataclass(frozen=True)
class Plan:
    """A complete, executable plan for one graph on one hardware profile."""

    graph_name: str
    sram_bytes: int
    elem_bytes: int
    bias_bytes: int
    decisions: Decisions
    buffers: tuple[Buffer, ...]
    commands: tuple[Command, ...]
    totals: Totals
    provenance: Provenance = field(default=Provenance(), compare=False)
    host: HostTotals = HostTotals()
    #: the encoding that sized and lays out the weight slices (memplan.cost.weights.ENCODINGS):
    #: the profile's ``weight_encoding`` when the plan was made
    weight_encoding: str = "int8"
