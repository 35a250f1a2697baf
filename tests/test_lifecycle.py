"""The edges of a pipeline's life: construction that fails half-way, outputs under load, shutdown."""

from __future__ import annotations

import socket
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from streamvision.config import STREET_CLIP, parse_config
from streamvision.errors import SinkError
from streamvision.events.config import ClipOutput, SnapshotOutput
from streamvision.events.event import Event
from streamvision.events.outputs.clip import ClipChannel
from streamvision.events.outputs.snapshot import SnapshotChannel
from streamvision.events.sink import CLOSE_GRACE_S
from streamvision.frame import Frame
from streamvision.multi import MultiPipeline
from streamvision.pipeline import JOIN_TIMEOUT_S, STOP_DRAIN_S, Pipeline
from tests.conftest import count_frames, decode_all
from tests.event_servers import RawServer, free_port, silent_server  # noqa: F401 - fixture


def _output_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("sv-out-", "sv-preview"))]


def _with_webhook_and_preview(
    sample_clip: Path, tmp_path: Path, port: int, sources: int = 1
) -> dict[str, Any]:
    return {
        "sources": [{"uri": str(sample_clip), "id": f"cam{i}"} for i in range(sources)],
        "stages": [{"type": "face_detection"}],
        "outputs": {"preview": {"port": port}},
        "events": {
            "rules": [{"type": "appear"}],
            "outputs": [
                {"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/", "spool": str(tmp_path)}
            ],
        },
    }


@pytest.mark.parametrize("sources", [1, 2])
def test_a_pipeline_that_fails_to_open_closes_what_it_opened(
    sample_clip: Path, tmp_path: Path, sources: int
) -> None:
    before = _output_threads()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # The webhook output (its sender thread, its spool lock) opens before the preview fails to bind.
        config = parse_config(_with_webhook_and_preview(sample_clip, tmp_path, port, sources))
        with pytest.raises(SinkError, match="preview cannot listen"):
            Pipeline(config) if sources == 1 else MultiPipeline(config)
    assert _output_threads() == before
    # A second try in the same process finds the spool free again.
    retry = parse_config(_with_webhook_and_preview(sample_clip, tmp_path, 0, sources))
    opened = Pipeline(retry) if sources == 1 else MultiPipeline(retry)
    for pipeline in [opened] if isinstance(opened, Pipeline) else opened.pipelines:
        pipeline.close()
    assert _output_threads() == before


@pytest.fixture(scope="module")
def street_frames() -> list[Frame]:
    return [Frame(image, "street", i, i / 25, 0.0) for i, image in enumerate(decode_all(STREET_CLIP)[:100])]


def _event(index: int) -> Event:
    return Event("object_appeared", "street", "2026-01-01T00:00:00.000Z", "appear", frame=index)


def test_every_clip_an_event_names_is_written_when_its_queue_overflows(
    street_frames: list[Frame], tmp_path: Path
) -> None:
    # A queue of 2 frames against an encoder far slower than the frames come: most frames drop.
    clips = ClipChannel(ClipOutput(dir=tmp_path, before=0.2, after=0.2, queue_size=2), Fraction(25))
    named = []
    for frame in street_frames:
        clips.observe(frame.pts, frame, frame.image)
        if frame.index % 20 == 5:
            named.append(clips.claim(_event(frame.index), frame.pts))
    clips.close()
    assert len(set(named)) == 5 and clips.stats()["dropped"] > 0
    for path in set(named):
        assert count_frames(Path(path)) > 0, path


def test_every_snapshot_an_event_names_is_written_when_its_queue_is_full(
    street_frames: list[Frame], tmp_path: Path
) -> None:
    snapshots = SnapshotChannel(SnapshotOutput(dir=tmp_path, queue_size=2))
    named = []
    for frame in street_frames:
        event = _event(frame.index)
        path = snapshots.claim(event)
        if path is not None:
            snapshots.submit(path, event, frame.image)
            named.append(path)
    snapshots.close()
    stats = snapshots.stats()
    # what could not be queued was never promised to an event, and is counted
    assert len(named) + stats["skipped"] == len(street_frames) and stats["dropped"] == 0
    assert all(Path(path).is_file() for path in named)


def test_a_stopped_run_drains_its_event_outputs_together_by_one_deadline(
    sample_clip: Path,
    tmp_path: Path,
    silent_server: RawServer,  # noqa: F811
) -> None:
    # Two webhooks whose receiver never answers, each allowed 30 s to drain at the end of a source.
    hooks = [
        {"type": "webhook", "url": silent_server.url, "spool": str(tmp_path / f"spool{i}"), "timeout": 60,
         "drain_timeout": 30}
        for i in range(2)
    ]  # fmt: skip
    config = parse_config(
        {
            "source": {"uri": str(sample_clip), "realtime": True},
            "stages": [{"type": "face_detection"}],
            "events": {"rules": [{"type": "appear"}], "outputs": hooks},
        }
    )
    pipeline = Pipeline(config)
    stopped_at: list[float] = []

    def stop_after_ten(p: Pipeline) -> None:
        if p.metrics.frames_out == 10:
            stopped_at.append(time.monotonic())
            p.request_stop("SIGINT")

    summary = pipeline.run(progress=stop_after_ten)
    took = time.monotonic() - stopped_at[0]
    # JOIN_TIMEOUT_S + STOP_DRAIN_S + CLOSE_GRACE_S at most, with slack for a loaded machine; the two
    # drains one after another would take 60 s
    assert took < JOIN_TIMEOUT_S + STOP_DRAIN_S + CLOSE_GRACE_S + 5, took
    outputs = summary["event_outputs"]
    # the appearance waits in each spool for the next run
    assert [outputs[f"webhook.{i}"]["backlog"] for i in range(2)] == [1, 1]
