"""H.264 clips around events: ``before`` seconds from a ring buffer of recent annotated frames, then
``after`` seconds more; an event during a clip extends it."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from streamvision.errors import SinkError
from streamvision.events.config import ClipOutput
from streamvision.events.event import Event
from streamvision.events.worker import OutputWorker
from streamvision.frame import Frame
from streamvision.sinks.video import VideoFileSink

log = logging.getLogger(__name__)

MAX_FPS = 120
"""Bounds the ring buffer's length: ``before`` seconds at this rate at most."""


@dataclass(frozen=True)
class _Start:
    path: Path
    preroll: list[tuple[Frame, np.ndarray]]


@dataclass(frozen=True)
class _Add:
    frame: Frame
    image: np.ndarray


@dataclass(frozen=True)
class _End:
    path: Path


class ClipChannel:
    """Keeps the last ``before`` seconds of frames and decides clip boundaries on the calling thread;
    encodes on its worker thread. A clip is written as ``<event id>.partial.mp4`` and renamed to
    ``<event id>.mp4`` (the path in its events) once complete. Under load the worker's queue drops
    frames of a clip, never its start or end, so every clip an event names is written.

    Args:
        config: the ``clip`` output settings.
        rate: the source's frame rate, for the clips (25 when unknown).

    Raises:
        SinkError: the folder cannot be created.
    """

    def __init__(self, config: ClipOutput, rate: Fraction | None, name: str = "clip") -> None:
        self.name = name
        self._config = config
        try:
            config.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"cannot create clip folder {config.dir}: {exc.strerror or exc}") from None
        self._ring: deque[tuple[float, Frame, np.ndarray]] = deque(maxlen=int(config.before * MAX_FPS) + 2)
        self._recording: Path | None = None
        self._until = 0.0
        self.clips = 0
        self._worker: OutputWorker[_Start | _Add | _End] = OutputWorker(
            name, _ClipWriter(rate, config.crf), config.queue_size, drain_timeout=30.0
        )

    def observe(self, clock: float, frame: Frame, image: np.ndarray) -> None:
        """Takes every finished frame: into the clip being recorded, and into the ring buffer."""
        if self._recording is not None:
            if clock > self._until:
                self._worker.submit(_End(self._recording), keep=True)
                self._recording = None
            else:
                self._worker.submit(_Add(Frame(image, frame.source_id, frame.index, frame.pts, 0.0), image))
        # Keep the drawn image only: the clip needs nothing else, and the raw image would double memory.
        frame = Frame(image, frame.source_id, frame.index, frame.pts, frame.capture_time)
        self._ring.append((clock, frame, image))
        while self._ring and clock - self._ring[0][0] > self._config.before:
            self._ring.popleft()

    def claim(self, event: Event, clock: float) -> str | None:
        """Starts (or extends) the clip for ``event`` and returns its path; None when this output skips
        its type. Call after :meth:`observe` for the event's frame."""
        if self._config.types is not None and event.type not in self._config.types:
            return None
        self._until = max(self._until, clock + self._config.after)
        if self._recording is None:
            self._recording = self._config.dir / f"{event.id}.mp4"
            preroll = [(f, image) for _, f, image in self._ring]
            self._worker.submit(_Start(self._recording, preroll), keep=True)
            self.clips += 1
        return str(self._recording)

    def stats(self) -> dict[str, Any]:
        return {**self._worker.stats(), "clips": self.clips}

    def close(self, deadline: float | None = None) -> None:
        """Ends the clip being recorded (shorter than asked) and finishes encoding by ``deadline``; frames
        still queued then are left out, and the clip in hand is finalized all the same."""
        if self._recording is not None:
            self._worker.submit(_End(self._recording), keep=True)
            self._recording = None
        self._worker.close(deadline)


class _ClipWriter:
    def __init__(self, rate: Fraction | None, crf: int) -> None:
        self._rate = rate
        self._crf = crf
        self._sink: VideoFileSink | None = None
        self._final: Path | None = None

    def handle(self, item: _Start | _Add | _End) -> None:
        """Encodes one step of a clip.

        Raises:
            SinkError: the file cannot be written.
        """
        if isinstance(item, _Start):
            self._finish()
            self._final = item.path
            self._sink = VideoFileSink(item.path, self._rate, self._crf)  # as .partial.mp4 until closed
            for frame, image in item.preroll:
                self._sink.write(frame, image)
        elif isinstance(item, _Add):
            if self._sink is not None:
                self._sink.write(item.frame, item.image)
        elif item.path == self._final:
            self._finish()

    def _finish(self) -> None:
        sink, final = self._sink, self._final
        self._sink = self._final = None
        if sink is None or final is None:
            return
        sink.close()
        log.info("clip %s: %d frames", final, sink.frames_written)

    def close(self) -> None:
        self._finish()
