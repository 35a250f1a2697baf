"""Polygon zones and counting lines: occupancy and in / out counts per class, from tracked boxes.

The geometry (anchors, sides, debouncing) is :mod:`streamvision.events.geometry`'s, which the event
rules use too; a rule may name a zone or line defined here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar, Literal

import numpy as np
from pydantic import model_validator

from streamvision.errors import ConfigError
from streamvision.events.geometry import Area, Crossing, LineSpec, ZoneSpec, confirmed, in_pixels
from streamvision.frame import Detections, Frame, RegionCount, ZoneCounts
from streamvision.stages.base import StageConfig, StageContext
from streamvision.stages.sv_adapter import require

__all__ = ["LineSpec", "ZoneCounter", "ZoneSpec", "ZonesConfig"]

# A track unseen for this many frames is forgotten by the zones (keeps memory bounded).
_FORGET_AFTER = 900


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


def _frozen(counts: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType({k: v for k, v in counts.items() if v})


class _Zone:
    def __init__(self, spec: ZoneSpec, points: np.ndarray) -> None:
        self.spec = spec
        self.points = points
        self._area = Area(points, spec.anchor)
        self._inside_tracks: dict[int, bool] = {}
        self._last_seen: dict[int, int] = {}
        self._inside: Counter[str] = Counter()
        self._entered: Counter[str] = Counter()
        self._exited: Counter[str] = Counter()

    def update(self, detections: Detections, index: int) -> None:
        """Takes the confirmed boxes of one frame."""
        inside = self._area.contains(detections)
        self._inside = Counter(str(name) for name in detections.class_name[inside])
        if detections.tracker_id is None:
            return
        for track, now, name in zip(detections.tracker_id, inside, detections.class_name, strict=True):
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
        self.spec = spec
        self.points = points
        (x1, y1), (x2, y2) = points.tolist()
        self._line = Crossing((x1, y1), (x2, y2), spec.anchor, spec.min_crossing_frames)
        self._entered: Counter[str] = Counter()
        self._exited: Counter[str] = Counter()

    def update(self, detections: Detections, index: int) -> None:
        """Takes the confirmed boxes of one frame."""
        crossed_in, crossed_out = self._line.update(detections)
        self._entered.update(str(name) for name in detections.class_name[crossed_in])
        self._exited.update(str(name) for name in detections.class_name[crossed_out])

    def counts(self) -> RegionCount:
        return RegionCount(
            self.spec.name,
            "line",
            self.points.astype(np.float32),
            MappingProxyType({}),
            _frozen(self._entered),
            _frozen(self._exited),
        )


class ZoneCounter:
    """Counts the tracked detections of stage ``on`` in zones and over lines; attaches :class:`ZoneCounts`.

    Only confirmed objects count (see :mod:`streamvision.events.geometry`): after a ``track`` stage,
    the boxes with track id -1 are left out, as the annotator leaves them undrawn. Zone occupancy
    needs only boxes; entries, exits and line crossings need track ids, so a ``track`` stage must
    come first when there are lines.

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
        relative = self._config.relative
        regions: list[_Zone | _Line] = [
            _Zone(zone, in_pixels(zone.points, relative, width, height)) for zone in self._config.zones
        ]
        regions += [
            _Line(line, in_pixels(line.points, relative, width, height)) for line in self._config.lines
        ]
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
            objects = detections[confirmed(detections)]
            for region in self._regions:
                classes = region.spec.classes
                chosen = objects if classes is None else objects[np.isin(objects.class_name, classes)]
                region.update(chosen, frame.index)
        return frame.with_result(self.name, ZoneCounts(tuple(region.counts() for region in self._regions)))
