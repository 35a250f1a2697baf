"""Plays a recorded source in real time, so it behaves as a camera would."""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np

from streamvision.sources.base import PendingImage, Source


class RealtimeSource:
    """Delivers each frame of ``inner`` no earlier than its timestamp after the first frame.

    The result is live: a pipeline slower than the frame rate drops frames instead of falling
    behind, exactly as with a camera. Useful to try a live setup, and to measure latency, on a file.

    Args:
        inner: a finite source (file, images).
        rate: deliver at this frame rate instead of the source's own timestamps.
    """

    live = True

    def __init__(self, inner: Source, rate: Fraction | None = None) -> None:
        self.inner = inner
        self.source_id = inner.source_id
        self._paced_by_index = rate is not None
        self.rate: Fraction | None = rate or inner.rate
        self.total_frames = inner.total_frames
        self._origin: float | None = None
        self._count = 0

    @property
    def errors(self) -> int:
        return self.inner.errors

    def read(self) -> tuple[np.ndarray | PendingImage, float | None] | None:
        """Returns the next frame once its time has come, or None at the end."""
        item = self.inner.read()
        if item is None:
            return None
        pts = None if self._paced_by_index else item[1]
        if pts is None:
            pts = self._count / float(self.rate) if self.rate else 0.0
        self._count += 1
        now = time.monotonic()
        if self._origin is None:
            self._origin = now - pts
        delay = self._origin + pts - now
        if delay > 0:
            time.sleep(delay)
        return item

    def close(self) -> None:
        self.inner.close()
