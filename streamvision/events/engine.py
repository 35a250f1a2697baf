"""The rule engine: every configured rule over each finished frame, on the pipeline's calling thread."""

from __future__ import annotations

from types import MappingProxyType

from streamvision.errors import ConfigError
from streamvision.events.config import EventsConfig, rule_name
from streamvision.events.event import Event, iso_time
from streamvision.events.rules import Moment, Rule, build_rule
from streamvision.frame import Frame
from streamvision.status import SourceStatus


class RuleEngine:
    """Runs the rules of an ``events`` config in order and returns what they fired.

    Args:
        config: the validated ``events`` section (a pipeline config's also knows the zones and lines
            of its ``zones`` stages, which rules may name).
        video_time: judge durations and cooldowns on the frames' presentation times (files, played
            as fast as possible) rather than on their capture times (live sources).

    Raises:
        ConfigError: a rule names a zone or line that is not defined, or is defined twice.

    Example:
        >>> from streamvision.events.config import EventsConfig, AppearRule
        >>> engine = RuleEngine(EventsConfig(rules=(AppearRule(debounce_frames=1),)))
        >>> [rule.name for rule in engine.rules]
        ['appear.0']
    """

    def __init__(self, config: EventsConfig, video_time: bool = True) -> None:
        try:
            config.check_references()
        except ValueError as exc:
            raise ConfigError(f"events: {exc}") from None
        self.rules: list[Rule] = [
            build_rule(rule, rule_name(rule, i), config.region, config.zone_names())
            for i, rule in enumerate(config.rules)
        ]
        self._video_time = video_time

    def process(self, frame: Frame) -> list[Event]:
        """The events ``frame`` causes, rule by rule."""
        use_pts = self._video_time and frame.pts is not None
        now = Moment(frame, frame.pts if use_pts and frame.pts is not None else frame.capture_time)
        events: list[Event] = []
        for rule in self.rules:
            events.extend(rule.step(now))
        return events


def status_event(status: SourceStatus) -> Event:
    """A source going offline or coming back, as an event (``rule`` is ``source``)."""
    extra: dict[str, object] = {"reason": status.reason, "reconnects": status.reconnects}
    if status.offline_s is not None:
        extra["offline_s"] = round(status.offline_s, 3)
    return Event(
        type=status.kind,
        source=status.source_id,
        time=iso_time(status.wall_time),
        rule="source",
        extra=MappingProxyType(extra),
    )
