"""Regions of 4-D NCHW feature maps (batch is always whole)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Region:
    """A box of a feature map: channels [c0, c1), rows [y0, y1), columns [x0, x1), half-open.

    Coordinates are in the full tensor; a region used as a kernel input may extend past the
    tensor (negative or beyond the edge) only where the kernel pads, and such cells are never
    stored: :meth:`clip` gives the stored part."""

    c0: int
    c1: int
    y0: int
    y1: int
    x0: int
    x1: int

    @staticmethod
    def full(shape: tuple[int, ...]) -> Region:
        _, c, h, w = shape
        return Region(0, c, 0, h, 0, w)

    @property
    def channels(self) -> int:
        return self.c1 - self.c0

    @property
    def rows(self) -> int:
        return self.y1 - self.y0

    @property
    def cols(self) -> int:
        return self.x1 - self.x0

    @property
    def numel(self) -> int:
        return max(self.channels, 0) * max(self.rows, 0) * max(self.cols, 0)

    @property
    def empty(self) -> bool:
        return self.c1 <= self.c0 or self.y1 <= self.y0 or self.x1 <= self.x0

    def clip(self, shape: tuple[int, ...]) -> Region:
        _, c, h, w = shape
        return Region(max(self.c0, 0), min(self.c1, c), max(self.y0, 0), min(self.y1, h), max(self.x0, 0), min(self.x1, w))

    def union(self, other: Region) -> Region:
        """Bounding box of two regions (an empty region is the identity)."""
        if self.empty:
            return other
        if other.empty:
            return self
        return Region(min(self.c0, other.c0), max(self.c1, other.c1), min(self.y0, other.y0),
                      max(self.y1, other.y1), min(self.x0, other.x0), max(self.x1, other.x1))

    def contains(self, other: Region) -> bool:
        return other.empty or (self.c0 <= other.c0 and other.c1 <= self.c1 and self.y0 <= other.y0
                               and other.y1 <= self.y1 and self.x0 <= other.x0 and other.x1 <= self.x1)

    def within(self, shape: tuple[int, ...]) -> bool:
        return self.clip(shape) == self

    def slices(self) -> tuple[slice, slice, slice]:
        """Slices (C, H, W) selecting this region of an array that covers the full tensor."""
        return slice(self.c0, self.c1), slice(self.y0, self.y1), slice(self.x0, self.x1)

    def relative_to(self, outer: Region) -> tuple[slice, slice, slice]:
        """Slices (C, H, W) selecting this region inside an array that holds ``outer``."""
        return (slice(self.c0 - outer.c0, self.c1 - outer.c0), slice(self.y0 - outer.y0, self.y1 - outer.y0),
                slice(self.x0 - outer.x0, self.x1 - outer.x0))

    def as_list(self) -> list[int]:
        return [self.c0, self.c1, self.y0, self.y1, self.x0, self.x1]
