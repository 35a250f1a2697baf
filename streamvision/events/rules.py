"""Rules: small state machines that watch finished frames and return events.

Each rule sees the objects of a frame keyed by identity: a track (``on`` stage and track id) when a
tracking stage set ``tracker_id`` (boxes it has not confirmed yet, id -1, are not objects so far, for
any rule, ``count`` included), otherwise the label (all untracked faces are one "face" object, so
``appear`` means "a face is in view"). Zones and lines are :mod:`streamvision.events.geometry`'s, as
in the ``zones`` stage. Changes are debounced by ``debounce_frames`` frames; ``cooldown`` silences a
rule for an object (and event type) for that many seconds after it fired.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np

from streamvision.events.config import (
    AppearRule,
    CountRule,
    EmotionRule,
    LeaveRule,
    LineRule,
    RecognizedRule,
    RegionKind,
    RuleConfig,
    ZoneRule,
    _RuleBase,
)
from streamvision.events.event import Event, iso_time, wall_time_of
from streamvision.events.geometry import (
    Anchor,
    Area,
    Crossing,
    Point,
    RegionSpec,
    ZoneSpec,
    confirmed,
    in_pixels,
)
from streamvision.frame import Detections, Frame, Labels

Key = tuple[Any, ...]
Lookup = Callable[[str, RegionKind], tuple[RegionSpec, bool]]
"""Finds a zone or line by name: its spec and whether its points are fractions of the frame."""


@dataclass(frozen=True)
class Seen:
    """One object of one frame, as rules see it."""

    key: Key
    class_name: str
    score: float
    box: tuple[float, float, float, float]
    track_id: int | None = None
    label: str | None = None
    """For label rules: the classifier's label."""


@dataclass
class Moment:
    """The frame being judged and its clock (video time for files, monotonic time for live sources)."""

    frame: Frame
    clock: float

    def event(
        self, type_: str, rule: str, seen: Seen | None = None, outline: Outline | None = None, **fields: Any
    ) -> Event:
        """An event of this frame; with ``outline`` (the zone or line it is about), a :class:`RegionEvent`."""
        extra = {k: v for k, v in fields.items() if k not in ("zone", "line")}
        common: dict[str, Any] = {
            "type": type_,
            "source": self.frame.source_id,
            "time": iso_time(wall_time_of(self.frame.capture_time)),
            "rule": rule,
            "frame": self.frame.index,
            "pts": self.frame.pts,
            "track_id": None if seen is None else seen.track_id,
            "class_name": None if seen is None else seen.class_name,
            "score": None if seen is None else seen.score,
            "box": None if seen is None else seen.box,
            "zone": fields.get("zone"),
            "line": fields.get("line"),
            "extra": MappingProxyType(extra),
        }
        return Event(**common) if outline is None else RegionEvent(**common, outline=outline)


@dataclass(frozen=True)
class Outline:
    """A zone (polygon) or line (two points) in frame pixels, as a snapshot draws it."""

    kind: RegionKind
    points: tuple[Point, ...]


@dataclass(frozen=True)
class RegionEvent(Event):
    """An event about a zone or line that also knows where it is on the frame (for snapshots; its
    JSON form is an :class:`Event`'s)."""

    outline: Outline | None = field(default=None, compare=False, repr=False)


class _Placed:
    """A zone or line of the config, placed on the frames once the first one gives their size."""

    def __init__(self, spec: RegionSpec, relative: bool, anchor: Anchor | None) -> None:
        self.spec = spec
        self.anchor: Anchor = anchor or spec.anchor
        self._relative = relative
        self.outline: Outline | None = None

    def pixels(self, frame: Frame) -> np.ndarray:
        height, width = frame.image.shape[:2]
        points = in_pixels(self.spec.points, self._relative, width, height)
        kind: RegionKind = "zone" if isinstance(self.spec, ZoneSpec) else "line"
        self.outline = Outline(kind, tuple((float(x), float(y)) for x, y in points))
        return points


class _ZoneArea(_Placed):
    def __init__(self, spec: RegionSpec, relative: bool, anchor: Anchor | None) -> None:
        super().__init__(spec, relative, anchor)
        self._area: Area | None = None

    def area(self, frame: Frame) -> Area:
        if self._area is None:
            self._area = Area(self.pixels(frame), self.anchor)
        return self._area


