"""Polygon zones and counting lines: occupancy and in / out counts per class, from tracked boxes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from streamvision.errors import ConfigError
from streamvision.frame import Detections, Frame, RegionCount, ZoneCounts
from streamvision.stages.base import StageConfig, StageContext
from streamvision.stages.sv_adapter import require, to_supervision

Anchor = Literal["bottom_center", "center", "corners"]
Point = tuple[float, float]

# A track unseen for this many frames is forgotten by the zones (keeps memory bounded).
_FORGET_AFTER = 900


class _Region(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    classes: tuple[str, ...] | None = None
    """Count only these labels (all by default)."""
    anchor: Anchor = "bottom_center"
    """The point of a box that must be inside the zone or cross the line (``corners``: all four)."""


class ZoneSpec(_Region):
    """A polygon zone: how many objects are inside, and how many tracks went in and out."""

    polygon: tuple[Point, ...] = Field(min_length=3)


class LineSpec(_Region):
    """A counting line: tracks crossing it, by direction.

    "in" is a crossing to the line's right as seen walking from ``start`` to ``end`` on screen
    (for a line drawn left to right: moving down), "out" a crossing to its left.
    """

    start: Point
    end: Point
    min_crossing_frames: int = Field(1, ge=1, le=100)
    """Frames a track must stay on the new side before its crossing counts (steadies jittery boxes)."""

    @model_validator(mode="after")
    def _not_a_point(self) -> LineSpec:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self


class ZonesConfig(StageConfig):
    """``type: zones``."""

    type: Literal["zones"] = "zones"
    on: str = "object_detection"
    """Result key of the (tracked) detections to count."""
    zones: tuple[ZoneSpec, ...] = ()
    lines: tuple[LineSpec, ...] = ()
    relative: bool = False
    """Coordinates are fractions of the frame's width and height instead of pixels."""

    model_sessions: ClassVar[int] = 0

    @model_validator(mode="after")
    def _regions(self) -> ZonesConfig:
        names = [region.name for region in (*self.zones, *self.lines)]
        if not names:
            raise ValueError("give at least one zone or line")
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"zone and line names must be unique: {', '.join(duplicates)}")
        return self


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


def _frozen(counts: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType({k: v for k, v in counts.items() if v})


class _Zone:
    def __init__(self, spec: ZoneSpec, points: np.ndarray) -> None:
        import supervision as sv

        self.spec = spec
        self.points = points
        self._zone = sv.PolygonZone(
            np.rint(points).astype(np.int64),
            triggering_anchors=_anchors(spec.anchor),
            require_all_anchors=True,
        )
        self._inside_tracks: dict[int, bool] = {}
        self._last_seen: dict[int, int] = {}
        self._inside: Counter[str] = Counter()
        self._entered: Counter[str] = Counter()
        self._exited: Counter[str] = Counter()

    def update(self, detections: Detections, index: int) -> None:
        inside = self._zone.trigger(to_supervision(detections)) if len(detections) else np.zeros(0, bool)
        self._inside = Counter(str(name) for name in detections.class_name[inside])
        if detections.tracker_id is None:
            return
        for track, now, name in zip(detections.tracker_id, inside, detections.class_name, strict=True):
            if track < 0:
                continue
            before = self._inside_tracks.get(int(track))
            if before is not None and before != bool(now):
                (self._entered if now else self._exited)[str(name)] += 1
            self._inside_tracks[int(track)] = bool(now)
            self._last_seen[int(track)] = index
        for track, seen in list(self._last_seen.items()):
            if index - seen > _FORGET_AFTER:
                del self._last_seen[track], self._inside_tracks[track]

    def counts(self) -> RegionCount:
        return RegionCount(
            self.spec.name,
            "zone",
            self.points.astype(np.float32),
            _frozen(self._inside),
            _frozen(self._entered),
            _frozen(self._exited),
        )


class _Line:
    def __init__(self, spec: LineSpec, points: np.ndarray) -> None:
        import supervision as sv

        self.spec = spec
        self.points = points
        (x1, y1), (x2, y2) = points.tolist()
        # supervision counts "in" on its line's left; reversed, that is the right of start -> end,
        # the direction the event rules (streamvision.events) call "in" too.
        self._line = sv.LineZone(
            sv.Point(x2, y2),
            sv.Point(x1, y1),
            triggering_anchors=_anchors(spec.anchor),
            minimum_crossing_threshold=spec.min_crossing_frames,
        )
        self._names: dict[int, str] = {}

    def update(self, detections: Detections, index: int) -> None:
        self._names.update(zip(detections.class_id.tolist(), detections.class_name.tolist(), strict=True))
        self._line.trigger(to_supervision(detections))

    def counts(self) -> RegionCount:
        def named(per_class: dict[Any, int]) -> Counter[str]:
            return Counter({self._names.get(int(k), str(k)): v for k, v in per_class.items()})

        return RegionCount(
            self.spec.name,
            "line",
            self.points.astype(np.float32),
            MappingProxyType({}),
            _frozen(named(self._line.in_count_per_class)),
            _frozen(named(self._line.out_count_per_class)),
        )


class ZoneCounter:
    """Counts the tracked detections of stage ``on`` in zones and over lines; attaches :class:`ZoneCounts`.

    Zone occupancy needs only boxes; entries, exits and line crossings need track ids, so a
    ``track`` stage must come first when there are lines.

    Raises:
        ConfigError: the ``supervision`` package is missing; at :meth:`process`, when ``on``
            holds no detections, or lines are
            configured and the detections carry no track ids.
    """

    def __init__(self, config: ZonesConfig, context: StageContext) -> None:
        require("supervision", "zones")
        self.name = config.result_key
        self._config = config
        self._regions: list[_Zone | _Line] | None = None

    def _build(self, width: int, height: int) -> list[_Zone | _Line]:
        scale = np.array([width, height], np.float64) if self._config.relative else np.ones(2)
        regions: list[_Zone | _Line] = [
            _Zone(zone, np.asarray(zone.polygon, np.float64) * scale) for zone in self._config.zones
        ]
        regions += [_Line(line, np.asarray([line.start, line.end]) * scale) for line in self._config.lines]
        return regions

    def process(self, frame: Frame) -> Frame:
        if self._regions is None:
            height, width = frame.image.shape[:2]
            self._regions = self._build(width, height)
        detections = frame.results.get(self._config.on)
        if detections is not None:
            if not isinstance(detections, Detections):
                kind = type(detections).__name__
                raise ConfigError(f"{self.name}: the result {self._config.on!r} is {kind}, not detections")
            if self._config.lines and detections.tracker_id is None:
                raise ConfigError(f"{self.name}: counting lines need track ids; add a track stage before it")
            for region in self._regions:
                classes = region.spec.classes
                chosen = (
                    detections if classes is None else detections[np.isin(detections.class_name, classes)]
                )
                region.update(chosen, frame.index)
        return frame.with_result(self.name, ZoneCounts(tuple(region.counts() for region in self._regions)))
