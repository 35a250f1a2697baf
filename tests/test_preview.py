"""The live preview in a real headless Chromium: the page loads, the video is not blank, figures update."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from tests.browser import chromium, needs_chromium

TOKEN = "s3cret"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


@pytest.fixture
def preview_run(tmp_path: Path, long_clip: Path) -> Iterator[str]:
    """``streamvision run`` on the long clip played live, with the preview on; yields its base URL."""
    port = _free_port()
    config = tmp_path / "preview.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "source": {"uri": str(long_clip), "realtime": True},
                "stages": [{"type": "face_detection"}],
                "outputs": {"preview": {"port": port, "token": TOKEN}},
                "max_frames": 900,
            }
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "streamvision", "run", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _get(f"{base}stats.json?token={TOKEN}")
            break
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    try:
        yield base
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=10)
        finally:
            process.kill()


def test_preview_needs_its_token_and_serves_metrics(preview_run: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        _get(f"{preview_run}stats.json")
    assert excinfo.value.code == 401
    stats = json.loads(_get(f"{preview_run}stats.json?token={TOKEN}"))
    assert stats["source"] == "long.mp4" and stats["frames_out"] >= 0
    # a face is counted once the first frames are through the stages
    deadline = time.monotonic() + 30
    while "streamvision_detections_total{" not in (
        metrics := _get(f"{preview_run}metrics?token={TOKEN}").decode()
    ):
        assert time.monotonic() < deadline, metrics
        time.sleep(0.1)
    assert "streamvision_latency_seconds_bucket" in metrics
    assert 'streamvision_fps{direction="out",source="long.mp4"}' in metrics
    assert 'streamvision_detections_total{label="face",stage="face_detection"}' in metrics
    jpeg = np.frombuffer(_get(f"{preview_run}frame.jpg?token={TOKEN}"), np.uint8)
    assert cv2.imdecode(jpeg, cv2.IMREAD_COLOR).shape == (144, 176, 3)


@needs_chromium
def test_preview_page_renders_in_chromium(preview_run: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium(tmp_path / "chromium", 1000, 700)
    try:
        driver.get(f"{preview_run}?token={TOKEN}")
        wait = WebDriverWait(driver, 20)
        wait.until(lambda d: d.find_element(By.ID, "frames").text.isdigit())
        first = int(driver.find_element(By.ID, "frames").text)
        wait.until(lambda d: int(d.find_element(By.ID, "frames").text) > first)
        assert driver.find_element(By.ID, "source").text == "long.mp4"
        assert float(driver.find_element(By.ID, "fps").text) > 0
        wait.until(lambda d: d.execute_script("return document.getElementById('video').naturalWidth") > 0)
        video = driver.find_element(By.ID, "video")
        shot = cv2.imdecode(np.frombuffer(video.screenshot_as_png, np.uint8), cv2.IMREAD_COLOR)
        assert shot.shape[0] >= 100 and shot.shape[1] >= 100
        assert shot.std() > 20, "the video area is blank"
        assert "face" in driver.find_element(By.ID, "counts").text
    finally:
        driver.quit()
