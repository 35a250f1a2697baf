"""The ``streamvision bench`` command: every figure measured in one run, on this machine."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from streamvision.bench.progress import Progress


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
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress lines on stderr, only the report.")
    ] = False,
    cameras: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Instead: play up to N copies of the clip at once in real time and find how many cameras "
            "keep up (configs/cameras.yaml unless --config), against every-frame detection.",
        ),
    ] = None,
    seconds: Annotated[
        float, typer.Option(min=1, max=3600, help="With --cameras: seconds of the clip each camera plays.")
    ] = 30.0,
) -> None:
    """Measure models, the pipeline and a sequential loop on the same clip, and print the ratios.

    With --cameras N, measure instead how many real-time cameras this machine keeps up with.
    A line on stderr follows each measurement as it finishes (``--quiet`` turns them off); the
    report goes to stdout at the end.
    """
    # imported here: `streamvision --help` and `streamvision run` start without the bench's modules
    from streamvision.bench.session import planned, run_bench
    from streamvision.cli.errors import reported_errors
    from streamvision.config import faces_config, load_config, with_overrides
    from streamvision.redact import redact_url

    with reported_errors():
        if cameras is not None:
            from streamvision.bench.cameras import cameras_text
            from streamvision.bench.session import run_cameras_bench
            from streamvision.cli.configs import ready_config

            cameras_config = with_overrides(load_config(config or ready_config("cameras")), source=source)
            what = f"up to {cameras_text(cameras)} of {redact_url(cameras_config.source.uri)}"
            report = run_cameras_bench(cameras_config, cameras, seconds, _progress(quiet, None, what))
            _write(report, json_path, chart_path)
            return
        base = load_config(config) if config is not None else faces_config()
        pipeline_config = with_overrides(base, source=source)
        total = planned(pipeline_config, repeat, live_fps, grid, compare, keras or ())
        progress = _progress(quiet, total, redact_url(pipeline_config.source.uri))
        report = run_bench(
            pipeline_config, repeat, runs, batch, live_fps, grid, compare, keras or (), progress=progress
        )
        _write(report, json_path, chart_path)


def _progress(quiet: bool, total: int | None, what: str) -> Progress:
    """The progress lines on stderr (their first line written now), or none with ``--quiet``."""
    from streamvision.bench.progress import ProgressLines, silent

    if quiet:
        return silent
    lines = ProgressLines(total, sys.stderr)
    lines.start(what)
    return lines


def _write(report: dict[str, Any], json_path: Path | None, chart_path: Path | None) -> None:
    """The report as Markdown on stdout, and as JSON and a chart where asked."""
    from streamvision.bench.report import chart, markdown
    from streamvision.reports import write_json

    typer.echo(markdown(report))
    if json_path is not None:
        write_json(json_path, report)
    if chart_path is not None:
        chart(report, chart_path)
