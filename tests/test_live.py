"""Live sources: a pipeline slower than the camera drops frames instead of building a backlog."""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pytest

from streamvision.config import parse_config
from streamvision.frame import Frame
from streamvision.pipeline import Pipeline
from streamvision.stages import STAGES, StageConfig


class SlowStageConfig(StageConfig):
    type: Literal["slow"] = "slow"
    seconds: float = 0.1
    model_sessions: ClassVar[int] = 0


class SlowStage:
    """Stands for a model that needs longer than the frame interval."""

    def __init__(self, config: SlowStageConfig, _context: object) -> None:
        self.name = config.result_key
        self._seconds = config.seconds

    def process(self, frame: Frame) -> Frame:
        time.sleep(self._seconds)
        return frame


@pytest.fixture
def slow_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(STAGES, "slow", (SlowStageConfig, SlowStage))


def test_realtime_file_at_full_speed_drops_nothing(sample_clip: Path) -> None:
    config = parse_config(
        {"source": {"uri": str(sample_clip), "realtime": True}, "stages": [{"type": "face_detection"}]}
    )
    pipeline = Pipeline(config)
    started = time.monotonic()
    summary = pipeline.run()
    assert time.monotonic() - started >= 3.5  # 120 frames at 29.97 fps take 4 s when played live
    assert summary["frames_out"] + summary["dropped"] == 120
    # detection takes a few ms of the 33 a frame lasts: even a loaded machine keeps most frames
    assert summary["dropped"] <= 30


def test_slow_stage_on_a_live_source_keeps_latency_bounded(sample_clip: Path, slow_stage: None) -> None:
    config = parse_config(
        {
            "source": {"uri": str(sample_clip), "realtime": True, "queue_size": 2},
            "stages": [{"type": "slow", "seconds": 0.1}],
        }
    )
    pipeline = Pipeline(config)
    summary = pipeline.run()
    # 30 fps in, 10 fps of processing: about two frames in three are dropped, none queue up
    assert summary["dropped"] >= 60
    assert summary["frames_out"] + summary["dropped"] == summary["frames_in"] == 120
    latencies = np.array(pipeline.metrics.latency_ms.values())
    third = len(latencies) // 3
    first, last = np.median(latencies[:third]), np.median(latencies[-third:])
    # a backlog would add ~67 ms per processed frame; bounded latency stays near 2-3 stage times
    assert last < first + 100, (first, last)
    assert np.percentile(latencies, 99) < 1500  # 2-3 stage times, with slack for a loaded machine


def test_live_frames_are_converted_only_when_kept(sample_clip: Path) -> None:
    from streamvision.sources import open_source
    from streamvision.sources.base import as_image

    played = open_source(str(sample_clip), realtime_fps=1000)
    image, _ = played.read() or (None, None)
    assert callable(image) and as_image(image).shape == (144, 176, 3)
    played.close()
    stored = open_source(str(sample_clip))
    image, _ = stored.read() or (None, None)
    assert isinstance(image, np.ndarray) and image.shape == (144, 176, 3)
    stored.close()
