"""The runs a benchmark compares: the threaded pipeline, the plain sequential loop, a live source."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from streamvision.config import OutputConfig, PipelineConfig
from streamvision.frame import Detections, Frame
from streamvision.metrics import PipelineMetrics
from streamvision.pipeline import Pipeline
from streamvision.render.annotate import Annotator
from streamvision.sources.base import as_image


def with_video_output(config: PipelineConfig, output: Path) -> PipelineConfig:
    """``config`` writing only an annotated mp4 to ``output``: the same output for every run."""
    return config.model_copy(update={"outputs": OutputConfig(video=output)})


def run_pipeline(config: PipelineConfig) -> dict[str, Any]:
    """One threaded run; its summary."""
    return Pipeline(config).run()


def run_sequential(config: PipelineConfig) -> dict[str, Any]:
    """The plain loop: read -> each stage -> draw -> write, one frame at a time on one thread.

    It uses the pipeline's own source, stages, annotator and sinks, so only the threading differs.
    """
    pipeline = Pipeline(config)
    source, stages, sinks = pipeline.source, pipeline.stages, pipeline.sinks
    annotator = Annotator()
    metrics = PipelineMetrics()
    index = 0
    try:
        while config.max_frames is None or index < config.max_frames:
            started = time.monotonic()
            item = source.read()
            if item is None:
                break
            captured = time.monotonic()
            metrics.step_time("decode", captured - started)
            metrics.frame_in()
            frame = Frame(as_image(item[0]), source.source_id, index, item[1], captured)
            for stage in stages:
                began = time.monotonic()
                frame = stage.process(frame)
                metrics.stage_time(stage.name, time.monotonic() - began)
            began = time.monotonic()
            annotated = annotator.annotate(frame)
            metrics.step_time("annotate", time.monotonic() - began)
            for sink in sinks:
                began = time.monotonic()
                sink.write(frame, annotated)
                metrics.step_time(sink.step_name, time.monotonic() - began)
            found = sum(len(r) for r in frame.results.values() if isinstance(r, Detections))
            metrics.frame_out(frame.capture_time, found)
            index += 1
    finally:
        for sink in sinks:
            sink.close()
        source.close()
        pipeline.close_stages()
        metrics.finish(dropped=0, source_errors=source.errors)
    return metrics.summary()


def run_live(config: PipelineConfig, fps: float) -> dict[str, Any]:
    """The pipeline on ``config``'s file played as a live source at ``fps``.

    Returns the summary plus a timeline: per second of the run, frames out, drops and latency p50.
    """
    live = config.model_copy(update={"sources": [config.source.model_copy(update={"realtime_fps": fps})]})
    pipeline = Pipeline(live)
    ticks: list[tuple[float, float, int]] = []

    def record(p: Pipeline) -> None:
        latency = p.metrics.latency_ms.last()
        if latency is not None:
            ticks.append((p.metrics.elapsed, latency, p.dropped))

    summary = pipeline.run(progress=record)
    return {**summary, "live_fps": fps, "timeline": _per_second(ticks)}


def _per_second(ticks: list[tuple[float, float, int]]) -> list[dict[str, Any]]:
    buckets: dict[int, list[tuple[float, int]]] = {}
    for elapsed, latency, dropped in ticks:
        buckets.setdefault(int(elapsed), []).append((latency, dropped))
    timeline = []
    for second, values in sorted(buckets.items()):
        latencies = sorted(v[0] for v in values)
        timeline.append(
            {
                "second": second,
                "frames_out": len(values),
                "dropped_total": values[-1][1],
                "latency_p50_ms": round(latencies[len(latencies) // 2], 2),
            }
        )
    return timeline
