"""The bytes of a layer's weight slices: the one place that sizes, encodes and decodes them.

A weighted layer's weights and per-channel records travel in output-channel slices
``[c0, c1)``: a tiling's channel split gives the slices (the spans of
:attr:`memplan.geometry.group.GroupGeometry.chans`), each is one LOAD_WEIGHTS, one stream in the
DRAM weight blob and one SRAM weight buffer. Everything that counts weight bytes (the candidate
costs and so the baselines, the DP and the CP-SAT coefficients; the plan's totals, memory map
and weight buffers; the validator's replay; the executor's DRAM image) asks
:func:`slice_bytes` / :func:`spans_bytes` here, never a formula of its own.

Encodings (the profile's ``weight_codec`` resolves to one when it is loaded,
:class:`memplan.config.HardwareProfile.weight_encoding`; a plan records it):

``int8``
    No codec (every profile without ``weight_codec``): the slice is its ``c1 - c0`` rows of
    int8 weights, output channel after output channel (each row in the weight tensor's axis
    order; for a ConvTranspose the ``(C_in/g, kh, kw)`` block of the output channel), then,
    when the layer has a bias, ``c1 - c0`` little-endian int32 biases. Linear in the channels.

``ethos-u-mlw``
    Arm Ethos-U with Vela's own weight codec (``ethosu.mlw_codec`` from ``ethos-u-vela``, the
    extra ``memplan[ethosu]``). The slice is, as Vela lays out one OFM-depth range
    (``weight_compressor.encode_weight_and_scale_tensor``): ``c1 - c0`` scale/bias records of
    :data:`RECORD_BYTES` each, zero bytes up to a multiple of :data:`STREAM_ALIGN`, then the
    codec's stream of the slice's int8 weights in the order above (``mlw_codec.encode`` of
    the rows, flattened; the codec pads its stream to 16 bytes with ones). Not linear: each
    slice is encoded on its own, and its size is the stream's real length.

    The weights are encoded in memplan's order (output channel after output channel), not in
    the NPU's brick order that Vela's ``reorder_encode`` produces for a given block config:
    the sizes are those of Vela's codec on the same values, not byte-identical to Vela's
    command stream (which memplan does not emit).

``ethos-u-raw``
    The fallback of an Ethos-U profile when ``ethos-u-vela`` is not installed
    (``weight_codec_fallback = "raw"``): the same layout with the int8 rows unencoded, zero
    padded to a multiple of :data:`STREAM_ALIGN`. Plans fit and verify; they count the weights
    as large as they are raw, and say so.

Ethos-U record, 10 bytes, little-endian (Vela's ``encode_bias``): bytes 0-4 the bias as a
40-bit two's-complement integer, bytes 5-8 the 32-bit unsigned scale (the channel's Q31
requantisation multiplier), byte 9 the shift in its low 6 bits (``31 - e`` for memplan's
exponent ``e``, ``real = scale * 2**-shift``), its top 2 bits zero. A layer without a bias has
records with bias 0. The executor reads the bias the compute uses from these records and
checks their scale and shift against the layer's requantisation.

Decoding: Vela's C decoder ends the process (``exit(1)``) on a malformed stream, so
:func:`decode_stream` decodes in-process only a stream it knows the codec made (the one the
layer's weights encode to) and any other bytes (a corrupted or misplaced buffer) in a child
process: the same decoder, and a malformed stream becomes a ValueError, not an exit.

Sizes of ``ethos-u-mlw`` slices need the int8 values: they are quantised from the graph's
weights as :mod:`memplan.ir.weights` does for the executor (constant-fill weights
substituted with seed 0, as ``memplan verify`` does by default), and memoised per graph and
(layer, slice): a model's candidates ask for the same few slices many times.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np
import numpy.typing as npt

from memplan import config
from memplan.config import HardwareProfile
from memplan.ir.graph import Graph, Layer
from memplan.ir.weights import quantized_weight, substitute_constant_weights
from memplan.ir.ops import WEIGHTED, ConvAttrs, ConvTransposeAttrs, OpKind

I8 = npt.NDArray[np.int8]
I64 = npt.NDArray[np.int64]

INT8, ETHOS_U_MLW, ETHOS_U_RAW = "int8", "ethos-u-mlw", "ethos-u-raw"
ENCODINGS = (INT8, ETHOS_U_MLW, ETHOS_U_RAW)
#: bytes of an Ethos-U scale/bias record (see the module documentation)
RECORD_BYTES = 10
#: the records and the weight stream of an Ethos-U slice each start at a multiple of this
STREAM_ALIGN = 16
#: the distribution that ships Vela's codec, and the extra that installs it
CODEC_PACKAGE = "ethos-u-vela"


# ---------------------------------------------------------------------------- the codec
def codec_available() -> bool:
    """Whether Vela's weight codec can be imported here (:func:`memplan.config.codec_available`)."""
    return config.codec_available()


