"""Several sources in one run: each its own pipeline, outputs and metrics; a dead one stalls nobody."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from streamvision.config import parse_config
from streamvision.errors import ConfigError
from streamvision.fanout import per_source
from streamvision.multi import MultiPipeline
from tests.conftest import count_frames
from tests.test_rtsp import SERVER_MISSING, RtspServer, free_port


def test_per_source_configs_do_not_collide(tmp_path: Path) -> None:
    config = parse_config(
        {
            "sources": ["a/clip.mp4", {"uri": "b/clip.mp4"}, {"uri": "rtsp://u:p@cam/door", "id": "door"}],
            "stages": [{"type": "face_detection"}],
            "outputs": {"video": str(tmp_path / "out.mp4"), "events": "ev.jsonl", "preview": {"port": 9000}},
        }
    )
    singles = per_source(config)
    assert [c.source.id for c in singles] == ["clip.mp4", "clip.mp4-1", "door"]
    assert [c.outputs.video for c in singles] == [
        tmp_path / "out.clip.mp4.mp4", tmp_path / "out.clip.mp4-1.mp4", tmp_path / "out.door.mp4"
    ]  # fmt: skip
    assert [c.outputs.events for c in singles] == [
        "ev.clip.mp4.jsonl",
        "ev.clip.mp4-1.jsonl",
        "ev.door.jsonl",
    ]
    assert [c.outputs.preview.port for c in singles if c.outputs.preview] == [9000, 9001, 9002]
    with pytest.raises(ConfigError, match="a window needs a single source"):
        per_source(config.model_copy(update={"outputs": config.outputs.model_copy(update={"show": True})}))


def test_duplicate_ids_and_both_source_forms_are_errors() -> None:
    with pytest.raises(ConfigError, match="source ids must be unique: x"):
        parse_config({"sources": [{"uri": "a.mp4", "id": "x"}, {"uri": "b.mp4", "id": "x"}]})
    with pytest.raises(ConfigError, match="either source or sources"):
        parse_config({"source": "a.mp4", "sources": ["b.mp4"]})


def test_two_files_from_the_command_line(tmp_path: Path, sample_clip: Path, astronaut: Path) -> None:
    faces = tmp_path / "faces.yaml"
    faces.write_text("source: placeholder.mp4\nstages:\n  - type: face_detection\n")
    result = subprocess.run(
        [sys.executable, "-m", "streamvision", "run", "--config", str(faces), "--source", str(sample_clip),
         "--source", str(astronaut), "--output", str(tmp_path / "out.mp4"),
         "--report", str(tmp_path / "report.json")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    by_source = {s["source"]: s for s in report["sources"]}
    assert by_source["carphone.mp4"]["frames_out"] == 120 and by_source["astronaut.png"]["frames_out"] == 1
    assert by_source["astronaut.png"]["detections"] == 1
    assert count_frames(tmp_path / "out.carphone.mp4.mp4") == 120
    assert count_frames(tmp_path / "out.astronaut.png.mp4") == 1
    assert result.stdout.count("streamvision run") == 2


@pytest.mark.rtsp
@pytest.mark.skipif(SERVER_MISSING is not None, reason=SERVER_MISSING or "")
def test_one_source_dies_the_other_keeps_its_frame_rate(
    sample_clip: Path, long_clip: Path, tmp_path: Path
) -> None:
    server = RtspServer(sample_clip, free_port())
    server.start()
    config = parse_config(
        {
            "sources": [
                {"uri": server.url(), "id": "cam", "stall_timeout": 1, "reconnect": {"max_retries": 0}},
                {"uri": str(long_clip), "id": "file", "realtime": True},
            ],
            "stages": [{"type": "face_detection"}],
            "outputs": {"events": str(tmp_path / "events.jsonl")},
            "max_frames": 150,
        }
    )
    multi = MultiPipeline(config)
    killer = threading.Timer(1.5, server.kill)
    killer.start()
    started = time.monotonic()
    try:
        cam, file = multi.run()
    finally:
        killer.cancel()
        server.stop()
    took = time.monotonic() - started

    assert "cam" in multi.errors and cam["error"]
    assert 0 < cam["frames_out"] < 150
    # the file plays live at 29.97 fps: 150 frames take 5 s, and it kept up while the camera died
    assert file["frames_out"] + file["dropped"] == 150 and file["dropped"] <= 30
    assert 4.5 <= took < 30
    assert file["fps_in"] >= 15
    lines = (tmp_path / "events.file.jsonl").read_text().splitlines()
    assert {json.loads(line)["source"] for line in lines} == {"file"}
