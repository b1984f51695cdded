"""TensorFlow Lite Micro's offline memory plan from an untiled memplan plan.

TFLite Micro places the tensors of its arena with a greedy planner at start-up, unless the
model carries a plan of its own: the metadata entry ``OfflineMemoryAllocation``, a buffer of
little-endian int32 ``[version, number of subgraphs, n, offset of tensor 0, ..., offset of
tensor n-1]`` (TFLM's ``docs/memory_management.md``; the version and subgraph count are not
read, and ``-1`` leaves a tensor to the online planner). An offset is relative to the start
of the arena's non-persistent ("head") section.

memplan's memory objective with tiling and fusion disabled (``--hardware mcu-sram --objective
memory --max-fuse-depth 1 --max-tiles 1``) gives exactly such a plan: every layer runs alone
and every feature map is a resident SRAM buffer, placed by CP-SAT to minimise the peak. This
module writes those buffers' offsets into a copy of the ``.tflite``:

* each TFLite tensor that an IR tensor holds whole (the import's ``tensor_views``: inputs,
  layer outputs) gets its resident buffer's offset;
* every other tensor gets ``-1``: constants (not in the arena), and tensors memplan does not
  materialise (a RESHAPE's output, the float side of a QUANTIZE at a float interface), which
  TFLite Micro then plans around the fixed ones.

The layout inside a buffer does not matter here: an int8 tensor of ``n`` elements takes ``n``
bytes in both (TFLite Micro stores NHWC, memplan's SRAM regions are CHW), and a buffer is
live from its producer's step to its last consumer's, which covers the TFLite tensor's life
because memplan's schedule is the file's operator order.

The flatbuffer is rewritten with the schema bindings of the ``tflite-micro`` package (its
object API can pack a model back; the pure-Python ``tflite`` reader cannot), so this export
needs that package, and uses its interpreter to check the result: the outputs must be
unchanged, and the arena's head section is reported against the default planner's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memplan.errors import MemplanError, UsageError
from memplan.ir.graph import Graph
from memplan.ir.ops import OpKind
from memplan.plan.model import BufferKind, Plan

METADATA_NAME = b"OfflineMemoryAllocation"
#: the first word of the metadata (TFLite Micro does not read it)
FORMAT_VERSION = 1
#: how to make a plan this export takes
UNTILED_PLAN = "memplan solve MODEL.tflite --hardware mcu-sram --objective memory --max-fuse-depth 1 --max-tiles 1"


@dataclass(frozen=True)
class ArenaUse:
    """TFLite Micro's arena after one inference (RecordingMicroAllocator): ``head`` is the
    non-persistent section the memory plan lays out, ``tail`` the persistent one."""

    total: int
    head: int
    tail: int


@dataclass(frozen=True)
class OfflinePlan:
    """What was written: the offsets (one per TFLite tensor of subgraph 0), how many are
    planned offline, and the head section they need (highest offset + size)."""

    offsets: tuple[int, ...]
    planned: int
    head_bytes: int


def _schema():  # type: ignore[no-untyped-def]
    try:
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
    except ImportError:
        raise UsageError("--tflm-offsets rewrites the .tflite with the tflite-micro package's schema bindings: "
                         "pip install tflite-micro") from None
    return schema


def check_untiled(graph: Graph, plan: Plan) -> None:
    """The plan runs every layer alone, untiled, with every feature map resident in SRAM."""
    for g in plan.decisions.groups:
        if g.stop - g.start != 1:
            raise UsageError(f"the plan fuses layers {g.start}..{g.stop - 1}: TFLite Micro runs one operator at a time; "
                             f"make the plan with {UNTILED_PLAN}")
    for g in plan.decisions.groups:
        layer = graph.layers[g.start]
        if layer.op is OpKind.HOST:
            raise UsageError(f"layer {layer.id!r} runs on the host CPU: TFLite Micro's offline plan covers models whose "
                             "every operator runs in the interpreter")
        _, c, h, w = graph.shape(layer.output)
        if (g.tiling.tile_h, g.tiling.tile_w, g.tiling.tile_c) != (h, w, c):
            raise UsageError(f"the plan tiles layer {layer.id!r} ({g.tiling.to_json()}): make the plan with {UNTILED_PLAN}")
    resident = {b.tensor for b in plan.buffers if b.kind is BufferKind.RESIDENT}
    for name in (*graph.inputs, *(layer.output for layer in graph.layers)):
        if graph.tensors[name].is_feature_map and name not in resident:
            raise UsageError(f"tensor {name!r} is not resident in SRAM in this plan: make the plan with {UNTILED_PLAN}")


def offline_offsets(graph: Graph, plan: Plan, views: dict[str, tuple[int, np.ndarray]], n_tensors: int) -> OfflinePlan:
    """The offset of every TFLite tensor of subgraph 0 (``-1``: left to TFLite Micro)."""
    check_untiled(graph, plan)
    offsets = [-1] * n_tensors
    head = 0
    for b in plan.buffers:
        if b.kind is not BufferKind.RESIDENT or b.tensor not in views:
            continue
        ti, positions = views[b.tensor]
        if positions.size * plan.elem_bytes != b.size:
            continue  # not the whole tensor (never for a resident buffer of an exact view)
        offsets[ti] = b.offset
        head = max(head, b.end)
    return OfflinePlan(tuple(offsets), sum(o >= 0 for o in offsets), head)


def with_offline_offsets(data: bytes, offsets: tuple[int, ...]) -> bytes:
    """A copy of the flatbuffer ``data`` with ``OfflineMemoryAllocation`` set to ``offsets``
    (an existing entry of that name is replaced)."""
    import flatbuffers

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    words = np.array([FORMAT_VERSION, len(model.subgraphs), len(offsets), *offsets], dtype="<i4")
    buf = schema.BufferT()
    buf.data = words.view(np.uint8).copy()
    model.buffers = [*(model.buffers or []), buf]
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    kept = [m for m in (model.metadata or []) if m.name not in (METADATA_NAME, METADATA_NAME.decode())]
    model.metadata = [*kept, entry]
    builder = flatbuffers.Builder(len(data) + words.nbytes + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_offline_offsets(data: bytes) -> tuple[int, ...] | None:
    """The offsets a flatbuffer's ``OfflineMemoryAllocation`` holds (None: it has none)."""
    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    for m in model.metadata or []:
        if m.name in (METADATA_NAME, METADATA_NAME.decode()):
            words = np.asarray(model.buffers[m.buffer].data, dtype=np.uint8).view("<i4")
            return tuple(int(v) for v in words[3:3 + int(words[2])])
    return None