class Rule(Protocol):
    name: str

    def step(self, now: Moment) -> list[Event]: ...


@dataclass
class Debounced:
    """A boolean that changes only after ``frames`` observations in a row disagree with it
    (``off_frames`` of them to turn false, when given)."""

    frames: int
    off_frames: int | None = None
    state: bool = False
    pending: int = 0
    since: float | None = None
    """Clock of the first observation of the run that led to the current state."""
    _pending_since: float | None = None

    def update(self, observed: bool, clock: float) -> bool:
        """Feeds one observation; True when the state flipped."""
        if observed == self.state:
            self.pending = 0
            return False
        if self.pending == 0:
            self._pending_since = clock
        self.pending += 1
        needed = self.off_frames if self.state and self.off_frames is not None else self.frames
        if self.pending < needed:
            return False
        self.state, self.pending, self.since = observed, 0, self._pending_since
        return True


@dataclass
class Cooldown:
    seconds: float
    last: dict[Key, float] = field(default_factory=dict)

    def allow(self, key: Key, clock: float) -> bool:
        """True (and remembered) unless ``key`` fired less than ``seconds`` ago."""
        if self.seconds > 0:
            previous = self.last.get(key)
            if previous is not None and clock - previous < self.seconds:
                return False
            if len(self.last) >= 1024:  # forget what has cooled down, so memory stays bounded
                self.last = {k: t for k, t in self.last.items() if clock - t < self.seconds}
            self.last[key] = clock
        return True


def detections_of(frame: Frame, on: str | None) -> Iterator[tuple[str, Detections]]:
    """The detection results a rule watches: the one named ``on``, or all of them."""
    for key, result in frame.results.items():
        if isinstance(result, Detections) and (on is None or key == on):
            yield key, result


def _box(detections: Detections, i: int) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in detections.xyxy[i])
    return x1, y1, x2, y2


def chosen(
    frame: Frame, config: _RuleBase, classes: tuple[str, ...] | None = None
) -> Iterator[tuple[str, Detections]]:
    """The detections a rule sees, result by result: confirmed objects only (none with track id -1),
    at least ``min_score``, of the rule's ``classes`` and of ``classes`` (a zone's or line's)."""
    for stage, detections in detections_of(frame, config.on):
        keep = confirmed(detections) & (detections.confidence >= config.min_score)
        for wanted in (config.classes, classes):
            if wanted is not None:
                keep &= np.isin(detections.class_name, wanted)
        yield stage, detections[keep]


def objects(
    frame: Frame, config: _RuleBase, tracked_only: bool = False, zone: _ZoneArea | None = None
) -> dict[Key, Seen]:
    """The objects of ``frame`` the rule may see (in ``zone``, when given), keyed by track (or by label
    when untracked; then the best-scoring detection of the label stands for it)."""
    seen: dict[Key, Seen] = {}
    for stage, detections in chosen(frame, config, None if zone is None else zone.spec.classes):
        if zone is not None:
            detections = detections[zone.area(frame).contains(detections)]
        tracks = detections.tracker_id
        if tracks is None and tracked_only:
            continue
        for i in range(len(detections)):
            name, score = str(detections.class_name[i]), float(detections.confidence[i])
            track = None if tracks is None else int(tracks[i])
            key: Key = ("label", name) if track is None else ("track", stage, track)
            if key not in seen or score > seen[key].score:
                seen[key] = Seen(key, name, score, _box(detections, i), track)
    return seen


