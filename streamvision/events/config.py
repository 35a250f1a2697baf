"""Typed config of the ``events`` section: zones, lines, rules and outputs, validated at load."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from streamvision.events.geometry import Anchor, LineSpec, Point, RegionSpec, ZoneSpec
from streamvision.redact import redact_url
from streamvision.strict import StrictModel

RegionKind = Literal["zone", "line"]


class _RuleBase(StrictModel):
    name: str | None = None
    """Put on every event of the rule; defaults to the rule's type and position, e.g. ``appear.0``."""
    on: str | None = None
    """Result key of the detections to watch; every detection result of the frame by default."""
    classes: tuple[str, ...] | None = None
    """Only objects with these labels (all by default)."""
    min_score: float = Field(0.0, ge=0, le=1)
    """Detections below this confidence are not seen."""
    debounce_frames: int = Field(3, ge=1, le=10_000)
    """A change (appeared, left, inside, crossed) counts once it held for this many frames in a row
    (for a line: as a zones stage's ``min_crossing_frames``)."""
    cooldown: float = Field(0.0, ge=0, le=86_400)
    """Seconds after an event during which the same rule stays quiet for the same object."""


class ObjectLifecycle(StrictModel):
    """``lifecycle`` of an ``appear`` rule: the rule follows each object from start to end, like a
    Frigate event. ``object_appeared`` (``phase: start``) when it comes into view, ``object_updated``
    (``phase: update``) when the zones it is in change or its score beats its best so far, and
    ``object_left`` (``phase: end``) when it is gone; all three carry the same ``object_event_id``
    and the object's current ``zones``. ``lifecycle: true`` takes the defaults."""

    leave_frames: int | None = Field(None, ge=1, le=10_000)
    """Frames in a row an object must be missing before it ended; the rule's ``debounce_frames`` by
    default."""
    update_interval: float = Field(5.0, ge=0, le=86_400)
    """Seconds between two updates of one object at least; a change in between waits for it."""
    anchor: Anchor | None = None
    """The point of the box that must be inside a zone for ``zones`` (every zone of ``events.zones``
    and of the ``zones`` stages); by default each zone's own."""


class AppearRule(_RuleBase):
    """``object_appeared``: an object (a track, or a label when nothing tracks) comes into view."""

    type: Literal["appear"] = "appear"
    lifecycle: ObjectLifecycle | None = None
    """Also ``object_updated`` and ``object_left`` for each object, joined by ``object_event_id``
    (see :class:`ObjectLifecycle`); a ``cooldown`` that silences a start silences the whole life."""

    @field_validator("lifecycle", mode="before")
    @classmethod
    def _lifecycle_shorthand(cls, value: object) -> object:
        if value is True:
            return ObjectLifecycle()
        return None if value is False else value


class LeaveRule(_RuleBase):
    """``object_left``: an object that had appeared (seen ``debounce_frames`` frames in a row) is gone
    for ``leave_frames`` frames."""

    type: Literal["leave"] = "leave"
    leave_frames: int | None = Field(None, ge=1, le=10_000)
    """Frames in a row an object must be missing before it left; ``debounce_frames`` by default."""


class ZoneRule(_RuleBase):
    """``zone_entered`` / ``zone_left``: an object's anchor point goes into or out of a zone."""

    type: Literal["zone"] = "zone"
    zone: str
    """A name from ``events.zones`` or a zone of a ``zones`` stage (its anchor and classes apply too)."""
    anchor: Anchor | None = None
    """The point of the box that must be inside: the middle of its bottom edge (feet), its centre, or
    all four corners; by default the zone's own (``bottom_center`` for ``events.zones``)."""
    enter: bool = True
    leave: bool = True
    leave_frames: int | None = Field(None, ge=1, le=10_000)
    """Frames in a row an object must be outside (or missing) before it left; ``debounce_frames`` by
    default. Longer than ``debounce_frames`` rides out a detector that misses an object now and then."""


class LineRule(_RuleBase):
    """``line_crossed``: a tracked object's anchor point crosses a line segment (needs a tracker)."""

    type: Literal["line"] = "line"
    line: str
    """A name from ``events.lines`` or a line of a ``zones`` stage (its anchor and classes apply too)."""
    anchor: Anchor | None = None
    """As a zone rule's: by default the line's own (``bottom_center`` for ``events.lines``)."""
    direction: Literal["in", "out", "any"] = "any"
    """``in``: from the left to the right of the line walking from its first point to its second, as
    drawn on the image (y down); ``out``: the other way."""


