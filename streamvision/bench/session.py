"""What ``streamvision bench`` measures: models, the pipeline, a sequential loop and the settings
grid, on one clip and one machine, in one run."""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streamvision.bench.progress import Progress, planned_measurements, silent
from streamvision.config import PipelineConfig
from streamvision.runtime.manifest import ModelRegistry
from streamvision.runtime.session import OrtSettings, ThreadBudget, default_threads


def run_bench(
    config: PipelineConfig,
    repeat: int,
    runs: int,
    batch: int,
    live_fps: float,
    grid: bool,
    compare: str | None = None,
    keras: Sequence[Path] = (),
    progress: Progress = silent,
) -> dict[str, Any]:
    """Runs every measurement and returns the report (see :func:`streamvision.bench.report.markdown`).

    ``compare`` names a second face detection backend (``mediapipe``) to run the same pipeline on;
    ``keras`` lists Keras models to time in Keras and in ONNX Runtime (needs the ``convert`` extra);
    ``progress`` hears of each measurement as it finishes (:func:`planned` of them).

    Raises:
        StreamvisionError: a model, the source or the output fails; ``compare`` is unknown, the
            pipeline has no face stage, or the backend is not installed.
    """
    from streamvision.bench.loops import run_live, run_pipeline, run_sequential, with_video_output
    from streamvision.bench.models import bench_models, bench_settings, settings_recommendation
    from streamvision.bench.report import ratios, threads_recommendation

    models = stage_models(config)
    settings = pipeline_settings(config, len(models))
    report: dict[str, Any] = {
        **_heading(config, settings),
        "models": bench_models(models, settings, runs, batch, progress),
    }
    if keras:
        from streamvision.bench.keras import keras_vs_onnxruntime

        report["keras"] = keras_vs_onnxruntime(list(keras), settings, runs, progress)
    with tempfile.TemporaryDirectory(prefix="streamvision-bench-") as tmp:
        measured = with_video_output(config, Path(tmp) / "out.mp4")
        if compare is not None:
            from streamvision.bench.compare import compare_backends

            report["compare"] = compare_backends(measured, compare, repeat, progress)
        # The plain loop runs as it would without streamvision: ONNX Runtime's default, a thread per core.
        plain = measured.model_copy(update={"threads": os.cpu_count() or 1})
        report["sequential_threads"] = plain.threads
        pipelines, loops = [], []
        for i in range(repeat):
            pipelines.append(run_pipeline(measured))
            progress(f"pipeline run {i + 1}/{repeat}", f"{pipelines[-1]['fps_out']:.1f} FPS")
            loops.append(run_sequential(plain))
            progress(f"sequential loop {i + 1}/{repeat}", f"{loops[-1]['fps_out']:.1f} FPS")
        report["pipeline"], report["sequential"] = _median(pipelines), _median(loops)
        report["ratios"] = ratios(report["pipeline"], report["sequential"])
        if live_fps > 0:
            live = report["live"] = run_live(measured, live_fps)
            progress(
                f"live source at {live_fps:g} fps",
                f"{live['frames_out']} frames out, {live['dropped']} dropped, "
                f"latency p50 {live['latency_ms']['p50'] or 0:.1f} ms",
            )
        if grid and models:
            registry, first = models[0]
            grid_rows = bench_settings(
                registry.verify(first), registry.get(first).input, runs, settings, progress
            )
            report["settings_grid"] = grid_rows
            report["settings_recommendation"] = settings_recommendation(first, grid_rows)
            report["threads"] = _thread_budgets(measured, repeat, progress)
            report["threads_recommendation"] = threads_recommendation(
                report["threads"], config.threads or default_threads()
            )
    return report


def run_cameras_bench(
    config: PipelineConfig, cameras: int, seconds: float, progress: Progress = silent
) -> dict[str, Any]:
    """``bench --cameras``: the report with only the cameras section (see
    :func:`streamvision.bench.cameras.bench_cameras`).

    Raises:
        ConfigError: the config has no object detection stage or its source is not a video file.
        StreamvisionError: a source, a model or an output fails.
    """
    from streamvision.bench.cameras import bench_cameras

    settings = pipeline_settings(config, max(1, len(stage_models(config))))
    return {**_heading(config, settings), "cameras": bench_cameras(config, cameras, seconds, progress)}


def _heading(config: PipelineConfig, settings: OrtSettings) -> dict[str, Any]:
    """What every report starts with: the clip, the machine and the session settings."""
    import onnxruntime as ort

    return {
        "source": config.source.uri,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "onnxruntime": ort.__version__,
        },
        "ort_settings": settings.as_dict(),
    }


def pipeline_settings(config: PipelineConfig, sessions: int) -> OrtSettings:
    """The ONNX Runtime settings each of the pipeline's ``sessions`` model sessions runs with."""
    return OrtSettings(intra_op_threads=ThreadBudget(config.threads, max(1, sessions)).per_session)


def planned(
    config: PipelineConfig,
    repeat: int,
    live_fps: float,
    grid: bool,
    compare: str | None,
    keras: Sequence[Path],
) -> int:
    """How many measurements :func:`run_bench` will report for these options."""
    from streamvision.bench.models import grid_settings

    models = stage_models(config)
    gridded = grid and bool(models)
    return planned_measurements(
        models=len(models),
        keras=len(keras),
        compare=compare is not None,
        repeat=repeat,
        live=live_fps > 0,
        grid_settings=len(grid_settings(pipeline_settings(config, len(models)))) if gridded else 0,
        thread_counts=(os.cpu_count() or 1) if gridded else 0,
    )


def stage_models(config: PipelineConfig) -> list[tuple[ModelRegistry, str]]:
    """Each model the stages use, once, with the manifest it comes from (a stage's ``models:`` folder,
    or the packaged one)."""
    packaged = ModelRegistry()
    found: dict[tuple[Path | None, str], tuple[ModelRegistry, str]] = {}
    for stage in config.stages:
        name = getattr(stage, "model", None)
        if name:
            folder = getattr(stage, "models", None)
            found.setdefault((folder, name), (ModelRegistry(folder) if folder else packaged, name))
    return list(found.values())


def _thread_budgets(config: PipelineConfig, repeat: int, progress: Progress = silent) -> list[dict[str, Any]]:
    """Pipeline FPS for each total of intra-op threads from 1 to the core count, runs alternating so
    that a change in the machine's load touches every setting alike."""
    from streamvision.bench.loops import run_pipeline

    counts = range(1, (os.cpu_count() or 1) + 1)
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    for i in range(repeat):
        for n in counts:
            runs[n].append(run_pipeline(config.model_copy(update={"threads": n})))
            progress(
                f"pipeline with threads: {n} (run {i + 1}/{repeat})", f"{runs[n][-1]['fps_out']:.1f} FPS"
            )
    return [{"threads": n, "fps": _median(runs[n])["fps_out"]} for n in counts]


def _median(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median FPS (a whole run, so its figures stay consistent with each other)."""
    fps = statistics.median_low(s["fps_out"] for s in summaries)
    return next(s for s in summaries if s["fps_out"] == fps)
