"""Rules: small state machines that watch finished frames and return events.

Each rule sees the objects of a frame keyed by identity: a track (``on`` stage and track id) when a
tracking stage set ``tracker_id`` (boxes it has not confirmed yet, id -1, are not objects so far),
otherwise the label (all untracked faces are one "face" object, so ``appear`` means "a face is in
view"). Changes are debounced by ``debounce_frames`` frames; ``cooldown``
silences a rule for an object (and event type) for that many seconds after it fired.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from streamvision.events.config import (
    AppearRule,
    CountRule,
    EmotionRule,
    LeaveRule,
    LineRule,
    RecognizedRule,
    RuleConfig,
    ZoneRule,
    _RuleBase,
)
from streamvision.events.event import Event, iso_time, wall_time_of
from streamvision.events.geometry import Point, anchor_point, inside, segments_cross, side
from streamvision.frame import Detections, Frame, Labels

Key = tuple[Any, ...]
FORGET_FRAMES = 30
"""A track unseen for this many frames (and at least the debounce) is forgotten by line rules."""


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

    def event(self, type_: str, rule: str, seen: Seen | None = None, **fields: Any) -> Event:
        extra = {k: v for k, v in fields.items() if k not in ("zone", "line")}
        return Event(
            type=type_,
            source=self.frame.source_id,
            time=iso_time(wall_time_of(self.frame.capture_time)),
            rule=rule,
            frame=self.frame.index,
            pts=self.frame.pts,
            track_id=None if seen is None else seen.track_id,
            class_name=None if seen is None else seen.class_name,
            score=None if seen is None else seen.score,
            box=None if seen is None else seen.box,
            zone=fields.get("zone"),
            line=fields.get("line"),
            extra=MappingProxyType(extra),
        )


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


def objects(frame: Frame, config: _RuleBase, tracked_only: bool = False) -> dict[Key, Seen]:
    """The objects of ``frame`` the rule may see, keyed by track (or by label when untracked; then the
    best-scoring detection of the label stands for it)."""
    seen: dict[Key, Seen] = {}
    for stage, detections in detections_of(frame, config.on):
        for i in range(len(detections)):
            name, score = str(detections.class_name[i]), float(detections.confidence[i])
            if score < config.min_score or (config.classes is not None and name not in config.classes):
                continue
            if detections.tracker_id is not None:
                track: int | None = int(detections.tracker_id[i])
                if track is None or track < 0:
                    continue  # a box the tracker has not confirmed yet: not an object so far
                key: Key = ("track", stage, track)
            elif tracked_only:
                continue
            else:
                key, track = ("label", name), None
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
    ) -> None:
        self.name = name
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
                    events.append(now.event(type_, self.name, seen, **self._fields(seen)))
            if not state.state and state.pending == 0 and key not in current:
                del self._state[key]  # gone and settled: forget it, so memory stays bounded
                self._last.pop(key, None)
        return events


class LineCrossRule:
    """``line_crossed``: a track's anchor moves across the segment and stays on the other side for
    ``debounce_frames`` frames. Untracked objects cannot cross (they have no past)."""

    def __init__(self, name: str, config: LineRule, line: tuple[Point, Point]) -> None:
        self.name = name
        self._config = config
        self._line = line
        self._cooldown = Cooldown(config.cooldown)
        self._tracks: dict[Key, _LineTrack] = {}

    def step(self, now: Moment) -> list[Event]:
        current = objects(now.frame, self._config, tracked_only=True)
        events = []
        for key, seen in current.items():
            point = anchor_point(seen.box, self._config.anchor)
            where = side(self._line, point)
            track = self._tracks.setdefault(key, _LineTrack(where, point))
            track.missing = 0
            if where == 0 or track.side == 0:
                track.side, track.last_point = track.side or where, point
                continue
            if where == track.side:
                track.last_point, track.pending, track.first_point = point, 0, None
                continue
            track.pending += 1
            track.first_point = track.first_point or point
            if track.pending < self._config.debounce_frames:
                continue
            crossed = segments_cross(track.last_point, track.first_point, self._line)
            direction = "in" if where > 0 else "out"
            track.side, track.last_point, track.pending, track.first_point = where, point, 0, None
            if not crossed or self._config.direction not in ("any", direction):
                continue
            if self._cooldown.allow((*key, direction), now.clock):
                events.append(
                    now.event("line_crossed", self.name, seen, line=self._config.line, direction=direction)
                )
        forget = max(FORGET_FRAMES, self._config.debounce_frames)
        for key in list(self._tracks.keys() - current.keys()):
            self._tracks[key].missing += 1
            if self._tracks[key].missing > forget:
                del self._tracks[key]
        return events


@dataclass
class _LineTrack:
    side: int
    last_point: Point
    """The latest anchor on the confirmed side."""
    pending: int = 0
    first_point: Point | None = None
    """The first anchor on the other side, while that is not yet confirmed."""
    missing: int = 0


class CountThresholdRule:
    """``count_above`` / ``count_below``: fires once when the condition held for ``duration`` seconds,
    again only after it ended (for ``debounce_frames`` frames)."""

    def __init__(self, name: str, config: CountRule, zone: tuple[Point, ...] | None) -> None:
        self.name = name
        self._config = config
        self._zone = zone
        self._held = Debounced(config.debounce_frames)
        self._fired = False
        self._cooldown = Cooldown(config.cooldown)

    def count(self, frame: Frame) -> int:
        config = self._config
        total = 0
        for _, detections in detections_of(frame, config.on):
            for i in range(len(detections)):
                if float(detections.confidence[i]) < config.min_score:
                    continue
                if config.classes is not None and str(detections.class_name[i]) not in config.classes:
                    continue
                if self._zone is None or inside(self._zone, anchor_point(_box(detections, i), config.anchor)):
                    total += 1
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
            track = None if detections.tracker_id is None else int(detections.tracker_id[row])
            if track is not None and track < 0:
                continue  # not a confirmed track yet
            key: Key = ("track", labels.on, track, label) if track is not None else ("label", label)
            item = Seen(key, name, score, _box(detections, row), track, label)
        else:
            key = ("label", label)
            height, width = frame.image.shape[:2]
            item = Seen(key, "frame", score, (0.0, 0.0, float(width), float(height)), None, label)
        if key not in seen or score > seen[key].score:
            seen[key] = item
    return seen


def build_rule(
    config: RuleConfig, name: str, zones: dict[str, tuple[Point, ...]], lines: dict[str, tuple[Point, Point]]
) -> Rule:
    """The rule that ``config`` describes (its zone or line looked up by name).

    Raises:
        KeyError: the zone or line is not defined (the config validation catches this first).
    """
    if isinstance(config, AppearRule):
        return PresenceRule(name, config, lambda f: objects(f, config), ("object_appeared", None))
    if isinstance(config, LeaveRule):
        return PresenceRule(name, config, lambda f: objects(f, config), (None, "object_left"))
    if isinstance(config, ZoneRule):
        polygon, anchor = zones[config.zone], config.anchor

        def in_zone(frame: Frame) -> dict[Key, Seen]:
            found = objects(frame, config).items()
            return {k: s for k, s in found if inside(polygon, anchor_point(s.box, anchor))}

        events = ("zone_entered" if config.enter else None, "zone_left" if config.leave else None)
        return PresenceRule(name, config, in_zone, events, lambda _: {"zone": config.zone})
    if isinstance(config, LineRule):
        return LineCrossRule(name, config, lines[config.line])
    if isinstance(config, CountRule):
        return CountThresholdRule(name, config, None if config.zone is None else zones[config.zone])
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
