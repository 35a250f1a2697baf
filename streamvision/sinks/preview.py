"""A live preview over HTTP: an MJPEG stream, a page with the figures, JSON stats and Prometheus metrics.

Routes: ``/`` (the page), ``/stream.mjpg``, ``/frame.jpg`` (the latest frame), ``/stats.json`` (the
run's figures, objects in view, zone and line counts, the latest rule and source status events),
``/metrics`` (Prometheus text format), ``/snapshots/<event id>.jpg`` (the JPEG a ``snapshot`` event
output wrote for that event). Bound to 127.0.0.1 unless told otherwise; with a token, every route needs
``?token=...`` or ``Authorization: Bearer ...``.

The server's threads are bounded: a connection gets a thread only once its request has arrived (the
ones still silent are watched together by one thread and closed after the request timeout), at most
``max_connections`` at a time; past that, requests are answered 503 at once.
"""

from __future__ import annotations

import contextlib
import hmac
import html
import json
import logging
import re
import selectors
import socket
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

import cv2
import numpy as np

from streamvision.errors import SinkError
from streamvision.events.engine import status_event
from streamvision.frame import Detections, Frame, ZoneCounts
from streamvision.sinks.prometheus import PrometheusExport

if TYPE_CHECKING:
    from streamvision.events.config import EventsConfig
    from streamvision.events.event import Event
    from streamvision.status import SourceStatus

log = logging.getLogger(__name__)

BOUNDARY = "streamvision-frame"
LATEST_EVENTS = 50
"""Rule and status events listed at most, newest first."""
SNAPSHOT_NAME = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,127}")
"""What a snapshot's name (an event id) may look like: no dots, no slashes."""
REQUEST_TIMEOUT_S = 10.0
"""Seconds a client has to send its request; also the longest any one read or write of a request may
block, so a viewer that takes nothing of the stream for this long is dropped."""
MAX_CONNECTIONS = 32
"""Requests served at once; an MJPEG viewer holds one for as long as it watches."""
MAX_SILENT = 256
"""Connections waiting for their request at once; past it, the longest waiting is closed."""
LISTEN_BACKLOG = 128

_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
    b"Retry-After: 1\r\nConnection: close\r\n\r\ntoo many connections\n"
)

_Request = socket.socket | tuple[bytes, socket.socket]


def snapshot_dirs(config: EventsConfig | None) -> tuple[Path, ...]:
    """The folders of the ``snapshot`` outputs of an ``events`` section (none without one)."""
    from streamvision.events.config import SnapshotOutput

    if config is None:
        return ()
    return tuple(output.dir for output in config.outputs if isinstance(output, SnapshotOutput))


class PreviewSink:
    """Publishes annotated frames (at most ``max_fps``) and run figures on a local HTTP server.

    It takes the pipeline's rule events inline (:meth:`write_event`, as the events sink hands them to
    the ``--events`` stream) and source status changes (:meth:`write_status`), and lists the latest on
    the page, with thumbnails from the snapshot folders it serves.

    Args:
        host: address to bind; 127.0.0.1 keeps it on this machine.
        port: TCP port; 0 picks a free one (see :attr:`port`).
        token: when set, required on every request.
        stats: returns the pipeline's current summary (FPS, drops, latency, ...).
        max_fps: JPEG encodes per second at most; frames in between are skipped.
        quality: JPEG quality.
        max_connections: requests served at once (MJPEG viewers included); more get a 503.
        request_timeout: seconds a connection may stay silent before its request, and the longest a
            read or write may block (a viewer that stops reading is dropped after it).
        snapshot_dirs: folders of the ``snapshot`` event outputs (see :func:`snapshot_dirs`): their
            ``<event id>.jpg`` files are served under ``/snapshots/``, nothing else in or out of them.

    Raises:
        SinkError: the address cannot be bound.
    """

    step_name = "preview"
    needs_annotation = True

    def __init__(
        self,
        host: str,
        port: int,
        token: str | None,
        stats: Callable[[], dict[str, Any]],
        max_fps: float = 15.0,
        quality: int = 80,
        *,
        max_connections: int = MAX_CONNECTIONS,
        request_timeout: float = REQUEST_TIMEOUT_S,
        snapshot_dirs: tuple[Path, ...] = (),
    ) -> None:
        self._state = _PreviewState(stats, token, snapshot_dirs)
        self._min_interval = 1.0 / max_fps
        self._quality = quality
        self._last_publish = 0.0
        handler = _handler_for(self._state, request_timeout)
        try:
            self._server = _PreviewServer((host, port), handler, max_connections, request_timeout)
        except OSError as exc:
            raise SinkError(f"preview cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        address = self._server.server_address
        self.host, self.port = str(address[0]), int(address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="sv-preview", daemon=True)
        self._thread.start()
        log.warning("preview at http://%s:%d/", self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def write(self, frame: Frame, annotated: np.ndarray | None) -> None:
        self._state.record(frame)
        now = time.monotonic()
        if now - self._last_publish < self._min_interval:
            return
        self._last_publish = now
        image = frame.image if annotated is None else annotated
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self._quality])
        if ok:
            self._state.publish(jpeg.tobytes())

    def write_event(self, event: Event) -> None:
        """Lists a rule's event (the events sink calls it inline, right after the frame's write)."""
        self._state.record_event(event.to_record())

    def write_status(self, status: SourceStatus) -> None:
        """Lists a source going offline or coming back, as the event outputs get it."""
        self._state.record_event(status_event(status).to_record())

    def close(self) -> None:
        """Ends open streams and stops the server. Safe to call twice."""
        self._state.close()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(2.0)


