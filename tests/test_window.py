"""The --show window on a virtual X display: it opens, and q stops the run cleanly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import count_frames

needs_xvfb = pytest.mark.skipif(
    shutil.which("Xvfb") is None or shutil.which("xdotool") is None,
    reason="needs Xvfb and xdotool (Debian: xvfb xdotool; .ci/run installs them)",
)


@pytest.fixture
def display() -> Iterator[str]:
    name = f":{90 + os.getpid() % 9}"
    server = subprocess.Popen(["Xvfb", name, "-screen", "0", "640x480x24"], stderr=subprocess.DEVNULL)
    env = {**os.environ, "DISPLAY": name}
    deadline = time.monotonic() + 30
    while subprocess.run(["xdotool", "getdisplaygeometry"], capture_output=True, env=env).returncode != 0:
        assert time.monotonic() < deadline and server.poll() is None, "Xvfb did not start"
        time.sleep(0.05)
    try:
        yield name
    finally:
        server.terminate()
        server.wait(5)


def _find_window(env: dict[str, str], deadline: float) -> str | None:
    while time.monotonic() < deadline:
        found = subprocess.run(
            ["xdotool", "search", "--onlyvisible", "--name", "streamvision"],
            capture_output=True,
            text=True,
            env=env,
        ).stdout.split()
        if found:
            return found[0]
        time.sleep(0.1)
    return None


def _press_until_exit(
    process: subprocess.Popen[str], window: str, key: str, env: dict[str, str]
) -> tuple[str, str]:
    """Presses ``key`` in ``window`` until the process ends (a key sent while the window is still
    being mapped can be lost); returns its stdout and stderr."""
    deadline = time.monotonic() + 30
    while True:
        subprocess.run(["xdotool", "key", "--window", window, key], env=env, check=True)
        try:
            return process.communicate(timeout=1.0)
        except subprocess.TimeoutExpired:
            assert time.monotonic() < deadline, f"{key} did not stop the run"


@needs_xvfb
def test_window_shows_the_stream_and_q_quits(display: str, long_clip: Path, tmp_path: Path) -> None:
    env = {**os.environ, "DISPLAY": display}
    output, report = tmp_path / "out.mp4", tmp_path / "report.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "streamvision", "run", "--source", str(long_clip), "--show",
         "--output", str(output), "--report", str(report)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        window = _find_window(env, time.monotonic() + 30)
        assert window is not None, "no window appeared"
        _, stderr = _press_until_exit(process, window, "q", env)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    summary = json.loads(report.read_text())
    assert 0 < summary["frames_out"] < 1200
    assert count_frames(output) == summary["frames_out"]
