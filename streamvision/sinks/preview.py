"""A live preview over HTTP: an MJPEG stream, a page with the figures, JSON stats and Prometheus metrics.

Routes: ``/`` (the page), ``/stream.mjpg``, ``/frame.jpg`` (the latest frame), ``/stats.json``,
``/metrics`` (Prometheus text format). Bound to 127.0.0.1 unless told otherwise; with a token, every
route needs ``?token=...`` or ``Authorization: Bearer ...``.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from streamvision.errors import SinkError
from streamvision.frame import Detections, Frame
from streamvision.sinks.events import frame_event
from streamvision.sinks.prometheus import PrometheusExport

log = logging.getLogger(__name__)

BOUNDARY = "streamvision-frame"
LATEST_EVENTS = 10


class PreviewSink:
    """Publishes annotated frames (at most ``max_fps``) and run figures on a local HTTP server.

    Args:
        host: address to bind; 127.0.0.1 keeps it on this machine.
        port: TCP port; 0 picks a free one (see :attr:`port`).
        token: when set, required on every request.
        stats: returns the pipeline's current summary (FPS, drops, latency, ...).
        max_fps: JPEG encodes per second at most; frames in between are skipped.
        quality: JPEG quality.

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
    ) -> None:
        self._state = _PreviewState(stats, token)
        self._min_interval = 1.0 / max_fps
        self._quality = quality
        self._last_publish = 0.0
        try:
            self._server = ThreadingHTTPServer((host, port), _handler_for(self._state))
        except OSError as exc:
            raise SinkError(f"preview cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self._server.daemon_threads = True
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

    def close(self) -> None:
        """Ends open streams and stops the server. Safe to call twice."""
        self._state.close()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(2.0)


class _PreviewState:
    """What the HTTP threads read: the latest JPEG, recent results, the stats callback."""

    def __init__(self, stats: Callable[[], dict[str, Any]], token: str | None) -> None:
        self.stats = stats
        self.token = token
        self.metrics = PrometheusExport(stats)
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._sequence = 0
        self._closed = False
        self._in_view: Counter[str] = Counter()
        self._latest: deque[dict[str, Any]] = deque(maxlen=LATEST_EVENTS)

    def record(self, frame: Frame) -> None:
        self.metrics.observe_frame(frame)
        in_view: Counter[str] = Counter()
        for result in frame.results.values():
            if isinstance(result, Detections):
                in_view.update(str(label) for label in result.class_name)
        event = frame_event(frame)
        with self._cond:
            self._in_view = in_view
            if any(event["results"].values()):
                self._latest.appendleft(event)

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
        with self._cond:
            extra = {"in_view": dict(self._in_view), "latest_events": list(self._latest)}
        return {**self.stats(), **extra}

    def authorized(self, path: str, header: str | None) -> bool:
        if self.token is None:
            return True
        offered = parse_qs(urlsplit(path).query).get("token", [""])[0]
        if header and header.startswith("Bearer "):
            offered = header.removeprefix("Bearer ")
        return hmac.compare_digest(offered.encode(), self.token.encode())


def _handler_for(state: _PreviewState) -> type[BaseHTTPRequestHandler]:
    page = resources.files("streamvision.sinks").joinpath("preview_page.html").read_text()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug("preview: " + format, *args)

        def do_GET(self) -> None:
            if not state.authorized(self.path, self.headers.get("Authorization")):
                self.send_error(HTTPStatus.UNAUTHORIZED, "token required")
                return
            route = urlsplit(self.path).path
            query = f"?token={state.token}" if state.token else ""
            if route in ("/", "/index.html"):
                self._send(page.replace("{{QUERY}}", query).encode(), "text/html; charset=utf-8")
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
            else:
                self.send_error(HTTPStatus.NOT_FOUND)

        def _send(self, body: bytes, content_type: str) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

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
            except (BrokenPipeError, ConnectionResetError):
                pass  # the viewer went away

    return Handler
