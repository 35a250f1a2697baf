"""The preview's side of events, without a browser: a real pipeline's rule events reach it with their
snapshots, source status changes are listed, and only snapshots are served from the snapshot folders."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from streamvision.config import SAMPLE_CLIP, parse_config
from streamvision.pipeline import Pipeline
from streamvision.sinks.preview import PreviewSink
from streamvision.status import SourceStatus

TOKEN = 'to"k&en'
QUERY = "?token=to%22k%26en"


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), ""


def _raw_status(port: int, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (urllib would not send some of these unchanged)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _stats(sink: PreviewSink) -> dict[str, Any]:
    status, body, _ = _get(f"{sink.url}stats.json{QUERY}")
    assert status == 200
    return dict(json.loads(body))


@pytest.mark.slow
def test_a_pipelines_rule_events_reach_its_preview_with_their_snapshots(tmp_path: Path) -> None:
    config = parse_config(
        {
            "source": {"uri": str(SAMPLE_CLIP), "id": "car", "realtime_fps": 10},  # 12 s
            "stages": [{"type": "face_detection"}],
            "events": {
                "rules": [
                    {"type": "appear", "name": "face-in", "classes": ["face"], "debounce_frames": 2},
                    {"type": "count", "name": "busy", "above": 0, "duration": 0.5},
                ],
                "outputs": [
                    {"type": "snapshot", "dir": str(tmp_path / "shots"), "types": ["object_appeared"]}
                ],
            },
            "outputs": {"preview": {"port": 0, "token": TOKEN}},
        }
    )
    pipeline = Pipeline(config)
    sink = next(s for s in pipeline.sinks if isinstance(s, PreviewSink))
    runner = threading.Thread(target=pipeline.run, daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            stats = _stats(sink)
            types = {event["type"] for event in stats["latest_events"]}
            thumbnails = [event for event in stats["latest_events"] if "thumbnail" in event]
            if {"object_appeared", "count_above"} <= types and thumbnails:
                break
            assert time.monotonic() < deadline and runner.is_alive(), stats["latest_events"]
            time.sleep(0.1)
    finally:
        pipeline.request_stop()
        runner.join(30)
    events = stats["latest_events"]
    assert [e["type"] for e in events] == ["count_above", "object_appeared"]  # newest first, no frames
    assert stats["events_seen"] == 2 and set(stats["in_view"]) <= {"face"}
    assert stats["frame"] == {"width": 176, "height": 144} and stats["regions"] == []
    count, appeared = events
    assert "thumbnail" not in count and "snapshot" not in count  # its type gets no snapshot
    assert appeared["rule"] == "face-in" and appeared["class"] == "face"
    assert appeared["thumbnail"] == f"snapshots/{appeared['id']}.jpg"
    assert Path(appeared["snapshot"]) == tmp_path / "shots" / f"{appeared['id']}.jpg"


def test_source_status_is_listed_and_only_snapshots_are_served(tmp_path: Path) -> None:
    shots = tmp_path / "shots"
    shots.mkdir()
    ok, jpeg = cv2.imencode(".jpg", np.full((36, 64, 3), 200, np.uint8))
    assert ok
    (shots / "0123abcd.jpg").write_bytes(jpeg.tobytes())
    (tmp_path / "outside.jpg").write_bytes(b"outside the folder")
    (shots / "link.jpg").symlink_to(tmp_path / "outside.jpg")
    (shots / "notes.txt").write_text("not a snapshot")
    sink = PreviewSink("127.0.0.1", 0, TOKEN, lambda: {"source": "<b>door</b>"}, snapshot_dirs=(shots,))
    try:
        now = time.time()
        sink.write_status(SourceStatus("source_offline", "door", "stalled 10 s", 0, None, 0.0, now))
        sink.write_status(SourceStatus("source_online", "door", "reconnected", 1, 12.5, 0.0, now + 12.5))
        events = _stats(sink)["latest_events"]
        assert [(e["type"], e["rule"], e["reason"]) for e in events] == [
            ("source_online", "source", "reconnected"),
            ("source_offline", "source", "stalled 10 s"),
        ]
        assert events[0]["offline_s"] == 12.5

        status, body, content_type = _get(f"{sink.url}snapshots/0123abcd.jpg{QUERY}")
        assert (status, content_type) == (200, "image/jpeg")
        image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape == (36, 64, 3)
        assert _get(f"{sink.url}snapshots/0123abcd.jpg")[0] == 401
        for path in (
            "/snapshots/../x",
            "/snapshots/../outside.jpg",
            "/snapshots/..%2Foutside.jpg",
            "/snapshots/%2e%2e%2foutside.jpg",
            "/snapshots/link.jpg",  # a link out of the folder
            "/snapshots/notes.txt",
            "/snapshots/notes.jpg",
            "/snapshots/",
            "/snapshots/shots/0123abcd.jpg",
            "/snapshots//0123abcd.jpg",
        ):
            status, body = _raw_status(sink.port, f"{path}{QUERY}")
            assert status in (400, 404), (path, status)
            assert b"outside the folder" not in body and b"not a snapshot" not in body

        status, body, _ = _get(f"{sink.url}{QUERY}")
        page = body.decode()
        assert status == 200
        assert "<title>&lt;b&gt;door&lt;/b&gt; · streamvision preview</title>" in page
        assert "<b>door</b>" not in page
        assert f'src="stream.mjpg{QUERY}"' in page and f"const query = {json.dumps(QUERY)};" in page
    finally:
        sink.close()
