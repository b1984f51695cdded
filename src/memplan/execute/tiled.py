"""The tiled executor: run a plan's command stream on simulated SRAM and DRAM, in int8.

:func:`execute_plan` executes the commands of a :class:`~memplan.plan.model.Plan` and nothing
else. Whatever the plan gets wrong shows up as a wrong value, a kernel that lacks an input
cell, or an access outside the plan's buffers; :mod:`memplan.execute.verify` compares the
result with the untiled reference.

Memory model
------------
* SRAM is one ``uint8`` array of ``plan.sram_bytes``, filled before the run with a seeded
  pseudo-random pattern: a byte the plan forgets to fill is garbage, not a lucky zero. Only the
  extent the plan's buffers use (up to the highest buffer end) is allocated: every access must
  lie in a buffer, so the bytes above it are never touched, and a plan for a 2 GiB profile
  that uses 60 KiB runs in 60 KiB.
* DRAM holds, per feature-map tensor, an int8 ``(C, H, W)`` array: model inputs hold the
  quantised input, any other tensor exists once a STORE writes part of it.
* Weights in DRAM are the :class:`~memplan.execute.quantize.QuantizedGraph`'s int8 weights
  and int32 biases, laid out as the plan stores a weight slice: the slice for output channels
  ``[c0, c1)`` is each output channel's weights in turn (in the weight tensor's own axis order,
  for a ConvTranspose the ``(C_in/g, kh, kw)`` block of that output channel), then the slice's
  biases as little-endian int32. For a plan with Ethos-U weights (``plan.weight_encoding``
  ``ethos-u-mlw`` or ``ethos-u-raw``) each slice is instead encoded as
  :mod:`memplan.cost.weights` lays it out: the slice's 10-byte scale/bias records (bias, the
  requantisation's multiplier and shift), padding, then the weights encoded with Vela's codec
  (or raw), each slice on its own.

Commands
--------
* LOAD copies a region of a tensor from DRAM to SRAM at the offset, channel-major (C, H, W).
* STORE copies such a region from SRAM back to DRAM.
* LOAD_WEIGHTS copies the weight slice and biases of output channels ``[c0, c1)`` (the
  encoded slice's bytes, records included).
* HOST runs a host layer on the host CPU (:func:`memplan.host.run_host_int`, as the
  reference): every input must be wholly written in DRAM; the output is written to DRAM whole
  (int8, or int32 for integer outputs); its DRAM bytes are counted apart (``host``).
* COMPUTE reads each input operand (the operand's region at its offset) from SRAM, decodes the
  weights of the output channels from SRAM at ``weights_offset`` (from DRAM when the profile
  reads weights in place, counted as DRAM weight reads; an encoded slice is decoded with its
  codec, its biases are those of its records, whose scales and shifts must be the layer's),
  runs
  :func:`~memplan.execute.kernels.run_layer` with exactly those weights and writes the result
  into the output operand (the command's region inside the region the operand holds).

* COMPUTE with ``accumulate`` set (an FDT slice, :mod:`memplan.geometry.fdt`) multiplies the
  input channels ``in_channels`` of its input operand by the consumer's weights of the region's
  output channels x those input channels (read in place) and writes the exact integer partial
  sums as int32 little-endian into the accumulator operand (``accumulate`` False) or adds them
  to what it holds (True); the accumulator must hold partial sums of other, disjoint channels
  of the same tile, and a sum beyond int32 is an error.
* REQUANTIZE reads the accumulator, which must hold every input channel exactly once, adds the
  consumer's biases (read in place), finishes as the untiled kernel does (rescale, zero point,
  activation) and writes the int8 tile into the output operand.

Resident model inputs are written into their buffer by the host before the run and resident
model outputs are read from SRAM after it; neither is DRAM traffic.

Checks
------
Every SRAM range a command touches must lie inside exactly one buffer of the plan that is live
at the command's step (inside two means two live buffers overlap), and that buffer must belong
to the command's tensor (or, for weights, to its layer). A command may not read SRAM bytes or
DRAM elements nothing has written. Kernels raise
:class:`~memplan.execute.kernels.MissingInputError` when a tile lacks a cell they need (a halo
one row short). Each failure is a :class:`~memplan.errors.VerificationError` naming the command
index, its group and tile.

Counts
------
Every total a plan states is measured here except the SRAM peak (the plan's is the highest
buffer end; the run reports the highest byte touched). DRAM bytes are counted as the copies
happen. SRAM bytes accessed are the DMA bytes plus, per compute, the input cells the kernel
reads (once per input tensor) and the output cells it writes. Energy and cycles follow from
those counts, per group, by the profile's formulas (:func:`memplan.plan.build.energy_fj` and
:func:`~memplan.plan.build.group_cycles`); a compute's cycles are those of the output array
its kernel returned (:func:`memplan.cost.cycles.command_work` of the layer and that array's
shape, summed per group by :func:`~memplan.cost.cycles.group_compute_cycles`). MACs are counted from the work handed to the
kernels, not from the plan's cost model: for convolutions and fully connected layers, the
elements of the output array the kernel returned times the reduction length of the weight
slice decoded from memory (weights per output channel); for ConvTranspose, per output
element, the kernel taps that land on it from inside the input (an input position ``i`` with
``o = i * stride - pad + tap * dilation``) times the input channels per group.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from memplan.config import HardwareProfile
from memplan.cost.candidate import ACC_BYTES, resident_bytes
from memplan.cost.cycles import command_work, group_compute_cycles
from memplan.cost.weights import (INT8, WeightFormat, channel_rows, decode_stream, encode_stream, ethos_u_shift,
                                  ethos_u_slice, records_bytes, unpack_records)
from memplan.errors import VerificationError
from memplan.execute.kernels import (
    MissingInputError,
    Tile,
    finish_partial_sums,
    partial_sum_input,
    partial_sums,
    required_input_regions,
    run_layer,
)
from memplan.execute.quantize import QLayer, QuantizedGraph, Requant
from memplan.geometry.fdt import reduces_over_channels
from memplan.geometry.region import Region
from memplan.ir.graph import Layer
from memplan.host import run_host_int, tensor_bytes
from memplan.ir.ops import WEIGHTED, ConvAttrs, ConvTransposeAttrs, HostAttrs, OpKind, Shape
from memplan.plan.build import WeightTiming, energy_fj
from memplan.plan.model import Buffer, BufferKind, Command, HostTotals, Op, Operand, Plan, Totals

I8 = npt.NDArray[np.int8]
I32 = npt.NDArray[np.int32]
U8 = npt.NDArray[np.uint8]

#: writer of an SRAM byte or DRAM element that nothing has written yet
UNWRITTEN = -1
#: writer of data the host put in place before the run (model inputs)
HOST = -2
#: bytes of a bias in a weight slice: an int32, little-endian
BIAS_BYTES = 4
#: seed of the pattern SRAM holds before the run
SRAM_FILL_SEED = 0x5EED
#: decoded weight slices kept for reuse (keyed by their bytes: identical bytes, identical weights)
_WEIGHT_CACHE_SIZE = 32


@dataclass(frozen=True)
class Counts:
    """DRAM traffic and SRAM accesses in bytes, multiply-accumulates (and those beyond the
    untiled network's), energy in fJ and cycles: as measured or as a plan predicts."""

    dram_read_fm: int
    dram_write_fm: int
    dram_read_weights: int
    macs: int
    recompute_macs: int
    sram_access: int
    energy_fj: int
    cycles: int

    FIELDS: ClassVar[tuple[str, ...]] = ("dram_read_fm", "dram_write_fm", "dram_read_weights", "macs", "recompute_macs",
                                         "sram_access", "energy_fj", "cycles")

    @staticmethod
    def of_totals(totals: Totals) -> Counts:
        return Counts(*(getattr(totals, f) for f in Counts.FIELDS))

    @property
    def dram_total(self) -> int:
        return self.dram_read_fm + self.dram_write_fm + self.dram_read_weights

    def to_json(self) -> dict[str, int]:
        return {**{f: getattr(self, f) for f in self.FIELDS}, "dram_total": self.dram_total}


@dataclass(frozen=True)
class TiledRun:
    """What a run of the command stream produced.

    ``dram``: every tensor a STORE wrote, whole, ``(1, C, H, W)`` (elements never stored hold
    garbage; their ``writers`` entry is :data:`UNWRITTEN`). ``outputs``: every model output,
    from DRAM or from its resident SRAM buffer. ``writers``: per element of each tensor of
    ``dram`` and ``outputs``, the index of the command that last wrote it (:data:`HOST` for
    data the host supplied). ``sram_peak``: one past the highest SRAM byte accessed. ``host``:
    the host layers run and the DRAM bytes they read and wrote."""

    dram: Mapping[str, I8]
    outputs: Mapping[str, I8]
    writers: Mapping[str, I32]
    counts: Counts
    sram_peak: int
    commands: int
    host: HostTotals = HostTotals()


def describe_command(index: int, cmd: Command) -> str:
    """``command 12 (compute conv_3, group 2, tile 5)``: how errors name a command."""
    what = cmd.layer if cmd.op in (Op.COMPUTE, Op.LOAD_WEIGHTS, Op.HOST) else cmd.tensor
    return f"command {index} ({cmd.op.value} {what}, group {cmd.group}, tile {cmd.tile})"


def execute_plan(plan: Plan, qgraph: QuantizedGraph, hw: HardwareProfile, inputs: Mapping[str, npt.ArrayLike],
                 expect: Mapping[str, npt.NDArray[np.int8]] | None = None) -> TiledRun:
    """Execute ``plan``'s command stream on the int8 model ``inputs`` (``(1, C, H, W)`` each).

    ``expect`` (optional, e.g. the untiled reference) maps tensors to their correct values:
    each computed tile is then compared as it is produced, and the first that differs raises
    :class:`VerificationError` naming the command. Raises :class:`VerificationError` on any
    fault described in the module documentation."""
    return _Machine(plan, qgraph, hw, expect).run(inputs)


# ---------------------------------------------------------------------------- weights
@dataclass(frozen=True)
class WeightImage:
    """A weighted layer's weights and biases in DRAM, in slice layout."""

    per_channel: int  # weight elements (= bytes) per output channel
    weights: U8  # (C_out * per_channel,) int8 bytes, output channel after output channel
    biases: U8 | None  # (C_out * 4,) little-endian int32 bytes

    def slice_bytes(self, c0: int, c1: int) -> int:
        return (c1 - c0) * (self.per_channel + (BIAS_BYTES if self.biases is not None else 0))

    def slice(self, c0: int, c1: int) -> U8:
        parts = [self.weights[c0 * self.per_channel: c1 * self.per_channel]]
        if self.biases is not None:
            parts.append(self.biases[c0 * BIAS_BYTES: c1 * BIAS_BYTES])
        return np.concatenate(parts)

    def decode(self, raw: U8, c0: int, c1: int) -> tuple[I8, I32 | None]:
        """Bytes of the slice of output channels ``[c0, c1)`` -> weights ``(channels, per)``
        and biases (copies: later writes to the memory they came from do not change them)."""
        channels = c1 - c0
        n_w = channels * self.per_channel
        weights = raw[:n_w].view(np.int8).reshape(channels, self.per_channel).copy()
        biases = None
        if self.biases is not None:
            biases = np.frombuffer(raw[n_w:n_w + channels * BIAS_BYTES].tobytes(), dtype="<i4").astype(np.int32)
        return weights, biases


@dataclass(frozen=True)
class EncodedImage:
    """A weighted layer's weights in DRAM as Ethos-U slices (:mod:`memplan.cost.weights`),
    each encoded on its own from the quantised graph's weights, biases and requantisation."""

    fmt: WeightFormat
    rows: I8  # (C_out, per_channel) int8
    biases: I32 | None
    scales: npt.NDArray[np.int64]  # (C_out,) the records' 32-bit scales
    shifts: npt.NDArray[np.int64]  # (C_out,) the records' 6-bit shifts
    _slices: dict[tuple[int, int], U8] = dataclasses.field(default_factory=dict, compare=False)
    _known: dict[tuple[int, int], bytes] = dataclasses.field(default_factory=dict, compare=False)

    @property
    def per_channel(self) -> int:
        return self.rows.shape[1]

    def slice(self, c0: int, c1: int) -> U8:
        found = self._slices.get((c0, c1))
        if found is None:
            bias = np.zeros(c1 - c0, dtype=np.int64) if self.biases is None else self.biases[c0:c1]
            data = ethos_u_slice(self.fmt, self.rows[c0:c1], bias, self.scales[c0:c1], self.shifts[c0:c1])
            found = self._slices[(c0, c1)] = _frozen(np.frombuffer(data, dtype=np.uint8).copy())
        return found

    def slice_bytes(self, c0: int, c1: int) -> int:
        return int(self.slice(c0, c1).size)

    def decode(self, raw: U8, c0: int, c1: int) -> tuple[I8, I32 | None]:
        """An encoded slice's bytes -> weights ``(channels, per)`` and the biases of its
        records. ValueError when the stream does not decode, or a record's scale or shift is
        not the layer's, or a layer without a bias has a record with one."""
        n = c1 - c0
        data = raw.tobytes()
        bias, scale, shift = unpack_records(data, n)
        if not np.array_equal(scale, self.scales[c0:c1]) or not np.array_equal(shift, self.shifts[c0:c1]):
            c = int(np.flatnonzero((scale != self.scales[c0:c1]) | (shift != self.shifts[c0:c1]))[0])
            raise ValueError(f"the scale/bias record of channel {c0 + c} holds scale {int(scale[c])} shift "
                             f"{int(shift[c])}, not the layer's {int(self.scales[c0 + c])} and {int(self.shifts[c0 + c])}")
        if self.biases is None and bias.any():
            raise ValueError("a record of a layer without a bias holds one")
        if bias.size and (bias.min() < np.iinfo(np.int32).min or bias.max() > np.iinfo(np.int32).max):
            raise ValueError("a record's bias is outside int32, the accumulator's range")
        stream = data[records_bytes(n):]
        # the stream the layer's weights encode to is known to be well formed: decoded here;
        # any other bytes in a child process (Vela's decoder exits on a malformed stream)
        known = self._known.get((c0, c1))
        if known is None:
            known = self._known[(c0, c1)] = encode_stream(self.fmt, self.rows[c0:c1])
        rows = decode_stream(self.fmt, stream, n * self.per_channel, known).reshape(n, self.per_channel)
        return rows, None if self.biases is None else bias.astype(np.int32)


def encoded_image(ql: QLayer, encoding: str) -> EncodedImage:
    """A weighted layer's Ethos-U slices (see :class:`EncodedImage`): records hold the bias,
    the Q31 multiplier of each output channel and Ethos-U's shift for its exponent."""
    assert ql.weight is not None
    rows = channel_rows(ql.layer, ql.weight)
    c_out = rows.shape[0]
    rq = ql.requant
    mult = np.zeros(c_out, dtype=np.int64) if rq is None else np.broadcast_to(rq.multiplier, (c_out,)).astype(np.int64)
    exps = np.full(c_out, 31, dtype=np.int64) if rq is None else np.broadcast_to(rq.shift, (c_out,)).astype(np.int64)
    shifts = np.array([ethos_u_shift(int(e)) for e in exps], dtype=np.int64)
    for a in (rows, mult, shifts):
        _frozen(a)
    return EncodedImage(WeightFormat(encoding, 1, BIAS_BYTES), rows, ql.bias, mult, shifts)


def _groups(layer: Layer) -> int:
    return layer.attrs.groups if isinstance(layer.attrs, (ConvAttrs, ConvTransposeAttrs)) else 1


def _channel_major(ql: QLayer) -> I8:
    """The layer's int8 weights as ``(C_out, per_channel)``, one output channel per row."""
    assert ql.weight is not None
    return channel_rows(ql.layer, ql.weight)


def _natural(ql: QLayer, rows: I8, groups: int) -> I8:
    """Channel-major weights of ``len(rows)`` output channels in ``groups`` groups -> the
    layer's weight layout for that many output channels (inverse of :func:`_channel_major`)."""
    w = ql.weight
    assert w is not None
    if ql.op is OpKind.CONV_TRANSPOSE:
        c_in, _, kh, kw = w.shape
        co_g = rows.shape[0] // groups
        return np.ascontiguousarray(
            rows.reshape(groups, co_g, c_in // groups, kh, kw).transpose(0, 2, 1, 3, 4).reshape(c_in, co_g, kh, kw))
    return rows.reshape(rows.shape[0], *w.shape[1:])


def weight_image(ql: QLayer) -> WeightImage:
    """A weighted layer's weights and biases as they lie in DRAM (the layout of the plan's
    weight blob, :mod:`memplan.plan.memory_map`): the one source the executor, the C export
    and the tests read them from."""
    rows = _channel_major(ql)
    biases = None
    if ql.bias is not None:
        biases = np.frombuffer(ql.bias.astype("<i4").tobytes(), dtype=np.uint8)
    return WeightImage(rows.shape[1], rows.reshape(-1).view(np.uint8), biases)


def _frozen(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    a.setflags(write=False)
    return a


def _slice_requant(rq: Requant | None, c0: int, c1: int) -> Requant | None:
    if rq is None or rq.multiplier.size == 1:
        return rq
    return Requant(_frozen(rq.real[c0:c1].copy()), _frozen(rq.multiplier[c0:c1].copy()), _frozen(rq.shift[c0:c1].copy()))


def _slice_lut(lut: I8 | None, c0: int, c1: int) -> I8 | None:
    """The tables of output channels ``[c0, c1)`` of a per-channel activation (PRelu)."""
    return lut if lut is None or lut.ndim == 1 else _frozen(lut[c0:c1].copy())


def _layer_with_weights(ql: QLayer, c0: int, c1: int, rows: I8, biases: I32 | None) -> tuple[QLayer, int]:
    """A :class:`QLayer` that computes output channels ``[c0, c1)`` with the given weights
    (``rows``: channel-major) and biases, and the channel its output starts at.

    Ungrouped layers become a layer of only those ``c1 - c0`` output channels (the kernel then
    multiplies exactly these weights; its output channel 0 is channel ``c0``). Grouped layers
    keep their shape, with zero weights in the channels outside ``[c0, c1)``: the kernel
    computes whole groups and discards those channels."""
    n = c1 - c0
    if _groups(ql.layer) == 1:
        out_shape: Shape = (ql.out_shape[0], n, ql.out_shape[2], ql.out_shape[3])
        weight_scale = None if ql.weight_scale is None else _frozen(ql.weight_scale[c0:c1].copy())
        return dataclasses.replace(
            ql, out_shape=out_shape, weight=_frozen(_natural(ql, rows, 1)), weight_scale=weight_scale,
            bias=None if biases is None else _frozen(biases), requant=_slice_requant(ql.requant, c0, c1),
            lut=_slice_lut(ql.lut, c0, c1)), c0
    c_out = ql.out_shape[1]
    full = np.zeros((c_out, rows.shape[1]), dtype=np.int8)
    full[c0:c1] = rows
    full_bias = None
    if biases is not None:
        full_bias = np.zeros(c_out, dtype=np.int32)
        full_bias[c0:c1] = biases
    weight = _frozen(_natural(ql, full, _groups(ql.layer)))
    return dataclasses.replace(ql, weight=weight, bias=None if full_bias is None else _frozen(full_bias)), 0


def _landed_taps(o0: int, o1: int, k: int, s: int, pad: int, d: int, n_in: int) -> int:
    """Pairs (output position in [o0, o1), kernel tap) of a ConvTranspose axis that receive an
    input position inside [0, n_in): ``o = i * s - pad + tap * d``."""
    num = np.arange(o0, o1)[:, None] + pad - np.arange(k)[None, :] * d
    i = num // s
    return int(np.count_nonzero((num % s == 0) & (i >= 0) & (i < n_in)))


def _kernel_macs(ql: QLayer, result: I8, out: Region, reduction: int) -> int:
    """MACs of the work handed to the kernel: ``result`` is the array it returned for output
    region ``out``, ``reduction`` the weight elements per output channel it was given."""
    if ql.op is OpKind.CONV_TRANSPOSE:
        attrs = ql.layer.attrs
        assert isinstance(attrs, ConvTransposeAttrs)
        _, _, h, w = ql.in_shapes[0]
        (kh, kw), (sh, sw), (dh, dw) = attrs.kernel, attrs.stride, attrs.dilation
        ci_g = reduction // (kh * kw)
        ty = _landed_taps(out.y0, out.y1, kh, sh, attrs.pads[0], dh, h)
        tx = _landed_taps(out.x0, out.x1, kw, sw, attrs.pads[1], dw, w)
        return result.shape[0] * result.shape[1] * ci_g * ty * tx
    return result.size * reduction


# ---------------------------------------------------------------------------- the machine
class _Machine:
    """State of one run: memories, who wrote each byte, counters."""

    def __init__(self, plan: Plan, qgraph: QuantizedGraph, hw: HardwareProfile,
                 expect: Mapping[str, npt.NDArray[np.int8]] | None) -> None:
        if plan.elem_bytes != 1:
            raise VerificationError(f"the executor runs int8 feature maps, but this plan stores {plan.elem_bytes}-byte "
                                    "elements: plan with a profile whose elem_bytes is 1")
        if plan.sram_bytes <= 0:
            raise VerificationError(f"the plan's SRAM size {plan.sram_bytes} B is not positive")
        graph = qgraph.graph
        if any(layer.bias is not None for layer in graph.layers if layer.op in WEIGHTED) and plan.bias_bytes != BIAS_BYTES:
            raise VerificationError(f"the executor stores biases as int32, but this plan uses {plan.bias_bytes}-byte "
                                    "biases: plan with a profile whose bias_bytes is 4")
        self.plan, self.qgraph, self.graph, self.hw = plan, qgraph, graph, hw
        self.expect = expect
        used = min(plan.sram_bytes, max((b.end for b in plan.buffers), default=0))
        self.sram: U8 = np.random.default_rng(SRAM_FILL_SEED).integers(0, 256, used, dtype=np.uint8)
        self.sram_writer: I32 = np.full(used, UNWRITTEN, dtype=np.int32)
        self.dram: dict[str, I8] = {}
        self.dram_writer: dict[str, I32] = {}
        self.stored: set[str] = set()
        if plan.weight_encoding == INT8:
            self.images: dict[str, WeightImage | EncodedImage] = {
                ql.layer.id: weight_image(ql) for ql in qgraph.layers if ql.op in WEIGHTED}
        else:
            self.images = {ql.layer.id: encoded_image(ql, plan.weight_encoding) for ql in qgraph.layers if ql.op in WEIGHTED}
        self.cache: OrderedDict[tuple[str, int, int, bytes], tuple[QLayer, int, int]] = OrderedDict()
        n = len(graph.layers)
        self.steps = n
        self.live: list[list[Buffer]] = [[b for b in plan.buffers if b.t0 <= s < b.t1] for s in range(n)]
        self.read_fm = self.write_fm = self.read_w = self.macs = self.sram_access = 0
        self.group_macs: dict[int, int] = {}
        self.group_work: dict[int, tuple[int, int]] = {}  # vector elements, NPU cycles per group
        self.group_dma: dict[int, int] = {}
        self.timing = WeightTiming(plan.commands)  # how the weight loads overlap compute
        self.peak = 0
        self.host_layers = self.host_read = self.host_write = 0
        #: FDT accumulators being filled: (SRAM offset, anchor tile) -> input-channel slices added
        self.acc_slices: dict[tuple[int, Region], list[tuple[int, int]]] = {}

    # ------------------------------------------------------------------ driver
    def run(self, inputs: Mapping[str, npt.ArrayLike]) -> TiledRun:
        self._place_inputs(inputs)
        for k, cmd in enumerate(self.plan.commands):
            if not 0 <= cmd.step < self.steps:
                raise self._fail(k, cmd, f"step {cmd.step} is outside the schedule 0..{self.steps - 1}")
            if cmd.op is Op.LOAD:
                self._load(k, cmd)
            elif cmd.op is Op.STORE:
                self._store(k, cmd)
            elif cmd.op is Op.LOAD_WEIGHTS:
                self._load_weights(k, cmd)
            elif cmd.op is Op.HOST:
                self._host(k, cmd)
            elif cmd.op is Op.COPY:
                self._copy(k, cmd)
            elif cmd.op is Op.REQUANTIZE:
                self._requantize(k, cmd)
            elif cmd.accumulate is not None:
                self._accumulate(k, cmd)
            else:
                self._compute(k, cmd)
        outputs, writers = self._collect_outputs()
        for t in self.stored:
            writers.setdefault(t, self.dram_writer[t][None])
        return TiledRun(
            dram={t: self.dram[t][None] for t in sorted(self.stored)},
            outputs=outputs,
            writers=writers,
            counts=self._counts(),
            sram_peak=self.peak,
            commands=len(self.plan.commands),
            host=HostTotals(self.host_layers, self.host_read, self.host_write),
        )

    def _counts(self) -> Counts:
        hw, graph = self.hw, self.graph
        untiled = sum(graph.layer_macs(layer) for layer in graph.layers)
        groups = set(self.group_macs) | set(self.group_dma) | set(self.group_work)
        cycles = self.timing.cycles(hw, {g: group_compute_cycles(hw, self.group_macs.get(g, 0), *self.group_work.get(g, (0, 0)))
                                         for g in groups}, self.group_dma)
        dram = self.read_fm + self.write_fm + self.read_w
        return Counts(self.read_fm, self.write_fm, self.read_w, self.macs, self.macs - untiled, self.sram_access,
                      energy_fj(hw, self.macs, dram, self.sram_access), cycles)

    def _dma(self, cmd: Command, n: int) -> None:
        """``n`` bytes moved between DRAM and SRAM (or read in place) by a command."""
        self.group_dma[cmd.group] = self.group_dma.get(cmd.group, 0) + n

    def _place_inputs(self, inputs: Mapping[str, npt.ArrayLike]) -> None:
        """Model inputs: into their resident buffer (host write) or into DRAM."""
        for name in self.graph.inputs:
            if name not in inputs:
                raise KeyError(f"missing model input {name!r}")
            arr = np.asarray(inputs[name])
            shape = self.graph.shape(name)
            if arr.dtype != np.int8 or arr.shape != tuple(shape) or shape[0] != 1:
                raise ValueError(f"input {name!r} must be int8 of shape {shape} with batch 1, got {arr.dtype} {arr.shape}")
            buf = self._resident(name)
            if buf is None:
                self.dram[name] = arr[0].copy()
                self.dram_writer[name] = np.full(shape[1:], HOST, dtype=np.int32)
                continue
            need = resident_bytes(self.graph, name, self.hw)  # channel-major, channels bricked
            if buf.size != need or buf.t0 != 0:
                raise VerificationError(f"resident buffer {buf.name} of model input {name!r} is {buf.size} B live from "
                                        f"step {buf.t0}: the input needs {need} B from step 0")
            self._touch(buf.offset, arr.size)
            self.sram[buf.offset:buf.offset + arr.size] = arr.reshape(-1).view(np.uint8)
            self.sram_writer[buf.offset:buf.offset + arr.size] = HOST

    def _collect_outputs(self) -> tuple[dict[str, I8], dict[str, I32]]:
        outputs: dict[str, I8] = {}
        writers: dict[str, I32] = {}
        last = self.steps - 1
        for name in self.graph.outputs:
            shape = self.graph.tensors[name].shape
            buf = self._resident(name)
            if buf is None:
                if name not in self.stored:
                    raise VerificationError(f"model output {name!r} is neither resident nor stored to DRAM by any command")
                outputs[name] = self.dram[name][None]
                writers[name] = self.dram_writer[name][None]
                continue
            n = int(np.prod(shape))
            need = resident_bytes(self.graph, name, self.hw)
            if buf.size != need or not buf.t0 <= last < buf.t1:
                raise VerificationError(f"resident buffer {buf.name} of model output {name!r} is {buf.size} B live over "
                                        f"steps [{buf.t0}, {buf.t1}): the output needs {need} B at the end of the run")
            self._touch(buf.offset, n)
            outputs[name] = self.sram[buf.offset:buf.offset + n].view(np.int8).reshape(shape).copy()
            writers[name] = self.sram_writer[buf.offset:buf.offset + n].reshape(shape).copy()
        return outputs, writers

    def _resident(self, tensor: str) -> Buffer | None:
        return next((b for b in self.plan.buffers if b.kind is BufferKind.RESIDENT and b.tensor == tensor), None)

    # ------------------------------------------------------------------ checks
    def _fail(self, k: int, cmd: Command, msg: str) -> VerificationError:
        return VerificationError(f"{describe_command(k, cmd)}: {msg}")

    def _touch(self, lo: int, n: int) -> None:
        self.peak = max(self.peak, lo + n)

    def _claim(self, k: int, cmd: Command, lo: int, n: int, what: str, *, tensor: str | None = None,
               layer: str | None = None) -> Buffer:
        """Check that SRAM ``[lo, lo + n)`` lies in exactly one live buffer, and that buffer
        belongs to ``tensor`` (or ``layer``); return it."""
        hi = lo + n
        if lo < 0 or hi > self.plan.sram_bytes:
            raise self._fail(k, cmd, f"{what} at SRAM [{lo}, {hi}) leaves the SRAM of {self.plan.sram_bytes} B")
        inside = [b for b in self.live[cmd.step] if b.offset <= lo and hi <= b.end]
        if not inside:
            raise self._fail(k, cmd, f"{what} at SRAM [{lo}, {hi}) lies in no buffer live at step {cmd.step}")
        if len(inside) > 1:
            names = " and ".join(b.name for b in inside[:2])
            raise self._fail(k, cmd, f"{what} at SRAM [{lo}, {hi}) lies in buffers {names} at once: "
                                     f"they overlap while both are live at step {cmd.step}")
        buf = inside[0]
        owner, want = (buf.layer, layer) if layer is not None else (buf.tensor, tensor)
        if owner != want:
            raise self._fail(k, cmd, f"{what} at SRAM [{lo}, {hi}) lies in buffer {buf.name}, which belongs to "
                                     f"{owner!r}, not {want!r}")
        self._touch(lo, n)
        return buf

    def _check_written(self, k: int, cmd: Command, writers: I32, what: str) -> None:
        if (writers == UNWRITTEN).any():
            raise self._fail(k, cmd, f"reads {what}, which nothing has written to SRAM")

    def _fm_shape(self, k: int, cmd: Command, tensor: str | None, region: Region | None) -> Shape:
        t = self.graph.tensors.get(tensor) if tensor is not None else None
        if t is None or not t.is_feature_map or len(t.shape) != 4 or t.name in self.graph.dram_only and t.dtype == "int32":
            raise self._fail(k, cmd, f"{tensor!r} is not a 4-D int8 feature map of the model")
        shape = self.graph.shape(t.name)
        if region is None or region.empty or not region.within(shape):
            where = None if region is None else region.as_list()
            raise self._fail(k, cmd, f"region {where} of {t.name} is empty or out of bounds of its shape {shape} "
                                     "(was the plan made with other --input-shape values?)")
        return shape

    # ------------------------------------------------------------------ DMA
    def _load(self, k: int, cmd: Command) -> None:
        tensor, region, off = cmd.tensor, cmd.region, cmd.offset
        self._fm_shape(k, cmd, tensor, region)
        assert tensor is not None and region is not None
        if off is None:
            raise self._fail(k, cmd, "has no SRAM offset")
        n = region.numel
        view = cmd.output  # the region lands in a view of a larger one (a rolling buffer's slot)
        held = region if view is None else view.region
        if view is not None and (view.tensor != tensor or view.offset != off or not held.contains(region)):
            raise self._fail(k, cmd, f"its view {view.tensor} {held.as_list()} at {view.offset} does not hold "
                                     f"{tensor} {region.as_list()} at {off}")
        self._claim(k, cmd, off, held.numel, f"{tensor} {held.as_list()}", tensor=tensor)
        sl = region.slices()
        if tensor not in self.dram or (self.dram_writer[tensor][sl] == UNWRITTEN).any():
            raise self._fail(k, cmd, f"reads {tensor} {region.as_list()} from DRAM before it is written there")
        dims = (held.channels, held.rows, held.cols)
        at = region.relative_to(held)
        self.sram[off:off + held.numel].reshape(dims)[at] = self.dram[tensor][sl].view(np.uint8)
        self.sram_writer[off:off + held.numel].reshape(dims)[at] = k
        self.read_fm += n
        self.sram_access += n
        self._dma(cmd, n)

    def _store(self, k: int, cmd: Command) -> None:
        tensor, region, off = cmd.tensor, cmd.region, cmd.offset
        shape = self._fm_shape(k, cmd, tensor, region)
        assert tensor is not None and region is not None
        if off is None:
            raise self._fail(k, cmd, "has no SRAM offset")
        n = region.numel
        view = cmd.output  # the region sits in a view of a larger one (a multi-output group's tile buffer)
        held = region if view is None else view.region
        if view is not None and (view.tensor != tensor or view.offset != off or not held.contains(region)):
            raise self._fail(k, cmd, f"its view {view.tensor} {held.as_list()} at {view.offset} does not hold "
                                     f"{tensor} {region.as_list()} at {off}")
        self._claim(k, cmd, off, held.numel, f"{tensor} {held.as_list()}", tensor=tensor)
        dims = (held.channels, held.rows, held.cols)
        at = region.relative_to(held)
        self._check_written(k, cmd, self.sram_writer[off:off + held.numel].reshape(dims)[at], f"SRAM [{off}, {off + held.numel})")
        if tensor not in self.dram:
            self.dram[tensor] = np.zeros(shape[1:], dtype=np.int8)
            self.dram_writer[tensor] = np.full(shape[1:], UNWRITTEN, dtype=np.int32)
        sl = region.slices()
        self.dram[tensor][sl] = self.sram[off:off + held.numel].reshape(dims)[at].view(np.int8)
        self.dram_writer[tensor][sl] = k
        self.stored.add(tensor)
        self.write_fm += n
        self.sram_access += n
        self._dma(cmd, n)

    def _host(self, k: int, cmd: Command) -> None:
        """The host CPU runs a host layer on whole tensors in DRAM (memplan.host, as the reference)."""
        layer = self._layer(k, cmd)
        if layer.op is not OpKind.HOST:
            raise self._fail(k, cmd, f"layer {layer.id!r} is not a host layer")
        if cmd.host_inputs != tuple(dict.fromkeys(layer.inputs)) or cmd.host_outputs != (layer.output,):
            raise self._fail(k, cmd, "its inputs and outputs are not the host layer's")
        assert isinstance(layer.attrs, HostAttrs)
        values = []
        for t in layer.inputs:
            if t not in self.dram or (self.dram_writer[t] == UNWRITTEN).any():
                raise self._fail(k, cmd, f"reads {t} from DRAM before it is completely written there")
            values.append(self.dram[t][None])
        ql = self.qgraph.qlayer(layer.id)
        y = run_host_int(layer.attrs, ql.in_q, ql.out_q, values)
        out = layer.output
        self.dram[out] = y[0]
        self.dram_writer[out] = np.full(y.shape[1:], k, dtype=np.int32)
        self.stored.add(out)
        self.host_layers += 1
        self.host_read += sum(tensor_bytes(self.graph, t, self.plan.elem_bytes) for t in cmd.host_inputs)
        self.host_write += tensor_bytes(self.graph, out, self.plan.elem_bytes)

    def _layer(self, k: int, cmd: Command) -> Layer:
        if cmd.layer not in self.graph.layer_index:
            raise self._fail(k, cmd, "names no layer of the model")
        return self.graph.layer(cmd.layer)

    def _load_weights(self, k: int, cmd: Command) -> None:
        layer = self._layer(k, cmd)
        if layer.id not in self.images:
            raise self._fail(k, cmd, "loads weights of a layer that has none")
        c_out = self.graph.out_channels(layer)
        if cmd.channels is None or not 0 <= cmd.channels[0] < cmd.channels[1] <= c_out or cmd.offset is None:
            raise self._fail(k, cmd, f"channels {cmd.channels} are not a slice of {c_out} output channels, or no offset")
        c0, c1 = cmd.channels
        try:
            raw = self.images[layer.id].slice(c0, c1)
        except ValueError as exc:  # a requantisation the Ethos-U record cannot hold
            raise self._fail(k, cmd, f"weights of channels {c0}..{c1} cannot be encoded: {exc}") from None
        off = cmd.offset
        buf = self._claim(k, cmd, off, raw.size, f"weights of channels {c0}..{c1}", layer=layer.id)
        self.timing.load(cmd, buf, self.graph.layer_index[layer.id], raw.size)
        self.sram[off:off + raw.size] = raw
        self.sram_writer[off:off + raw.size] = k
        self.read_w += raw.size
        self.sram_access += raw.size
        self._dma(cmd, raw.size)

    def _copy(self, k: int, cmd: Command) -> None:
        """Rows of a rolling buffer, from the previous stripe's slot to this stripe's: read
        every cell first, then write (the two views may share bytes)."""
        region = cmd.region
        self._fm_shape(k, cmd, cmd.tensor, region)
        assert region is not None
        if len(cmd.inputs) != 1 or cmd.output is None:
            raise self._fail(k, cmd, "a copy needs one source operand and a destination operand")
        views = []
        for what, op in (("source", cmd.inputs[0]), ("destination", cmd.output)):
            if op.tensor != cmd.tensor or not op.region.contains(region):
                raise self._fail(k, cmd, f"its {what} {op.tensor} {op.region.as_list()} does not hold {cmd.tensor} "
                                         f"{region.as_list()}")
            self._fm_shape(k, cmd, op.tensor, op.region)
            n = op.region.numel
            self._claim(k, cmd, op.offset, n, f"{what} {op.tensor} {op.region.as_list()}", tensor=op.tensor)
            dims = (op.region.channels, op.region.rows, op.region.cols)
            views.append((self.sram[op.offset:op.offset + n].reshape(dims), self.sram_writer[op.offset:op.offset + n].reshape(dims),
                          region.relative_to(op.region)))
        (src, src_w, at), (dst, dst_w, to) = views
        self._check_written(k, cmd, src_w[at], f"{cmd.tensor} {region.as_list()} at SRAM offset {cmd.inputs[0].offset}")
        data = src[at].copy()
        dst[to] = data
        dst_w[to] = k
        n = region.numel
        self.sram_access += 2 * n  # the DMA engine reads and writes SRAM
        self._dma(cmd, n)

    # ------------------------------------------------------------------ compute
    def _compute(self, k: int, cmd: Command) -> None:
        layer = self._layer(k, cmd)
        ql = self.qgraph.qlayer(layer.id)
        region, out = cmd.region, cmd.output
        self._fm_shape(k, cmd, layer.output, region)
        assert region is not None
        if len(cmd.inputs) != len(layer.inputs) or any(op.tensor != t for op, t in zip(cmd.inputs, layer.inputs)):
            raise self._fail(k, cmd, f"input operands {[op.tensor for op in cmd.inputs]} are not the layer's inputs "
                                     f"{list(layer.inputs)}")
        if out is None or out.tensor != layer.output or not out.region.contains(region):
            held = None if out is None else f"{out.tensor} {out.region.as_list()}"
            raise self._fail(k, cmd, f"output operand {held} cannot take {layer.output} {region.as_list()}")
        self._fm_shape(k, cmd, out.tensor, out.region)
        tiles = self._input_tiles(k, cmd, ql, region)
        exec_ql, c_base, reduction = self._weights(k, cmd, layer, ql, region)
        exec_region = dataclasses.replace(region, c0=region.c0 - c_base, c1=region.c1 - c_base)
        try:
            result = run_layer(exec_ql, tiles, exec_region)
        except MissingInputError as exc:
            raise self._fail(k, cmd, f"{exc} (a halo too short, or an operand region too small)") from None
        macs = _kernel_macs(ql, result, region, reduction) if reduction else 0
        self.macs += macs
        self.group_macs[cmd.group] = self.group_macs.get(cmd.group, 0) + macs
        # compute cycles of the output the kernel returned (memplan.cost.cycles.command_work)
        _, c_out, h_out, w_out = result.shape
        e, n_cyc = command_work(self.graph, layer, (c_out, h_out, w_out), self.hw)
        e0, n0 = self.group_work.get(cmd.group, (0, 0))
        self.group_work[cmd.group] = (e0 + e, n0 + n_cyc)
        self.sram_access += region.numel  # the output cells written
        self._write_tile(k, cmd, layer, region, out, result)

    def _input_tiles(self, k: int, cmd: Command, ql: QLayer, region: Region) -> list[Tile | None]:
        """Each input operand's region, read from SRAM (None for an operand that holds nothing
        or that the kernel does not read for this region)."""
        tiles: list[Tile | None] = []
        read: set[str] = set()
        for op, need in zip(cmd.inputs, required_input_regions(ql, region)):
            if op.region.empty or need.empty:
                tiles.append(None)
                continue
            if op.tensor not in read:  # an input read twice (x + x) is read from SRAM once
                read.add(op.tensor)
                self.sram_access += need.numel
            shape = self._fm_shape(k, cmd, op.tensor, op.region)
            n = op.region.numel
            self._claim(k, cmd, op.offset, n, f"input {op.tensor} {op.region.as_list()}", tensor=op.tensor)
            dims = (op.region.channels, op.region.rows, op.region.cols)
            if op.region.contains(need):  # otherwise the kernel reports the missing cells
                writers = self.sram_writer[op.offset:op.offset + n].reshape(dims)[need.relative_to(op.region)]
                self._check_written(k, cmd, writers, f"input {op.tensor} {need.as_list()} at SRAM offset {op.offset}")
            data = self.sram[op.offset:op.offset + n].view(np.int8).reshape(1, *dims)
            tiles.append(Tile(data, op.region, shape))
        return tiles

    def _weights(self, k: int, cmd: Command, layer: Layer, ql: QLayer, region: Region) -> tuple[QLayer, int, int]:
        """The layer to run (with the weights of the region's output channels as read from
        memory), the channel its output starts at, and the reduction length of those weights
        (weight elements per output channel; 0 for a layer without weights)."""
        if layer.op not in WEIGHTED:
            return ql, 0, 0
        image = self.images[layer.id]
        c0, c1 = region.c0, region.c1
        n = image.slice_bytes(c0, c1)
        off = cmd.weights_offset
        if off is None:
            if not self.hw.weights_in_place:
                raise self._fail(k, cmd, "a weighted layer without a weight buffer, on a profile that loads weights "
                                         "into SRAM")
            raw = image.slice(c0, c1)  # executed in place from DRAM / flash
            self.read_w += n  # DRAM traffic, not SRAM: the weights never pass through SRAM
            self._dma(cmd, n)
        else:
            self._claim(k, cmd, off, n, f"weights of channels {c0}..{c1}", layer=layer.id)
            self._check_written(k, cmd, self.sram_writer[off:off + n], f"weights of channels {c0}..{c1} at {off}")
            raw = self.sram[off:off + n]
        key = (layer.id, c0, c1, raw.tobytes())
        hit = self.cache.get(key)
        if hit is None:
            try:
                rows, biases = image.decode(raw, c0, c1)
            except ValueError as exc:
                raise self._fail(k, cmd, f"weights of channels {c0}..{c1} at SRAM offset {off}: {exc}") from None
            hit = (*_layer_with_weights(ql, c0, c1, rows, biases), rows.shape[1])
            self.cache[key] = hit
            if len(self.cache) > _WEIGHT_CACHE_SIZE:
                self.cache.popitem(last=False)
        else:
            self.cache.move_to_end(key)
        return hit

    # ------------------------------------------------------------------ FDT
    def _fdt_layer(self, k: int, cmd: Command) -> tuple[Layer, QLayer]:
        layer = self._layer(k, cmd)
        if not reduces_over_channels(layer):
            raise self._fail(k, cmd, f"layer {layer.id!r} does not reduce over input channels: no partial sums")
        if not self.hw.weights_in_place or cmd.weights_offset is not None:
            raise self._fail(k, cmd, "FDT slices read their weights in place; this profile or command names an SRAM copy")
        self._fm_shape(k, cmd, layer.output, cmd.region)
        out = cmd.output if cmd.op is Op.COMPUTE else (cmd.inputs[0] if len(cmd.inputs) == 1 else None)
        if out is None or out.tensor != layer.output or out.region != cmd.region:
            raise self._fail(k, cmd, "the accumulator operand must hold exactly the command's region of the layer's output")
        return layer, self.qgraph.qlayer(layer.id)

    def _acc_view(self, k: int, cmd: Command, offset: int, region: Region, tensor: str) -> tuple[slice, tuple[int, ...]]:
        n = region.numel * ACC_BYTES
        self._claim(k, cmd, offset, n, f"accumulator {tensor} {region.as_list()}", tensor=tensor)
        buf = next(b for b in self.live[cmd.step] if b.offset <= offset and offset + n <= b.end)
        if buf.kind is not BufferKind.ACCUMULATOR:
            raise self._fail(k, cmd, f"partial sums at SRAM [{offset}, {offset + n}) lie in buffer {buf.name}, "
                                     f"a {buf.kind.value} buffer, not an accumulator")
        return slice(offset, offset + n), (1, region.channels, region.rows, region.cols)

    def _accumulate(self, k: int, cmd: Command) -> None:
        """An FDT slice: partial sums of the consumer over input channels ``in_channels``,
        written into (first slice) or added to the int32 accumulator."""
        layer, ql = self._fdt_layer(k, cmd)
        region, acc_op = cmd.region, cmd.output
        assert region is not None and acc_op is not None
        c_out, c_in = ql.out_shape[1], ql.in_shapes[0][1]
        if cmd.in_channels is None or not 0 <= cmd.in_channels[0] < cmd.in_channels[1] <= c_in:
            raise self._fail(k, cmd, f"input channels {cmd.in_channels} are not a slice of the layer's {c_in}")
        a, b = cmd.in_channels
        if len(cmd.inputs) != 1 or cmd.inputs[0].tensor != layer.inputs[0]:
            raise self._fail(k, cmd, f"input operands {[op.tensor for op in cmd.inputs]} are not the layer's input")
        op = cmd.inputs[0]
        need = partial_sum_input(ql, region, (a, b))
        shape = self._fm_shape(k, cmd, op.tensor, op.region)
        n_in = op.region.numel
        self._claim(k, cmd, op.offset, n_in, f"input {op.tensor} {op.region.as_list()}", tensor=op.tensor)
        dims = (op.region.channels, op.region.rows, op.region.cols)
        if op.region.contains(need) and not need.empty:
            writers = self.sram_writer[op.offset:op.offset + n_in].reshape(dims)[need.relative_to(op.region)]
            self._check_written(k, cmd, writers, f"input {op.tensor} {need.as_list()} at SRAM offset {op.offset}")
        tile = Tile(self.sram[op.offset:op.offset + n_in].view(np.int8).reshape(1, *dims), op.region, shape)
        # the weights of the region's output channels x the slice's input channels, read in place
        image = self.images[layer.id]
        per_in = image.per_channel // c_in  # kernel taps (conv) or H * W (fully connected)
        rows = image.weights.view(np.int8).reshape(c_out, image.per_channel)[region.c0:region.c1, a * per_in:b * per_in]
        weight = rows.reshape(region.channels, b - a, *ql.weight.shape[2:]) if ql.op is OpKind.CONV else rows  # type: ignore[union-attr]
        self.read_w += rows.size
        self._dma(cmd, rows.size)
        try:
            part = partial_sums(ql, tile, region, (a, b), weight)
        except MissingInputError as exc:
            raise self._fail(k, cmd, f"{exc} (a halo too short, or an operand region too small)") from None
        sl, acc_shape = self._acc_view(k, cmd, acc_op.offset, region, layer.output)
        key = (acc_op.offset, region)
        if cmd.accumulate:
            done = self.acc_slices.get(key)
            self._check_written(k, cmd, self.sram_writer[sl], "partial sums of the accumulator")
            if done is None or any(lo < b and a < hi for lo, hi in done):
                raise self._fail(k, cmd, f"adds input channels {a}..{b} to an accumulator that does not hold partial "
                                         f"sums of other channels of this tile: {done}")
            part = part + np.frombuffer(self.sram[sl].tobytes(), dtype="<i4").astype(np.int64).reshape(acc_shape)
            done.append((a, b))
        else:
            self.acc_slices[key] = [(a, b)]
        if part.min(initial=0) < np.iinfo(np.int32).min or part.max(initial=0) > np.iinfo(np.int32).max:
            raise self._fail(k, cmd, "the partial sums overflow the int32 accumulator")
        self.sram[sl] = np.frombuffer(part.astype("<i4").tobytes(), dtype=np.uint8)
        self.sram_writer[sl] = k
        macs = part.size * per_in * (b - a)
        self.macs += macs
        self.group_macs[cmd.group] = self.group_macs.get(cmd.group, 0) + macs
        e, n_cyc = command_work(self.graph, layer, (region.channels, region.rows, region.cols), self.hw)
        e0, n0 = self.group_work.get(cmd.group, (0, 0))
        self.group_work[cmd.group] = (e0 + e, n0 + n_cyc)
        self.sram_access += need.numel + region.numel * ACC_BYTES * (2 if cmd.accumulate else 1)

    def _requantize(self, k: int, cmd: Command) -> None:
        """After an FDT group's last slice: accumulator + bias -> int8 tile of the anchor."""
        layer, ql = self._fdt_layer(k, cmd)
        region, out = cmd.region, cmd.output
        assert region is not None
        if out is None or out.tensor != layer.output or not out.region.contains(region):
            held = None if out is None else f"{out.tensor} {out.region.as_list()}"
            raise self._fail(k, cmd, f"output operand {held} cannot take {layer.output} {region.as_list()}")
        acc_op = cmd.inputs[0]
        sl, acc_shape = self._acc_view(k, cmd, acc_op.offset, region, layer.output)
        self._check_written(k, cmd, self.sram_writer[sl], "partial sums of the accumulator")
        done = sorted(self.acc_slices.pop((acc_op.offset, region), []))
        c_in = ql.in_shapes[0][1]
        if not done or done[0][0] != 0 or done[-1][1] != c_in or any(x[1] != y[0] for x, y in zip(done, done[1:])):
            raise self._fail(k, cmd, f"requantizes before every input channel is accumulated: slices {done} of {c_in}")
        acc = np.frombuffer(self.sram[sl].tobytes(), dtype="<i4").astype(np.int64).reshape(acc_shape)
        image = self.images[layer.id]
        bias = None
        if image.biases is not None:  # read in place
            raw = image.biases[region.c0 * BIAS_BYTES:region.c1 * BIAS_BYTES]
            bias = np.frombuffer(raw.tobytes(), dtype="<i4").astype(np.int32)
            self.read_w += raw.size
            self._dma(cmd, raw.size)
        result = finish_partial_sums(ql, acc, region, bias)
        self.sram_access += region.numel * (ACC_BYTES + 1)
        self._fm_shape(k, cmd, out.tensor, out.region)
        self._write_tile(k, cmd, layer, region, out, result)

    def _write_tile(self, k: int, cmd: Command, layer: Layer, region: Region, out: Operand, result: I8) -> None:
        """The int8 ``region`` of the layer's output a kernel (or a requantize) produced, into
        its output operand's view in SRAM; compared with the reference when one is given."""
        n = out.region.numel
        self._claim(k, cmd, out.offset, n, f"output {out.tensor} {out.region.as_list()}", tensor=out.tensor)
        held = self.sram[out.offset:out.offset + n].view(np.int8).reshape(out.region.channels, out.region.rows,
                                                                            out.region.cols)
        sub = region.relative_to(out.region)
        held[sub] = result[0]
        self.sram_writer[out.offset:out.offset + n].reshape(held.shape)[sub] = k
        if self.expect is not None and layer.output in self.expect:
            self._compare_tile(k, cmd, layer.output, region, result[0])

    def _compare_tile(self, k: int, cmd: Command, tensor: str, region: Region, got: I8) -> None:
        want = np.asarray(self.expect[tensor])[0][region.slices()]  # type: ignore[index]
        if np.array_equal(got, want):
            return
        c, y, x = (int(i) for i in np.argwhere(got != want)[0])
        at = [region.c0 + c, region.y0 + y, region.x0 + x]
        raise self._fail(k, cmd, f"tile {region.as_list()} of {tensor} differs from the reference at {at} "
                                 f"(channel, row, column): got {int(got[c, y, x])}, expected {int(want[c, y, x])}")


__all__ = ["Counts", "EncodedImage", "HOST", "TiledRun", "UNWRITTEN", "WeightImage", "describe_command", "encoded_image",
           "execute_plan", "weight_image"]
