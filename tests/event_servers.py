"""Real servers for the event output tests: a mosquitto broker and an HTTP receiver, both on loopback."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

needs_mosquitto = pytest.mark.skipif(
    shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
    reason="needs Debian's mosquitto (.ci/run installs it)",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Any, timeout: float = 20.0, step: float = 0.02) -> bool:
    """Polls ``condition()`` until it is true or ``timeout`` seconds passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return bool(condition())
        time.sleep(step)
    return True


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[int]:
    """A mosquitto broker of its own on a free loopback port (anonymous, no persistence); yields the port."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    log = (tmp_path / "mosquitto.log").open("w")
    process = subprocess.Popen([binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)

    def accepting() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return process.poll() is not None

    try:
        assert wait_for(accepting, 10.0) and process.poll() is None, (tmp_path / "mosquitto.log").read_text()
        yield port
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


class Subscriber:
    """A paho client subscribed to ``topic``; keeps every message with its arrival time."""

    def __init__(self, port: int, topic: str = "streamvision/#") -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool, float]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        self._client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        assert self._subscribed.wait(10), "no SUBACK from the broker"

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload, bool(message.retain), time.time()))

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [payload for t, payload, _, _ in self.messages if t == topic]

    def events(self) -> list[tuple[str, dict[str, Any], float]]:
        """(topic, event, arrival time) of every message that is an event (not availability)."""
        with self._lock:
            return [
                (t, json.loads(p), at) for t, p, _, at in self.messages if not t.endswith("/availability")
            ]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class Receiver:
    """A webhook receiver on loopback that can be down (not listening) and brought up later.

    Every POSTed body is kept (repeats included); ``refuse`` lists event ids answered with 400;
    ``hang_up`` lists event ids whose first delivery is kept but never answered (the connection is
    dropped, as when a receiver crashes after storing an event); ``fail_with`` set to a status answers
    every request with it (nothing kept), as a receiver that is up but broken.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/hook"
        self.bodies: list[dict[str, Any]] = []
        self.refuse: set[str] = set()
        self.hang_up: set[str] = set()
        self.fail_with: int | None = None
        self.held = threading.Event()
        """Set while a request is being held (see ``release``)."""
        self.release = threading.Event()
        self.release.set()
        """Cleared: every request waits for it before it is answered (a receiver that hangs)."""
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if receiver.fail_with is not None:
                    self.send_response(receiver.fail_with)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if not receiver.release.is_set():
                    receiver.held.set()
                    receiver.release.wait(30)
                refused = body["id"] in receiver.refuse or self.headers.get("Idempotency-Key") != body["id"]
                if not refused:
                    with receiver._lock:
                        receiver.bodies.append(body)
                if body["id"] in receiver.hang_up:
                    receiver.hang_up.discard(body["id"])
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(HTTPStatus.BAD_REQUEST if refused else HTTPStatus.OK)
                self.send_header("Content-Length", "0")
                self.end_headers()

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.bodies)

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on a free port, down until the test calls ``start()``; stopped at teardown."""
    down = Receiver(free_port())
    try:
        yield down
    finally:
        down.stop()


class RawServer:
    """A TCP server on loopback that is no HTTP server: it accepts every connection, reads what comes
    and either never answers (``reply`` None: a receiver that hangs) or sends ``reply`` and hangs up
    (garbage instead of HTTP)."""

    def __init__(self, reply: bytes | None = None) -> None:
        self.reply = reply
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:  # closed by stop()
                return
            with self._lock:
                self.connections += 1
                self._open.append(connection)
            if self.reply is not None:
                connection.settimeout(5)
                with contextlib.suppress(OSError):
                    connection.recv(65536)
                    connection.sendall(self.reply)
                connection.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() in progress (Linux)
        self._listener.close()
        with self._lock:
            for connection in self._open:
                connection.close()
        self._thread.join(5)


@pytest.fixture
def silent_server() -> Iterator[RawServer]:
    """A server that accepts connections and never answers; closed at teardown."""
    server = RawServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def garbage_server() -> Iterator[RawServer]:
    """A server that answers every request with bytes that are not HTTP, then hangs up."""
    server = RawServer(b"this is not HTTP\r\n\r\n")
    try:
        yield server
    finally:
        server.stop()
