"""What ``streamvision cluster run`` decides before Ray runs anything: the fleet file, each source's
config and outputs, and where the events go. No Ray needed (the fleet itself: tests/test_cluster_fleet.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streamvision.cluster.actor import ForwardedEvents, next_outputs
from streamvision.cluster.fleet_config import load_fleet
from streamvision.config import parse_config
from streamvision.errors import ConfigError
from streamvision.events.event import Event
from tests.conftest import run_cli

FACES = {"stages": [{"type": "face_detection"}]}
EVENTS = {
    "rules": [{"type": "appear"}],
    "outputs": [
        {"type": "jsonl", "path": "events.jsonl"},
        {"type": "mqtt", "host": "127.0.0.1", "client_id": "sv"},
        {"type": "snapshot", "dir": "snaps"},
    ],
}


def write(folder: Path, fleet: dict[str, Any], name: str = "fleet.yaml") -> Path:
    path = folder / name
    path.write_text(json.dumps(fleet))  # JSON is YAML
    return path


def test_sources_share_a_pipeline_or_bring_their_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg").mkdir()
    write(
        tmp_path / "cfg", {"source": "ignored.mp4", "stages": [{"type": "pose"}], "threads": 3}, "pose.yaml"
    )
    fleet = load_fleet(
        write(
            tmp_path / "cfg",
            {
                "cluster": {"cpus_per_source": 2, "max_restarts": 1},
                "pipeline": {**FACES, "events": EVENTS, "outputs": {"video": "out.mp4", "events": "f.jsonl"}},
                "sources": ["a.mp4", {"uri": "rtsp://u:p@cam/live", "id": "a.mp4"},
                            {"uri": "b.mp4", "cpus": 0.5}, {"uri": "c.mp4", "pipeline": "pose.yaml"}],
            },
        )
    )  # fmt: skip
    assert fleet.settings.max_restarts == 1 and fleet.settings.placement == "spread"
    ids = [m.source_id for m in fleet.members]
    assert ids == ["a.mp4", "a.mp4-1", "b.mp4", "c.mp4"]
    first, camera, half, pose = fleet.members
    assert first.config.source.uri == str(tmp_path / "a.mp4")  # files absolute: actors run elsewhere
    assert camera.config.source.uri == "rtsp://u:p@cam/live"
    assert first.config.outputs.video == tmp_path / "out.a.mp4.mp4"  # out.<source id>.mp4
    assert first.config.outputs.events == str(tmp_path / "f.a.mp4.jsonl")
    assert (first.cpus, half.cpus, pose.cpus) == (2.0, 0.5, 2.0)
    assert (first.config.threads, half.config.threads, pose.config.threads) == (2, 1, 3)
    assert [s.type for s in pose.config.stages] == ["pose"] and pose.config.source.uri.endswith("c.mp4")
    # the driver writes JSON lines, webhook and MQTT; snapshots need the frames and stay with the actor
    assert [o.type for o in first.forwarded_outputs] == ["jsonl", "mqtt"]
    assert first.forwarded_outputs[1].client_id == "sv-a.mp4"
    assert first.config.events is not None
    assert [o.type for o in first.config.events.outputs] == ["snapshot"]
    assert first.config.events.outputs[0].dir == tmp_path / "snaps"


@pytest.mark.parametrize(
    ("fleet", "message"),
    [
        ({"sources": ["a.mp4"]}, "sources.0: no pipeline"),
        ({"pipeline": FACES, "sources": []}, "sources: expected a list"),
        ({"pipeline": FACES, "sources": ["a.mp4"], "nodes": 3}, "nodes: unknown key"),
        ({"pipeline": FACES, "sources": ["a.mp4"], "cluster": {"max_restarts": -1}}, "cluster.max_restarts"),
        ({"pipeline": {**FACES, "outputs": {"show": True}}, "sources": ["a.mp4"]}, "a window cannot open"),
        ({"pipeline": "missing.yaml", "sources": ["a.mp4"]}, "cannot read config"),
        ({"pipeline": {"stages": [{"type": "nope"}]}, "sources": ["a.mp4"]}, "sources.0: stages.0.type"),
        ({"pipeline": FACES, "sources": [{"uri": "a.mp4", "cpus": 0}]}, "sources.0.cpus"),
    ],
)
def test_a_bad_fleet_file_is_one_config_error(tmp_path: Path, fleet: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_fleet(write(tmp_path, fleet))


def test_the_command_reports_a_bad_fleet_file_in_one_line(tmp_path: Path) -> None:
    result = run_cli("cluster", "run", "-c", str(write(tmp_path, {"sources": ["a.mp4"]})))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "no pipeline" in result.stderr and "Traceback" not in result.stderr


def test_a_restarted_actor_writes_beside_the_files_of_the_ones_before(tmp_path: Path) -> None:
    outputs = {"video": str(tmp_path / "out.mp4"), "events": str(tmp_path / "f.jsonl")}
    config = parse_config({"source": "a.mp4", "outputs": {**outputs, "report": str(tmp_path / "r.json")}})
    first = next_outputs(config).outputs
    assert (first.video, first.events) == (tmp_path / "out.restart1.mp4", str(tmp_path / "f.restart1.jsonl"))
    assert first.report == tmp_path / "r.restart1.json"
    (tmp_path / "f.restart1.jsonl").write_text("{}\n")  # one file of the first restart is enough
    second = next_outputs(config).outputs
    assert (second.video, second.events) == (
        tmp_path / "out.restart2.mp4",
        str(tmp_path / "f.restart2.jsonl"),
    )


def test_events_cross_to_the_driver_as_records_and_come_back_equal() -> None:
    forward = ForwardedEvents()
    event = Event(
        "line_crossed", "door", "2026-01-01T00:00:00.000Z", "gate", frame=7, pts=0.25, track_id=3,
        class_name="person", score=0.81, box=(1.0, 2.0, 30.5, 40.0), line="gate", extra={"direction": "in"},
    )  # fmt: skip
    forward.submit(event)
    (record,) = forward.take()
    assert forward.take() == [] and forward.stats() == {"submitted": 1, "dropped": 0, "backlog": 0}
    assert Event.from_record(record) == event