class CountRule(_RuleBase):
    """``count_above`` / ``count_below``: the number of objects (in a zone, optionally) stays above or
    below a threshold for ``duration`` seconds. It fires once, then again after the condition ended."""

    type: Literal["count"] = "count"
    above: int | None = Field(None, ge=0)
    below: int | None = Field(None, ge=1)
    duration: float = Field(0.0, ge=0, le=86_400)
    """Seconds the condition must hold (of video time for files, of wall time for live sources)."""
    zone: str | None = None
    """Count only the objects in this zone (a name as for a zone rule)."""
    anchor: Anchor | None = None
    """As a zone rule's."""

    @model_validator(mode="after")
    def _one_threshold(self) -> CountRule:
        if (self.above is None) == (self.below is None):
            raise ValueError("set exactly one of above or below")
        return self


class _LabelRuleBase(_RuleBase):
    labels: str
    """Result key of the classify (or face recognition) stage whose labels are read."""
    values: tuple[str, ...] | None = None
    """Only these labels fire (all of them by default)."""
    exclude: tuple[str, ...] = ("unknown",)
    """Labels that never fire."""
    min_label_score: float = Field(0.5, ge=0, le=1)
    """The label's probability must reach this."""


class RecognizedRule(_LabelRuleBase):
    """``person_recognized``: a face recognition or classify stage named someone (``name``)."""

    type: Literal["recognized"] = "recognized"


class EmotionRule(_LabelRuleBase):
    """``emotion_seen``: an emotion classifier gave this label (``emotion``)."""

    type: Literal["emotion"] = "emotion"


RuleConfig = Annotated[
    AppearRule | LeaveRule | ZoneRule | LineRule | CountRule | RecognizedRule | EmotionRule,
    Field(discriminator="type"),
]


class _OutputBase(StrictModel):
    queue_size: int = Field(256, ge=1, le=100_000)
    """Events (or frames, for clips) waiting for this output at most; beyond it the oldest are dropped
    and counted."""


class JsonLinesOutput(_OutputBase):
    """One JSON object per event, flushed as written."""

    type: Literal["jsonl"] = "jsonl"
    path: str
    """A file (appended to), or ``-`` for stdout."""


