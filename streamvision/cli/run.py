"""``streamvision run``: a pipeline from a config or the command line, with progress and a summary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from streamvision.cli.console import make_console
from streamvision.cli.errors import EXIT_USAGE, reported_errors
from streamvision.cli.signals import exit_for_signal, stop_on_signals
from streamvision.errors import SinkError, StreamvisionError
from streamvision.reports import write_json


def run(
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source", "-s", help="Camera index, video file, image folder/glob or URL; repeat for several."
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Pipeline YAML.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Annotated H.264 mp4 to write.")
    ] = None,
    show: Annotated[
        bool | None,
        typer.Option(
            "--show/--no-show", help="Show a window (q or Esc stops), or not; the config's by default."
        ),
    ] = None,
    events: Annotated[str | None, typer.Option("--events", help="JSON-lines events: a path or '-'.")] = None,
    max_frames: Annotated[
        int | None, typer.Option("--max-frames", min=1, help="Stop after N frames.")
    ] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Write the summary as JSON.")] = None,
    preview: Annotated[
        int | None,
        typer.Option("--preview", min=0, max=65535, help="Serve a live preview page on this port."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model of the detection stages (streamvision models list)."),
    ] = None,
    confidence: Annotated[
        float | None,
        typer.Option("--confidence", min=0.0, max=1.0, help="Score threshold of the detection stages."),
    ] = None,
    classes: Annotated[
        str | None,
        typer.Option("--classes", help="Labels the object detector keeps, comma-separated: person,car."),
    ] = None,
    decoder: Annotated[
        str | None,
        typer.Option("--decoder", help="Output decoder of the object_detection stages (yolov8, ssd, ...)."),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar and no summary; errors still show.")
    ] = False,
) -> None:
    """Run a pipeline (default: objects tracked on the bundled street clip, sample:bikes).

    A config without a source takes --source; command-line options override the config."""
    # Loaded before reported_errors(): until it, Ctrl-C ends the process at once, and a Ctrl-C that
    # comes while these modules load must not be taken for an exception a library may swallow.
    from streamvision.config import default_config, load_config, with_overrides
    from streamvision.pipeline import Pipeline

    with reported_errors():
        if config is not None:
            base = load_config(config, sources=source or ())
        else:
            # the default's mp4 only when nothing else was asked for: `run --events -` writes events
            base = default_config(video=output is None and not (show or events or preview))
        pipeline_config = with_overrides(
            base,
            source=source,
            output=output,
            show=show,
            events=events,
            report=report,
            preview=preview,
            max_frames=max_frames,
            model=model,
            score_threshold=confidence,
            classes=None
            if classes is None
            else [name.strip() for name in classes.split(",") if name.strip()],
            decoder=decoder,
        )
        console = make_console(stderr=pipeline_config.outputs.events == "-", quiet=quiet)
        if len(pipeline_config.sources) > 1:
            _run_several(pipeline_config, console)
            return
        pipeline = Pipeline(pipeline_config)
        stopped_by = stop_on_signals(pipeline)
        summary: dict[str, Any] | None = None
        try:
            summary = _run_with_progress([pipeline], pipeline.run, quiet)
        except StreamvisionError as exc:
            # what was done up to the error is still reported; the error line follows
            summary = {**pipeline.summary(), "error": str(exc)}
            raise
        finally:
            if summary is not None:
                summary["stopped_by"] = stopped_by.get("signal")
                if pipeline_config.outputs.report is not None:
                    write_json(pipeline_config.outputs.report, summary)
                _print_summary(console, summary)
        exit_for_signal(stopped_by)


def _run_several(config: Any, console: Console) -> None:
    """Several sources: a pipeline each, side by side; one failing source does not stop the others.

    Raises:
        typer.Exit: 2 when a source failed (after every summary is printed), 128 + N on signal N.
    """
    from streamvision.multi import MultiPipeline

    multi = MultiPipeline(config)
    stopped_by = stop_on_signals(multi)
    summaries = _run_with_progress(multi.pipelines, multi.run, console.quiet)
    for summary in summaries:
        summary["stopped_by"] = stopped_by.get("signal")
        _print_summary(console, summary)
    if config.outputs.report is not None:
        write_json(config.outputs.report, {"sources": summaries})
    exit_for_signal(stopped_by)
    for source_id, error in multi.errors.items():
        typer.echo(f"error: source {source_id}: {error}", err=True)
    if multi.errors:
        raise typer.Exit(EXIT_USAGE)


def _run_with_progress(pipelines: list[Any], run: Callable[..., Any], quiet: bool = False) -> Any:
    """Calls ``run(progress=...)`` with a progress bar per pipeline on stderr (none when ``quiet``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if quiet:
        return run()

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[fps]:.1f} FPS"),
        TimeElapsedColumn(),
        console=make_console(stderr=True),
        transient=True,
    )
    with progress:
        tasks = {
            id(p): progress.add_task(p.source.source_id, total=p.total_frames, fps=0.0) for p in pipelines
        }

        def update(p: Any) -> None:
            progress.update(tasks[id(p)], completed=p.metrics.frames_out, fps=p.metrics.fps_out())

        return run(progress=update)


