"""A bounded queue with the two policies a video pipeline needs.

Lossless (files): a full queue blocks the producer until there is room or it is told to stop.
Keep-newest (live sources): a full queue drops its oldest item, so a slow consumer sees recent
frames instead of a growing backlog; every drop is counted.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class QueueClosed(Exception):
    """Raised by :meth:`FrameQueue.get` once the queue is closed and empty."""


class QueueTimeout(Exception):
    """Raised by :meth:`FrameQueue.get` when nothing arrived within the timeout."""


class FrameQueue(Generic[T]):
    """Bounded, closable queue with a lossless or keep-newest policy.

    Args:
        maxsize: how many items it holds (>= 1).
        keep_newest: drop the oldest item when full instead of blocking the producer.

    Raises:
        ValueError: when ``maxsize`` < 1.

    Example:
        >>> q = FrameQueue[int](2, keep_newest=True)
        >>> for i in range(3):
        ...     _ = q.put(i)
        >>> q.get(0), q.get(0), q.dropped
        (1, 2, 1)
    """

    def __init__(self, maxsize: int, keep_newest: bool) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.keep_newest = keep_newest
        self.dropped = 0
        self._items: deque[T] = deque()
        self._closed = False
        self._cond = threading.Condition()

    def put(self, item: T, stop: threading.Event | None = None) -> bool:
        """Adds ``item``; returns False (item not added) when the queue is closed or ``stop`` is set.

        A lossless queue blocks while full, waking every 0.1 s to look at ``stop``.
        """
        with self._cond:
            while not self._closed and len(self._items) >= self.maxsize:
                if self.keep_newest:
                    self._items.popleft()
                    self.dropped += 1
                    break
                if stop is not None and stop.is_set():
                    return False
                self._cond.wait(0.1)
            if self._closed:
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> T:
        """Removes and returns the oldest item.

        Raises:
            QueueClosed: the queue is closed and holds nothing more.
            QueueTimeout: nothing arrived within ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._closed:
                    raise QueueClosed
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise QueueTimeout
                self._cond.wait(remaining)
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """Marks the end: producers can add nothing more; consumers drain what is left."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def clear(self) -> int:
        """Discards every queued item and returns how many there were."""
        with self._cond:
            n = len(self._items)
            self._items.clear()
            self._cond.notify_all()
            return n

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