class WebhookOutput(_OutputBase):
    """HTTP POST of each event as JSON, at least once: events wait in a spool folder on disk until the
    receiver answers 2xx, across restarts too."""

    type: Literal["webhook"] = "webhook"
    url: str
    """``http://`` or ``https://`` and a host; credentials in it (``user:password@``, a token in the
    query) never show in logs."""
    spool: Path
    """Folder for undelivered events (one file each, delivered oldest first); one run at a time uses it."""
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(5.0, gt=0, le=300)
    """Seconds one request may take (connect, send, answer)."""
    backoff_initial: float = Field(0.5, gt=0, le=3600)
    backoff_max: float = Field(30.0, gt=0, le=3600)
    give_up_after: float | None = Field(None, gt=0)
    """Seconds of a continuous outage after which this run stops retrying: the events waiting then and
    later ones count as failed (set aside in ``<spool>/failed/``). None: retry for as long as it runs."""
    max_spool: int = Field(100_000, ge=1)
    """Undelivered events kept at most; beyond it the oldest are dropped and counted."""
    drain_timeout: float = Field(1.0, ge=0, le=600)
    """At the end of a run, seconds to keep delivering; closing takes no longer than this even while a
    request hangs (its ``timeout`` may be longer). What is left stays in the spool for the next run."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        return check_http_url(url)

    @field_validator("headers")
    @classmethod
    def _header_syntax(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP header name")
            if not _HEADER_VALUE.fullmatch(value):
                raise ValueError(f"header {name!r}: the value must be printable ASCII on one line")
        return headers

    @model_validator(mode="after")
    def _ordered(self) -> WebhookOutput:
        if self.backoff_max < self.backoff_initial:
            raise ValueError(f"backoff_max ({self.backoff_max}) must be >= backoff_initial")
        return self


_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
_HOST_CHARACTERS = re.compile(r"[^\s%/\\@?#]+")


def check_http_url(url: str) -> str:
    """``url`` when it is an absolute ``http(s)://`` URL with a host that httpx can use.

    Raises:
        ValueError: naming what is wrong (with any credentials of the URL masked).
    """
    import httpx  # here, not at the top: only a config with a webhook pays for it

    shown = redact_url(url).split("?", 1)[0]  # no credentials, no query (it may hold a token)
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"invalid URL {shown!r}: {redact_url(str(exc))}") from None
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"URL {shown!r} must start with http:// or https://")
    if not parsed.host or not _HOST_CHARACTERS.fullmatch(parsed.host):
        raise ValueError(f"URL {shown!r} has no valid host")
    if parsed.port is not None and not 0 < parsed.port <= 65535:
        raise ValueError(f"URL {shown!r}: port {parsed.port} is not in 1-65535")
    return url


class MqttTls(StrictModel):
    """``tls`` of the ``mqtt`` output: the broker is reached over TLS (paho's ``tls_set``).
    ``tls: true`` verifies the broker against the system's CA certificates."""

    ca: Path | None = None
    """PEM file of the CA certificates that signed the broker's certificate; the system's when None."""
    cert: Path | None = None
    """PEM client certificate, for a broker that requires one (``require_certificate``)."""
    key: Path | None = None
    """PEM private key of ``cert``, when it is not in the same file."""
    insecure: bool = False
    """Skip the check that the broker's certificate names ``host`` (its chain is still verified)."""

    @model_validator(mode="after")
    def _key_needs_cert(self) -> MqttTls:
        if self.key is not None and self.cert is None:
            raise ValueError("key is set but cert is not: give the client certificate too")
        return self


class MqttOutput(_OutputBase):
    """Publishes each event on ``<prefix>/<source>/<type>``; ``<prefix>/<source>/availability`` holds a
    retained ``online`` / ``offline`` (the broker sends ``offline`` as the last will if streamvision dies).

    With ``state`` (or ``home_assistant``) it also keeps retained state topics up to date, from every
    frame: ``<prefix>/<source>/<label>/count``, ``<prefix>/<source>/zone/<zone>/count`` and
    ``<prefix>/<source>/line/<line>/in`` / ``out`` (zones and lines of a ``zones`` stage)."""

    type: Literal["mqtt"] = "mqtt"
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    """1883 by default; 8883 with ``tls``."""
    prefix: str = "streamvision"
    qos: Literal[0, 1, 2] = 1
    username: str | None = None
    password: str | None = None
    client_id: str | None = None
    keepalive: int = Field(30, ge=5, le=3600)
    max_inflight_queue: int = Field(10_000, ge=1)
    """Messages paho keeps while the broker is unreachable; beyond it publishing fails and is counted."""
    drain_timeout: float = Field(3.0, ge=0, le=600)
    """At the end of a run, seconds to keep publishing and to wait for the broker's acknowledgements;
    events it never acknowledged count as failed."""
    tls: MqttTls | None = None
    state: bool = False
    """Publish the retained state topics (counts per label, zone occupancy, line totals) on change."""
    state_on: str | None = None
    """Result key of the detections counted per label; every detection result of the frame by default."""
    state_labels: tuple[str, ...] | None = None
    """Only these labels are counted, each published (0 included) from the start; every label seen
    by default, each from when it is first seen."""
    state_frames: int = Field(3, ge=1, le=10_000)
    """A new count or occupancy is published once it held for this many frames in a row (line totals
    at once): a detector that misses an object now and then does not flood the broker."""
    home_assistant: bool = False
    """Announce the state topics to Home Assistant (MQTT discovery, retained); implies ``state``."""
    discovery_prefix: str = "homeassistant"
    """Home Assistant's discovery prefix; its birth message on ``<discovery_prefix>/status`` makes
    streamvision announce everything again."""

    @model_validator(mode="before")
    @classmethod
    def _tls_port(cls, data: object) -> object:
        if isinstance(data, dict):
            tls = data.get("tls")
            if tls is True:
                data = {**data, "tls": {}}
            elif tls is False:
                data = {**data, "tls": None}
            if data.get("tls") is not None and data.get("port") is None:
                data = {**data, "port": 8883}
        return data

    @field_validator("discovery_prefix")
    @classmethod
    def _not_empty(cls, prefix: str) -> str:
        if not prefix.strip("/"):
            raise ValueError("must not be empty")
        return prefix

    @field_validator("prefix", "discovery_prefix")
    @classmethod
    def _topic_prefix(cls, prefix: str) -> str:
        if "+" in prefix or "#" in prefix:
            raise ValueError(f"{prefix!r}: MQTT wildcards (+, #) cannot be part of a topic")
        return prefix

    @property
    def publishes_state(self) -> bool:
        """True when the state topics are published (``state`` or ``home_assistant``)."""
        return self.state or self.home_assistant


class SnapshotOutput(_OutputBase):
    """An annotated JPEG of the frame of each event; its path goes into the event (``snapshot``)."""

    type: Literal["snapshot"] = "snapshot"
    dir: Path
    quality: int = Field(90, ge=10, le=100)
    types: tuple[str, ...] | None = None
    """Only events of these types (all by default)."""


class ClipOutput(_OutputBase):
    """An H.264 clip of ``before`` seconds (from a ring buffer) to ``after`` seconds around each event;
    events during a clip extend it. Its path goes into the event (``clip``). The ring buffer holds
    ``before`` seconds of annotated frames in memory."""

    type: Literal["clip"] = "clip"
    dir: Path
    before: float = Field(3.0, ge=0, le=60)
    after: float = Field(3.0, ge=0, le=600)
    types: tuple[str, ...] | None = None
    crf: int = Field(26, ge=0, le=51)
    queue_size: int = Field(64, ge=1, le=100_000)
    """Frames waiting for the encoder at most (each a full image in memory)."""


OutputConfig = Annotated[
    JsonLinesOutput | WebhookOutput | MqttOutput | SnapshotOutput | ClipOutput,
    Field(discriminator="type"),
]


class EventsConfig(StrictModel):
    """``events``: named zones and lines, the rules that watch them, and where events go.

    A rule may also name a zone or line of a ``zones`` stage of the same pipeline: a pipeline config
    hands them over with :meth:`sharing` (the name must be defined once, here or there).
    """

    zones: dict[str, tuple[Point, ...]] = Field(default_factory=dict)
    """Polygons in frame pixels, at least three points each."""
    lines: dict[str, tuple[Point, Point]] = Field(default_factory=dict)
    """Segments in frame pixels: two points each."""
    rules: tuple[RuleConfig, ...] = ()
    outputs: tuple[OutputConfig, ...] = ()
    source_status: bool = True
    """Send ``source_offline`` / ``source_online`` to the outputs too."""

    _stage_regions: tuple[tuple[RegionSpec, bool], ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _references(self) -> EventsConfig:
        for name, polygon in self.zones.items():
            if len(polygon) < 3:
                raise ValueError(f"zone {name!r} needs at least 3 points, got {len(polygon)}")
        for name, (start, end) in self.lines.items():
            if start == end:
                raise ValueError(f"line {name!r}: its two points must differ")
        names = [rule_name(rule, i) for i, rule in enumerate(self.rules)]
        if len(set(names)) != len(names):
            raise ValueError(f"rule names must be unique, got {names}")
        return self

    def sharing(self, regions: Iterable[tuple[RegionSpec, bool]]) -> EventsConfig:
        """A copy whose rules may also name ``regions``: the zones and lines of ``zones`` stages, each
        with whether its points are fractions of the frame (``relative``).

        Raises:
            ValueError: a rule names a zone or line that is not defined, or is defined twice.
        """
        shared = self.model_copy()
        shared._stage_regions = tuple(regions)
        shared.check_references()
        return shared

    def check_references(self) -> None:
        """Checks that every zone and line a rule names is defined exactly once.

        Raises:
            ValueError: naming the rule and what is wrong.
        """
        for i, rule in enumerate(self.rules):
            for kind in ("zone", "line"):
                name = getattr(rule, kind, None)
                if name is not None:
                    try:
                        self.region(name, kind)
                    except ValueError as exc:
                        raise ValueError(f"rules.{i}: {exc}") from None

    def zone_names(self) -> tuple[str, ...]:
        """Every zone a rule may name: those of ``events.zones``, then those of the ``zones`` stages."""
        stages = [spec.name for spec, _ in self._stage_regions if isinstance(spec, ZoneSpec)]
        return tuple(dict.fromkeys([*self.zones, *stages]))

    def region(self, name: str, kind: RegionKind) -> tuple[RegionSpec, bool]:
        """The zone or line ``name`` and whether its points are fractions of the frame.

        Raises:
            ValueError: none of that kind has that name, or two do.
        """
        own: list[RegionSpec]
        if kind == "zone":
            own = [ZoneSpec(name=n, polygon=p) for n, p in self.zones.items()]
        else:
            own = [LineSpec(name=n, start=a, end=b) for n, (a, b) in self.lines.items()]
        wanted = ZoneSpec if kind == "zone" else LineSpec
        known = [(spec, False, f"events.{kind}s") for spec in own] + [
            (spec, relative, "a zones stage")
            for spec, relative in self._stage_regions
            if isinstance(spec, wanted)
        ]
        found = [item for item in known if item[0].name == name]
        if not found:
            valid = ", ".join(sorted({spec.name for spec, _, _ in known})) or "none"
            raise ValueError(f"no {kind} named {name!r} ({kind}s: {valid})")
        if len(found) > 1:
            places = " and ".join(where for _, _, where in found[:2])
            raise ValueError(f"{kind} {name!r} is defined twice ({places}): rename one")
        return found[0][0], found[0][1]


def rule_name(rule: _RuleBase, index: int) -> str:
    """The rule's ``name``, or its type and position."""
    return rule.name or f"{getattr(rule, 'type', 'rule')}.{index}"
