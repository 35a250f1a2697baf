"""``streamvision cluster run`` on real Ray: a two-node cluster losing a node, and a local instance with a
source that keeps failing while the others' events reach a real webhook receiver and mosquitto, and a
real RTSP camera that drops and comes back.

The two-node cluster is a head started with ``ray start --head`` and a second node joined as its own
``ray start`` process inside a network namespace (tests/ray_nodes.py): killing every process in that
namespace is a machine dying. Each test runs the command as a user does, as its own process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import count_frames, decode_all, write_clip
from tests.event_servers import (  # noqa: F401 - fixtures
    Receiver,
    Subscriber,
    mosquitto,
    needs_mosquitto,
    receiver,
    wait_for,
)

# isort: off
from tests.ray_nodes import (  # before Ray: it sets the environment Ray reads
    TwoNodes,
    kill_node,
    network_namespaces_available,
    node_pids,
    remove_two_nodes,
    start_two_nodes,
)
import ray  # noqa: F401 - the cluster extra: a missing one fails here

# isort: on
from tests.test_rtsp import SERVER_MISSING as RTSP_MISSING
from tests.test_rtsp import RtspServer, make_server  # noqa: F401 - fixture

pytestmark = pytest.mark.cluster

FACES = {"type": "face_detection", "model": "blazeface_short", "score_threshold": 0.5}


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodes]:
    if not network_namespaces_available():
        pytest.skip("a second Ray node needs a network namespace: root and iproute2")
    nodes = start_two_nodes(2, tmp_path_factory.mktemp("ray"))
    try:
        yield nodes
    finally:
        remove_two_nodes(nodes)


@pytest.fixture(scope="module")
def camera_clip(tmp_path_factory: pytest.TempPathFactory, sample_clip: Path) -> Path:
    """80 s of the sample clip at 30 fps, played in real time as a camera would deliver it."""
    frames = decode_all(sample_clip)
    return write_clip(tmp_path_factory.mktemp("clips") / "camera.mp4", frames * 20, Fraction(30))


def write_fleet(
    folder: Path, sources: list[dict[str, Any]], outputs: list[dict[str, Any]] | None = None, **cluster: Any
) -> Path:
    """A fleet of face pipelines; rule events go to ``outputs`` (events.jsonl by default)."""
    outputs = outputs or [{"type": "jsonl", "path": "events.jsonl"}]
    fleet = {
        "cluster": {"cpus_per_source": 1, "poll_interval": 0.25, **cluster},
        "pipeline": {
            "stages": [FACES],
            "threads": 1,
            "events": {"rules": [{"type": "appear"}], "outputs": outputs},
            "outputs": {"video": "out.mp4", "events": "frames.jsonl"},
        },
        "sources": sources,
    }
    path = folder / "fleet.yaml"
    path.write_text(json.dumps(fleet))  # JSON is YAML
    return path


def fleet_command(folder: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "streamvision", "cluster", "run", "-c", str(folder / "fleet.yaml"),
            "--report", str(folder / "report.json"), *args]  # fmt: skip


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def source_on_node(nodes: TwoNodes, ids: list[str]) -> list[str]:
    """The sources whose pipelines run on the second node: its processes hold their output files open."""
    found = set()
    for pid in node_pids(nodes):
        try:
            targets = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        found |= {sid for sid in ids for target in targets if target.endswith(f"frames.{sid}.jsonl")}
    return sorted(found)


def test_a_dead_node_moves_its_pipeline_to_the_head_and_ctrl_c_stops_the_fleet(
    two_nodes: TwoNodes, camera_clip: Path, tmp_path: Path
) -> None:
    ids = ["door", "yard"]
    write_fleet(
        tmp_path, [{"uri": str(camera_clip), "id": sid, "realtime": True} for sid in ids], max_restarts=2
    )
    log = (tmp_path / "fleet.log").open("w")
    driver = subprocess.Popen(
        fleet_command(tmp_path, "--address", two_nodes.address), cwd=tmp_path, stdout=log, stderr=log,
        env={**two_nodes.env, "COLUMNS": "150"},
    )  # fmt: skip
    try:
        frames = {sid: tmp_path / f"frames.{sid}.jsonl" for sid in ids}
        assert wait_for(lambda: all(len(lines(f)) > 30 for f in frames.values()), timeout=120, step=0.5)
        on_node = source_on_node(two_nodes, ids)
        assert len(on_node) == 1, f"placement: expected one source on the second node, got {on_node}"
        moved, stayed = on_node[0], next(sid for sid in ids if sid not in on_node)

        killed_at = kill_node(two_nodes)
        stayed_at_kill = len(lines(frames[stayed]))

        def back_online() -> bool:
            return any(
                e["type"] == "source_online" and e["source"] == moved
                for e in lines(tmp_path / "events.jsonl")
            )

        assert wait_for(back_online, timeout=180, step=0.25), (tmp_path / "fleet.log").read_text()
        assert len(lines(frames[stayed])) > stayed_at_kill  # the head kept processing its own source
        driver.send_signal(signal.SIGINT)
        assert driver.wait(60) == 128 + signal.SIGINT
    finally:
        if driver.poll() is None:
            driver.kill()
        log.close()

    report = json.loads((tmp_path / "report.json").read_text())
    rows = {row["source"]: row for row in report["sources"]}
    assert report["stopped_by"] == "SIGINT"
    assert rows[stayed]["restarts"] == 0 and rows[stayed]["recoveries"] == []
    assert rows[stayed]["node"] == two_nodes.head_ip
    assert rows[moved]["restarts"] == 1 and rows[moved]["node"] == two_nodes.head_ip
    (recovery,) = rows[moved]["recoveries"]
    assert recovery["node"] == two_nodes.head_ip
    recovered_s = recovery["first_frame_at"] - killed_at
    print(f"node killed -> {moved} processing on the head again: {recovered_s:.1f} s")  # for the record
    assert recovered_s > 0
    assert {row["state"] for row in rows.values()} == {"stopped"}

    status = [(e["type"], e["source"]) for e in lines(tmp_path / "events.jsonl") if e["rule"] == "source"]
    assert status == [("source_offline", moved), ("source_online", moved)]
    # Ctrl-C finalized every output still being written; the dead node's files stay as it left them
    assert count_frames(tmp_path / f"out.{stayed}.mp4") == rows[stayed]["frames"]
    assert count_frames(tmp_path / f"out.{moved}.restart1.mp4") == rows[moved]["frames"]
    assert len(lines(frames[moved])) > 30  # what the first actor wrote is kept beside the new files


@needs_mosquitto
def test_a_failing_source_is_restarted_then_reported_while_events_reach_jsonl_webhook_and_mqtt(
    sample_clip: Path,
    tmp_path: Path,
    mosquitto: int,  # noqa: F811
    receiver: Receiver,  # noqa: F811
) -> None:
    receiver.start()
    subscriber = Subscriber(mosquitto)
    outputs = [
        {"type": "jsonl", "path": "events.jsonl"},
        {"type": "webhook", "url": receiver.url, "spool": "spool"},
        {"type": "mqtt", "port": mosquitto},
    ]
    sources = [{"uri": str(sample_clip), "id": "good"}, {"uri": str(tmp_path / "missing.mp4"), "id": "bad"}]
    write_fleet(tmp_path, sources, outputs, max_restarts=2)
    result = subprocess.run(
        fleet_command(tmp_path, "--num-cpus", "2"), cwd=tmp_path, capture_output=True, text=True,
        timeout=300, env={**os.environ, "COLUMNS": "150"},
    )  # fmt: skip
    subscriber.close()
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "source bad" in errors[0] and "missing.mp4" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    rows = {row["source"]: row for row in json.loads((tmp_path / "report.json").read_text())["sources"]}
    assert rows["bad"]["state"] == "failed" and rows["bad"]["restarts"] == 2
    assert rows["good"]["state"] == "finished" and rows["good"]["frames"] == 120
    assert "good" in result.stdout and "failed" in result.stdout
    assert count_frames(tmp_path / "out.good.mp4") == 120

    events = lines(tmp_path / "events.jsonl")
    assert [(e["type"], e["source"]) for e in events if e["rule"] == "source"] == [("source_offline", "bad")]
    appeared = [e for e in events if e["type"] == "object_appeared"]
    assert appeared and {e["source"] for e in appeared} == {"good"}
    # the driver delivered every event to the webhook and to MQTT, topics per source
    assert sorted(e["id"] for e in receiver.received()) == sorted(e["id"] for e in events)
    assert sorted(e["id"] for _, e, _ in subscriber.events()) == sorted(e["id"] for e in events)
    assert {t for t, _, _ in subscriber.events()} == {
        "streamvision/good/object_appeared", "streamvision/bad/source_offline"
    }  # fmt: skip
    assert subscriber.on("streamvision/bad/availability")[-1] == b"offline"


@pytest.mark.skipif(RTSP_MISSING is not None, reason=RTSP_MISSING or "")
def test_a_camera_that_drops_reconnects_inside_its_actor_and_its_status_reaches_the_fleet_outputs(
    make_server: Callable[..., RtspServer],  # noqa: F811
    tmp_path: Path,
) -> None:
    camera = make_server()
    source = {"uri": camera.url(), "id": "gate", "open_timeout": 3, "stall_timeout": 3,
              "reconnect": {"initial": 0.2, "max": 1}}  # fmt: skip
    write_fleet(tmp_path, [source])
    events = tmp_path / "events.jsonl"
    driver = subprocess.Popen(
        fleet_command(tmp_path, "--num-cpus", "2"), cwd=tmp_path, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "150"},
    )  # fmt: skip

    def status(kind: str) -> list[dict[str, Any]]:
        return [e for e in lines(events) if e["type"] == kind and e["source"] == "gate"]

    try:
        assert wait_for(lambda: len(lines(tmp_path / "frames.gate.jsonl")) > 30, timeout=120, step=0.25)
        camera.kill()
        assert wait_for(lambda: status("source_offline"), timeout=30, step=0.1)
        camera.start()
        assert wait_for(lambda: len(status("source_online")) == 2, timeout=30, step=0.1)
        driver.send_signal(signal.SIGINT)
        _, stderr = driver.communicate(timeout=60)
        assert driver.returncode == 128 + signal.SIGINT, stderr
    finally:
        if driver.poll() is None:
            driver.kill()
    first, back = status("source_online")
    assert first["reason"] == "connected" and back["reason"] == "reconnected" and back["reconnects"] == 1
    (row,) = json.loads((tmp_path / "report.json").read_text())["sources"]
    assert row["restarts"] == 0 and row["recoveries"] == []  # the pipeline reconnected, the actor lived on
    assert row["pipeline"]["reconnects"] == 1 and row["state"] == "stopped"
    assert count_frames(tmp_path / "out.gate.mp4") == row["frames"]


def test_sources_beyond_the_cpus_start_when_a_finished_one_gives_its_cpu_back(
    sample_clip: Path, tmp_path: Path
) -> None:
    write_fleet(tmp_path, [{"uri": str(sample_clip), "id": sid} for sid in ("first", "second")])
    result = subprocess.run(
        fleet_command(tmp_path, "--num-cpus", "1"), cwd=tmp_path, capture_output=True, text=True,
        timeout=300, env={**os.environ, "COLUMNS": "150"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "reserve 2 CPUs and the cluster has 1" in result.stderr
    rows = json.loads((tmp_path / "report.json").read_text())["sources"]
    assert [(r["state"], r["frames"]) for r in rows] == [("finished", 120)] * 2
    for sid in ("first", "second"):
        assert count_frames(tmp_path / f"out.{sid}.mp4") == 120
