"""Which earlier commands each command must wait for: the hazards firmware respects when it
overlaps DMA with compute.

The command stream is correct when run in order. Firmware that runs DMA and compute on
separate queues may start command ``j`` before an earlier command ``i`` finished only if they
do not conflict: ``j`` *waits for* ``i`` when both touch a byte of the same memory (SRAM, or
the DRAM feature-map arena) and at least one of them writes it. Of those, only the nearest
are listed (enough, since the stream orders the rest through them):

* read after write: the last command that wrote a byte ``j`` reads;
* write after write: the last command that wrote a byte ``j`` writes;
* write after read: every command that read a byte ``j`` writes since it was last written.

What each command touches, as byte ranges (a region of a channel-major buffer covers the range
from its first to its last byte, which may include bytes between its rows: a conservative
hull, never too few waits):

* LOAD: reads the region in the tensor's DRAM home, writes it at the SRAM offset (into its
  view, for a load into a rolling buffer's slot);
* STORE: reads the region at the SRAM offset (in its view, for a store from a multi-output
  group's tile buffer), writes it in the DRAM home;
* LOAD_WEIGHTS: writes the weight slice in SRAM (the weight blob is read-only: no hazard);
* COMPUTE: reads each input operand and its weight slice in SRAM, writes its region of the
  output operand;
* COPY: reads its source operand, writes its region of the destination operand (both SRAM);
* HOST: reads its input tensors' DRAM homes whole, writes its outputs' whole.

Model inputs are in place before the first command and model outputs are read after the last,
so neither adds a wait.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from memplan.cost.candidate import ACC_BYTES
from memplan.geometry.region import Region
from memplan.plan.memory_map import MemoryMap
from memplan.plan.model import Command, Op, Plan

SRAM, DRAM = "sram", "dram"


def region_span(held: Region, part: Region, offset: int, elem_bytes: int) -> tuple[int, int]:
    """Byte range ``[lo, hi)`` covering ``part`` of a channel-major ``(C, H, W)`` array that
    holds ``held`` from ``offset``."""
    rows, cols = held.rows, held.cols

    def index(c: int, y: int, x: int) -> int:
        return ((c - held.c0) * rows + (y - held.y0)) * cols + (x - held.x0)

    if part.empty:
        return offset, offset
    lo = index(part.c0, part.y0, part.x0)
    hi = index(part.c1 - 1, part.y1 - 1, part.x1 - 1) + 1
    return offset + lo * elem_bytes, offset + hi * elem_bytes


@dataclass
class _Segment:
    lo: int
    hi: int
    writer: int | None = None
    readers: set[int] = field(default_factory=set)


class _Memory:
    """Disjoint segments ``[lo, hi)``, each with its last writer and the readers since."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.segs: list[_Segment] = []

    def _split(self, at: int) -> None:
        i = bisect.bisect_right(self.starts, at) - 1
        if i >= 0 and self.segs[i].lo < at < self.segs[i].hi:
            s = self.segs[i]
            right = _Segment(at, s.hi, s.writer, set(s.readers))
            s.hi = at
            self.starts.insert(i + 1, at)
            self.segs.insert(i + 1, right)

    def _cover(self, lo: int, hi: int) -> list[_Segment]:
        """The segments exactly covering ``[lo, hi)``, gaps filled with fresh segments."""
        self._split(lo)
        self._split(hi)
        i = bisect.bisect_left(self.starts, lo)
        out: list[_Segment] = []
        at = lo
        while at < hi:
            if i < len(self.segs) and self.segs[i].lo == at:
                out.append(self.segs[i])
                at = self.segs[i].hi
                i += 1
                continue
            gap_end = min(hi, self.segs[i].lo) if i < len(self.segs) else hi
            seg = _Segment(at, gap_end)
            self.starts.insert(i, at)
            self.segs.insert(i, seg)
            out.append(seg)
            at = gap_end
            i += 1
        return out

    def read(self, k: int, lo: int, hi: int, deps: set[int]) -> None:
        if lo >= hi:
            return
        for s in self._cover(lo, hi):
            if s.writer is not None:
                deps.add(s.writer)
            s.readers.add(k)

    def write(self, k: int, lo: int, hi: int, deps: set[int]) -> None:
        if lo >= hi:
            return
        for s in self._cover(lo, hi):
            if s.writer is not None:
                deps.add(s.writer)
            deps.update(s.readers)
            s.writer, s.readers = k, set()


