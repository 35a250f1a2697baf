"""Event rules on made-up results: debouncing, zones, lines with direction, counts, labels, cooldowns,
config errors, and every emitted event against the JSON Schema."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import numpy as np
import pytest
from pydantic import TypeAdapter

from streamvision.config import parse_config
from streamvision.errors import ConfigError
from streamvision.events import Event
from streamvision.events.config import EventsConfig
from streamvision.events.engine import RuleEngine, status_event
from streamvision.frame import Detections, Frame, Labels
from streamvision.status import SourceStatus

SCHEMA = json.loads(resources.files("streamvision.events").joinpath("event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
Box = tuple[float, float, float, float]


def detections(boxes: list[Box], tracks: list[int] | None = None, label: str = "person") -> Detections:
    n = len(boxes)
    return Detections(
        xyxy=np.asarray(boxes, np.float32).reshape(n, 4),
        confidence=np.full(n, 0.9, np.float32),
        class_id=np.zeros(n, np.int32),
        class_name=np.asarray([label] * n),
        tracker_id=None if tracks is None else np.asarray(tracks, np.int64),
    )


def frame(index: int, result: Detections, **more: Any) -> Frame:
    f = Frame(np.zeros((200, 400, 3), np.uint8), "rtsp://admin:pw@cam/live", index, index / 10, 0.0)
    f = f.with_result("objects", result)
    for key, value in more.items():
        f = f.with_result(key, value)
    return f


def run(events: dict[str, Any], frames: list[Frame]) -> list[Event]:
    engine = RuleEngine(EventsConfig.model_validate(events))
    found = [event for f in frames for event in engine.process(f)]
    for event in found:
        VALIDATOR.validate(event.to_record())
    return found


def moving(xs: list[float], track: int = 7, y: float = 100) -> list[Frame]:
    """One tracked 20x20 box whose centre is at each x in turn (one frame each)."""
    return [frame(i, detections([(x - 10, y - 10, x + 10, y + 10)], [track])) for i, x in enumerate(xs)]


def test_appear_and_leave_are_debounced_per_track() -> None:
    present = [True, False, True, True, True, False, True, False, False, False, False]
    frames = [
        frame(i, detections([(0, 0, 9, 9)] if p else [], [3] if p else [])) for i, p in enumerate(present)
    ]
    rules = {"rules": [{"type": "appear", "debounce_frames": 3}, {"type": "leave", "debounce_frames": 3}]}
    events = run(rules, frames)
    assert [(e.type, e.frame, e.track_id) for e in events] == [
        ("object_appeared", 4, 3),
        ("object_left", 9, 3),
    ]
    assert events[0].source == "rtsp://***@cam/live"  # credentials never leave
    assert events[1].box == (0.0, 0.0, 9.0, 9.0)  # where it was last seen
    assert len({e.id for e in events}) == 2
    slow = run({"rules": [{"type": "leave", "debounce_frames": 1, "leave_frames": 4}]}, frames)
    assert [(e.type, e.frame) for e in slow] == [("object_left", 10)]


def test_untracked_objects_are_one_object_per_label() -> None:
    frames = [frame(i, detections([(0, 0, 9, 9), (20, 0, 29, 9)][: i % 3])) for i in range(6)]
    events = run({"rules": [{"type": "appear", "debounce_frames": 1}]}, frames)
    assert [(e.type, e.frame, e.track_id, e.class_name) for e in events] == [
        ("object_appeared", 1, None, "person"),
        ("object_appeared", 4, None, "person"),
    ]


def test_zone_enter_and_leave_by_anchor() -> None:
    events = run(
        {
            "zones": {"door": [[100, 0], [200, 0], [200, 200], [100, 200]]},
            "rules": [{"type": "zone", "zone": "door", "anchor": "center", "debounce_frames": 2}],
        },
        moving([50, 90, 110, 120, 130, 150, 210, 230, 240]),
    )
    assert [(e.type, e.frame, e.zone, e.track_id) for e in events] == [
        ("zone_entered", 3, "door", 7),
        ("zone_left", 7, "door", 7),
    ]


def test_line_crossing_direction_and_jitter() -> None:
    # The line runs up the screen at x=200: walking it, left of the line is the left of the screen.
    config = {"lines": {"gate": [[200, 200], [200, 0]]}, "rules": [{"type": "line", "line": "gate"}]}
    there = run({**config}, moving([150, 180, 195, 205, 220, 240, 260]))
    assert [(e.type, e.frame, e.line, e.extra["direction"]) for e in there] == [
        ("line_crossed", 5, "gate", "in")
    ]
    back = run(config, moving([260, 230, 190, 170, 150]))
    assert [e.extra["direction"] for e in back] == ["out"]
    jitter = run(config, moving([190, 205, 195, 206, 194, 207, 193]))
    assert jitter == []  # never three frames in a row on the other side
    around = run(config, moving([150, 150, 250, 250, 250], y=300))  # passes below the segment's end
    assert around == []


def test_line_rule_direction_filter_and_untracked() -> None:
    config = {
        "lines": {"gate": [[200, 200], [200, 0]]},
        "rules": [{"type": "line", "line": "gate", "direction": "out"}],
    }
    assert run(config, moving([150, 180, 220, 240, 260])) == []
    untracked = [
        frame(i, detections([(x - 10, 90, x + 10, 110)])) for i, x in enumerate([150, 180, 220, 240, 260])
    ]
    assert run(config, untracked) == []


def test_boxes_the_tracker_has_not_confirmed_are_no_objects_for_any_rule() -> None:
    weak = [frame(i, detections([(10, 10, 30, 30)], [-1])) for i in range(6)]
    rules = [
        {"type": "appear", "debounce_frames": 1},
        {"type": "count", "above": 0, "debounce_frames": 1},
        {"type": "count", "above": 0, "zone": "all", "debounce_frames": 1},
        {"type": "zone", "zone": "all", "debounce_frames": 1},
    ]
    config = {"zones": {"all": [[0, 0], [400, 0], [400, 200], [0, 200]]}, "rules": rules}
    assert run(config, weak) == []
    confirmed = [frame(i, detections([(10, 10, 30, 30)], [2])) for i in range(6)]
    fired = sorted(e.type for e in run(config, confirmed))
    assert fired == ["count_above", "count_above", "object_appeared", "zone_entered"]


def test_count_above_for_a_duration_fires_once_per_episode() -> None:
    counts = [0, 2, 2, 2, 2, 2, 2, 0, 0, 0, 2, 2, 2, 2, 2, 2]
    frames = [frame(i, detections([(i, 0, i + 5, 5)] * n, list(range(n)))) for i, n in enumerate(counts)]
    events = run({"rules": [{"type": "count", "above": 1, "duration": 0.25, "debounce_frames": 2}]}, frames)
    assert [(e.type, e.frame, e.extra["count"], e.extra["threshold"]) for e in events] == [
        ("count_above", 4, 2, 1),  # the run began at frame 1: 0.3 s held at frame 4
        ("count_above", 13, 2, 1),
    ]
    assert all(e.extra["duration_s"] >= 0.25 for e in events)
    below = run({"rules": [{"type": "count", "below": 1, "duration": 0.1, "debounce_frames": 1}]}, frames)
    assert [e.frame for e in below] == [8]


def test_cooldown_silences_a_rule_per_object() -> None:
    present = [True, False, True, False, True, False, True]
    frames = [frame(i, detections([(0, 0, 9, 9)] if p else [])) for i, p in enumerate(present)]
    loud = run({"rules": [{"type": "appear", "debounce_frames": 1}]}, frames)
    quiet = run({"rules": [{"type": "appear", "debounce_frames": 1, "cooldown": 0.35}]}, frames)
    assert [e.frame for e in loud] == [0, 2, 4, 6]
    assert [e.frame for e in quiet] == [0, 4]


def labels(rows: list[int], names: list[str], scores: list[float], on: str | None = "objects") -> Labels:
    n = len(rows)
    return Labels(
        detection=np.asarray(rows, np.int32),
        class_id=np.zeros(n, np.int32),
        class_name=np.asarray(names),
        score=np.asarray(scores, np.float32),
        top_k_id=np.zeros((n, 1), np.int32),
        top_k_score=np.asarray(scores, np.float32).reshape(n, 1),
        top_k_name=np.asarray(names).reshape(n, 1),
        on=on,
    )


def test_recognized_person_and_emotion_from_classifier_labels() -> None:
    faces = detections([(0, 0, 50, 50), (100, 0, 150, 50)], [1, 2], label="face")
    frames = [
        frame(
            i,
            faces,
            who=labels([0, 1], ["alice", "unknown"], [0.9, 0.9]),
            mood=labels([0, 1], ["happy", "sad"], [0.8, 0.3]),
        )
        for i in range(3)
    ]
    events = run(
        {
            "rules": [
                {"type": "recognized", "labels": "who", "debounce_frames": 2},
                {"type": "emotion", "labels": "mood", "debounce_frames": 2},
            ]
        },
        frames,
    )
    assert [(e.type, e.frame, e.track_id, e.extra) for e in events] == [
        ("person_recognized", 1, 1, {"name": "alice"}),
        ("emotion_seen", 1, 1, {"emotion": "happy"}),  # "sad" is below min_label_score
    ]
    whole = [frame(i, detections([]), scene=labels([-1], ["beach"], [0.95], on=None)) for i in range(2)]
    (event,) = run({"rules": [{"type": "emotion", "labels": "scene", "debounce_frames": 1}]}, whole)
    assert event.extra["emotion"] == "beach" and event.box == (0.0, 0.0, 400.0, 200.0)


def test_status_changes_become_events() -> None:
    status = SourceStatus("source_offline", "rtsp://u:p@cam/x", "stalled 10 s", 2, None, 0.0, 1.7e9)
    record = status_event(status).to_record()
    VALIDATOR.validate(record)
    assert record["type"] == "source_offline" and record["source"] == "rtsp://***@cam/x"
    assert record["time"] == "2023-11-14T22:13:20.000Z" and record["reconnects"] == 2


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ({"rules": [{"type": "apear"}]}, "events.rules.0"),
        ({"rules": [{"type": "appear", "debounce": 3}]}, "events.rules.0.appear.debounce: unknown key"),
        ({"rules": [{"type": "zone", "zone": "door"}]}, "no zone named 'door' (zones: none)"),
        ({"lines": {"l": [[0, 0], [1, 1]]}, "rules": [{"type": "line", "line": "m"}]}, "no line named 'm'"),
        ({"rules": [{"type": "count", "duration": 1}]}, "set exactly one of above or below"),
        ({"zones": {"z": [[0, 0], [1, 1]]}}, "zone 'z' needs at least 3 points"),
        (
            {"rules": [{"type": "appear"}, {"type": "appear", "name": "appear.0"}]},
            "rule names must be unique",
        ),
        ({"outputs": [{"type": "webhook", "url": "http://x"}]}, "spool: Field required"),
        ({"outputs": [{"type": "mqtt", "qos": 3}]}, "events.outputs.0.mqtt.qos"),
        ({"outputs": [{"type": "jsonl", "path": "run.jsonl"}]}, "'run.jsonl' is written by two outputs"),
    ],
)
def test_bad_events_config_names_the_key(events: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_config({"source": "a.mp4", "outputs": {"events": "run.jsonl"}, "events": events})
    assert message in str(excinfo.value)


def test_schema_rejects_what_the_model_never_writes() -> None:
    good = run({"rules": [{"type": "appear", "debounce_frames": 1}]}, moving([10]))[0].to_record()
    for bad in (
        {**good, "colour": "red"},
        {**good, "type": "exploded"},
        {k: v for k, v in good.items() if k != "id"},
    ):
        assert not VALIDATOR.is_valid(bad)
    with pytest.raises(ValueError, match="unknown event fields"):
        Event("object_appeared", "s", "t", "r", extra={"colour": 1})
    assert TypeAdapter(EventsConfig).validate_python({}).rules == ()