class PresenceRule:
    """``appear``, ``leave``, ``zone``, ``recognized`` and ``emotion``: a debounced yes/no per object."""

    def __init__(
        self,
        name: str,
        config: AppearRule | LeaveRule | ZoneRule | RecognizedRule | EmotionRule,
        observe: Callable[[Frame], dict[Key, Seen]],
        events: tuple[str | None, str | None],
        fields: Callable[[Seen], dict[str, Any]] = lambda seen: {},
        zone: _ZoneArea | None = None,
    ) -> None:
        self.name = name
        self._zone = zone
        self._frames = config.debounce_frames
        self._off_frames = getattr(config, "leave_frames", None)
        self._observe = observe
        self._on_true, self._on_false = events
        self._fields = fields
        self._cooldown = Cooldown(config.cooldown)
        self._state: dict[Key, Debounced] = {}
        self._last: dict[Key, Seen] = {}

    def step(self, now: Moment) -> list[Event]:
        current = self._observe(now.frame)
        self._last.update(current)
        events = []
        for key in list(self._state.keys() | current.keys()):
            state = self._state.setdefault(key, Debounced(self._frames, self._off_frames))
            if state.update(key in current, now.clock):
                type_ = self._on_true if state.state else self._on_false
                if type_ is not None and self._cooldown.allow((*key, type_), now.clock):
                    seen = self._last[key]
                    outline = None if self._zone is None else self._zone.outline
                    events.append(now.event(type_, self.name, seen, outline, **self._fields(seen)))
            if not state.state and state.pending == 0 and key not in current:
                del self._state[key]  # gone and settled: forget it, so memory stays bounded
                self._last.pop(key, None)
        return events


@dataclass
class _Life:
    """One object followed by an :class:`ObjectLifecycleRule`, from its start to its end."""

    id: str
    first_seen: float
    last: Seen
    last_seen: float
    zones: tuple[str, ...]
    reported_zones: tuple[str, ...]
    best_score: float
    reported_at: float
    silent: bool
    """Its start fell in the rule's cooldown: no event of this life at all."""


class ObjectLifecycleRule:
    """``appear`` with ``lifecycle``: follows each object from start to end, joined by one
    ``object_event_id``. ``object_appeared`` (phase ``start``) once it was seen ``debounce_frames``
    frames in a row; ``object_updated`` (phase ``update``) when the zones it is in changed or its score
    beat the best reported so far, at most once per ``update_interval`` s (a change waits for it);
    ``object_left`` (phase ``end``) once it was missing ``leave_frames`` frames in a row, with its last
    box and ``duration_s`` from the first to the last frame it was seen."""

    def __init__(self, name: str, config: AppearRule, zones: list[_ZoneArea]) -> None:
        if config.lifecycle is None:
            raise ValueError("an ObjectLifecycleRule needs an appear rule with lifecycle")
        self.name = name
        self._config = config
        self._lifecycle = config.lifecycle
        self._zones = zones
        self._cooldown = Cooldown(config.cooldown)
        self._state: dict[Key, Debounced] = {}
        self._lives: dict[Key, _Life] = {}

    def _observe(self, frame: Frame) -> dict[Key, tuple[Seen, tuple[str, ...]]]:
        """The objects of ``frame`` (keyed as :func:`objects` keys them) and the zones each is in."""
        seen: dict[Key, tuple[Seen, tuple[str, ...]]] = {}
        for stage, detections in chosen(frame, self._config):
            inside = []
            for zone in self._zones:
                mask = zone.area(frame).contains(detections)
                if zone.spec.classes is not None:
                    mask &= np.isin(detections.class_name, zone.spec.classes)
                inside.append((zone.spec.name, mask))
            tracks = detections.tracker_id
            for i in range(len(detections)):
                name, score = str(detections.class_name[i]), float(detections.confidence[i])
                track = None if tracks is None else int(tracks[i])
                key: Key = ("label", name) if track is None else ("track", stage, track)
                if key not in seen or score > seen[key][0].score:
                    zones = tuple(sorted({zone for zone, mask in inside if mask[i]}))
                    seen[key] = (Seen(key, name, score, _box(detections, i), track), zones)
        return seen

    def _event(self, now: Moment, type_: str, phase: str, life: _Life, **fields: Any) -> Event:
        return now.event(
            type_, self.name, life.last, object_event_id=life.id, phase=phase, zones=life.zones, **fields
        )

    def step(self, now: Moment) -> list[Event]:
        current = self._observe(now.frame)
        lifecycle = self._lifecycle
        events = []
        for key in list(self._state.keys() | current.keys()):
            state = self._state.setdefault(
                key, Debounced(self._config.debounce_frames, lifecycle.leave_frames)
            )
            here = current.get(key)
            life = self._lives.get(key)
            if here is not None and life is not None:
                life.last, life.zones, life.last_seen = here[0], here[1], now.clock
            if state.update(here is not None, now.clock) and here is not None:
                seen, zones = here
                life = _Life(
                    id=uuid.uuid4().hex,
                    first_seen=now.clock if state.since is None else state.since,
                    last=seen,
                    last_seen=now.clock,
                    zones=zones,
                    reported_zones=zones,
                    best_score=seen.score,
                    reported_at=now.clock,
                    silent=not self._cooldown.allow((*key, "object_appeared"), now.clock),
                )
                self._lives[key] = life
                if not life.silent:
                    events.append(self._event(now, "object_appeared", "start", life))
            elif not state.state and life is not None:  # it just ended
                del self._lives[key]
                if not life.silent:
                    duration = round(life.last_seen - life.first_seen, 3)
                    events.append(self._event(now, "object_left", "end", life, duration_s=duration))
            elif here is not None and life is not None and not life.silent:
                changed = life.zones != life.reported_zones or life.last.score > life.best_score
                if changed and now.clock - life.reported_at >= lifecycle.update_interval:
                    life.reported_zones, life.reported_at = life.zones, now.clock
                    life.best_score = max(life.best_score, life.last.score)
                    events.append(self._event(now, "object_updated", "update", life))
            if not state.state and state.pending == 0 and here is None:
                del self._state[key]  # gone and settled: forget it, so memory stays bounded
        return events


