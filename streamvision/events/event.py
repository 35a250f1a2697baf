"""The one event type every rule emits and every output delivers, and its JSON form.

The JSON form is described by ``event.schema.json`` next to this module (JSON Schema 2020-12).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Literal, get_args

from streamvision.redact import redact_url

EventType = Literal[
    "object_appeared",
    "object_updated",
    "object_left",
    "zone_entered",
    "zone_left",
    "line_crossed",
    "count_above",
    "count_below",
    "person_recognized",
    "emotion_seen",
    "source_offline",
    "source_online",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)

EXTRA_KEYS = frozenset(
    {
        "direction",
        "name",
        "emotion",
        "count",
        "threshold",
        "duration_s",
        "reason",
        "reconnects",
        "offline_s",
        "phase",
        "object_event_id",
        "zones",
    }
)
"""The only keys allowed in :attr:`Event.extra` (the schema lists them too)."""

PHASES: dict[str, str] = {"start": "object_appeared", "update": "object_updated", "end": "object_left"}
"""An object's lifecycle (an ``appear`` rule with ``lifecycle``): each ``phase`` and its event type.
The events of one object share ``object_event_id``."""


def iso_time(wall_time: float) -> str:
    """Seconds since the epoch as ISO 8601 in UTC with milliseconds, e.g. ``2026-11-25T15:10:00.123Z``."""
    moment = datetime.fromtimestamp(wall_time, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def wall_time_of(monotonic_time: float) -> float:
    """The wall-clock time (seconds since the epoch) of a past ``time.monotonic()`` reading."""
    return time.time() - (time.monotonic() - monotonic_time)


@dataclass(frozen=True)
class Event:
    """Something a rule saw, or a change of a source's state.

    Attributes:
        type: one of :data:`EVENT_TYPES`.
        source: the source id, with any credentials removed.
        time: when the frame that caused it was captured, ISO 8601 UTC.
        rule: the name of the rule that fired (``source`` for status events).
        id: unique per event (a random UUID); receivers de-duplicate on it.
        frame: index of that frame in its source.
        pts: its presentation time in seconds, when known.
        track_id: the tracked object's id; None for untracked objects and whole-frame events.
        class_name: the object's label (``class`` in JSON).
        score: the detection's confidence (the label's probability for person_recognized and
            emotion_seen).
        box: x1, y1, x2, y2 in frame pixels.
        zone: the zone the event is about.
        line: the line the event is about.
        snapshot: path of the annotated JPEG written for it, when a snapshot output runs.
        clip: path of the H.264 clip it is part of, when a clip output runs.
        extra: type-specific fields, keys from :data:`EXTRA_KEYS` (direction, name, emotion, count, ...);
            for an object followed from start to end (:data:`PHASES`) also ``phase``, the shared
            ``object_event_id``, the ``zones`` it is in and, at its end, ``duration_s``.

    Raises:
        ValueError: unknown type or extra key; a ``phase`` that is not its type's (``object_updated``
            needs ``phase: update``), or a phase without ``object_event_id`` and ``zones``.

    Example:
        >>> e = Event("object_appeared", "door", "2026-01-01T00:00:00.000Z", "faces", class_name="face")
        >>> e.to_record()["class"], len(e.id)
        ('face', 32)
    """

    type: str
    source: str
    time: str
    rule: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    frame: int | None = None
    pts: float | None = None
    track_id: int | None = None
    class_name: str | None = None
    score: float | None = None
    box: tuple[float, float, float, float] | None = None
    zone: str | None = None
    line: str | None = None
    snapshot: str | None = None
    clip: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {self.type!r}; valid: {', '.join(EVENT_TYPES)}")
        unknown = set(self.extra) - EXTRA_KEYS
        if unknown:
            raise ValueError(
                f"unknown event fields {sorted(unknown)}; valid: {', '.join(sorted(EXTRA_KEYS))}"
            )
        phase = self.extra.get("phase")
        if phase is not None or self.type == "object_updated":
            if phase not in PHASES or PHASES[phase] != self.type:
                own = [name for name, type_ in PHASES.items() if type_ == self.type]
                takes = f"phase {own[0]!r}" if own else "no phase"
                raise ValueError(f"{self.type} takes {takes}, got phase {phase!r}")
            missing = [key for key in ("object_event_id", "zones") if key not in self.extra]
            if missing:
                raise ValueError(f"{self.type} with phase {phase!r} needs {' and '.join(missing)}")
        # lists (``zones`` of a record read back) become tuples: an event stays immutable and equal to
        # the event it was recorded from
        has_lists = any(isinstance(v, list) for v in self.extra.values())
        if has_lists or not isinstance(self.extra, MappingProxyType):
            extra = {key: tuple(v) if isinstance(v, list) else v for key, v in self.extra.items()}
            object.__setattr__(self, "extra", MappingProxyType(extra))
        object.__setattr__(self, "source", redact_url(self.source))

    def with_paths(self, snapshot: str | None, clip: str | None) -> Event:
        """A copy that records where its snapshot and clip are written."""
        return replace(self, snapshot=snapshot, clip=clip)

    def to_record(self) -> dict[str, Any]:
        """The JSON-ready form (keys that do not apply are left out)."""
        record: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "time": self.time,
            "source": self.source,
            "rule": self.rule,
        }
        optional: dict[str, Any] = {
            "frame": self.frame,
            "pts": None if self.pts is None else round(self.pts, 4),
            "track_id": self.track_id,
            "class": self.class_name,
            "score": None if self.score is None else round(self.score, 4),
            "box": None if self.box is None else [round(v, 1) for v in self.box],
            "zone": self.zone,
            "line": self.line,
            "snapshot": self.snapshot,
            "clip": self.clip,
        }
        record.update({key: value for key, value in optional.items() if value is not None})
        record.update({key: list(v) if isinstance(v, tuple) else v for key, v in self.extra.items()})
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Event:
        """The event back from its :meth:`to_record` form (events cross process boundaries as records).

        Raises:
            ValueError: unknown type or field.
            KeyError: a required field (id, type, time, source, rule) is missing.
        """
        fields = dict(record)
        known = {name: fields.pop(name) for name in _RECORD_FIELDS if name in fields}
        box = known.pop("box", None)
        return cls(
            type=fields.pop("type"),
            source=fields.pop("source"),
            time=fields.pop("time"),
            rule=fields.pop("rule"),
            id=fields.pop("id"),
            class_name=known.pop("class", None),
            box=None if box is None else (box[0], box[1], box[2], box[3]),
            extra=fields,
            **known,
        )


_RECORD_FIELDS = ("frame", "pts", "track_id", "class", "score", "box", "zone", "line", "snapshot", "clip")
