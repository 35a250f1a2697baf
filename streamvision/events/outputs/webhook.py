"""Events to an HTTP endpoint, at least once: POSTed as JSON from a spool on disk, oldest first.

The calling thread only writes each event into the spool (a small file); a sender thread of its own
POSTs the oldest and deletes it once the receiver answers 2xx. While the receiver is down the sender
retries with exponential backoff and the spool grows (up to ``max_spool``); a restart of streamvision
continues with what the last run left. A receiver sees each event at least once and can drop repeats
by ``id`` (also sent as the ``Idempotency-Key`` header).

An outage (no answer, or a 5xx/408/425/429 answer) is logged at WARNING when it starts and when it
ends, never once per retry. With ``give_up_after`` set, an outage that long ends delivery for the run:
what waits is set aside in ``<spool>/failed/`` and counted as failed, and so is every later event.

Credentials in the URL (``user:password@``, query values) and in auth headers are masked in this
module's logs and in httpx's and httpcore's own (their DEBUG and INFO lines name URLs and headers).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import httpx

from streamvision.backoff import Backoff
from streamvision.errors import SinkError
from streamvision.events.config import WebhookOutput
from streamvision.events.event import Event
from streamvision.events.outputs.spool import Spool
from streamvision.redact import redact_url

log = logging.getLogger(__name__)

RETRYABLE = frozenset({408, 425, 429})
"""4xx answers worth retrying; any other 4xx means the receiver refuses the event for good."""

HTTP_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)
"""The loggers httpx and httpcore write to. A logger's filters only see records logged on that very
logger (not those of its children), so each one gets the redacting filter."""

MASK = "***"

Outcome = Literal["ok", "retry", "rejected", "failed"]


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
        secrets = secrets_of(config)
        redact_http_logs(secrets)
        self._secrets = secrets
        self._shown_url = redact_secrets(config.url, secrets)  # for logs: no credentials
        self._client = httpx.Client(
            timeout=config.timeout, headers={"Content-Type": "application/json", **config.headers}
        )
        self._backoff = Backoff(config.backoff_initial, config.backoff_max, jitter=0.2)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._lock = threading.Lock()  # counters and the give-up flag, changed from both threads
        # Held while the sender changes the spool; close() takes it to cut off a sender that is still
        # waiting for an answer, which then leaves the spool alone.
        self._guard = threading.Lock()
        self._detached = False
        self._posting = False
        self._outage: _Outage | None = None
        self._closed = False
        self.gave_up = False
        self.last_error: str | None = None
        self.submitted = self.delivered = self.retries = self.rejected = self.failed = 0
        self._thread = threading.Thread(target=self._run, name=f"sv-out-{name}", daemon=True)
        self._thread.start()

    def submit(self, event: Event) -> None:
        """Spools ``event`` (a small file write on the caller's thread) and wakes the sender. An event
        the spool cannot take (disk full, folder gone), or that comes after the sender gave up, is
        counted as failed (and logged), never raised: the pipeline goes on."""
        with self._lock:
            self.submitted += 1
            if self.gave_up:
                self.failed += 1
                return
            try:
                self.spool.put(event.to_record())
            except SinkError as exc:
                self.failed += 1
                if self.failed % 100 == 1:
                    log.error("webhook: event %s lost (%d so far): %s", event.id, self.failed, exc)
                return
        self._wake.set()

    def _run(self) -> None:
        try:
            while not self._stop.is_set() and not self.gave_up:
                self._wake.clear()
                if not self._deliver_oldest():
                    with self._idle:
                        self._idle.notify_all()
                    self._wake.wait(0.5)
        except Exception as exc:
            # Not a network failure (those are retried): the spool broke, or a bug. Stop delivering for
            # this run, loudly, rather than let the thread die unseen.
            log.exception("webhook %s: the sender failed", self._shown_url)
            self._give_up(_describe(exc, self._secrets))
        finally:
            self._client.close()
            with self._idle:
                self._idle.notify_all()

    def _deliver_oldest(self) -> bool:
        """POSTs the oldest spooled event and settles it; False when the spool is empty."""
        with self._guard:
            if self._detached:
                return False
            item = self.spool.peek()
        if item is None:
            return False
        seq, body = item
        self._posting = True
        try:
            outcome, detail = self._post(body)
        finally:
            self._posting = False
        with self._guard:
            if self._detached:  # close() stopped waiting for this answer: the event stays in the spool
                return True
            self._settle(seq, outcome, detail)
        if outcome == "retry":
            expired = self._outage_expired()
            if expired is None:
                self._wait_to_retry()
            else:
                self._give_up(f"unreachable for {expired:.1f} s ({detail})")
        return True

    def _post(self, body: bytes) -> tuple[Outcome, str]:
        """POSTs one event; never raises. Returns the outcome and, for a failure, what went wrong."""
        event_id = _event_id(body)
        try:
            response = self._client.post(
                self._config.url, content=body, headers={"Idempotency-Key": event_id}
            )
        except httpx.HTTPError as exc:
            return "retry", _describe(exc, self._secrets)
        except Exception as exc:
            # Not a network failure (an unusable URL that got past the config check, a bug): retrying
            # would fail the same way, so this event fails and the sender goes on with the next.
            return "failed", _describe(exc, self._secrets)
        if response.is_success:
            return "ok", ""
        if 400 <= response.status_code < 500 and response.status_code not in RETRYABLE:
            log.error("webhook %s refused event %s: HTTP %d", self._shown_url, event_id, response.status_code)
            return "rejected", f"HTTP {response.status_code}"
        return "retry", f"HTTP {response.status_code}"

    def _settle(self, seq: int, outcome: Outcome, detail: str) -> None:
        """Updates the spool, the counters and the outage state after one attempt (under the guard).

        Raises:
            OSError: the spool folder broke (the sender then gives up).
        """
        if outcome == "retry":
            with self._lock:
                self.retries += 1
                self.last_error = detail
            self._note_outage(detail)
            return
        if outcome in ("ok", "rejected"):
            self._end_outage()  # the receiver answered
        if outcome == "ok":
            self.spool.remove(seq)
            with self._lock:
                self.delivered += 1
            return
        self.spool.set_aside(seq, "rejected" if outcome == "rejected" else "failed")
        with self._lock:
            self.last_error = detail
            if outcome == "rejected":
                self.rejected += 1
                return
            self.failed += 1
            failed = self.failed
        if failed % 100 == 1:
            log.error(
                "webhook %s: event failed (%d so far; set aside in %s): %s",
                self._shown_url,
                failed,
                self.spool.folder / "failed",
                detail,
            )

    def _note_outage(self, reason: str) -> None:
        """Logs the start of an outage once, with the retry schedule."""
        if self._outage is None:
            self._outage = _Outage(time.monotonic())
            give_up = self._config.give_up_after
            log.warning(
                "webhook %s unreachable (%s): retrying every %s-%s s%s",
                self._shown_url,
                reason,
                f"{self._config.backoff_initial:g}",
                f"{self._config.backoff_max:g}",
                "" if give_up is None else f", giving up after {give_up:g} s",
            )
        else:
            log.debug("webhook %s: still unreachable (%s)", self._shown_url, reason)
        self._outage.attempts += 1

    def _outage_expired(self) -> float | None:
        """How long the outage lasted once that reached ``give_up_after``; None before (or without)."""
        give_up = self._config.give_up_after
        if self._outage is None or give_up is None:
            return None
        lasted = time.monotonic() - self._outage.started
        return lasted if lasted >= give_up else None

    def _end_outage(self) -> None:
        if self._outage is None:
            return
        log.warning(
            "webhook %s is back after %.1f s (%d retries)",
            self._shown_url,
            time.monotonic() - self._outage.started,
            self._outage.attempts,
        )
        self._outage = None

    def _wait_to_retry(self) -> None:
        outage = self._outage
        if outage is None:
            return
        delay = self._backoff.delay(outage.attempts - 1)
        give_up = self._config.give_up_after
        if give_up is not None:  # the last try comes when the outage reaches give_up_after
            delay = min(delay, max(0.0, outage.started + give_up - time.monotonic()))
        self._stop.wait(delay)

    def _give_up(self, reason: str) -> None:
        """Ends delivery for this run: what waits in the spool is set aside as failed, later events
        count as failed. Logs one ERROR."""
        with self._lock:
            if self.gave_up:
                return
            self.gave_up = True
            self.last_error = reason
        moved = 0
        try:
            while True:
                with self._guard:
                    item = None if self._detached else self.spool.peek()
                    if item is None:
                        break
                    self.spool.set_aside(item[0], "failed")
                moved += 1
        except Exception as exc:  # a broken spool: what is left stays in it
            log.error("webhook %s: cannot set events aside: %s", self._shown_url, exc)
        with self._lock:
            self.failed += moved
        log.error(
            "webhook %s: gave up (%s): %d waiting events set aside in %s; later events count as failed",
            self._shown_url,
            reason,
            moved,
            self.spool.folder / "failed",
        )

    def close(self, deadline: float | None = None) -> None:
        """Keeps delivering for ``drain_timeout`` seconds at most, and not past ``deadline`` (a
        ``time.monotonic()`` value) when given, then stops. Returns by then even while a request waits
        for an answer (the request ``timeout`` may be longer): that event, and everything else left,
        stays in the spool for the next run. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        deadline = _earliest(time.monotonic() + self._config.drain_timeout, deadline)
        with self._idle:
            while len(self.spool) and time.monotonic() < deadline and self._thread.is_alive():
                self._wake.set()
                self._idle.wait(min(0.1, max(0.0, deadline - time.monotonic())))
        self._stop.set()
        self._wake.set()
        # A sender between requests stops at once; one waiting for an answer is left behind (daemon).
        self._thread.join(max(0.05, deadline - time.monotonic()))
        with self._guard:
            self._detached = True
        if self._thread.is_alive() and self._posting:
            log.warning(
                "webhook %s: no answer by the end of the run; that event stays in the spool",
                self._shown_url,
            )
        self.spool.close()
        if len(self.spool):
            log.warning("webhook: %d events left in %s for the next run", len(self.spool), self.spool.folder)

    def stats(self) -> dict[str, Any]:
        outage = self._outage
        with self._lock:
            return {
                "submitted": self.submitted,
                "delivered": self.delivered,
                "retries": self.retries,
                "rejected": self.rejected,
                "failed": self.failed,
                "dropped": self.spool.dropped,
                "backlog": len(self.spool),
                "backlog_peak": self.spool.peak,
                "unreachable_s": 0.0 if outage is None else round(time.monotonic() - outage.started, 1),
                "gave_up": self.gave_up,
                "last_error": self.last_error,
            }


def _earliest(own: float, deadline: float | None) -> float:
    """The output's own end of closing, or the shared ``deadline`` when that comes first."""
    return own if deadline is None else min(own, deadline)


@dataclass
class _Outage:
    started: float
    """``time.monotonic()`` of the first failed attempt."""
    attempts: int = 0


def _event_id(body: bytes) -> str:
    """The ``id`` of a spooled JSON event, without parsing all of it."""
    marker = b'"id":"'
    start = body.find(marker)
    if start < 0:
        return ""
    start += len(marker)
    return body[start : body.find(b'"', start)].decode(errors="replace")


def _describe(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """``ConnectError: [Errno 111] Connection refused``: the exception's type and text, credentials
    masked."""
    text = redact_secrets(str(exc), secrets)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_QUERY_VALUE = re.compile(r"([?&][^=&#]+=)[^&#]*")
_SENSITIVE = r"[\w-]*(?:auth|token|key|secret|passw|signature|cookie|session|credential)[\w-]*"
_SENSITIVE_NAME = re.compile(_SENSITIVE, re.IGNORECASE)
# httpcore's form: (b'Authorization', b'Bearer abc')
_HEADER_PAIR = re.compile(rf"(\(b?(['\"]){_SENSITIVE}\2,\s*b?(['\"]))[^'\"]*", re.IGNORECASE)
# Text form: Authorization: Bearer abc, api_key=abc
_HEADER_TEXT = re.compile(
    rf"(\b{_SENSITIVE}\s*[:=]\s*)(?:(?:Bearer|Basic|Digest|Token)\s+)?[^\s,;'\"&)]+", re.IGNORECASE
)


def redact_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with credentials masked: the user and password of URLs (:func:`redact_url`), every query
    value of a URL, the value of auth-like headers and parameters, and each of ``secrets`` verbatim.

    Example:
        >>> redact_secrets("POST https://u:pw@h/x?token=abc&a=1 (b'Authorization', b'Bearer t0k')")
        "POST https://***@h/x?token=***&a=*** (b'Authorization', b'***')"
    """
    text = redact_url(text, MASK)
    text = _URL.sub(lambda url: _QUERY_VALUE.sub(rf"\g<1>{MASK}", url.group(0)), text)
    text = _HEADER_PAIR.sub(rf"\g<1>{MASK}", text)
    text = _HEADER_TEXT.sub(rf"\g<1>{MASK}", text)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def secrets_of(config: WebhookOutput) -> tuple[str, ...]:
    """What of ``config`` must never be logged, each as written and percent-encoded: the URL's password
    (or its user when it has none), and the values of auth-like query parameters and headers. Longest
    first, so that a secret containing another is masked whole. (Every query value of a URL is masked
    anyway, by :func:`redact_secrets`.)"""
    found = {value for name, value in config.headers.items() if _SENSITIVE_NAME.fullmatch(name)}
    try:
        url = httpx.URL(config.url)
    except httpx.InvalidURL:  # the config check keeps such URLs out; sending reports them per event
        url = None
    if url is not None:
        # The user is a secret only without a password (https://TOKEN@host); as a name it is a word.
        found.add(url.password or url.username)
        found |= {value for name, value in url.params.multi_items() if _SENSITIVE_NAME.fullmatch(name)}
    # Short values ("1", "json") would mask unrelated text and protect nothing.
    found = {secret for secret in found if len(secret) >= 4}
    found |= {quote(secret, safe="") for secret in found}
    return tuple(sorted(found, key=len, reverse=True))


class _RedactingFilter(logging.Filter):
    """Rewrites each record's message with credentials masked (see :func:`redact_secrets`)."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            merged = set(self._secrets) | set(secrets)
            self._secrets = tuple(sorted(merged, key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: keep its text, never its arguments
            message = str(record.msg)
        record.msg = redact_secrets(message, self._secrets)
        record.args = None
        return True


_HTTP_LOG_FILTER = _RedactingFilter()


def redact_http_logs(secrets: Iterable[str] = ()) -> None:
    """Masks credentials (and ``secrets`` verbatim) in every record httpx and httpcore log, e.g. the
    URL of each request at INFO and headers at DEBUG. Safe to call again: ``secrets`` add up."""
    _HTTP_LOG_FILTER.add(secrets)
    for name in HTTP_LOGGERS:
        logging.getLogger(name).addFilter(_HTTP_LOG_FILTER)  # a no-op when it is there already