class LineCrossRule:
    """``line_crossed``: a track's anchor crosses the segment and is seen on the other side for
    ``debounce_frames`` frames in a row (as a ``zones`` stage counts with ``min_crossing_frames``).
    Untracked objects cannot cross (they have no past)."""

    def __init__(self, name: str, config: LineRule, line: _Placed) -> None:
        self.name = name
        self._config = config
        self._line = line
        self._cooldown = Cooldown(config.cooldown)
        self._crossings: dict[str, Crossing] = {}
        """One per detection result: track ids are only unique within one."""

    def step(self, now: Moment) -> list[Event]:
        config = self._config
        events = []
        fed = set()
        for stage, detections in chosen(now.frame, config, self._line.spec.classes):
            if detections.tracker_id is None:
                continue
            if stage not in self._crossings:
                (x1, y1), (x2, y2) = self._line.pixels(now.frame).tolist()
                self._crossings[stage] = Crossing(
                    (x1, y1), (x2, y2), self._line.anchor, config.debounce_frames
                )
            fed.add(stage)
            crossed_in, crossed_out = self._crossings[stage].update(detections)
            for i in np.flatnonzero(crossed_in | crossed_out):
                direction = "in" if crossed_in[i] else "out"
                if config.direction not in ("any", direction):
                    continue
                track = int(detections.tracker_id[i])
                seen = Seen(
                    ("track", stage, track),
                    str(detections.class_name[i]),
                    float(detections.confidence[i]),
                    _box(detections, int(i)),
                    track,
                )
                if self._cooldown.allow((*seen.key, direction), now.clock):
                    fields = {"line": config.line, "direction": direction}
                    events.append(now.event("line_crossed", self.name, seen, self._line.outline, **fields))
        for stage, crossing in self._crossings.items():
            if stage not in fed:
                crossing.update(_NO_TRACKS)  # so the tracks it knows age and are forgotten
        return events


_NO_TRACKS = replace(Detections.empty(), tracker_id=np.zeros(0, np.int64))


class CountThresholdRule:
    """``count_above`` / ``count_below``: fires once when the condition held for ``duration`` seconds,
    again only after it ended (for ``debounce_frames`` frames)."""

    def __init__(self, name: str, config: CountRule, zone: _ZoneArea | None) -> None:
        self.name = name
        self._config = config
        self._zone = zone
        self._held = Debounced(config.debounce_frames)
        self._fired = False
        self._cooldown = Cooldown(config.cooldown)

    def count(self, frame: Frame) -> int:
        """The confirmed objects (in the zone, when there is one): every box, tracked or not."""
        total = 0
        zone = self._zone
        for _, detections in chosen(frame, self._config, None if zone is None else zone.spec.classes):
            total += len(detections) if zone is None else int(zone.area(frame).contains(detections).sum())
        return total

    def step(self, now: Moment) -> list[Event]:
        config = self._config
        count = self.count(now.frame)
        holds = count > config.above if config.above is not None else count < (config.below or 0)
        if self._held.update(holds, now.clock) and not self._held.state:
            self._fired = False
        if not self._held.state or self._fired or self._held.since is None:
            return []
        held_s = now.clock - self._held.since
        if held_s < config.duration:
            return []
        self._fired = True
        if not self._cooldown.allow((), now.clock):
            return []
        type_ = "count_above" if config.above is not None else "count_below"
        threshold = config.above if config.above is not None else config.below
        return [
            now.event(
                type_,
                self.name,
                None,
                None if self._zone is None else self._zone.outline,
                zone=config.zone,
                count=count,
                threshold=threshold,
                duration_s=round(held_s, 3),
            )
        ]


