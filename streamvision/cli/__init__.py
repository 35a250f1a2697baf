"""The ``streamvision`` command line: one module per command, registered on one typer app here.

Each command imports what it runs only when it runs, so ``streamvision --help`` and ``streamvision
run`` start without the modules of the others.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from streamvision.cli.batch import batch
from streamvision.cli.bench import bench
from streamvision.cli.cluster import cluster_app
from streamvision.cli.configs import configs_app
from streamvision.cli.convert import convert
from streamvision.cli.errors import set_debug
from streamvision.cli.faces import faces_app
from streamvision.cli.models import models_app
from streamvision.cli.run import run
from streamvision.cli.signals import exit_on_interrupt
from streamvision.cli.train import train

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Real-time video analytics on ONNX Runtime.",
)


def _print_version(value: bool) -> None:
    if value:
        from streamvision import __version__

        typer.echo(f"streamvision {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    set_debug(debug)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


app.command()(run)
app.command()(bench)
app.command()(convert)
app.command()(train)
app.command()(batch)
app.add_typer(models_app, name="models")
app.add_typer(configs_app, name="configs")
app.add_typer(faces_app, name="faces")
app.add_typer(cluster_app, name="cluster")


def main() -> None:
    """Console-script entry point."""
    exit_on_interrupt()
    app()