Shapes = dict[str, tuple[int, int, int]]


def _accesses(cmd: Command, plan: Plan, mm: MemoryMap, shapes: Shapes) -> list[tuple[str, bool, int, int]]:
    """(memory, writes, lo, hi) of every byte range the command touches."""
    eb = plan.elem_bytes
    if cmd.op in (Op.LOAD, Op.STORE):
        assert cmd.tensor is not None and cmd.region is not None and cmd.offset is not None
        home = mm.dram(cmd.tensor)
        assert home is not None, f"{cmd.tensor} is moved but has no DRAM home"
        c, h, w = shapes[cmd.tensor]
        dram = region_span(Region(0, c, 0, h, 0, w), cmd.region, home.offset, eb)
        view = cmd.output  # a rolling slot's load writes, an escaping tensor's store reads, part of a view
        sram = (cmd.offset, cmd.offset + cmd.region.numel * eb) if view is None else region_span(
            view.region, cmd.region, view.offset, eb)
        if cmd.op is Op.LOAD:
            return [(DRAM, False, *dram), (SRAM, True, *sram)]
        return [(SRAM, False, *sram), (DRAM, True, *dram)]
    if cmd.op is Op.LOAD_WEIGHTS:
        assert cmd.layer is not None and cmd.channels is not None and cmd.offset is not None
        rec = mm.weight(cmd.layer)
        assert rec is not None
        return [(SRAM, True, cmd.offset, cmd.offset + rec.slice_bytes(*cmd.channels))]
    if cmd.op is Op.HOST:
        out = []
        for t, writes in [*((t, False) for t in cmd.host_inputs), *((t, True) for t in cmd.host_outputs)]:
            home = mm.dram(t)
            assert home is not None, f"host tensor {t} has no DRAM home"
            out.append((DRAM, writes, home.offset, home.end))
        return out
    assert cmd.region is not None and cmd.output is not None
    if cmd.op is Op.REQUANTIZE:  # reads the FDT accumulator (int32), writes the int8 tile
        acc = cmd.inputs[0]
        return [(SRAM, False, acc.offset, acc.offset + acc.region.numel * ACC_BYTES),
                (SRAM, True, *region_span(cmd.output.region, cmd.region, cmd.output.offset, eb))]
    out = [(SRAM, False, *region_span(o.region, o.region, o.offset, eb)) for o in cmd.inputs]
    if cmd.accumulate is not None:  # an FDT slice: reads its input, reads (adds) and writes the accumulator
        acc = cmd.output
        span = (acc.offset, acc.offset + acc.region.numel * ACC_BYTES)
        return [*out, *([(SRAM, False, *span)] if cmd.accumulate else []), (SRAM, True, *span)]
    if cmd.weights_offset is not None and cmd.layer is not None:
        rec = mm.weight(cmd.layer)
        assert rec is not None
        out.append((SRAM, False, cmd.weights_offset, cmd.weights_offset + rec.slice_bytes(cmd.region.c0, cmd.region.c1)))
    out.append((SRAM, True, *region_span(cmd.output.region, cmd.region, cmd.output.offset, eb)))
    return out


def waits_for(plan: Plan, mm: MemoryMap, shapes: Shapes) -> tuple[tuple[int, ...], ...]:
    """For each command, the sorted indexes of the earlier commands it must wait for.
    ``shapes``: ``(C, H, W)`` of every tensor the plan moves between DRAM and SRAM."""
    memories = {SRAM: _Memory(), DRAM: _Memory()}
    out: list[tuple[int, ...]] = []
    for k, cmd in enumerate(plan.commands):
        deps: set[int] = set()
        for memory, writes, lo, hi in _accesses(cmd, plan, mm, shapes):
            (memories[memory].write if writes else memories[memory].read)(k, lo, hi, deps)
        deps.discard(k)
        out.append(tuple(sorted(deps)))
    return tuple(out)