def labelled_objects(frame: Frame, config: RecognizedRule | EmotionRule) -> dict[Key, Seen]:
    """The labels of the classify stage ``config.labels`` that may fire, keyed by track and label (or by
    label alone for untracked detections and whole frames)."""
    labels = frame.results.get(config.labels)
    if not isinstance(labels, Labels):
        return {}
    detections = frame.results.get(labels.on) if labels.on is not None else None
    seen: dict[Key, Seen] = {}
    for i in range(len(labels)):
        label, score = str(labels.class_name[i]), float(labels.score[i])
        if score < config.min_label_score or label in config.exclude:
            continue
        if config.values is not None and label not in config.values:
            continue
        row = int(labels.detection[i])
        if isinstance(detections, Detections) and 0 <= row < len(detections):
            name, det_score = str(detections.class_name[row]), float(detections.confidence[row])
            if det_score < config.min_score or (config.classes is not None and name not in config.classes):
                continue
            if not confirmed(detections)[row]:
                continue
            track = None if detections.tracker_id is None else int(detections.tracker_id[row])
            key: Key = ("track", labels.on, track, label) if track is not None else ("label", label)
            item = Seen(key, name, score, _box(detections, row), track, label)
        else:
            key = ("label", label)
            height, width = frame.image.shape[:2]
            item = Seen(key, "frame", score, (0.0, 0.0, float(width), float(height)), None, label)
        if key not in seen or score > seen[key].score:
            seen[key] = item
    return seen


def build_rule(config: RuleConfig, name: str, lookup: Lookup, zones: tuple[str, ...] = ()) -> Rule:
    """The rule that ``config`` describes (its zone or line found with ``lookup``; ``zones``: the names
    of every zone, for an ``appear`` rule's ``lifecycle``).

    Raises:
        ValueError: from ``lookup``: the zone or line is not defined (the config validation catches
            this first).
    """
    if isinstance(config, AppearRule):
        if config.lifecycle is not None:
            anchor = config.lifecycle.anchor
            return ObjectLifecycleRule(name, config, [_ZoneArea(*lookup(z, "zone"), anchor) for z in zones])
        return PresenceRule(name, config, lambda f: objects(f, config), ("object_appeared", None))
    if isinstance(config, LeaveRule):
        return PresenceRule(name, config, lambda f: objects(f, config), (None, "object_left"))
    if isinstance(config, ZoneRule):
        zone = _ZoneArea(*lookup(config.zone, "zone"), config.anchor)
        events = ("zone_entered" if config.enter else None, "zone_left" if config.leave else None)
        return PresenceRule(
            name,
            config,
            lambda f: objects(f, config, zone=zone),
            events,
            lambda _: {"zone": config.zone},
            zone,
        )
    if isinstance(config, LineRule):
        return LineCrossRule(name, config, _Placed(*lookup(config.line, "line"), config.anchor))
    if isinstance(config, CountRule):
        counted = None if config.zone is None else _ZoneArea(*lookup(config.zone, "zone"), config.anchor)
        return CountThresholdRule(name, config, counted)
    if isinstance(config, RecognizedRule):
        return PresenceRule(
            name,
            config,
            lambda f: labelled_objects(f, config),
            ("person_recognized", None),
            lambda seen: {"name": seen.label},
        )
    return PresenceRule(
        name,
        config,
        lambda f: labelled_objects(f, config),
        ("emotion_seen", None),
        lambda seen: {"emotion": seen.label},
    )
