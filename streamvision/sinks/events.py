"""JSON-lines events: one object per frame with its results, one per source status change, and one per
rule event."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from streamvision.frame import Detections, Estimates, Frame, Labels, Mask, Poses, ZoneCounts
from streamvision.sinks.jsonlines import JsonLinesStream
from streamvision.status import SourceStatus

if TYPE_CHECKING:
    from streamvision.events.event import Event


def frame_event(frame: Frame) -> dict[str, Any]:
    """The JSON-ready event for one frame: its identity and every stage's detections, labels, zone
    counts, masks (label, area, box) and poses.

    Labels name the detections they belong to: ``on`` (a stage) and ``detection`` (a row in it).
    """
    results = {
        name: result.to_records()
        for name, result in frame.results.items()
        if isinstance(result, (Detections, Labels, Estimates, ZoneCounts, Mask, Poses))
    }
    return {
        "type": "frame",
        "source": frame.source_id,
        "frame": frame.index,
        "pts": None if frame.pts is None else round(frame.pts, 4),
        "results": results,
    }


class JsonLinesSink:
    """Appends one JSON object per frame to a file, or to stdout for ``-``; source status changes
    (``"type": "status"``) go to the same stream.

    Every line is flushed as it is written, so a killed run loses nothing it already reported.

    Raises:
        SinkError: the file cannot be opened or written.
    """

    step_name = "events"
    needs_annotation = False

    def __init__(self, target: str, on_reader_gone: Callable[[], None] | None = None) -> None:
        self.target = target
        self._stream = JsonLinesStream(target, on_reader_gone=on_reader_gone)

    def write(self, frame: Frame, annotated: np.ndarray | None) -> None:
        self._write_line(frame_event(frame))

    def write_status(self, status: SourceStatus) -> None:
        self._write_line(status.to_record())

    def write_event(self, event: Event) -> None:
        """A rule's event, as a line of its own after the frame that caused it (``"type"``: its type)."""
        self._write_line(event.to_record())

    def _write_line(self, record: dict[str, Any]) -> None:
        self._stream.write(record)

    def close(self) -> None:
        self._stream.close()