class _PreviewState:
    """What the HTTP threads read: the latest JPEG, the latest counts and events, the stats callback."""

    def __init__(
        self, stats: Callable[[], dict[str, Any]], token: str | None, snapshot_dirs: tuple[Path, ...] = ()
    ) -> None:
        self.stats = stats
        self.token = token
        self.metrics = PrometheusExport(stats)
        self._snapshot_dirs = snapshot_dirs
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._sequence = 0
        self._closed = False
        self._frame_size: tuple[int, int] | None = None
        self._in_view: Counter[str] = Counter()
        self._regions: list[dict[str, Any]] = []
        self._latest: deque[dict[str, Any]] = deque(maxlen=LATEST_EVENTS)
        self._events_seen = 0
        self._thumbnails: set[str] = set()  # listed events whose snapshot was found written
        self._thumbnails_lock = threading.Lock()

    def record(self, frame: Frame) -> None:
        self.metrics.observe_frame(frame)
        in_view: Counter[str] = Counter()
        regions: list[dict[str, Any]] = []
        for name, result in frame.results.items():
            if isinstance(result, Detections):
                in_view.update(str(label) for label in result.class_name)
            elif isinstance(result, ZoneCounts):
                regions.extend({**record, "stage": name} for record in result.to_records())
        height, width = frame.image.shape[:2]
        with self._cond:
            self._in_view = in_view
            self._regions = regions
            self._frame_size = (width, height)

    def record_event(self, record: dict[str, Any]) -> None:
        with self._cond:
            self._latest.appendleft(record)
            self._events_seen += 1

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """Width and height of the latest frame."""
        with self._cond:
            return self._frame_size

    def snapshot_file(self, name: str) -> Path | None:
        """The written snapshot ``<name>.jpg`` in one of the snapshot folders, or None when ``name`` is
        not an event id or there is no such file there (a link out of the folder does not count)."""
        if not SNAPSHOT_NAME.fullmatch(name):
            return None
        for folder in self._snapshot_dirs:
            try:
                root = folder.resolve()
                path = (root / f"{name}.jpg").resolve()
                if path.parent == root and path.is_file():
                    return path
            except OSError:
                continue
        return None

    def publish(self, jpeg: bytes) -> None:
        with self._cond:
            self._jpeg = jpeg
            self._sequence += 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def latest_jpeg(self) -> bytes | None:
        with self._cond:
            return self._jpeg

    def next_jpeg(self, after: int, timeout: float = 1.0) -> tuple[int, bytes | None]:
        """Waits for a frame newer than sequence number ``after``; (sequence, jpeg or None at close)."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._sequence > after, timeout)
            if self._closed:
                return self._sequence, None
            return self._sequence, self._jpeg

    @property
    def closed(self) -> bool:
        return self._closed

    def page_stats(self) -> dict[str, Any]:
        """The pipeline's figures, plus ``frame`` (its size), ``in_view`` (objects by label),
        ``regions`` (zone and line counts), ``events_seen`` and ``latest_events`` (newest first; an
        event whose snapshot is written has its URL, relative to the page, as ``thumbnail``)."""
        with self._cond:
            size = self._frame_size
            extra: dict[str, Any] = {
                "frame": None if size is None else {"width": size[0], "height": size[1]},
                "in_view": dict(self._in_view),
                "regions": list(self._regions),
                "events_seen": self._events_seen,
            }
            latest = list(self._latest)
        extra["latest_events"] = self._with_thumbnails(latest)
        return {**self.stats(), **extra}

    def _with_thumbnails(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``events`` with ``thumbnail`` added where the snapshot is written (on the snapshot output's
        own thread, so a moment after the event)."""
        with self._thumbnails_lock:
            written = self._thumbnails & {str(event["id"]) for event in events}
        for event in events:
            event_id = str(event["id"])
            if "snapshot" in event and event_id not in written and self.snapshot_file(event_id) is not None:
                written.add(event_id)
        with self._thumbnails_lock:
            self._thumbnails = written  # forgets the events no longer listed
        return [
            {**event, "thumbnail": f"snapshots/{event['id']}.jpg"} if event["id"] in written else event
            for event in events
        ]

    def page(self, template: str) -> str:
        """The page from its template, with the source's name, the token and the video's shape."""
        try:
            source = str(self.stats().get("source") or "streamvision")
        except Exception:  # the pipeline is not fully built yet: the page fills it in from stats.json
            source = "streamvision"
        size = self.frame_size
        query = f"?token={quote(self.token, safe='')}" if self.token else ""
        return (
            template.replace("{{SOURCE}}", html.escape(source))
            .replace("{{RATIO}}", "16 / 9" if size is None else f"{size[0]} / {size[1]}")
            .replace("{{QUERY_JSON}}", json.dumps(query))
            .replace("{{QUERY}}", html.escape(query))
        )

    def authorized(self, path: str, header: str | None) -> bool:
        if self.token is None:
            return True
        offered = parse_qs(urlsplit(path).query).get("token", [""])[0]
        if header and header.startswith("Bearer "):
            offered = header.removeprefix("Bearer ")
        return hmac.compare_digest(offered.encode(), self.token.encode())


