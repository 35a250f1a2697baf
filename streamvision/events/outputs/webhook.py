"""Events to an HTTP endpoint, at least once: POSTed as JSON from a spool on disk, oldest first.

The calling thread only writes each event into the spool (a small file); a sender thread of its own
POSTs the oldest and deletes it once the receiver answers 2xx. While the receiver is down the sender
retries with exponential backoff and the spool grows (up to ``max_spool``); a restart of streamvision
continues with what the last run left. A receiver sees each event at least once and can drop repeats
by ``id`` (also sent as the ``Idempotency-Key`` header).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Literal

import httpx

from streamvision.errors import SinkError
from streamvision.events.config import WebhookOutput
from streamvision.events.event import Event
from streamvision.events.outputs.spool import Spool
from streamvision.redact import redact_url
from streamvision.sources.reconnect import Backoff

log = logging.getLogger(__name__)

RETRYABLE = frozenset({408, 425, 429})
"""4xx answers worth retrying; any other 4xx means the receiver refuses the event for good."""


class WebhookChannel:
    """POSTs every submitted event to ``config.url``.

    Args:
        config: the ``webhook`` output settings.
        name: its name in the summary and metrics.

    Raises:
        SinkError: the spool folder cannot be used.
    """

    def __init__(self, config: WebhookOutput, name: str = "webhook") -> None:
        self.name = name
        self._config = config
        self.spool = Spool(config.spool, config.max_spool)
        self._shown_url = redact_url(config.url)  # for logs: no credentials
        self._client = httpx.Client(
            timeout=config.timeout, headers={"Content-Type": "application/json", **config.headers}
        )
        self._backoff = Backoff(config.backoff_initial, config.backoff_max, jitter=0.2)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self.submitted = self.delivered = self.retries = self.rejected = self.failed = 0
        self._thread = threading.Thread(target=self._run, name=f"sv-out-{name}", daemon=True)
        self._thread.start()

    def submit(self, event: Event) -> None:
        """Spools ``event`` (a small file write on the caller's thread) and wakes the sender. An event
        the spool cannot take (disk full, folder gone) is logged and counted as failed, never raised:
        the pipeline goes on."""
        self.submitted += 1
        try:
            self.spool.put(event.to_record())
        except SinkError as exc:
            self.failed += 1
            if self.failed % 100 == 1:
                log.error("webhook: event %s lost (%d so far): %s", event.id, self.failed, exc)
            return
        self._wake.set()

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            self._wake.clear()
            item = self.spool.peek()
            if item is None:
                with self._idle:
                    self._idle.notify_all()
                self._wake.wait(0.5)
                continue
            seq, body = item
            outcome = self._post(body)
            if outcome == "retry":
                self.retries += 1
                self._stop.wait(self._backoff.delay(attempt))
                attempt += 1
                continue
            attempt = 0
            if outcome == "ok":
                self.spool.remove(seq)
                self.delivered += 1
            else:
                self.spool.set_aside(seq)
                self.rejected += 1

    def _post(self, body: bytes) -> Literal["ok", "retry", "rejected"]:
        try:
            event_id = _event_id(body)
            response = self._client.post(
                self._config.url, content=body, headers={"Idempotency-Key": event_id}
            )
        except httpx.HTTPError as exc:
            log.info("webhook %s: %s; retrying", self._shown_url, redact_url(str(exc)))
            return "retry"
        if response.is_success:
            return "ok"
        if 400 <= response.status_code < 500 and response.status_code not in RETRYABLE:
            log.error("webhook %s refused event %s: HTTP %d", self._shown_url, event_id, response.status_code)
            return "rejected"
        log.info("webhook %s: HTTP %d; retrying", self._shown_url, response.status_code)
        return "retry"

    def close(self) -> None:
        """Keeps delivering for up to ``drain_timeout`` seconds, then stops; what is left stays in the
        spool for the next run. Safe to call twice."""
        deadline = time.monotonic() + self._config.drain_timeout
        with self._idle:
            while len(self.spool) and time.monotonic() < deadline and self._thread.is_alive():
                self._wake.set()
                self._idle.wait(min(0.1, max(0.0, deadline - time.monotonic())))
        self._stop.set()
        self._wake.set()
        self._thread.join(self._config.timeout + 1.0)
        self._client.close()
        self.spool.close()
        if len(self.spool):
            log.warning("webhook: %d events left in %s for the next run", len(self.spool), self.spool.folder)

    def stats(self) -> dict[str, Any]:
        return {
            "submitted": self.submitted,
            "delivered": self.delivered,
            "retries": self.retries,
            "rejected": self.rejected,
            "failed": self.failed,
            "dropped": self.spool.dropped,
            "backlog": len(self.spool),
            "backlog_peak": self.spool.peak,
        }


def _event_id(body: bytes) -> str:
    """The ``id`` of a spooled JSON event, without parsing all of it."""
    marker = b'"id":"'
    start = body.find(marker)
    if start < 0:
        return ""
    start += len(marker)
    return body[start : body.find(b'"', start)].decode(errors="replace")
