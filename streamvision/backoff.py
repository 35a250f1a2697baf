"""Waits between retries of anything that reconnects: a source, a webhook, a broker."""

from __future__ import annotations

import random


class Backoff:
    """Exponential backoff with jitter: ``initial * 2**attempt`` capped at ``maximum``, shortened by a
    random fraction up to ``jitter``.

    Example:
        >>> waits = Backoff(0.5, 4.0, jitter=0.0)
        >>> [waits.delay(attempt) for attempt in range(5)]
        [0.5, 1.0, 2.0, 4.0, 4.0]
    """

    def __init__(
        self, initial: float, maximum: float, jitter: float, rng: random.Random | None = None
    ) -> None:
        if not 0 < initial <= maximum or not 0 <= jitter <= 1:
            raise ValueError(
                f"need 0 < initial <= maximum and 0 <= jitter <= 1, got {initial}, {maximum}, {jitter}"
            )
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first)."""
        base = min(self.maximum, self.initial * 2.0 ** min(attempt, 62))
        return base * (1.0 - self.jitter * self._rng.random())
