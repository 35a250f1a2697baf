"""The preview server under many or slow clients: its threads stay bounded and it keeps answering."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np

from streamvision.frame import Frame
from streamvision.sinks.preview import BOUNDARY, PreviewSink


@contextmanager
def preview(**limits: Any) -> Iterator[PreviewSink]:
    sink = PreviewSink("127.0.0.1", 0, None, lambda: {"source": "test", "frames_out": 7}, **limits)
    try:
        yield sink
    finally:
        sink.close()


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def connect(port: int) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    client.settimeout(10)
    return client


def test_idle_connections_take_no_thread_and_the_page_still_answers() -> None:
    before = threading.active_count()
    with preview() as sink, ExitStack() as idle:
        for _ in range(200):
            idle.enter_context(connect(sink.port))
        # accepted in order: once this is answered, the server has seen every idle connection
        status, body = get(f"{sink.url}stats.json")
        assert status == 200 and json.loads(body)["frames_out"] == 7
        assert threading.active_count() - before < 40
        status, body = get(sink.url)
        assert status == 200 and b"<html" in body.lower()


def test_a_client_that_sends_no_request_is_disconnected() -> None:
    with preview(request_timeout=0.5) as sink, connect(sink.port) as silent:
        assert silent.recv(1) == b""  # closed (a 10 s socket timeout raises instead)


def test_past_the_connection_cap_requests_get_503_until_a_slot_frees() -> None:
    with preview(max_connections=2) as sink, ExitStack() as slow:
        clients = []
        for _ in range(2):
            client = slow.enter_context(connect(sink.port))
            client.sendall(b"GET /stats.json HTTP/1.0\r\n")  # headers never finished: holds a slot
            clients.append(client)
        time.sleep(0.5)  # both requests reach their threads
        status, body = get(f"{sink.url}stats.json")
        assert status == 503 and b"too many connections" in body
        clients[0].close()
        deadline = time.monotonic() + 10
        while (status := get(f"{sink.url}stats.json")[0]) == 503 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status == 200


def test_a_stream_outlives_the_request_timeout_while_it_is_read() -> None:
    frame = Frame(np.full((48, 64, 3), 128, np.uint8), "test", 0, None, 0.0)
    with preview(request_timeout=0.5, max_fps=100) as sink, connect(sink.port) as viewer:
        viewer.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
        received, late = b"", b""
        started = time.monotonic()
        while time.monotonic() - started < 3.0:
            sink.write(frame, None)
            chunk = viewer.recv(65536)
            assert chunk, "the stream was closed"
            received += chunk
            if time.monotonic() - started > 2.0:  # four request timeouts on
                late += chunk
            time.sleep(0.05)
        assert received.startswith(b"HTTP/1.0 200") and f"--{BOUNDARY}".encode() in late


def test_close_ends_waiting_and_served_connections() -> None:
    with ExitStack() as clients:
        sink = PreviewSink("127.0.0.1", 0, None, dict)
        # more than are kept waiting: the longest waiting are closed at once
        waiting = [clients.enter_context(connect(sink.port)) for _ in range(300)]
        served = clients.enter_context(connect(sink.port))
        served.sendall(b"GET / HTTP/1.0\r\n")  # its thread waits for the rest of the headers
        time.sleep(0.5)
        closing = threading.Thread(target=sink.close, daemon=True)
        closing.start()
        closing.join(10)
        assert not closing.is_alive(), "close() waits for the connections"
        for client in [waiting[0], *waiting[-5:], served]:
            assert client.recv(65536) == b""
