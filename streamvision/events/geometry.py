"""Plane geometry for zones and lines, in frame pixels (x right, y down)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Point = tuple[float, float]


def anchor_point(box: Sequence[float], anchor: str) -> Point:
    """The point of an ``x1, y1, x2, y2`` box that zones and lines test: ``center`` or ``bottom_center``.

    Raises:
        ValueError: unknown anchor.

    Example:
        >>> anchor_point((0, 0, 10, 20), "bottom_center")
        (5.0, 20.0)
    """
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    if anchor == "center":
        return (x1 + x2) / 2, (y1 + y2) / 2
    if anchor == "bottom_center":
        return (x1 + x2) / 2, y2
    raise ValueError(f"unknown anchor {anchor!r}; valid: center, bottom_center")


def inside(polygon: Sequence[Point], point: Point) -> bool:
    """Whether ``point`` lies inside ``polygon`` (even-odd rule; points on an edge may go either way).

    Example:
        >>> inside([(0, 0), (10, 0), (10, 10), (0, 10)], (5, 5)), inside([(0, 0), (10, 0), (0, 10)], (9, 9))
        (True, False)
    """
    x, y = point
    pts = np.asarray(polygon, dtype=float)
    xs, ys = pts[:, 0], pts[:, 1]
    xs2, ys2 = np.roll(xs, -1), np.roll(ys, -1)
    straddles = (ys > y) != (ys2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        cross_x = xs + (y - ys) * (xs2 - xs) / (ys2 - ys)
    return bool(np.count_nonzero(straddles & (x < cross_x)) % 2)


def side(line: tuple[Point, Point], point: Point) -> int:
    """-1 left of the line walking from its first point to its second (as drawn, y down), +1 right,
    0 on it.

    Example:
        >>> side(((0, 100), (100, 100)), (50, 10)), side(((0, 100), (100, 100)), (50, 150))
        (-1, 1)
    """
    (ax, ay), (bx, by) = line
    cross = (bx - ax) * (point[1] - ay) - (by - ay) * (point[0] - ax)
    return (cross > 0) - (cross < 0)


def segments_cross(p1: Point, p2: Point, line: tuple[Point, Point]) -> bool:
    """Whether the move from ``p1`` to ``p2`` crosses (or touches) the segment ``line``.

    Example:
        >>> line = ((0, 5), (10, 5))
        >>> segments_cross((5, 0), (5, 10), line), segments_cross((20, 0), (20, 10), line)
        (True, False)
    """
    a, b = line
    d1, d2 = side((a, b), p1), side((a, b), p2)
    d3, d4 = side((p1, p2), a), side((p1, p2), b)
    if d1 != d2 and d3 != d4:
        return True
    return (d1 == 0 and _on_segment(a, b, p1)) or (d2 == 0 and _on_segment(a, b, p2))


def _on_segment(a: Point, b: Point, p: Point) -> bool:
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])
