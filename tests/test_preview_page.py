"""The preview page as a user sees it, in a real headless Chromium against a real ``streamvision run``:
the live image keeps the video's shape at any window size, the page does not jump while it updates,
rule events are listed with snapshot thumbnails served over HTTP, counts show, and with several
sources each page names its own."""

from __future__ import annotations

import http.client
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
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import pytest
import yaml

from streamvision.config import SAMPLE_CLIP, STREET_CLIP
from tests.browser import chromium, needs_chromium

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

TOKEN = "pr3view"
STREET_RATIO = 640 / 272  # bikes.mp4


def _free_port(count: int = 1) -> int:
    """A port that is free, with the ``count - 1`` above it free too."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = int(probe.getsockname()[1])
        if first + count > 65536:
            continue
        try:
            for port in range(first, first + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError("no free ports")


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def _stats(base: str) -> dict[str, Any]:
    return json.loads(_get(f"{base}stats.json?token={TOKEN}"))


def _wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _start_run(config: dict[str, Any], folder: Path, ports: list[int]) -> subprocess.Popen[str]:
    """``streamvision run`` on ``config``, once every preview in ``ports`` answers."""
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "streamvision", "run", "--config", str(path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def answering() -> bool:
        assert process.poll() is None, process.communicate()[1]
        try:
            for port in ports:
                _get(f"http://127.0.0.1:{port}/stats.json?token={TOKEN}")
        except (urllib.error.URLError, ConnectionError):
            return False
        return True

    try:
        _wait_for(answering, 60, "the preview server")
    except BaseException:
        _stop(process)
        raise
    return process


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.communicate(timeout=15)
    finally:
        process.kill()


@pytest.fixture(scope="module")
def street_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The street clip played live at 10 fps (25 s) through a detector, a tracker and a zones stage, with
    an appear rule whose events get snapshots; yields the preview's base URL and the snapshot folder."""
    folder = tmp_path_factory.mktemp("street")
    snapshots = folder / "snapshots"
    port = _free_port()
    config = {
        "source": {"uri": str(STREET_CLIP), "id": "street", "realtime_fps": 10},
        "stages": [
            {"type": "object_detection", "model": "nanodet", "classes": ["person", "bicycle"]},
            {"type": "track"},
            {
                "type": "zones",
                "relative": True,
                "zones": [{"name": "right_half", "polygon": [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}],
                "lines": [{"name": "middle", "start": [0.5, 0], "end": [0.5, 1]}],
            },
        ],
        "events": {
            "rules": [{"type": "appear", "name": "arrivals", "classes": ["person"], "debounce_frames": 2}],
            "outputs": [{"type": "snapshot", "dir": str(snapshots)}],
        },
        "outputs": {"preview": {"port": port, "token": TOKEN}},
    }
    process = _start_run(config, folder, [port])
    try:
        yield f"http://127.0.0.1:{port}/", snapshots
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    driver = chromium(tmp_path_factory.mktemp("chromium"))
    try:
        yield driver
    finally:
        driver.quit()


def _open(driver: WebDriver, base: str, width: int, height: int) -> None:
    """Loads the page at this window size, once the first frame shows and the figures came in."""
    driver.set_window_size(width, height)
    driver.get(f"{base}?token={TOKEN}")
    _wait_for(
        lambda: driver.execute_script("return document.getElementById('video').naturalWidth > 0"),
        20,
        "the first frame",
    )
    _wait_for(lambda: driver.find_element("id", "frames").text.isdigit(), 20, "the figures")


def _image_box(driver: WebDriver) -> dict[str, float]:
    box: dict[str, float] = driver.execute_script(
        "const r = document.getElementById('video').getBoundingClientRect();"
        "return {x: r.x, y: r.y, width: r.width, height: r.height, viewport: window.innerWidth};"
    )
    return box


@needs_chromium
@pytest.mark.slow
@pytest.mark.parametrize(("width", "height"), [(1280, 900), (480, 900)])
def test_the_live_image_keeps_the_videos_aspect_ratio(
    street_run: tuple[str, Path], browser: WebDriver, width: int, height: int
) -> None:
    base, _ = street_run
    _open(browser, base, width, height)
    natural = browser.execute_script(
        "const v = document.getElementById('video'); return [v.naturalWidth, v.naturalHeight];"
    )
    assert natural == [640, 272]

    def shaped() -> dict[str, float] | None:
        box = _image_box(browser)
        return box if abs(box["width"] / box["height"] / STREET_RATIO - 1) < 0.02 else None

    box = _wait_for(shaped, 5, f"the image at the video's aspect ratio (last: {_image_box(browser)})")
    # it fills its column: at least half the window's width, never wider than the window
    assert box["viewport"] * 0.5 <= box["width"] <= box["viewport"]


@needs_chromium
@pytest.mark.slow
@pytest.mark.parametrize(("width", "height"), [(1280, 900), (480, 900)])
def test_the_page_does_not_jump_while_figures_and_events_update(
    street_run: tuple[str, Path], browser: WebDriver, width: int, height: int
) -> None:
    base, _ = street_run
    _open(browser, base, width, height)
    _wait_for(
        lambda: abs(_image_box(browser)["width"] / _image_box(browser)["height"] / STREET_RATIO - 1) < 0.02,
        5,
        "the image at its shape",
    )
    # the page, and every region of it: the tables scroll inside boxes of their own
    layout = (
        "const box = node => { const r = node.getBoundingClientRect();"
        " return [r.x, r.y, r.width, r.height]; };"
        "const byId = id => document.getElementById(id);"
        "return {page: document.documentElement.scrollHeight, video: box(byId('video')),"
        " stats: box(document.querySelector('.stats')), counts: box(byId('counts').parentElement),"
        " regions: box(byId('regions').parentElement), events: box(byId('events')),"
        " aside: box(document.querySelector('aside')), frames: byId('frames').textContent};"
    )
    samples = []
    for _ in range(13):  # 3 s
        samples.append(browser.execute_script(layout))
        time.sleep(0.25)
    assert int(samples[-1]["frames"]) > int(samples[0]["frames"]), "the figures did not update"
    first = {key: value for key, value in samples[0].items() if key != "frames"}
    for sample in samples[1:]:
        assert {key: value for key, value in sample.items() if key != "frames"} == first


@needs_chromium
@pytest.mark.slow
def test_rule_events_are_listed_with_snapshot_thumbnails(
    street_run: tuple[str, Path], browser: WebDriver
) -> None:
    base, _ = street_run
    _open(browser, base, 1280, 900)
    thumbnail = (
        "const img = document.querySelector('#events .event[data-type=\"object_appeared\"] img.thumb');"
        "return img !== null && img.complete && img.naturalWidth > 0;"
    )
    _wait_for(lambda: browser.execute_script(thumbnail), 30, "an object_appeared event with its thumbnail")
    first = browser.find_element("css selector", "#events .event")
    assert "object appeared" in first.text and "person #" in first.text and "arrivals" in first.text
    events = browser.find_element("id", "events").text
    assert '"results"' not in events and "frame" not in events  # no per-frame lines any more
    times = browser.execute_script(
        "return [...document.querySelectorAll('#events .event')].map(e => e.dataset.time);"
    )
    assert times == sorted(times, reverse=True)  # newest first
    _wait_for(lambda: "person" in browser.find_element("id", "counts").text, 20, "a person in view")
    regions = browser.find_element("id", "regions").text
    assert "zone right_half" in regions and "line middle" in regions


@pytest.mark.slow
def test_snapshots_are_served_by_event_id_and_nothing_else(street_run: tuple[str, Path]) -> None:
    base, snapshots = street_run
    event = _wait_for(
        lambda: next((e for e in _stats(base)["latest_events"] if e.get("thumbnail")), None),
        30,
        "an event with a thumbnail",
    )
    assert event["thumbnail"] == f"snapshots/{event['id']}.jpg"
    assert Path(event["snapshot"]).parent == snapshots
    jpeg = cv2.imdecode(np.frombuffer(_get(f"{base}{event['thumbnail']}?token={TOKEN}"), np.uint8), 1)
    assert jpeg is not None and jpeg.shape == (272, 640, 3)
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        _get(f"{base}{event['thumbnail']}")
    assert excinfo.value.code == 401
    (snapshots.parent / "secret.jpg").write_bytes(b"not for the web")
    port = int(base.rsplit(":", 1)[1].strip("/"))
    for path in (
        "/snapshots/../x",
        "/snapshots/../secret.jpg",
        "/snapshots/..%2Fsecret.jpg",
        "/snapshots/%2e%2e/secret.jpg",
        "/snapshots//etc/passwd",
        "/snapshots/nothing-here.jpg",
        f"/snapshots/{event['id']}.png",
        f"/snapshots/{event['id']}.tmp",
    ):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", f"{path}?token={TOKEN}")  # sent as it is: no dot segments removed
            response = connection.getresponse()
            assert response.status in (400, 404), (path, response.status)
            assert b"not for the web" not in response.read()
        finally:
            connection.close()


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Two sources in one run, each with its preview (ports p and p + 1); yields their base URLs."""
    port = _free_port(2)
    config = {
        "sources": [
            {"uri": str(STREET_CLIP), "id": "street", "realtime_fps": 5},
            {"uri": str(SAMPLE_CLIP), "id": "car", "realtime_fps": 5},
        ],
        "stages": [],
        "outputs": {"preview": {"port": port, "token": TOKEN}},
    }
    process = _start_run(config, tmp_path_factory.mktemp("two"), [port, port + 1])
    try:
        yield [f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{port + 1}/"]
    finally:
        _stop(process)


@needs_chromium
@pytest.mark.slow
def test_each_source_has_its_own_page_named_after_it(two_sources: list[str], browser: WebDriver) -> None:
    for base, source, shape in zip(two_sources, ["street", "car"], [(640, 272), (176, 144)], strict=True):
        _open(browser, base, 1280, 900)
        assert source in browser.title
        assert browser.find_element("id", "source").text == source
        natural = browser.execute_script(
            "const v = document.getElementById('video'); return [v.naturalWidth, v.naturalHeight];"
        )
        assert tuple(natural) == shape
        box = _image_box(browser)
        assert abs(box["width"] / box["height"] / (shape[0] / shape[1]) - 1) < 0.02
