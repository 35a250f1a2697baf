"""Isolation for outputs: each runs on its own thread behind a bounded queue.

The pipeline's calling thread only appends to the queue; a slow or failing output falls behind, drops
its oldest items once the queue is full (counted) and never blocks capture or inference.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from streamvision.events.event import Event

log = logging.getLogger(__name__)

IN_HAND_S = 1.0
"""Seconds a closing worker waits at least for the item it is handling."""

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


class Handler(Protocol[T_contra]):
    """What a worker drives: ``handle`` one item at a time (it may raise; the item then counts as
    failed), ``close`` once at the end."""

    def handle(self, item: T_contra) -> None: ...

    def close(self) -> None: ...


class Channel(Protocol):
    """The calling thread's side of an output: report and finish.

    ``close(deadline)`` finishes by ``deadline`` (a ``time.monotonic()`` value) at the latest, or
    within the output's own drain time when it is None or later.
    """

    name: str

    def stats(self) -> dict[str, Any]: ...

    def close(self, deadline: float | None = None) -> None: ...


class EventChannel(Channel, Protocol):
    """A channel that takes events."""

    def submit(self, event: Event) -> None: ...


@dataclass(frozen=True, slots=True)
class _Queued(Generic[T]):
    item: T
    keep: bool


class OutputWorker(Generic[T]):
    """A thread that feeds queued items to ``handler``.

    Args:
        name: the output's name in summaries, metrics and thread names.
        handler: does the work; its exceptions are logged (the first, then every 100th) and counted.
            A ``stats()`` method of the handler adds to :meth:`stats`.
        queue_size: items held at most; when full, the oldest is dropped and counted.
        drain_timeout: seconds :meth:`close` keeps handling what is queued.

    Example:
        >>> class Printer:
        ...     def handle(self, item: int) -> None: print(item)
        ...     def close(self) -> None: pass
        >>> worker = OutputWorker("print", Printer(), 4)
        >>> worker.submit(1)
        >>> worker.close()
        1
        >>> worker.stats()["delivered"]
        1
    """

    def __init__(self, name: str, handler: Handler[T], queue_size: int, drain_timeout: float = 5.0) -> None:
        self.name = name
        self._handler = handler
        self._drain_timeout = drain_timeout
        self._closed = False
        self._size = queue_size
        self._items: deque[_Queued[T]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._busy = False
        self.submitted = self.delivered = self.failed = self.dropped = self.peak = 0
        self._thread = threading.Thread(target=self._run, name=f"sv-out-{name}", daemon=True)
        self._thread.start()

    def submit(self, item: T, keep: bool = False) -> None:
        """Queues ``item`` without waiting; when full, drops the oldest queued item that was not
        submitted with ``keep`` (a clip's start or end: the files its events name depend on them)."""
        with self._cond:
            if len(self._items) >= self._size:
                self._drop_oldest()
            self._items.append(_Queued(item, keep))
            self.submitted += 1
            self.peak = max(self.peak, len(self._items))
            self._cond.notify_all()

    def _drop_oldest(self) -> None:
        for index, queued in enumerate(self._items):
            if not queued.keep:
                del self._items[index]
                self.dropped += 1
                return

    @property
    def has_room(self) -> bool:
        """True while an item submitted now would not push another out."""
        with self._cond:
            return len(self._items) < self._size

    @property
    def backlog(self) -> int:
        with self._cond:
            return len(self._items) + self._busy

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._items or self._stopping)
                if not self._items:
                    return
                item = self._items.popleft().item
                self._busy = True
            try:
                self._handler.handle(item)
            except Exception as exc:
                self.failed += 1
                if self.failed % 100 == 1:
                    log.error("output %s failed (%d so far): %s", self.name, self.failed, exc)
            else:
                self.delivered += 1
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def drain(self, timeout: float) -> bool:
        """Waits until everything queued was handled; False when ``timeout`` ran out first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._items and not self._busy, max(0.0, deadline - time.monotonic())
            )

    def close(self, deadline: float | None = None) -> None:
        """Handles what is queued for up to ``drain_timeout`` seconds or until ``deadline`` (a
        ``time.monotonic()`` value), whichever comes first, drops the rest (counted), stops the thread
        and closes the handler. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        timeout = self._drain_timeout
        if deadline is not None:
            timeout = min(timeout, max(0.0, deadline - time.monotonic()))
        self.drain(timeout)
        with self._cond:
            self.dropped += len(self._items)
            self._items.clear()
            self._stopping = True
            self._cond.notify_all()
        # the item in hand is finished (a frame of a clip, one request): the handler closes after it
        self._thread.join(max(IN_HAND_S, timeout))
        if self._thread.is_alive():
            log.error("output %s did not stop within %.1f s", self.name, max(IN_HAND_S, timeout))
            return
        self._handler.close()

    def stats(self) -> dict[str, Any]:
        with self._cond:
            backlog = len(self._items) + self._busy
        extra = self._handler.stats() if hasattr(self._handler, "stats") else {}
        return {
            **extra,
            "submitted": self.submitted,
            "delivered": self.delivered,
            "failed": self.failed,
            "dropped": self.dropped,
            "backlog": backlog,
            "backlog_peak": self.peak,
        }
