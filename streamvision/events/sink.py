"""The pipeline's side of events: rules over each finished frame, fan-out to isolated outputs."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from fractions import Fraction
from typing import Any, Protocol, runtime_checkable

import numpy as np

from streamvision.errors import StreamvisionError
from streamvision.events.config import (
    ClipOutput,
    EventsConfig,
    JsonLinesOutput,
    MqttOutput,
    SnapshotOutput,
    WebhookOutput,
)
from streamvision.events.engine import RuleEngine, status_event
from streamvision.events.event import Event
from streamvision.events.worker import Channel, EventChannel, OutputWorker
from streamvision.frame import Frame
from streamvision.status import SourceStatus

log = logging.getLogger(__name__)

CLOSE_GRACE_S = 2.0
"""Seconds past the deadline an output may take to put down what it is doing before it is abandoned."""


@runtime_checkable
class EventLineSink(Protocol):
    """A stream that also takes rule events inline (the ``--events`` JSON lines)."""

    def write_event(self, event: Event) -> None: ...


class EventsSink:
    """Runs the rules on the calling thread and hands each event to every output's own thread.

    Snapshot and clip paths are decided here, before the fan-out, so every output sees them in the
    event. Frames for clips are kept in a ring buffer here; encoding happens on the clip's thread.

    Args:
        config: the validated ``events`` section.
        source_id: the pipeline's source id (MQTT topics).
        video_time: durations on presentation times (files) instead of capture times (live sources).
        rate: the source's frame rate (clips).
        inline: streams that also get every rule event, in frame order (the ``--events`` file).
        forward: channels owned by the caller that get every event as the outputs do (a cluster
            actor hands them to its driver); closed with the outputs.

    Raises:
        SinkError: an output cannot be opened (outputs opened before it are closed first).
    """

    step_name = "rules"

    def __init__(
        self,
        config: EventsConfig,
        source_id: str,
        video_time: bool,
        rate: Fraction | None = None,
        inline: tuple[EventLineSink, ...] = (),
        forward: tuple[EventChannel, ...] = (),
    ) -> None:
        from streamvision.events.outputs.clip import ClipChannel
        from streamvision.events.outputs.snapshot import SnapshotChannel

        self._config = config
        self._engine = RuleEngine(config, video_time)
        self._video_time = video_time
        self._inline = inline
        self.by_type: Counter[str] = Counter()
        self._lock = threading.Lock()  # stats() is read from other threads (preview, metrics)
        self._events: list[EventChannel] = list(forward)
        self._snapshots: list[SnapshotChannel] = []
        self._clips: list[ClipChannel] = []
        self._channels: list[Channel] = list(forward)
        self._closed = False
        try:
            for i, output in enumerate(config.outputs):
                name = f"{output.type}.{i}"
                if isinstance(output, SnapshotOutput):
                    self._snapshots.append(SnapshotChannel(output, name))
                    self._channels.append(self._snapshots[-1])
                elif isinstance(output, ClipOutput):
                    self._clips.append(ClipChannel(output, rate, name))
                    self._channels.append(self._clips[-1])
                else:
                    channel = open_event_channel(output, name, source_id)
                    self._events.append(channel)
                    self._channels.append(channel)
        except StreamvisionError:
            self.close()
            raise
        self.needs_annotation = bool(self._snapshots or self._clips)

    def write(self, frame: Frame, annotated: np.ndarray | None) -> None:
        for output in self._events:
            observe = getattr(output, "observe", None)  # the mqtt output's state topics count frames
            if observe is not None:
                observe(frame)
        image = frame.image if annotated is None else annotated
        clock = frame.pts if self._video_time and frame.pts is not None else frame.capture_time
        for clip in self._clips:
            clip.observe(clock, frame, image)
        for event in self._engine.process(frame):
            snapshots = [(channel, channel.claim(event)) for channel in self._snapshots]
            clip_paths = [clip.claim(event, clock) for clip in self._clips]
            first_snapshot = next((path for _, path in snapshots if path is not None), None)
            event = event.with_paths(first_snapshot, next((p for p in clip_paths if p is not None), None))
            for channel, path in snapshots:
                if path is not None:
                    channel.submit(path, event, image)
            for stream in self._inline:
                stream.write_event(event)
            self._dispatch(event)

    def write_status(self, status: SourceStatus) -> None:
        """Source status changes go to the event outputs (the ``--events`` file has its own line)."""
        if self._config.source_status:
            self._dispatch(status_event(status))

    def _dispatch(self, event: Event) -> None:
        with self._lock:
            self.by_type[event.type] += 1
        for channel in self._events:
            channel.submit(event)

    def stats(self) -> dict[str, Any]:
        """Events by type and each output's figures (submitted, delivered, dropped, backlog, ...)."""
        with self._lock:
            by_type = dict(self.by_type)
        return {
            "events_by_type": by_type,
            "event_outputs": {channel.name: channel.stats() for channel in self._channels},
        }

    def close(self, deadline: float | None = None) -> None:
        """Finishes every output at once, in parallel: each within its own drain time, and all by
        ``deadline`` (a ``time.monotonic()`` value) when given. Errors are logged, then the first is
        raised.

        Raises:
            StreamvisionError: an output failed to close.
        """
        if self._closed:
            return
        self._closed = True
        errors: list[Exception] = []

        def close(channel: Channel) -> None:
            try:
                channel.close(deadline)
            except Exception as exc:
                log.error("closing output %s failed: %s", channel.name, exc)
                errors.append(exc)

        closing = [
            threading.Thread(target=close, args=(channel,), name=f"sv-close-{channel.name}", daemon=True)
            for channel in self._channels
        ]
        for thread in closing:
            thread.start()
        for thread in closing:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()) + CLOSE_GRACE_S)
            if thread.is_alive():
                log.error("output %s did not finish closing in time", thread.name.removeprefix("sv-close-"))
        if errors:
            raise errors[0]


def open_event_channel(
    output: JsonLinesOutput | WebhookOutput | MqttOutput, name: str, source_id: str
) -> EventChannel:
    """Opens an event output on its own thread.

    Raises:
        SinkError: it cannot be opened.
    """
    if isinstance(output, WebhookOutput):
        from streamvision.events.outputs.webhook import WebhookChannel

        return WebhookChannel(output, name)
    if isinstance(output, MqttOutput):
        from streamvision.events.outputs.mqtt import MqttChannel

        return MqttChannel(output, source_id, name)
    from streamvision.events.outputs.jsonl import JsonLinesWriter

    return OutputWorker(name, JsonLinesWriter(output), output.queue_size)
