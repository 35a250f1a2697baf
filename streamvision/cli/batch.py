"""``streamvision batch DIR --config FILE``: the command line of :mod:`streamvision.cluster.batch`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from streamvision.cli.cluster_options import Address, NumCpus, figure
from streamvision.cli.console import make_console
from streamvision.cli.errors import EXIT_USAGE, reported_errors

REPORT_NAME = "batch-report.json"


def batch(
    folder: Annotated[Path, typer.Argument(help="Folder of videos; each file is one Ray task.")],
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Pipeline YAML; its source is replaced by each file.")
    ],
    address: Address = None,
    out_dir: Annotated[
        Path, typer.Option("--out-dir", "-o", help="One folder per file is written here.")
    ] = Path("streamvision-batch"),
    cpus: Annotated[
        float, typer.Option("--cpus-per-task", min=0.1, help="CPUs Ray reserves for each file's pipeline.")
    ] = 1.0,
    num_cpus: NumCpus = None,
) -> None:
    """Process a folder of videos in parallel on Ray; files done before with the same config and
    models are skipped. Exits 2 when a file failed (the others still finish)."""
    with reported_errors():
        from streamvision.cluster import connect
        from streamvision.cluster.batch import find_videos, plan
        from streamvision.cluster.fingerprint import fingerprint
        from streamvision.config import load_config
        from streamvision.reports import write_json

        base = load_config(config)
        videos = find_videos(folder.resolve())
        threads = max(1, int(cpus))
        items = plan(videos, base, out_dir.resolve(), threads)
        stamp = fingerprint(base)
        console = make_console()
        started = time.monotonic()
        ray = connect(address, num_cpus)
        ray_ready = time.monotonic()
        try:
            results = _run_with_progress(items, stamp, ray, cpus)
        finally:
            ray.shutdown()
        report = {
            "folder": str(folder.resolve()),
            "config": str(config),
            "fingerprint": stamp,
            "ray_start_s": round(ray_ready - started, 3),
            "wall_s": round(time.monotonic() - started, 3),
            "files": results,
        }
        write_json(out_dir / REPORT_NAME, report)
        _print_table(console, results, report)
        failed = [r for r in results if r["status"] == "failed"]
        for result in failed:
            typer.echo(f"error: {result['file']}: {result['error']}", err=True)
    if failed:
        raise typer.Exit(EXIT_USAGE)


def _run_with_progress(
    items: list[Any], stamp: dict[str, Any], ray: Any, cpus: float
) -> list[dict[str, Any]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from streamvision.cluster.batch import run_batch

    progress = Progress(
        TextColumn("[bold]batch"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
        TimeElapsedColumn(),
        console=make_console(stderr=True),
        transient=True,
    )
    with progress:
        task = progress.add_task("batch", total=len(items), last="")

        def update(result: dict[str, Any]) -> None:
            progress.update(task, advance=1, last=f"{Path(result['file']).name}: {result['status']}")

        return run_batch(items, stamp, ray, cpus, update)


def _print_table(console: Console, results: list[dict[str, Any]], report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"streamvision batch: {len(results)} files in {report['wall_s']:.1f} s")
    for column in ("file", "status", "node", "frames", "fps", "detections", "seconds"):
        table.add_column(column, justify="left" if column in ("file", "status", "node") else "right")
    for r in results:
        table.add_row(
            Path(r["file"]).name,
            r["status"],
            r.get("node") or "-",
            figure(r["frames"]),
            figure(r["fps"], ".1f"),
            figure(r["detections"]),
            figure(r["wall_s"], ".1f") if r["status"] != "skipped" else "-",
        )
    console.print(table)
    counts = {s: sum(r["status"] == s for r in results) for s in ("done", "skipped", "failed")}
    console.print(
        f"{counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed; "
        f"Ray ready in {report['ray_start_s']:.1f} s; report: {REPORT_NAME} in the output folder"
    )
