"""Zones and counting lines: one geometry (supervision's) and one "confirmed objects only" policy for the
``zones`` stage, the event rules and the annotator.

What holds everywhere (the README's "Zones and lines" says the same):

- **Confirmed objects only.** When a tracking stage set track ids, a box with id -1 (one the tracker
  has not confirmed) is not an object yet: no zone, line, rule or count sees it and it is not drawn.
  Without a tracker every box counts.
- **Anchor.** A box is in a zone when its anchor point is: ``bottom_center`` (the default: where feet
  and wheels touch the ground), ``center``, or ``corners`` (all four corners). A point on the zone's
  edge is inside.
- **Lines.** A crossing is a track's anchor going from one side of the segment to the other (within
  the strip between the perpendiculars through its ends; with ``corners``, all four go). It counts
  once the track was seen on the new side for the required frames in a row (frames where it is
  missing or sits on the line neither count nor reset); a track missing for longer than that starts
  over. "in" is a crossing to the line's right, walking from its first point to its second as drawn
  on screen (y down); "out" the other way.

supervision loads on first use, so importing this module stays cheap.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from streamvision.frame import Detections
from streamvision.strict import StrictModel

Anchor = Literal["bottom_center", "center", "corners"]
Point = tuple[float, float]


def confirmed(detections: Detections) -> np.ndarray:
    """(N,) bool: the rows that are objects: all of them without track ids, else those with an id >= 0.

    Example:
        >>> d = Detections(np.zeros((2, 4), np.float32), np.ones(2, np.float32), np.zeros(2, np.int32),
        ...                np.array(["a", "a"]), tracker_id=np.array([3, -1]))
        >>> confirmed(d).tolist(), confirmed(Detections.empty()).tolist()
        ([True, False], [])
    """
    if detections.tracker_id is None:
        return np.ones(len(detections), bool)
    return np.asarray(detections.tracker_id) >= 0


class _Region(StrictModel):
    name: str
    classes: tuple[str, ...] | None = None
    """Count only these labels (all by default)."""
    anchor: Anchor = "bottom_center"
    """The point of a box that must be inside the zone or cross the line (``corners``: all four)."""


class ZoneSpec(_Region):
    """A polygon zone: how many objects are inside, and how many tracks went in and out."""

    polygon: tuple[Point, ...] = Field(min_length=3)

    @property
    def points(self) -> tuple[Point, ...]:
        return self.polygon


class LineSpec(_Region):
    """A counting line: tracks crossing it, by direction.

    "in" is a crossing to the line's right as seen walking from ``start`` to ``end`` on screen
    (for a line drawn left to right: moving down), "out" a crossing to its left.
    """

    start: Point
    end: Point
    min_crossing_frames: int = Field(1, ge=1, le=100)
    """Frames in a row a track must be seen on the new side before its crossing counts (steadies
    jittery boxes); a line rule's ``debounce_frames`` means the same."""

    @model_validator(mode="after")
    def _not_a_point(self) -> LineSpec:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self

    @property
    def points(self) -> tuple[Point, ...]:
        return (self.start, self.end)


RegionSpec = ZoneSpec | LineSpec


def in_pixels(points: tuple[Point, ...], relative: bool, width: int, height: int) -> np.ndarray:
    """(K, 2) float64 frame pixels of ``points``, which are fractions of the frame when ``relative``.

    Example:
        >>> in_pixels(((0.5, 1.0),), True, 640, 272).tolist()
        [[320.0, 272.0]]
    """
    scale = np.array([width, height], np.float64) if relative else np.ones(2)
    return np.asarray(points, np.float64).reshape(-1, 2) * scale


def _anchors(anchor: Anchor) -> list[Any]:
    import supervision as sv

    if anchor == "corners":
        return [
            sv.Position.TOP_LEFT,
            sv.Position.TOP_RIGHT,
            sv.Position.BOTTOM_LEFT,
            sv.Position.BOTTOM_RIGHT,
        ]
    return [sv.Position.BOTTOM_CENTER if anchor == "bottom_center" else sv.Position.CENTER]