def _codec() -> Any:
    codec = config._import_codec()
    if codec is None:
        raise RuntimeError(f"Vela's weight codec is not installed: pip install 'memplan[ethosu]' ({CODEC_PACKAGE})")
    return codec


def encoder(encoding: str) -> str | None:
    """What produced an encoding's streams, as a plan records it: ``ethos-u-vela 5.2.0`` for
    ``ethos-u-mlw`` (the installed version), None for the others (memplan itself)."""
    if encoding != ETHOS_U_MLW:
        return None
    try:
        return f"{CODEC_PACKAGE} {metadata.version(CODEC_PACKAGE)}"
    except metadata.PackageNotFoundError:
        return f"{CODEC_PACKAGE} (version unknown)"


def reproducible(encoding: str, recorded_encoder: str | None) -> str | None:
    """Why weights a plan says were made with ``encoding`` by ``recorded_encoder`` cannot be
    reproduced here (one line), or None if they can."""
    if encoding not in ENCODINGS:
        return f"weight encoding {encoding!r} is not one memplan knows ({', '.join(ENCODINGS)})"
    if encoding != ETHOS_U_MLW:
        return None if recorded_encoder is None else f"weight encoding {encoding!r} has no encoder, not {recorded_encoder!r}"
    if not codec_available():
        return (f"its weights are encoded with Vela's weight codec ({recorded_encoder}), which is not installed here: "
                "pip install 'memplan[ethosu]', or re-run memplan solve without it (the profile's fallback)")
    here = encoder(encoding)
    if recorded_encoder != here:
        return (f"its weights were encoded by {recorded_encoder}, but {here} is installed (encoded sizes may differ): "
                "install that version or re-run memplan solve")
    return None


# ---------------------------------------------------------------------------- the format
@dataclass(frozen=True)
class WeightFormat:
    """What sizes a weight slice: the encoding and the profile's element and bias sizes."""

    encoding: str
    elem_bytes: int
    bias_bytes: int

    @staticmethod
    def of(hw: HardwareProfile) -> WeightFormat:
        return WeightFormat(hw.weight_encoding, hw.elem_bytes, hw.bias_bytes)

    @property
    def ethos_u(self) -> bool:
        return self.encoding != INT8

    @property
    def linear(self) -> bool:
        """Slice bytes are proportional to the slice's channels (no codec)."""
        return self.encoding == INT8


