"""Which frames a detector runs on: every Nth frame, or a number per second of the source's time."""

from __future__ import annotations

import math

from streamvision.errors import ConfigError
from streamvision.frame import Frame

RATE_FRAMES = 8
"""Frames seen before the source's frame rate is measured (from their indices and times)."""

RATE_TOLERANCE = 0.05
"""``detect_fps`` may exceed the measured frame rate by this fraction (29.97 fps video, detect_fps 30)."""

_SLOT_EPSILON = 1e-3
"""Of one detection interval: a timestamp a rounding error short of its slot still opens it."""


def frame_time(frame: Frame, live: bool) -> float:
    """A frame's time in seconds: its timestamp for a file, its capture time for a live source (or a
    frame without a timestamp), so a file read faster than real time keeps its own clock."""
    return frame.capture_time if live or frame.pts is None else frame.pts


class DetectClock:
    """Says which frames are due for detection.

    With ``fps``, time is cut into slots of 1 / ``fps`` seconds from the first frame, and the first
    frame of each slot is due: 25 fps and 10 fps sources get detections at the same moments. The
    source's frame rate is measured on its first :data:`RATE_FRAMES` frames (frame indices count
    the frames a live source dropped, so drops do not lower it).

    Args:
        name: the stage's name, for errors.
        every: run on every Nth frame (1: all); ignored with ``fps``.
        fps: detections per second of the source's time, or None.
        live: the source is live (times are capture times).

    Example:
        >>> import numpy as np
        >>> clock = DetectClock("objects", every=1, fps=5.0, live=False)
        >>> image = np.zeros((1, 1, 3), np.uint8)
        >>> [clock.due(Frame(image, "s", i, i / 25, 0.0)) for i in range(7)]
        [True, False, False, False, False, True, False]
    """

    def __init__(self, name: str, every: int = 1, fps: float | None = None, live: bool = False) -> None:
        self._name = name
        self._every = every
        self._fps = fps
        self._live = live
        self._seen = 0
        self._origin: tuple[int, float] | None = None
        self._slot = -1
        self._measured = False

    def time(self, frame: Frame) -> float:
        """The frame's time on this clock (see :func:`frame_time`)."""
        return frame_time(frame, self._live)

    def due(self, frame: Frame) -> bool:
        """Whether the detector runs on ``frame``; call once per frame, in order.

        Raises:
            ConfigError: ``fps`` is above the source's frame rate (measured on its first frames).
        """
        self._seen += 1
        if self._fps is None:
            return (self._seen - 1) % self._every == 0
        now = self.time(frame)
        if self._origin is None:
            self._origin = (frame.index, now)
        start_index, start = self._origin
        self._check_rate(frame.index - start_index, now - start)
        slot = math.floor((now - start) * self._fps + _SLOT_EPSILON)
        if slot < self._slot:  # time went back (a reconnected stream): count from here
            self._origin, self._slot = (frame.index, now), 0
            return True
        if slot > self._slot:
            self._slot = slot
            return True
        return False

    def _check_rate(self, frames: int, seconds: float) -> None:
        if self._measured or self._fps is None or frames < RATE_FRAMES - 1:
            return
        self._measured = True
        if seconds <= 0:
            return  # no usable clock to measure against
        rate = frames / seconds
        if self._fps > rate * (1 + RATE_TOLERANCE):
            raise ConfigError(
                f"{self._name}.detect_fps: {self._fps:g} is above the source's frame rate "
                f"({rate:.3g} fps); lower it, or remove detect_fps to detect on every frame"
            )
