"""First-fit offset allocation for buffers with known sizes and live intervals.

Used for the fixed layout of tile buffers inside one group's workspace and for the offsets
of baseline plans. CP-SAT plans get their offsets from the solver instead.

Alignment (a profile's ``sram_alignment``): every buffer sits at a multiple of it and
*reserves* its size rounded up to a multiple of it (:func:`align_up`), as Vela allocates. The
cost model gives reserved sizes for the SRAM blocks it sizes (workspaces, staging slots, weight
slices), so a block's end is a multiple of the alignment, and the SRAM peak (:func:`extent` of
the blocks) is the highest reserved byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Block:
    """A buffer to place: ``size`` bytes live over schedule steps [t0, t1)."""

    name: str
    size: int
    t0: int
    t1: int


def align_up(n: int, alignment: int) -> int:
    """``n`` rounded up to a multiple of ``alignment``."""
    return -(-n // alignment) * alignment


def overlaps(a0: int, a1: int, b0: int, b1: int) -> bool:
    return a0 < b1 and b0 < a1


def first_fit(blocks: Sequence[Block], alignment: int = 1) -> dict[str, int]:
    """Place blocks largest first (ties: earliest start, then name) at the lowest aligned
    offset that overlaps no placed block live at the same time. Deterministic."""
    placed: list[tuple[int, int]] = []  # (offset, end) of each placed block
    spans: list[tuple[int, int]] = []  # their live intervals
    live: dict[int, list[int]] = {}  # step -> the placed blocks live at it (what overlaps() finds, by step)
    empty: list[int] = []  # placed blocks with an empty interval: no step holds them
    offsets: dict[str, int] = {}
    for blk in sorted(blocks, key=lambda b: (-b.size, b.t0, b.name)):
        if blk.size == 0:
            offsets[blk.name] = 0
            continue
        if blk.t0 < blk.t1:
            near = {i for t in range(blk.t0, blk.t1) for i in live.get(t, ())}
            near.update(i for i in empty if overlaps(blk.t0, blk.t1, *spans[i]))
        else:  # an empty interval (overlaps() still finds the blocks live around it): every block
            near = {i for i in range(len(placed)) if overlaps(blk.t0, blk.t1, *spans[i])}
        busy = sorted(placed[i] for i in near)
        candidate = 0
        for lo, hi in busy:
            if candidate + blk.size <= lo:
                break
            candidate = max(candidate, -(-hi // alignment) * alignment)
        offsets[blk.name] = candidate
        for t in range(blk.t0, blk.t1):
            live.setdefault(t, []).append(len(placed))
        if blk.t0 >= blk.t1:
            empty.append(len(placed))
        spans.append((blk.t0, blk.t1))
        placed.append((candidate, candidate + blk.size))
    return offsets


def extent(blocks: Sequence[Block], offsets: dict[str, int]) -> int:
    """Highest address used (offset + size) over the blocks."""
    return max((offsets[b.name] + b.size for b in blocks), default=0)