def _supervision(detections: Detections) -> Any:
    # Imported here: streamvision.stages imports this module, so a top-level import would be circular.
    from streamvision.stages.sv_adapter import to_supervision

    return to_supervision(detections)


class Area:
    """A polygon zone in frame pixels (supervision's ``PolygonZone``).

    Raises:
        ValueError: fewer than three points.

    Example:
        >>> square = Area(np.array([[0, 0], [100, 0], [100, 100], [0, 100]]), "bottom_center")
        >>> boxes = Detections(np.array([[10, 10, 30, 100], [10, 10, 30, 101]], np.float32),
        ...                    np.ones(2, np.float32), np.zeros(2, np.int32), np.array(["a", "a"]))
        >>> square.contains(boxes).tolist()  # an anchor on the edge is inside
        [True, False]
    """

    def __init__(self, points: np.ndarray, anchor: Anchor) -> None:
        import supervision as sv

        self.points = np.asarray(points, np.float64)
        self._zone = sv.PolygonZone(
            np.rint(self.points).astype(np.int64),
            triggering_anchors=_anchors(anchor),
            require_all_anchors=True,
        )

    def contains(self, detections: Detections) -> np.ndarray:
        """(N,) bool: the boxes whose anchor is inside (every box given: filter unconfirmed ones first)."""
        if not len(detections):
            return np.zeros(0, bool)
        return np.asarray(self._zone.trigger(_supervision(detections)), bool)


class Crossing:
    """A counting line in frame pixels (supervision's ``LineZone``) that keeps each track's side.

    Args:
        start, end: the segment; "in" is to its right walking from ``start`` to ``end``.
        anchor: the point of a box that crosses.
        frames: observations in a row on the new side before a crossing counts.

    Raises:
        ValueError: ``start`` and ``end`` are the same point.
    """

    def __init__(self, start: Point, end: Point, anchor: Anchor, frames: int) -> None:
        import supervision as sv

        self.points = np.array([start, end], np.float64)
        # supervision counts "in" on its line's left; reversed, that is the right of start -> end.
        self._line = sv.LineZone(
            sv.Point(float(end[0]), float(end[1])),
            sv.Point(float(start[0]), float(start[1])),
            triggering_anchors=_anchors(anchor),
            minimum_crossing_threshold=frames,
        )

    def update(self, detections: Detections) -> tuple[np.ndarray, np.ndarray]:
        """Feeds one frame's boxes; returns (N,) bool arrays: the rows that crossed in, and out.

        Boxes without a track id (or with -1) never cross. Call it on every frame, with no boxes
        when there are none, so tracks that are gone are forgotten.
        """
        if detections.tracker_id is None:
            import supervision as sv

            self._line.trigger(sv.Detections.empty())  # no tracks here: the ones it knows age
            return np.zeros(len(detections), bool), np.zeros(len(detections), bool)
        crossed_in, crossed_out = self._line.trigger(_supervision(detections))
        return np.asarray(crossed_in, bool), np.asarray(crossed_out, bool)


def anchor_point(box: tuple[float, float, float, float], anchor: str) -> Point:
    """The point of an ``x1, y1, x2, y2`` box that zones and lines test: ``center`` or ``bottom_center``.

    Raises:
        ValueError: another anchor (``corners`` is four points).

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


def inside(polygon: tuple[Point, ...], point: Point) -> bool:
    """Whether ``point`` lies in ``polygon`` (frame pixels) as :class:`Area` sees an anchor there: a
    point on the edge is inside.

    Example:
        >>> square = ((0, 0), (10, 0), (10, 10), (0, 10))
        >>> inside(square, (5, 5)), inside(square, (10, 10)), inside(square, (11, 5))
        (True, True, False)
    """
    x, y = float(point[0]), float(point[1])
    box = Detections(
        np.array([[x, y, x, y]], np.float32), np.ones(1, np.float32), np.zeros(1, np.int32), np.array([""])
    )
    return bool(_area(tuple((float(px), float(py)) for px, py in polygon)).contains(box)[0])


@lru_cache(maxsize=64)
def _area(polygon: tuple[Point, ...]) -> Area:
    return Area(np.asarray(polygon), "bottom_center")