def align_up(n: int, alignment: int = STREAM_ALIGN) -> int:
    return -(-n // alignment) * alignment


def records_bytes(channels: int) -> int:
    """Bytes of an Ethos-U slice's records with their padding: where its stream starts."""
    return align_up(channels * RECORD_BYTES)


def per_channel(graph: Graph, layer: Layer) -> int:
    """Weight elements per output channel."""
    return graph.weight_elems(layer) // graph.out_channels(layer)


# ---------------------------------------------------------------------------- sizes
class _GraphMemo:
    """Per graph: the int8 rows of each layer and the encoded size of each (layer, slice)."""

    def __init__(self) -> None:
        self.source: Graph | None = None  # the graph with constant-fill weights substituted
        self.rows: dict[str, I8] = {}
        #: ethos-u-mlw slice sizes (the only encoding that needs the weights' values: the
        #: others are computed from the shapes, so the key needs no encoding)
        self.sizes: dict[tuple[str, int, int], int] = {}


_MEMO: dict[int, _GraphMemo] = {}


def _memo(graph: Graph) -> _GraphMemo:
    key = id(graph)
    found = _MEMO.get(key)
    if found is None:
        found = _MEMO[key] = _GraphMemo()
        weakref.finalize(graph, _MEMO.pop, key, None)
    return found


def graph_rows(graph: Graph, layer: Layer) -> I8:
    """The layer's int8 weights as the executor will hold them, ``(C_out, per_channel)``:
    quantised as :mod:`memplan.ir.weights` does for the executor, with seed 0."""
    memo = _memo(graph)
    rows = memo.rows.get(layer.id)
    if rows is None:
        if memo.source is None:
            memo.source = substitute_constant_weights(graph, 0)[0]
        src = memo.source
        rows = memo.rows[layer.id] = channel_rows(layer, quantized_weight(src, src.layer(layer.id)))
    return rows


def slice_bytes(graph: Graph, layer: Layer, c0: int, c1: int, fmt: WeightFormat) -> int:
    """Bytes of the weight slice of output channels ``[c0, c1)`` of ``layer``: what its
    LOAD_WEIGHTS moves, what its DRAM stream holds and its SRAM buffer needs (unaligned)."""
    if layer.op not in WEIGHTED:
        return 0
    n = c1 - c0
    if fmt.encoding == INT8:
        return n * (per_channel(graph, layer) * fmt.elem_bytes + (fmt.bias_bytes if layer.bias else 0))
    if fmt.encoding == ETHOS_U_RAW:
        return records_bytes(n) + align_up(n * per_channel(graph, layer))
    memo = _memo(graph)
    key = (layer.id, c0, c1)
    size = memo.sizes.get(key)
    if size is None:
        size = memo.sizes[key] = records_bytes(n) + len(encode_stream(fmt, graph_rows(graph, layer)[c0:c1]))
    return size


def spans_bytes(graph: Graph, layer: Layer, spans: tuple[tuple[int, int], ...], fmt: WeightFormat) -> tuple[int, int]:
    """(sum, max) of :func:`slice_bytes` over a tiling's channel spans of the layer's output:
    the DMA bytes of loading every slice once and the largest slice (its buffer's size)."""
    if fmt.linear:  # proportional to the channels: the same numbers without a call per span
        unit = slice_bytes(graph, layer, 0, 1, fmt)
        return unit * sum(b - a for a, b in spans), unit * max(b - a for a, b in spans)
    sizes = [slice_bytes(graph, layer, a, b, fmt) for a, b in spans]
    return sum(sizes), max(sizes)


# ---------------------------------------------------------------------------- layout
def _groups(layer: Layer) -> int:
    return layer.attrs.groups if isinstance(layer.attrs, (ConvAttrs, ConvTransposeAttrs)) else 1


def channel_rows(layer: Layer, w: I8) -> I8:
    """A weighted layer's int8 weight tensor ``w`` as ``(C_out, per_channel)``, one output
    channel per row, in the order the weight blob stores it."""
    if layer.op is OpKind.CONV_TRANSPOSE:
        g = _groups(layer)
        c_in, co_g, kh, kw = w.shape
        return np.ascontiguousarray(w.reshape(g, c_in // g, co_g, kh, kw).transpose(0, 2, 1, 3, 4).reshape(g * co_g, -1))
    return np.ascontiguousarray(w.reshape(w.shape[0], -1))


def encode_stream(fmt: WeightFormat, rows: I8) -> bytes:
    """The weight stream of an Ethos-U slice: its rows, flattened, encoded (or raw, padded)."""
    flat = np.ascontiguousarray(rows, dtype=np.int8).reshape(-1)
    if fmt.encoding == ETHOS_U_MLW:
        return bytes(_codec().encode(flat.astype(np.int64).tolist()))
    assert fmt.encoding == ETHOS_U_RAW
    return flat.tobytes() + bytes(align_up(flat.size) - flat.size)


#: decodes a stream from stdin in a child process and writes the values as int16 to stdout
_ISOLATED_DECODE = ("import sys, numpy; from ethosu import mlw_codec; "
                    "sys.stdout.buffer.write(numpy.asarray(mlw_codec.decode(bytearray(sys.stdin.buffer.read())), "
                    "dtype='<i2').tobytes())")


def _decode_isolated(stream: bytes) -> list[int]:
    """``mlw_codec.decode`` in a child process: Vela's C decoder ends the whole process
    (``exit(1)``) on a malformed stream, so a stream of unknown origin is decoded apart."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _ISOLATED_DECODE], input=stream, capture_output=True, timeout=600)
    if proc.returncode != 0:
        said = " ".join(proc.stderr.decode("utf-8", "replace").split())[-160:]
        raise ValueError(f"the weight stream does not decode (Vela's decoder: {said or f'exit {proc.returncode}'})")
    return np.frombuffer(proc.stdout, dtype="<i2").astype(np.int64).tolist()


def decode_stream(fmt: WeightFormat, stream: bytes, count: int, known: bytes | None = None) -> I8:
    """Inverse of :func:`encode_stream`: the first ``count`` int8 weights. Raises ValueError
    when the bytes do not decode to exactly ``count`` int8 values. ``known``: a stream the
    codec itself produced (so well formed); any other stream is decoded in a child process
    (:func:`_decode_isolated`), the same decoder either way."""
    if fmt.encoding == ETHOS_U_RAW:
        if len(stream) < count:
            raise ValueError(f"{len(stream)} B hold fewer than {count} weights")
        return np.frombuffer(stream[:count], dtype=np.int8).copy()
    if stream == known:
        values = _codec().decode(bytearray(stream))
    else:
        _codec()  # the codec must be installed either way
        values = _decode_isolated(stream)
    if len(values) != count:
        raise ValueError(f"the weight stream decodes to {len(values)} weights, not {count}")
    out = np.asarray(values, dtype=np.int64)
    if out.size and (out.min() < -128 or out.max() > 127):
        raise ValueError("the weight stream decodes to values outside int8")
    return out.astype(np.int8)


def ethos_u_shift(exponent: int) -> int:
    """Ethos-U's 6-bit right shift for memplan's multiplier exponent (``real = m * 2**(e - 31)``)."""
    return 31 - exponent


def pack_records(bias: I64, scale: I64, shift: I64) -> bytes:
    """Ethos-U scale/bias records of the channels (module documentation): ``bias`` 40-bit
    signed, ``scale`` 32-bit unsigned, ``shift`` 0..63 (already Ethos-U's). ValueError if a
    value does not fit."""
    bias, scale, shift = (np.asarray(a, dtype=np.int64).reshape(-1) for a in (bias, scale, shift))
    if bias.size and (bias.min() < -(1 << 39) or bias.max() >= 1 << 39):
        raise ValueError("a bias does not fit the record's 40 bits")
    if scale.size and (scale.min() < 0 or scale.max() >= 1 << 32):
        raise ValueError("a scale does not fit the record's unsigned 32 bits")
    if shift.size and (shift.min() < 0 or shift.max() >= 64):
        raise ValueError(f"shift {int(shift.min() if shift.min() < 0 else shift.max())} does not fit the record's 6 bits")
    out = np.zeros((bias.size, RECORD_BYTES), dtype=np.uint8)
    b = bias.astype(np.uint64) & np.uint64((1 << 40) - 1)
    for i in range(5):
        out[:, i] = (b >> np.uint64(8 * i)) & np.uint64(0xFF)
    s = scale.astype(np.uint64)
    for i in range(4):
        out[:, 5 + i] = (s >> np.uint64(8 * i)) & np.uint64(0xFF)
    out[:, 9] = shift.astype(np.uint8)
    return out.tobytes()


def unpack_records(data: bytes, channels: int) -> tuple[I64, I64, I64]:
    """(bias, scale, shift) of ``channels`` records; ValueError if the reserved bits are set."""
    raw = np.frombuffer(data[:channels * RECORD_BYTES], dtype=np.uint8).reshape(channels, RECORD_BYTES).astype(np.int64)
    if (raw[:, 9] & 0xC0).any():
        raise ValueError("a record's two reserved bits are set")
    bias = sum(raw[:, i] << (8 * i) for i in range(5))
    bias = np.where(bias >= 1 << 39, bias - (1 << 40), bias)
    scale = sum(raw[:, 5 + i] << (8 * i) for i in range(4))
    return np.asarray(bias, dtype=np.int64), np.asarray(scale, dtype=np.int64), raw[:, 9] & 0x3F


def ethos_u_slice(fmt: WeightFormat, rows: I8, bias: I64, scale: I64, shift: I64) -> bytes:
    """The bytes of an Ethos-U slice: records, padding, stream (module documentation)."""
    records = pack_records(bias, scale, shift)
    return records + bytes(records_bytes(rows.shape[0]) - len(records)) + encode_stream(fmt, rows)


__all__ = ["CODEC_PACKAGE", "ENCODINGS", "ETHOS_U_MLW", "ETHOS_U_RAW", "INT8", "RECORD_BYTES", "STREAM_ALIGN",
           "WeightFormat", "channel_rows", "codec_available", "decode_stream", "encode_stream", "encoder",
           "ethos_u_shift", "ethos_u_slice", "graph_rows", "pack_records", "per_channel", "reproducible",
           "slice_bytes", "spans_bytes", "unpack_records"]
