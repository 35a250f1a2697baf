"""FPS, per-stage time, end-to-end latency and drop accounting for one pipeline run.

Every figure comes from ``time.monotonic()``; samples are kept in bounded windows so a long live
run uses constant memory.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

WINDOW = 100_000


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50, p95 and p99 of ``values`` (ms), and the mean; all None when ``values`` is empty."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None}
    array = np.asarray(values, dtype=float)
    p50, p95, p99 = np.percentile(array, [50, 95, 99])
    return {
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "mean": round(float(array.mean()), 3),
    }


class Samples:
    """A bounded window of millisecond samples with percentiles."""

    def __init__(self, window: int = WINDOW) -> None:
        self._values: deque[float] = deque(maxlen=window)

    def add(self, ms: float) -> None:
        self._values.append(ms)

    def __len__(self) -> int:
        return len(self._values)

    def last(self) -> float | None:
        """The newest sample."""
        return self._values[-1] if self._values else None

    def values(self) -> list[float]:
        """The samples in the window, oldest first."""
        return list(self._values)

    def percentiles(self) -> dict[str, float | None]:
        """p50, p95 and p99 in ms, and the mean (all None before the first sample)."""
        return percentiles(self.values())


class PipelineMetrics:
    """Counters and timings the pipeline threads update and the CLI reads.

    Updates come from several threads; each is a single locked operation. :meth:`summary` holds the
    lock only to copy the samples, so reading the figures never stalls the pipeline threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.finished: float | None = None
        self.frames_in = 0
        self.frames_out = 0
        self.detections = 0
        self.dropped = 0
        self.source_errors = 0
        self.stage_ms: dict[str, Samples] = {}
        self.step_ms: dict[str, Samples] = {}
        self.latency_ms = Samples()
        self.reconnects = 0
        self._offline_s = 0.0
        self._offline_since: float | None = None

    def frame_in(self) -> None:
        with self._lock:
            self.frames_in += 1

    def stage_time(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.stage_ms.setdefault(stage, Samples()).add(seconds * 1000.0)

    def step_time(self, step: str, seconds: float) -> None:
        """Time spent outside the stages: ``decode``, ``annotate``, and each sink's write."""
        with self._lock:
            self.step_ms.setdefault(step, Samples()).add(seconds * 1000.0)

    def frame_out(self, capture_time: float, detections: int) -> None:
        with self._lock:
            self.frames_out += 1
            self.detections += detections
            self.latency_ms.add((time.monotonic() - capture_time) * 1000.0)

    def source_status(self, online: bool, at: float, reconnects: int) -> None:
        """A live source went offline or came back at monotonic time ``at``; counts its downtime."""
        with self._lock:
            self.reconnects = max(self.reconnects, reconnects)
            if not online and self._offline_since is None:
                self._offline_since = max(at, self.started)
            elif online and self._offline_since is not None:
                self._offline_s += max(0.0, at - self._offline_since)
                self._offline_since = None

    @property
    def offline_s(self) -> float:
        """Seconds the source was offline during the run (so far)."""
        ongoing = 0.0
        if self._offline_since is not None:
            ongoing = max(0.0, (self.finished or time.monotonic()) - self._offline_since)
        return self._offline_s + ongoing

    def capture_counts(self, dropped: int, source_errors: int) -> None:
        """The frames dropped and the source errors so far, as the capture thread sees them.

        Ignored once :meth:`finish` has set the final counts.
        """
        with self._lock:
            if self.finished is None:
                self.dropped = dropped
                self.source_errors = source_errors

    def finish(self, dropped: int, source_errors: int) -> None:
        """Ends the run: the clock stops and ``dropped`` and ``source_errors`` become the final counts."""
        with self._lock:
            self.finished = time.monotonic()
            self.dropped = dropped
            self.source_errors = source_errors

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def fps_out(self) -> float:
        return self.frames_out / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        """The run's figures so far as a JSON-ready dict."""
        # Copying a full window takes ~0.3 ms, its percentiles over ten times that (a whole summary took
        # 122 ms on a busy host): only the copies are made under the lock every pipeline thread takes.
        with self._lock:
            elapsed = self.elapsed
            figures: dict[str, Any] = {
                "duration_s": round(elapsed, 3),
                "frames_in": self.frames_in,
                "frames_out": self.frames_out,
                "fps_in": round(self.frames_in / elapsed, 2) if elapsed > 0 else 0.0,
                "fps_out": round(self.frames_out / elapsed, 2) if elapsed > 0 else 0.0,
                "dropped": self.dropped,
                "source_errors": self.source_errors,
                "reconnects": self.reconnects,
                "offline_s": round(self.offline_s, 3),
                "detections": self.detections,
            }
            stage_values = {name: s.values() for name, s in self.stage_ms.items()}
            step_values = {name: s.values() for name, s in self.step_ms.items()}
            latency_values = self.latency_ms.values()
        return {
            **figures,
            "stage_ms": {name: percentiles(values) for name, values in stage_values.items()},
            "step_ms": {name: percentiles(values) for name, values in step_values.items()},
            "latency_ms": percentiles(latency_values),
        }
