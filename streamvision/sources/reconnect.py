"""Keeps a live source running: it goes offline on a failure or stall and is reopened with backoff.

:class:`ReconnectingSource` wraps any live source given as a function that opens it. A failed read,
a stall (no frame within the source's stall timeout) or the end of the stream take it offline (a
stream that has an end, as a finished HLS playlist, ends the run instead); it
then reopens the source after exponentially growing, jittered waits until it is back or the retries
run out. Every change is reported as a :class:`SourceStatus` to a callback.

Every open runs on a thread of its own: FFmpeg blocks in C until it connects or its open timeout ends
it, deaf to the stop signal (and, on the main thread, to Ctrl-C), so the caller waits for it ready to
leave when asked to stop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from streamvision.backoff import Backoff
from streamvision.errors import SourceError
from streamvision.redact import redact_url
from streamvision.sources.base import PendingImage, Source
from streamvision.status import SourceStatus, StatusCallback, StatusKind

if TYPE_CHECKING:
    from streamvision.config import ReconnectConfig

log = logging.getLogger(__name__)

OPEN_POLL_S = 0.05
"""How often a wait for an opening source looks at the stop signal."""


class ReconnectingSource:
    """A live source that survives outages.

    Args:
        open_source: opens the underlying source; raises :class:`SourceError` when it cannot.
        source_id: the id on every frame and status.
        policy: backoff and retry limit (``max_retries`` None: forever; 0: never).
        on_status: called with every :class:`SourceStatus`, from the thread that calls :meth:`read`
            (or the constructor, for the first connection). It must return quickly.
        stop: the owner's stop signal: it ends a wait between retries or for a connection early, and
            :meth:`read` then returns None. An open left waiting goes on on its own thread until its
            timeout ends it, and what it opens is closed.

    Raises:
        SourceError: the first connection fails and retries are off.
    """

    live = True
    total_frames: int | None = None

    def __init__(
        self,
        open_source: Callable[[], Source],
        source_id: str,
        policy: ReconnectConfig,
        on_status: StatusCallback | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.source_id = source_id
        self.reconnects = 0
        self._open = open_source
        self._max_retries = policy.max_retries
        self._backoff = Backoff(policy.initial, policy.max, policy.jitter)
        self._on_status = on_status
        self._stop = stop or threading.Event()
        self._closed_errors = 0
        self._retries = 0
        self._last_reason = "offline"
        self._closed = False
        self._offline_since: float | None = None
        self._inner: Source | None = None
        self.rate: Fraction | None = None
        try:
            self._inner = self._open_unless_stopped()
        except SourceError as exc:
            if self._max_retries == 0:
                raise
            self._go_offline(str(exc))
        else:
            if self._inner is not None:
                self.rate = self._inner.rate
                self._emit("source_online", "connected")

    @property
    def errors(self) -> int:
        """Frames that failed to decode, over every connection so far."""
        return self._closed_errors + (self._inner.errors if self._inner is not None else 0)

    @property
    def online(self) -> bool:
        return self._inner is not None

    def read(self) -> tuple[np.ndarray | PendingImage, float | None] | None:
        """Returns the next frame, reconnecting as often as the policy allows; None once stopped.

        Raises:
            SourceError: the source is offline and the retries ran out (or are off).
        """
        while not self._stop.is_set() and not self._closed:
            inner = self._inner or self._reconnect()
            if inner is None:
                return None
            try:
                item = inner.read()
            except SourceError as exc:
                reason = str(exc)
            else:
                if item is not None:
                    self._retries = 0
                    return item
                if getattr(inner, "ends", False):
                    log.info("%s: the stream reached its end", self.source_id)
                    return None
                reason = "the stream ended"
            self._disconnect()
            self._go_offline(reason)
        return None

    def close(self) -> None:
        """Closes the current connection, if any; :meth:`read` returns None from then on."""
        self._closed = True
        self._disconnect()

    def _reconnect(self) -> Source | None:
        """Reopens the source with backoff; None when stopped first.

        Retries count until a frame arrives, so a source that opens but fails at once (a camera in a
        reboot loop) still backs off and runs out of retries.
        """
        reason = self._last_reason
        while True:
            retries = self._retries
            if self._max_retries is not None and retries >= self._max_retries:
                tried = f" after {retries} retr{'y' if retries == 1 else 'ies'}" if retries else ""
                raise SourceError(f"{self.source_id}: offline{tried}: {reason}")
            if self._stop.wait(self._backoff.delay(retries)):
                return None
            self._retries += 1
            try:
                inner = self._open_unless_stopped()
            except SourceError as exc:
                reason = str(exc)
                log.info("%s: retry %d failed: %s", self.source_id, self._retries, redact_url(reason))
                continue
            if inner is None:
                return None
            if self._stop.is_set():
                inner.close()
                return None
            self._inner = inner
            self.rate = self.rate or inner.rate
            self.reconnects += 1
            self._emit("source_online", "reconnected")
            return inner

    def _open_unless_stopped(self) -> Source | None:
        """Opens the source on a thread of its own and waits for it; None when stopped first.

        Raises:
            SourceError: the open failed (anything else the opener raises passes through too).
            KeyboardInterrupt: Ctrl-C while waiting on the main thread; the open is left to finish
                and close on its own.
        """
        return _Opening(self._open, f"sv-open-{self.source_id}").wait(self._stop)

    def _disconnect(self) -> None:
        inner, self._inner = self._inner, None
        if inner is None:
            return
        self._closed_errors += inner.errors
        try:
            inner.close()
        except Exception as exc:  # a broken connection may fail to close; it is gone either way
            log.debug("%s: close failed: %s", self.source_id, exc)

    def _go_offline(self, reason: str) -> None:
        self._last_reason = reason
        log.warning("%s: offline: %s", self.source_id, redact_url(reason))
        self._offline_since = self._emit("source_offline", reason)

    def _emit(self, kind: StatusKind, reason: str) -> float:
        """Reports a status change; returns its monotonic time."""
        now = time.monotonic()
        offline_s = None
        if kind == "source_online" and self._offline_since is not None:
            offline_s = now - self._offline_since
            self._offline_since = None
            log.warning("%s: back online after %.1f s", self.source_id, offline_s)
        status = SourceStatus(
            kind, self.source_id, redact_url(reason), self.reconnects, offline_s, now, time.time()
        )
        if self._on_status is not None:
            self._on_status(status)
        return now


class _Opening:
    """One call of an opener on a daemon thread, which the caller can stop waiting for.

    A source that opens after the caller left is closed on that thread.
    """

    def __init__(self, open_source: Callable[[], Source], name: str) -> None:
        self._open = open_source
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._abandoned = False
        self._source: Source | None = None
        self._error: BaseException | None = None
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def wait(self, stop: threading.Event) -> Source | None:
        """The opened source, or None once ``stop`` is set before the open ends.

        Raises:
            BaseException: what the opener raised; KeyboardInterrupt on Ctrl-C while waiting.
        """
        try:
            while not self._done.wait(OPEN_POLL_S):
                if stop.is_set() and self._abandon():
                    return None
        except BaseException:
            if not self._abandon() and self._source is not None:
                _close_quietly(self._source)
            raise
        if self._error is not None:
            raise self._error
        return self._source

    def _abandon(self) -> bool:
        """Leaves the open to its thread; False when it already finished."""
        with self._lock:
            self._abandoned = not self._done.is_set()
            return self._abandoned

    def _run(self) -> None:
        source: Source | None = None
        error: BaseException | None = None
        try:
            source = self._open()
        except BaseException as exc:  # handed to the waiting caller
            error = exc
        with self._lock:
            if not self._abandoned:
                self._source, self._error = source, error
                self._done.set()
                return
        if source is not None:
            _close_quietly(source)
        elif error is not None and not isinstance(error, SourceError):
            log.warning("an abandoned open failed: %r", error)


def _close_quietly(source: Source) -> None:
    try:
        source.close()
    except Exception as exc:  # nobody is left to tell
        log.debug("%s: close failed: %s", source.source_id, exc)