class _PreviewServer(ThreadingHTTPServer):
    """A threading HTTP server with a bounded number of threads (see the module's docstring)."""

    daemon_threads = True
    block_on_close = False  # server_close() ends the open connections instead of waiting for them
    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        max_connections: int,
        request_timeout: float,
    ) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        self._active: set[socket.socket] = set()
        self._active_lock = threading.Lock()
        self._silent = _SilentConnections(self._request_arrived, request_timeout, MAX_SILENT)
        super().__init__(address, handler)
        self._silent.start()

    def process_request(self, request: _Request, client_address: Any) -> None:
        """Called for every accepted connection: it waits with the silent ones for its request."""
        self._silent.add(_connection(request), client_address)

    def _request_arrived(self, connection: socket.socket, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            _refuse(connection)
            return
        with self._active_lock:
            self._active.add(connection)
        try:
            super().process_request(connection, client_address)  # a thread for it
        except Exception:
            log.warning("preview: cannot serve a request", exc_info=True)
            self._release(connection)
            self.shutdown_request(connection)

    def process_request_thread(self, request: _Request, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(_connection(request))

    def _release(self, connection: socket.socket) -> None:
        with self._active_lock:
            self._active.discard(connection)
        self._slots.release()

    def handle_error(self, request: _Request, client_address: Any) -> None:
        log.debug("preview: a request from %s failed", client_address, exc_info=True)

    def server_close(self) -> None:
        super().server_close()
        self._silent.close()
        with self._active_lock:
            active = list(self._active)
        for connection in active:
            with contextlib.suppress(OSError):  # closed already
                connection.shutdown(socket.SHUT_RDWR)


class _SilentConnections:
    """Accepted connections that have not sent their request yet, watched by one thread.

    Each goes to ``arrived`` (on this thread) once it has data or hung up, and is closed when
    ``timeout`` passes first or when ``limit`` others are waiting (the longest waiting goes first).
    """

    def __init__(self, arrived: Callable[[socket.socket, Any], None], timeout: float, limit: int) -> None:
        self._arrived = arrived
        self._timeout = timeout
        self._limit = limit
        self._lock = threading.Lock()
        self._incoming: list[tuple[socket.socket, Any]] = []
        self._closed = False
        # all wait the same timeout, so insertion order is deadline order
        self._waiting: OrderedDict[socket.socket, tuple[float, Any]] = OrderedDict()
        self._selector = selectors.DefaultSelector()
        self._wake_reader, self._wake_writer = socket.socketpair()
        for end in (self._wake_reader, self._wake_writer):
            end.setblocking(False)
        self._selector.register(self._wake_reader, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, name="sv-preview-accept", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, connection: socket.socket, client_address: Any) -> None:
        """Watches ``connection`` from now on (closes it when already closed)."""
        with self._lock:
            closed = self._closed
            if not closed:
                self._incoming.append((connection, client_address))
        if closed:
            _close(connection)
        else:
            self._wake()

    def close(self) -> None:
        """Closes every waiting connection and ends the thread. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._thread.is_alive():
            self._wake()
            self._thread.join(2.0)
        else:
            self._close_all()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # a wake-up is pending already, or the thread is gone
            self._wake_writer.send(b"\0")

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    incoming, self._incoming = self._incoming, []
                    closed = self._closed
                for connection, client_address in incoming:
                    if closed:
                        _close(connection)
                    else:
                        self._watch(connection, client_address)
                if closed:
                    return
                now = time.monotonic()
                while self._waiting:
                    oldest = next(iter(self._waiting))
                    if self._waiting[oldest][0] > now:
                        break
                    self._drop(oldest)
                wait = next(iter(self._waiting.values()))[0] - now if self._waiting else None
                for key, _events in self._selector.select(wait):
                    if key.fileobj is self._wake_reader:
                        self._drain_wake()
                        continue
                    ready = key.fileobj
                    assert isinstance(ready, socket.socket)
                    self._selector.unregister(ready)
                    _, client_address = self._waiting.pop(ready)
                    self._arrived(ready, client_address)
        except Exception:
            log.exception("preview: the connection watcher failed")
        finally:
            self._close_all()

    def _watch(self, connection: socket.socket, client_address: Any) -> None:
        if len(self._waiting) >= self._limit:
            self._drop(next(iter(self._waiting)))
        self._selector.register(connection, selectors.EVENT_READ)
        self._waiting[connection] = (time.monotonic() + self._timeout, client_address)

    def _drop(self, connection: socket.socket) -> None:
        self._selector.unregister(connection)
        del self._waiting[connection]
        _close(connection)

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):  # nothing more to read
            while self._wake_reader.recv(4096):
                pass

    def _close_all(self) -> None:
        with self._lock:
            self._closed = True
            incoming, self._incoming = self._incoming, []
        for connection, _ in incoming:
            _close(connection)
        for connection in list(self._waiting):
            self._drop(connection)
        self._selector.close()
        self._wake_reader.close()
        self._wake_writer.close()


def _connection(request: _Request) -> socket.socket:
    return request if isinstance(request, socket.socket) else request[1]


def _refuse(connection: socket.socket) -> None:
    """Answers 503 without a thread and without blocking."""
    try:
        connection.setblocking(False)
        # read what came of the request: closing with unread data resets the connection, which
        # can lose the answer before the client reads it
        connection.recv(65536)
        connection.send(_BUSY)
    except OSError:
        pass  # the client is gone or its buffer is full: it gets the close alone
    _close(connection)


def _close(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.close()


def _handler_for(state: _PreviewState, request_timeout: float) -> type[BaseHTTPRequestHandler]:
    page = resources.files("streamvision.sinks").joinpath("preview_page.html").read_text()

    class Handler(BaseHTTPRequestHandler):
        timeout = request_timeout  # every blocking read and write of the connection

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("preview: " + format, *args)

        def do_GET(self) -> None:
            if not state.authorized(self.path, self.headers.get("Authorization")):
                self.send_error(HTTPStatus.UNAUTHORIZED, "token required")
                return
            route = urlsplit(self.path).path
            if route in ("/", "/index.html"):
                self._send(state.page(page).encode(), "text/html; charset=utf-8")
            elif route == "/stats.json":
                self._send(json.dumps(state.page_stats()).encode(), "application/json")
            elif route == "/metrics":
                body, content_type = state.metrics.render()
                self._send(body, content_type)
            elif route == "/frame.jpg":
                jpeg = state.latest_jpeg()
                if jpeg is None:
                    self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "no frame yet")
                else:
                    self._send(jpeg, "image/jpeg")
            elif route == "/stream.mjpg":
                self._stream()
            elif route.startswith("/snapshots/"):
                self._snapshot(route.removeprefix("/snapshots/"))
            else:
                self.send_error(HTTPStatus.NOT_FOUND)

        def _send(self, body: bytes, content_type: str, cache: str = "no-store") -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", cache)
            self.end_headers()
            self.wfile.write(body)

        def _snapshot(self, file_name: str) -> None:
            # the name as sent, never unquoted: %2e%2e%2f stays three invalid characters
            name, dot, extension = file_name.rpartition(".")
            if not dot or extension != "jpg" or not SNAPSHOT_NAME.fullmatch(name):
                self.send_error(HTTPStatus.BAD_REQUEST, "expected /snapshots/<event id>.jpg")
                return
            path = state.snapshot_file(name)
            try:
                body = None if path is None else path.read_bytes()
            except OSError:
                body = None
            if body is None:
                self.send_error(HTTPStatus.NOT_FOUND, "no such snapshot")
            else:
                self._send(body, "image/jpeg", "private, max-age=86400")  # an event's snapshot never changes

        def _stream(self) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            sequence = 0
            try:
                while not state.closed:
                    sequence, jpeg = state.next_jpeg(sequence)
                    if jpeg is None:
                        continue
                    header = (
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                    )
                    self.wfile.write(header.encode() + jpeg + b"\r\n")
            except OSError:
                pass  # the viewer went away, or took nothing for the request timeout

    return Handler
