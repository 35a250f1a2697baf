"""``streamvision cluster run --config FLEET.yaml``: the command line of :mod:`streamvision.cluster.fleet`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from streamvision.cli.cluster_options import Address, NumCpus, figure
from streamvision.cli.console import make_console
from streamvision.cli.errors import EXIT_USAGE, reported_errors

cluster_app = typer.Typer(help="Run many sources on a Ray cluster (extra 'cluster').", no_args_is_help=True)


@cluster_app.command("run")
def run_fleet(
    config: Annotated[Path, typer.Option("--config", "-c", help="Fleet YAML: sources and their pipelines.")],
    address: Address = None,
    num_cpus: NumCpus = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the fleet summary (and recoveries) as JSON.")
    ] = None,
) -> None:
    """Run each source's pipeline as a Ray actor until every source ends or Ctrl-C stops the fleet.
    Exits 2 when a source failed for good (after its restarts)."""
    with reported_errors():
        from streamvision.cli.signals import exit_for_signal, stop_on_signals
        from streamvision.cluster import connect
        from streamvision.cluster.fleet import FleetRunner
        from streamvision.cluster.fleet_config import load_fleet
        from streamvision.reports import write_json

        fleet = load_fleet(config)
        started = time.monotonic()
        ray = connect(address, num_cpus)
        try:
            _warn_if_short_of_cpus(ray, fleet)
            runner = FleetRunner(fleet, ray)
            stopped_by = stop_on_signals(runner)
            rows = _run_with_live_table(runner)
        finally:
            ray.shutdown()
        records = [row.to_record() for row in rows]
        summary = {
            "config": str(config),
            "wall_s": round(time.monotonic() - started, 3),
            "stopped_by": stopped_by.get("signal"),
            "sources": records,
        }
        if report is not None:
            write_json(report, summary)
        make_console().print(fleet_table(records, f"streamvision fleet: {len(records)} sources"))
        failed = [r for r in records if r["state"] == "failed"]
        for record in failed:
            typer.echo(f"error: source {record['source']}: {record['error']}", err=True)
        exit_for_signal(stopped_by)
    if failed:
        raise typer.Exit(EXIT_USAGE)


def _warn_if_short_of_cpus(ray: Any, fleet: Any) -> None:
    largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
    for member in fleet.members:
        if member.cpus > largest:
            typer.echo(
                f"warning: source {member.source_id} reserves {member.cpus:g} CPUs and the largest node "
                f"has {largest:g}: it waits until such a node joins",
                err=True,
            )
    needed = sum(member.cpus for member in fleet.members)
    available = ray.cluster_resources().get("CPU", 0)
    if needed > available:
        typer.echo(
            f"warning: the sources reserve {needed:g} CPUs and the cluster has {available:g}: "
            "some wait until others end (lower cpus_per_source, or give a local run --num-cpus)",
            err=True,
        )


def _run_with_live_table(runner: Any) -> Any:
    from rich.live import Live

    console = make_console(stderr=True)
    with Live(console=console, transient=True, auto_refresh=False) as live:

        def update(rows: list[Any]) -> None:
            live.update(fleet_table([row.to_record() for row in rows], "fleet"), refresh=True)

        return runner.run(update)


def fleet_table(records: list[dict[str, Any]], title: str) -> Table:
    """One row per source: state, node, restarts, frames, FPS, latency, drops, events."""
    table = Table(title=title)
    columns = ("source", "state", "node", "restarts", "frames", "fps", "latency ms", "dropped", "events")
    for column in columns:
        table.add_column(column, justify="left" if column in ("source", "state", "node") else "right")
    for r in records:
        p50, p95 = r["latency_p50_ms"], r["latency_p95_ms"]
        latency = "-" if p50 is None else f"{p50:.0f} / {p95:.0f}"
        table.add_row(
            r["source"],
            r["state"],
            r["node"] or "-",
            str(r["restarts"]),
            figure(r["frames"]),
            figure(r["fps"], ".1f"),
            latency,
            figure(r["dropped"]),
            str(r["events"]),
        )
    return table
