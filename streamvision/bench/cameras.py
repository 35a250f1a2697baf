"""``streamvision bench --cameras N``: how many real-time cameras one machine keeps up with.

Copies of one clip play at once, each in real time as a camera would deliver it (a pipeline too
slow for it drops frames instead of falling behind). A camera keeps up when it delivers at least
:data:`KEPT_TARGET` of its frames. The most cameras that all keep up is found by bisection, for the
config as given and for the same config as it runs without the savings (the detector on every whole
frame, sessions of its own per camera). Each camera's boxes are scored against an every-frame,
whole-frame run of its detector on the same frames, measured in the same command.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from streamvision.bench.progress import Progress, silent
from streamvision.config import OutputConfig, PipelineConfig
from streamvision.convert.agreement import matched_boxes
from streamvision.errors import ConfigError
from streamvision.frame import Detections, Frame
from streamvision.multi import MultiPipeline
from streamvision.pipeline import Pipeline, model_sessions
from streamvision.redact import redact_url
from streamvision.stages.objects import REGION_OBJECT_SCORE, ObjectDetectionConfig
from streamvision.stages.track import TrackConfig

KEPT_TARGET = 0.95
"""A camera keeps up when it delivers at least this share of its frames."""

RECALL_CLASS = "person"
"""The class whose recall is reported apart from the recall over all classes."""

Boxes = dict[int, Detections]
"""Frame index -> the boxes of one detection stage on that frame."""


@dataclass
class BoxRecorder:
    """A sink that keeps the boxes each frame carries under ``key`` (the last stage's word on them:
    after a ``track`` stage, the tracked boxes)."""

    key: str
    boxes: Boxes = field(default_factory=dict)
    step_name: str = "record"
    needs_annotation: bool = False

    def write(self, frame: Frame, annotated: np.ndarray | None) -> None:
        found = frame.results.get(self.key)
        if isinstance(found, Detections):
            self.boxes[frame.index] = found

    def close(self) -> None:
        pass


def detector_key(config: PipelineConfig) -> tuple[str, float]:
    """The result key of the config's first object detection stage, and the score at which its boxes
    count as sure (its ``track`` stage's ``high_threshold``, else :data:`REGION_OBJECT_SCORE`).

    Raises:
        ConfigError: the config has no object detection stage.
    """
    detector = next((s for s in config.stages if isinstance(s, ObjectDetectionConfig)), None)
    if detector is None:
        raise ConfigError("bench --cameras: the config has no object_detection stage to measure")
    key = detector.result_key
    track = next((s for s in config.stages if isinstance(s, TrackConfig) and s.on == key), None)
    return key, track.high_threshold if track is not None else REGION_OBJECT_SCORE


def every_frame(config: PipelineConfig) -> PipelineConfig:
    """``config`` with each object detector on every whole frame: no ``every``, ``detect_fps`` or
    ``motion`` (the cost the savings are measured against)."""
    stages = [
        s.model_copy(update={"every": 1, "detect_fps": None, "motion": None})
        if isinstance(s, ObjectDetectionConfig)
        else s
        for s in config.stages
    ]
    return config.model_copy(update={"stages": stages})


def reference_boxes(config: PipelineConfig, key: str, frames: int) -> Boxes:
    """The detector's boxes on each of the clip's first ``frames`` frames, run on every whole frame
    with no tracking and as fast as the machine goes (no frame dropped).

    Raises:
        StreamvisionError: the source, a model or a stage fails.
    """
    detectors = [s for s in every_frame(config).stages if isinstance(s, ObjectDetectionConfig)]
    single = config.model_copy(
        update={
            "sources": [config.source.model_copy(update={"realtime": False, "realtime_fps": None})],
            "stages": detectors,
            "outputs": OutputConfig(),
            "events": None,
            "max_frames": frames,
        }
    )
    pipeline = Pipeline(single)
    recorder = BoxRecorder(key)
    pipeline.sinks.append(recorder)
    pipeline.run()
    return recorder.boxes


def recall(reference: Boxes, candidate: Boxes, sure: float, label: str | None = None) -> float | None:
    """Share of the reference's sure boxes (score >= ``sure``; of ``label`` only, when given) that a
    candidate box of their class matches at IoU >= 0.5, over the frames the candidate delivered; a
    tracked candidate counts only its confirmed tracks. None when there was nothing to find.

    Example:
        >>> box = np.array([[0, 0, 10, 10]], np.float32)
        >>> one = Detections(box, np.array([0.9], np.float32), np.array([0]), np.array(["person"]))
        >>> recall({0: one, 1: one}, {0: one}, 0.4), recall({0: one}, {0: Detections.empty()}, 0.4)
        (1.0, 0.0)
    """
    wanted = matched = 0
    for index, found in candidate.items():
        expected = reference.get(index)
        if expected is None:
            continue
        expected = expected[expected.confidence >= sure]
        if found.tracker_id is not None:
            found = found[found.tracker_id >= 0]
        if label is not None:
            expected, found = expected[expected.class_name == label], found[found.class_name == label]
        wanted += len(expected)
        matched += matched_boxes(expected, found)
    return matched / wanted if wanted else None


@dataclass(frozen=True)
class ClipPlan:
    """What every camera of a trial plays: the clip's first ``frames`` frames at ``fps``."""

    frames: int
    fps: float

    @property
    def seconds(self) -> float:
        return self.frames / self.fps


def plan_clip(config: PipelineConfig, seconds: float) -> ClipPlan:
    """The frames each camera plays: ``seconds`` of the clip at its own rate, or all of a shorter clip.

    Raises:
        ConfigError: the source is not a file with a frame rate (a camera, a stream, an image folder).
        SourceError: the clip cannot be opened.
    """
    from streamvision.samples import resolve
    from streamvision.sources import is_stream_url, open_source

    uri = config.source.uri
    problem = ConfigError(
        f"bench --cameras: {redact_url(uri)} is not a video file with a frame rate and a length; "
        "give a clip with --source"
    )
    if uri.isdigit() or is_stream_url(resolve(uri)):
        raise problem
    source = open_source(uri, config.source.id)
    try:
        if source.live or source.rate is None or not source.total_frames:
            raise problem
        fps = float(source.rate)
        return ClipPlan(min(source.total_frames, max(1, round(seconds * fps))), fps)
    finally:
        source.close()


def camera_trial(
    config: PipelineConfig,
    cameras: int,
    clip: ClipPlan,
    reference: Boxes,
    shared: bool,
    folder: Path,
) -> dict[str, Any]:
    """``cameras`` copies of the clip played at once in real time; what each camera delivered.

    The cameras write what the config's outputs name (video, event lines) into ``folder``; a
    preview, a window, a report and event rules are left out.

    Raises:
        StreamvisionError: a source, a model or an output fails to open.
    """
    key, sure = detector_key(config)
    outputs = OutputConfig(
        video=folder / "cameras.mp4" if config.outputs.video is not None else None,
        events=str(folder / "cameras.jsonl") if config.outputs.events is not None else None,
        video_crf=config.outputs.video_crf,
        video_preset=config.outputs.video_preset,
    )
    sources = [
        config.source.model_copy(update={"id": f"cam{n + 1}", "realtime": True, "realtime_fps": None})
        for n in range(cameras)
    ]
    trial = config.model_copy(
        update={"sources": sources, "outputs": outputs, "events": None, "max_frames": clip.frames}
    )
    multi = MultiPipeline(trial, share_models=shared)
    recorders = [BoxRecorder(key) for _ in multi.pipelines]
    for pipeline, recorder in zip(multi.pipelines, recorders, strict=True):
        pipeline.sinks.append(recorder)
    cpu, wall = time.process_time(), time.monotonic()
    summaries = multi.run()
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    per_camera = [
        _camera_row(summary, recorder.boxes, clip, reference, key, sure)
        for summary, recorder in zip(summaries, recorders, strict=True)
    ]
    return {
        "cameras": cameras,
        "keeps_up": all(row["kept"] >= KEPT_TARGET for row in per_camera),
        "cpu_cores": round(cpu / wall, 3),
        "cpu_per_camera": round(cpu / wall / cameras, 3),
        "sessions": multi.service.sessions if shared else model_sessions(trial) * cameras,
        "per_camera": per_camera,
    }


def _camera_row(
    summary: dict[str, Any], boxes: Boxes, clip: ClipPlan, reference: Boxes, key: str, sure: float
) -> dict[str, Any]:
    counts = summary.get("detectors", {}).get(key, {})
    duration = summary["duration_s"] or clip.seconds
    person, every_class = recall(reference, boxes, sure, RECALL_CLASS), recall(reference, boxes, sure)
    return {
        "camera": summary["source"],
        "frames": clip.frames,
        "frames_out": summary["frames_out"],
        "kept": round(summary["frames_out"] / clip.frames, 4),
        "late_s": round(max(0.0, duration - clip.seconds), 2),
        "detector_runs_per_s": round(counts.get("runs", 0) / duration, 2),
        "latency_ms": {k: summary["latency_ms"][k] for k in ("p50", "p99")},
        f"recall_{RECALL_CLASS}": None if person is None else round(person, 4),
        "recall": None if every_class is None else round(every_class, 4),
        "error": summary.get("error"),
    }


def cameras_text(count: int) -> str:
    """``1 camera``, ``3 cameras``."""
    return f"{count} camera{'' if count == 1 else 's'}"


def most_cameras(trial: Callable[[int], dict[str, Any]], most: int) -> tuple[int, list[dict[str, Any]]]:
    """The largest camera count up to ``most`` at which every camera keeps up (0 when not even one
    does), by bisection from ``most`` down, with each trial run on the way (in order).

    Example:
        >>> largest, trials = most_cameras(lambda n: {"cameras": n, "keeps_up": n <= 5}, 8)
        >>> largest, [t["cameras"] for t in trials]
        (5, [8, 4, 6, 5])
    """
    trials = [trial(most)]
    if trials[-1]["keeps_up"]:
        return most, trials
    low, high = 0, most  # low keeps up (0 trivially), high does not
    while high - low > 1:
        middle = (low + high) // 2
        trials.append(trial(middle))
        if trials[-1]["keeps_up"]:
            low = middle
        else:
            high = middle
    return low, trials


def bench_cameras(
    config: PipelineConfig, cameras: int, seconds: float, progress: Progress = silent
) -> dict[str, Any]:
    """The ``cameras`` section of the bench report: the most real-time cameras of the config (up to
    ``cameras``) and of its every-frame form, each trial's figures, and the ratio of the two.

    Raises:
        ConfigError: the config has no object detection stage or its source is not a video file.
        StreamvisionError: a source, a model or an output fails.
    """
    key, _ = detector_key(config)
    clip = plan_clip(config, seconds)
    reference = reference_boxes(config, key, clip.frames)
    progress("every-frame reference", f"{sum(map(len, reference.values()))} boxes on {len(reference)} frames")
    section: dict[str, Any] = {
        "clip": {"frames": clip.frames, "fps": clip.fps, "seconds": round(clip.seconds, 2)},
        "kept_target": KEPT_TARGET,
        "cpus": os.cpu_count(),
    }
    layouts = {"config": (config, True), "every_frame": (every_frame(config), False)}
    with tempfile.TemporaryDirectory(prefix="streamvision-cameras-") as tmp:
        for name, (layout, shared) in layouts.items():
            trial = partial(_reported_trial, layout, clip, reference, shared, Path(tmp) / name, progress)
            largest, trials = most_cameras(trial, cameras)
            section[name] = {"most_cameras": largest, "trials": trials}
    before, after = section["every_frame"]["most_cameras"], section["config"]["most_cameras"]
    section["cameras_ratio"] = round(after / before, 2) if before else None
    return section


def _reported_trial(
    config: PipelineConfig,
    clip: ClipPlan,
    reference: Boxes,
    shared: bool,
    folder: Path,
    progress: Progress,
    cameras: int,
) -> dict[str, Any]:
    """:func:`camera_trial` in a folder of its own, with a progress line."""
    folder = folder / str(cameras)
    folder.mkdir(parents=True)
    result = camera_trial(config, cameras, clip, reference, shared, folder)
    lowest = min(row["kept"] for row in result["per_camera"])
    progress(
        f"{folder.parent.name}: {cameras_text(cameras)}",
        f"{'keep up' if result['keeps_up'] else 'fall behind'}, lowest kept {lowest:.0%}, "
        f"CPU {result['cpu_per_camera']:.2f} cores per camera",
    )
    return result
