"""Ctrl-C and stop requests while a network source opens, and Ctrl-C while the command line loads.

The server here accepts TCP connections and never answers, so FFmpeg's open blocks until its own
timeout (60 s): a stop has to end the wait long before that.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from streamvision.config import ReconnectConfig, SourceConfig
from streamvision.sources import open_source
from tests.conftest import CLI_ENV

OPEN_TIMEOUT = 60.0


class SilentServer:
    """Accepts connections on loopback and never answers; with ``reset_first``, the first connection
    is closed at once (its open fails quickly), the later ones stay silent."""

    def __init__(self, reset_first: bool = False) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/x"
        self._reset_first = reset_first
        self._held: list[socket.socket] = []
        self._accepted = threading.Condition()
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, name="silent-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._accepted:
                self.connections += 1
                if self._reset_first and self.connections == 1:
                    connection.close()
                else:
                    self._held.append(connection)
                self._accepted.notify_all()

    def wait_for(self, connections: int, timeout: float = 60.0) -> None:
        with self._accepted:
            assert self._accepted.wait_for(lambda: self.connections >= connections, timeout)

    def close(self) -> None:
        self._listener.close()
        with self._accepted:
            for connection in self._held:
                connection.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


@pytest.fixture
def reset_then_silent() -> Iterator[SilentServer]:
    server = SilentServer(reset_first=True)
    yield server
    server.close()


def network(url: str) -> SourceConfig:
    return SourceConfig(
        uri=url, open_timeout=OPEN_TIMEOUT, reconnect=ReconnectConfig(initial=0.1, max=0.2, jitter=0)
    )


def start_run(tmp_path: Path, url: str) -> subprocess.Popen[str]:
    config = tmp_path / "silent.yaml"
    config.write_text(yaml.safe_dump({"source": {"uri": url, "open_timeout": OPEN_TIMEOUT}, "stages": []}))
    return subprocess.Popen(
        [sys.executable, "-m", "streamvision", "run", "-c", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CLI_ENV,
    )  # fmt: skip


def interrupt(process: subprocess.Popen[str]) -> tuple[str, str]:
    """Sends SIGINT; returns stdout and stderr once the process ended (within 10 s)."""
    process.send_signal(signal.SIGINT)
    try:
        return process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail("still running 10 s after SIGINT")


def test_ctrl_c_while_the_first_open_hangs_exits_130(tmp_path: Path, silent: SilentServer) -> None:
    process = start_run(tmp_path, silent.url)
    silent.wait_for(1)  # the open is under way
    time.sleep(0.3)
    _, stderr = interrupt(process)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    time.sleep(0.5)
    assert silent.connections == 1, "retried after the interrupt"


def test_ctrl_c_while_a_reopen_hangs_ends_the_run_with_130(
    tmp_path: Path, reset_then_silent: SilentServer
) -> None:
    process = start_run(tmp_path, reset_then_silent.url)
    reset_then_silent.wait_for(2)  # the run started and its first retry is under way
    time.sleep(0.3)
    stdout, stderr = interrupt(process)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "streamvision run" in stdout
    time.sleep(0.5)
    assert reset_then_silent.connections == 2, "retried after the interrupt"


@pytest.mark.parametrize("after", [0.2, 0.7])
def test_ctrl_c_while_the_command_loads_is_one_line_and_130(
    tmp_path: Path, silent: SilentServer, after: float
) -> None:
    process = start_run(tmp_path, silent.url)
    time.sleep(after)
    _, stderr = interrupt(process)
    assert process.returncode == 130, stderr
    assert stderr.strip() == "interrupted"


def test_stop_during_the_first_open_returns_at_once(silent: SilentServer) -> None:
    stop = threading.Event()
    opened = []
    opening = threading.Thread(
        target=lambda: opened.append(open_source(silent.url, network=network(silent.url), stop=stop)),
        daemon=True,
    )
    opening.start()
    silent.wait_for(1)
    stop.set()
    opening.join(10)
    assert not opening.is_alive(), "the open ignored the stop"
    (source,) = opened
    assert not source.online and source.read() is None
    source.close()


def test_stop_during_a_reopen_returns_none_without_another_retry(reset_then_silent: SilentServer) -> None:
    stop = threading.Event()
    source = open_source(reset_then_silent.url, network=network(reset_then_silent.url), stop=stop)
    assert not source.online  # the first connection was reset
    read: list[object] = []
    reading = threading.Thread(target=lambda: read.append(source.read()), daemon=True)
    reading.start()
    reset_then_silent.wait_for(2)
    stop.set()
    reading.join(10)
    assert not reading.is_alive(), "the reopen ignored the stop"
    assert read == [None]
    time.sleep(0.5)
    assert reset_then_silent.connections == 2
    source.close()


def test_ctrl_c_while_loading_ends_the_process_even_where_a_library_swallows_exceptions() -> None:
    # A module that loads with a bare except around a slow step would swallow KeyboardInterrupt and
    # the command would go on; the loading handler ends the process instead.
    code = (
        "import signal, sys, time\n"
        "from streamvision.interrupted import exit_interrupted\n"
        "signal.signal(signal.SIGINT, exit_interrupted)\n"
        "print('loading', flush=True)\n"
        "try:\n"
        "    time.sleep(30)\n"
        "except BaseException:\n"
        "    pass\n"
        "print('went on', flush=True)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CLI_ENV
    )
    assert process.stdout is not None and process.stdout.readline() == "loading\n"
    stdout, stderr = interrupt(process)
    assert process.returncode == 130
    assert stderr == "interrupted\n" and stdout == ""
