"""The plain loop streamvision is measured against: read -> infer -> draw -> write, on one thread.

Uses the same decoder, model, annotator and H.264 writer as ``streamvision run``, so the only
difference is the pipeline's threading. Prints FPS for the loop and for the pipeline, in one run.

    python tools/sequential_baseline.py [--source CLIP] [--repeat 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from streamvision.annotate import Annotator
from streamvision.config import SAMPLE_CLIP, OutputConfig, PipelineConfig, SourceConfig
from streamvision.frame import Frame
from streamvision.pipeline import Pipeline
from streamvision.runtime.manifest import ModelRegistry
from streamvision.runtime.session import ThreadBudget
from streamvision.sinks.video import VideoFileSink
from streamvision.sources.video import VideoSource
from streamvision.stages import StageContext
from streamvision.stages.faces import FaceDetectionConfig, FaceDetector


def sequential_fps(source: Path, output: Path) -> float:
    """Frames per second of the single-threaded loop over ``source``."""
    detector = FaceDetector(FaceDetectionConfig(), StageContext(ModelRegistry(), ThreadBudget()))
    annotator = Annotator()
    video = VideoSource(str(source), "baseline")
    sink = VideoFileSink(output, video.rate)
    started = time.monotonic()
    frames = 0
    while (item := video.read()) is not None:
        frame = detector.process(Frame(item[0], "baseline", frames, item[1], time.monotonic()))
        sink.write(frame, annotator.annotate(frame))
        frames += 1
    sink.close()
    video.close()
    return frames / (time.monotonic() - started)


def pipeline_fps(source: Path, output: Path) -> float:
    """Frames per second of ``streamvision run`` over ``source`` with the same output."""
    config = PipelineConfig(
        source=SourceConfig(uri=str(source)),
        stages=[FaceDetectionConfig()],
        outputs=OutputConfig(video=output),
    )
    return float(Pipeline(config).run()["fps_out"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SAMPLE_CLIP)
    parser.add_argument("--repeat", type=int, default=5, help="alternating runs of each; medians reported")
    args = parser.parse_args()
    loop, piped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            loop.append(sequential_fps(args.source, Path(tmp) / "loop.mp4"))
            piped.append(pipeline_fps(args.source, Path(tmp) / "pipeline.mp4"))
    loop_fps, pipe_fps = sorted(loop)[len(loop) // 2], sorted(piped)[len(piped) // 2]
    print(f"source: {args.source}")
    print(f"sequential loop: {loop_fps:.1f} FPS (runs: {', '.join(f'{v:.0f}' for v in loop)})")
    print(f"pipeline:        {pipe_fps:.1f} FPS (runs: {', '.join(f'{v:.0f}' for v in piped)})")
    print(f"ratio pipeline / loop: {pipe_fps / loop_fps:.2f}")


if __name__ == "__main__":
    main()
