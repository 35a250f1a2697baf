"""The ``streamvision bench`` command: every figure measured in one run, on this machine."""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from streamvision.config import PipelineConfig, faces_config, load_config, with_overrides
from streamvision.runtime.manifest import ModelRegistry


def bench(
    source: Annotated[str | None, typer.Option("--source", "-s", help="Clip to measure on.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Pipeline YAML to measure.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the full report as JSON.")] = None,
    chart_path: Annotated[Path | None, typer.Option("--chart", help="Write a PNG chart.")] = None,
    repeat: Annotated[int, typer.Option(min=1, help="Alternating runs of pipeline and loop; medians.")] = 3,
    runs: Annotated[int, typer.Option(min=10, help="Inferences per model latency figure.")] = 100,
    batch: Annotated[int, typer.Option(min=1, help="Batch size for models with a free batch dim.")] = 8,
    live_fps: Annotated[float, typer.Option(min=0, help="Simulated live source rate; 0 skips it.")] = 30.0,
    grid: Annotated[bool, typer.Option(help="Compare ONNX Runtime settings and thread budgets.")] = True,
    compare: Annotated[
        str | None, typer.Option("--compare", help="Also run the face pipeline on this backend: mediapipe.")
    ] = None,
    keras: Annotated[
        list[Path] | None,
        typer.Option("--keras", help="A Keras model (.keras, .h5) to time against ONNX Runtime; repeatable."),
    ] = None,
) -> None:
    """Measure models, the pipeline and a sequential loop on the same clip, and print the ratios."""
    from streamvision.cli_errors import reported_errors

    with reported_errors():
        base = load_config(config) if config is not None else faces_config()
        pipeline_config = with_overrides(base, source=source)
        report = run_bench(pipeline_config, repeat, runs, batch, live_fps, grid, compare, keras or ())
        from streamvision.bench.report import chart, markdown

        typer.echo(markdown(report))
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(report, indent=2) + "\n")
        if chart_path is not None:
            chart(report, chart_path)


def run_bench(
    config: PipelineConfig,
    repeat: int,
    runs: int,
    batch: int,
    live_fps: float,
    grid: bool,
    compare: str | None = None,
    keras: Sequence[Path] = (),
) -> dict[str, Any]:
    """Runs every measurement and returns the report (see :func:`streamvision.bench.report.markdown`).

    ``compare`` names a second face detection backend (``mediapipe``) to run the same pipeline on;
    ``keras`` lists Keras models to time in Keras and in ONNX Runtime (needs the ``convert`` extra).

    Raises:
        StreamvisionError: a model, the source or the output fails; ``compare`` is unknown, the
            pipeline has no face stage, or the backend is not installed.
    """
    import onnxruntime as ort

    from streamvision.bench.loops import run_live, run_pipeline, run_sequential, with_video_output
    from streamvision.bench.models import bench_models, bench_settings
    from streamvision.bench.report import ratios
    from streamvision.runtime.session import OrtSettings, ThreadBudget

    models = stage_models(config)
    model_names = [name for _, name in models]
    settings = OrtSettings(
        intra_op_threads=ThreadBudget(config.threads, max(1, len(model_names))).per_session
    )
    report: dict[str, Any] = {
        "source": config.source.uri,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "onnxruntime": ort.__version__,
        },
        "ort_settings": settings.as_dict(),
        "models": bench_models(models, settings, runs, batch),
    }
    if keras:
        from streamvision.bench.keras import keras_vs_onnxruntime

        report["keras"] = keras_vs_onnxruntime(list(keras), settings, runs)
    with tempfile.TemporaryDirectory(prefix="streamvision-bench-") as tmp:
        measured = with_video_output(config, Path(tmp) / "out.mp4")
        if compare is not None:
            from streamvision.bench.compare import compare_backends

            report["compare"] = compare_backends(measured, compare, repeat)
        # The plain loop runs as it would without streamvision: ONNX Runtime's default, a thread per core.
        plain = measured.model_copy(update={"threads": os.cpu_count() or 1})
        report["sequential_threads"] = plain.threads
        pipelines, loops = [], []
        for _ in range(repeat):
            pipelines.append(run_pipeline(measured))
            loops.append(run_sequential(plain))
        report["pipeline"], report["sequential"] = _median(pipelines), _median(loops)
        report["ratios"] = ratios(report["pipeline"], report["sequential"])
        if live_fps > 0:
            report["live"] = run_live(measured, live_fps)
        if grid and models:
            registry, first = models[0]
            report["settings_grid"] = bench_settings(registry.verify(first), registry.get(first).input, runs)
            report["threads"] = _thread_budgets(measured, repeat)
    return report


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


def _thread_budgets(config: PipelineConfig, repeat: int) -> list[dict[str, Any]]:
    """Pipeline FPS for each total of intra-op threads from 1 to the core count, runs alternating so
    that a change in the machine's load touches every setting alike."""
    from streamvision.bench.loops import run_pipeline

    counts = range(1, (os.cpu_count() or 1) + 1)
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    for _ in range(repeat):
        for n in counts:
            runs[n].append(run_pipeline(config.model_copy(update={"threads": n})))
    return [{"threads": n, "fps": _median(runs[n])["fps_out"]} for n in counts]


def _median(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median FPS (a whole run, so its figures stay consistent with each other)."""
    fps = statistics.median_low(s["fps_out"] for s in summaries)
    return next(s for s in summaries if s["fps_out"] == fps)
