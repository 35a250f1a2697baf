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
    time.sleep(0.5)
    try:
        yield name
    finally:
        server.terminate()
        server.wait(5)


def _find_window(env: dict[str, str], deadline: float) -> str | None:
    while time.monotonic() < deadline:
        found = subprocess.run(
            ["xdotool", "search", "--name", "streamvision"], capture_output=True, text=True, env=env
        ).stdout.split()
        if found:
            return found[0]
        time.sleep(0.1)
    return None


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
        time.sleep(0.5)
        subprocess.run(["xdotool", "key", "--window", window, "q"], env=env, check=True)
        _, stderr = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    summary = json.loads(report.read_text())
    assert 0 < summary["frames_out"] < 1200
    assert count_frames(output) == summary["frames_out"]