def _print_summary(console: Console, summary: dict[str, Any]) -> None:
    """Prints the run's summary table.

    Raises:
        SinkError: the console's stream cannot be written (a full disk behind stdout).
    """
    try:
        console.print(_summary_table(summary))
    except OSError as exc:
        stream = "stderr" if console.stderr else "stdout"
        raise SinkError(f"cannot print the summary to {stream}: {exc.strerror or exc}") from None


def _summary_table(summary: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title="streamvision run", show_header=False, box=None)
    table.add_row("source", str(summary["source"]))
    table.add_row(
        "frames", f"{summary['frames_out']} out of {summary['frames_in']} read, {summary['dropped']} dropped"
    )
    table.add_row("fps", f"{summary['fps_out']:.1f} (in {summary['fps_in']:.1f})")
    for stage, ms in summary["stage_ms"].items():
        table.add_row(f"{stage} ms", _p50_p95(ms))
    table.add_row("latency ms", _p50_p95(summary["latency_ms"]))
    table.add_row("detections", str(summary["detections"]))
    for stage, counts in summary.get("detectors", {}).items():
        table.add_row(f"{stage} runs", detector_runs(counts))
    if summary.get("reconnects") or summary.get("offline_s"):
        table.add_row("reconnects", f"{summary['reconnects']}, offline {summary['offline_s']:.1f} s")
    if summary.get("events_by_type") is not None:
        table.add_row(
            "rule events", ", ".join(f"{k} {n}" for k, n in summary["events_by_type"].items()) or "0"
        )
        for name, f in summary["event_outputs"].items():
            failed = f.get("failed", 0) + f.get("rejected", 0)
            table.add_row(
                f"  {name}",
                f"{f['delivered']} delivered, {f['backlog']} waiting (peak {f['backlog_peak']}), "
                f"{f['dropped']} dropped, {failed} failed",
            )
    if summary["output"]:
        table.add_row("video", summary["output"])
    if summary["events"]:
        table.add_row("events", summary["events"])
    return table


def detector_runs(counts: dict[str, int]) -> str:
    """What a detector did with the frames it saw (a summary's ``detectors`` entry), in one line.

    >>> detector_runs({"frames": 10, "runs": 3, "full_frame_runs": 1, "region_runs": 2,
    ...                "skipped_frames": 5, "still_frames": 2})
    '3 on 10 frames (1 whole, 2 regions), 5 not due, 2 still'
    """
    return (
        f"{counts['runs']} on {counts['frames']} frames "
        f"({counts['full_frame_runs']} whole, {counts['region_runs']} regions), "
        f"{counts['skipped_frames']} not due, {counts['still_frames']} still"
    )


def _p50_p95(ms: dict[str, float | None]) -> str:
    if ms["p50"] is None:
        return "-"
    return f"p50 {ms['p50']:.1f}, p95 {ms['p95']:.1f}"
