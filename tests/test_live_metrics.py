"""The figures a running pipeline reports: live drop counts, and reading them never stalls the threads."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamvision.config import parse_config
from streamvision.metrics import PipelineMetrics
from streamvision.pipeline import Pipeline
from streamvision.stages import STAGES
from tests.test_live import SlowStage, SlowStageConfig

WAIT_S = 10.0  # generous: only reached when something is blocked


@pytest.fixture
def slow_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(STAGES, "slow", (SlowStageConfig, SlowStage))


def test_drops_show_in_the_summary_while_the_run_goes_on(sample_clip: Path, slow_stage: None) -> None:
    config = parse_config(
        {
            "source": {"uri": str(sample_clip), "realtime": True, "queue_size": 2},
            "stages": [{"type": "slow", "seconds": 0.1}],
            "max_frames": 60,
        }
    )
    pipeline = Pipeline(config)
    seen: list[tuple[int, int]] = []

    def progress(p: Pipeline) -> None:
        summary = p.summary()  # what /metrics, the preview page and fleet polls read
        seen.append((summary["dropped"], summary["source_errors"]))

    final = pipeline.run(progress)
    dropped_live = [dropped for dropped, _ in seen]
    # 30 fps in, 10 fps of processing: most frames are dropped, and the summary says so as it happens
    assert max(dropped_live) > 0, dropped_live
    assert dropped_live == sorted(dropped_live)
    assert max(dropped_live) <= final["dropped"] == pipeline.dropped
    assert all(errors == 0 for _, errors in seen) and final["source_errors"] == 0


def test_live_counts_stop_at_finish() -> None:
    metrics = PipelineMetrics()
    metrics.capture_counts(dropped=3, source_errors=1)
    assert (metrics.summary()["dropped"], metrics.summary()["source_errors"]) == (3, 1)
    metrics.finish(dropped=5, source_errors=2)
    metrics.capture_counts(dropped=4, source_errors=1)  # a capture thread that outlived the join
    assert (metrics.summary()["dropped"], metrics.summary()["source_errors"]) == (5, 2)


def test_updates_go_on_while_a_summary_computes_percentiles(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = PipelineMetrics()
    for stage in ("detect", "track", "classify"):
        for i in range(100_000):
            metrics.stage_time(stage, (i % 97) / 1000.0)
    for _ in range(100_000):
        metrics.frame_out(0.0, 1)

    computing, release = threading.Event(), threading.Event()
    real_percentile = np.percentile

    def held_percentile(*args: Any, **kwargs: Any) -> Any:
        """Holds the first percentile computation until the test has updated the figures."""
        if not computing.is_set():
            computing.set()
            release.wait(WAIT_S)
        return real_percentile(*args, **kwargs)

    monkeypatch.setattr(np, "percentile", held_percentile)
    summaries: list[dict[str, Any]] = []

    def summarize() -> None:
        for _ in range(3):
            summaries.append(metrics.summary())

    updated = threading.Event()

    def update() -> None:
        metrics.frame_in()
        metrics.stage_time("detect", 0.001)
        metrics.step_time("decode", 0.001)
        updated.set()

    reader = threading.Thread(target=summarize, name="test-summary")
    writer = threading.Thread(target=update, name="test-update")
    reader.start()
    try:
        assert computing.wait(WAIT_S)
        writer.start()
        # a summary holding the lock over its percentiles would keep the update waiting until release
        updated_mid_summary = updated.wait(WAIT_S)
    finally:
        release.set()
        reader.join(WAIT_S)
        if writer.ident is not None:  # started
            writer.join(WAIT_S)
    assert updated_mid_summary
    assert len(summaries) == 3
    first, last = summaries[0], summaries[-1]
    assert first["frames_in"] == 0 and first["stage_ms"]["detect"]["p50"] is not None
    assert last["frames_in"] == 1 and last["step_ms"]["decode"]["p50"] == 1.0