_ALLOC = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")

_CHILD = """
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
data = sys.stdin.buffer.read()
it = runtime.Interpreter.from_bytes(data, arena_size=max(64 << 20, 16 * len(data)))
for k in range(int(sys.argv[1])):  # the model's inputs, counted from the flatbuffer by the parent
    d = it.get_input_details(k)
    it.set_input(np.zeros(d["shape"], dtype=d["dtype"]), k)
it.invoke()
it.print_allocations()
"""


def tflm_arena(data: bytes, timeout: float = 300.0) -> ArenaUse:
    """TFLite Micro's arena use for the model ``data`` (one inference in a child process:
    the interpreter prints its allocations, and may abort the process on a bad model)."""
    import tflite

    n_inputs = tflite.Model.GetRootAs(data, 0).Subgraphs(0).InputsLength()
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(n_inputs)], input=data, capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise MemplanError(f"the TFLite Micro interpreter took longer than {timeout:.0f} s") from None
    found = {k: int(v) for k, v in _ALLOC.findall(proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace"))}
    if proc.returncode != 0 or len(found) != 3:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise MemplanError("the TFLite Micro interpreter failed on this model" + (f": {err[-1]}" if err else ""))
    return ArenaUse(found["total"], found["head"], found["tail"])


@dataclass(frozen=True)
class OffsetsExport:
    """``memplan export --tflm-offsets``: the offsets written and what TFLite Micro made of them."""

    plan: OfflinePlan
    arena_default: ArenaUse
    arena_offline: ArenaUse
    outputs_identical: bool


def export_tflm_offsets(model: str | os.PathLike[str], graph: Graph, plan: Plan, inputs: dict[str, np.ndarray],
                        out: str | os.PathLike[str]) -> OffsetsExport:
    """Write ``out``: the ``.tflite`` ``model`` with the plan's offsets, after checking with
    TFLite Micro that it computes the same outputs on ``inputs`` (the verification input);
    the file is written only then, atomically."""
    from memplan.execute.tflm import tflm_reference
    from memplan.frontend.tflite import import_tflite, read_tflite

    source = Path(model)
    if source.suffix.lower() != ".tflite":
        raise UsageError("--tflm-offsets writes TensorFlow Lite Micro's metadata into a .tflite: give the .tflite model")
    data = source.read_bytes()
    result = import_tflite(source, dict(graph.input_shapes) or None, graph.host_ops)
    offline = offline_offsets(graph, plan, result.tensor_views, len(read_tflite(source).tensors))
    written = with_offline_offsets(data, offline.offsets)
    target = Path(out)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(written)
    try:
        before = tflm_reference(source, inputs)
        after = tflm_reference(tmp, inputs)
        same = before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)
        if not same:
            raise MemplanError("TensorFlow Lite Micro computes other outputs with the offline plan: the plan's offsets "
                               "conflict with TFLite Micro's tensor lifetimes (report this as a memplan bug)")
        default, planned = tflm_arena(data), tflm_arena(written)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return OffsetsExport(offline, default, planned, same)


__all__ = ["ArenaUse", "OfflinePlan", "OffsetsExport", "check_untiled", "export_tflm_offsets", "offline_offsets",
           "read_offline_offsets", "tflm_arena", "with_offline_offsets"]
