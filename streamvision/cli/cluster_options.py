"""What the cluster commands share on the command line: where the cluster is, and how figures print."""

from __future__ import annotations

from typing import Annotated, Any

import typer

Address = Annotated[
    str | None,
    typer.Option(
        "--address", help="Ray cluster to use (e.g. 10.0.0.1:6379 or auto); a local one by default."
    ),
]
NumCpus = Annotated[
    int | None, typer.Option("--num-cpus", min=1, help="CPUs of the local Ray instance (all by default).")
]


def figure(value: Any, spec: str = "") -> str:
    """``value`` formatted with ``spec`` for a table cell; ``-`` for None."""
    return "-" if value is None else format(value, spec)
