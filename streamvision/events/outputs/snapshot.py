"""An annotated JPEG per event, written on the output's own thread."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from streamvision.errors import SinkError
from streamvision.events.config import SnapshotOutput
from streamvision.events.event import Event
from streamvision.events.worker import OutputWorker

HIGHLIGHT = (0, 255, 255)  # BGR yellow: the box the event is about


class SnapshotChannel:
    """Decides each snapshot's path on the calling thread (so the event can carry it) and writes the
    JPEG on its worker thread: the annotated frame with the event's zone or line, box and type drawn
    in yellow (see :func:`highlight`).

    Raises:
        SinkError: the folder cannot be created.
    """

    def __init__(self, config: SnapshotOutput, name: str = "snapshot") -> None:
        self.name = name
        self._config = config
        try:
            config.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"cannot create snapshot folder {config.dir}: {exc.strerror or exc}") from None
        self.skipped = 0
        self._worker: OutputWorker[tuple[Path, Event, np.ndarray]] = OutputWorker(
            name, _JpegWriter(config.quality), config.queue_size
        )

    def claim(self, event: Event) -> str | None:
        """The path this event's snapshot will have, or None when this output skips its type or its
        queue is full (counted as ``skipped``): an event only names a snapshot that will be written."""
        if self._config.types is not None and event.type not in self._config.types:
            return None
        if not self._worker.has_room:
            self.skipped += 1
            return None
        return str(self._config.dir / f"{event.id}.jpg")

    def submit(self, path: str, event: Event, image: np.ndarray) -> None:
        """Queues the snapshot of ``event`` to be written to ``path`` (from :meth:`claim`, on the same
        thread, so the room it found is still there)."""
        self._worker.submit((Path(path), event, image), keep=True)

    def stats(self) -> dict[str, Any]:
        return {**self._worker.stats(), "skipped": self.skipped}

    def close(self, deadline: float | None = None) -> None:
        self._worker.close(deadline)


def highlight(image: np.ndarray, event: Event) -> np.ndarray:
    """A copy of ``image`` with what ``event`` is about in yellow: its zone or line (for events that
    know where it is, :class:`~streamvision.events.rules.RegionEvent`), its box, and its type and
    zone or line name bottom left."""
    from streamvision.events.rules import RegionEvent

    scene = image.copy()
    height, width = scene.shape[:2]
    thickness = max(2, round(min(height, width) / 160))
    outline = event.outline if isinstance(event, RegionEvent) else None
    if outline is not None:
        # Inside the frame by half the line width, so a zone along the frame's edge shows too.
        half = thickness // 2
        points = np.clip(np.rint(outline.points), half, [width - 1 - half, height - 1 - half]).astype(
            np.int32
        )
        cv2.polylines(scene, [points], outline.kind == "zone", HIGHLIGHT, thickness, cv2.LINE_AA)
    if event.box is not None:
        x1, y1, x2, y2 = (round(v) for v in event.box)
        cv2.rectangle(scene, (x1, y1), (x2, y2), HIGHLIGHT, thickness, cv2.LINE_AA)
    caption = " ".join(str(part) for part in (event.type, event.zone or event.line or "") if part)
    (w, h), baseline = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    cv2.rectangle(scene, (0, height - h - baseline - 8), (w + 8, height - 1), (0, 0, 0), -1)
    cv2.putText(scene, caption, (4, height - baseline - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, HIGHLIGHT, 1)
    return scene


class _JpegWriter:
    def __init__(self, quality: int) -> None:
        self._quality = quality

    def handle(self, item: tuple[Path, Event, np.ndarray]) -> None:
        """Writes one JPEG atomically (aside, then renamed).

        Raises:
            SinkError: encoding or writing failed.
        """
        path, event, image = item
        scene = highlight(image, event)
        ok, jpeg = cv2.imencode(".jpg", scene, [cv2.IMWRITE_JPEG_QUALITY, self._quality])
        if not ok:
            raise SinkError(f"cannot encode the snapshot of event {event.id}")
        aside = path.with_suffix(".tmp")
        try:
            aside.write_bytes(jpeg.tobytes())
            os.replace(aside, path)
        except OSError as exc:
            raise SinkError(f"cannot write snapshot {path}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        pass
