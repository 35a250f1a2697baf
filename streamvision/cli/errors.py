"""How every command reports errors: one line and exit code 2 for bad input, tracebacks on --debug;
Ctrl-C is one line and exit code 130."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from streamvision.cli.signals import interrupt_raises
from streamvision.errors import StreamvisionError
from streamvision.interrupted import EXIT_INTERRUPTED

EXIT_USAGE = 2
_debug = {"on": False}


def set_debug(on: bool) -> None:
    """Set by the ``--debug`` option: errors then keep their traceback."""
    _debug["on"] = on


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turns errors into one line on stderr and an exit code; ``--debug`` keeps the traceback.

    Raises:
        typer.Exit: code 2 for a :class:`StreamvisionError`, 1 for anything unexpected, 130 for
            KeyboardInterrupt (Ctrl-C before a command handles signals itself, or a second one).
    """
    interrupt_raises()
    try:
        yield
    except StreamvisionError as exc:
        if _debug["on"]:
            raise
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:
        if _debug["on"]:
            raise
        typer.echo(
            f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for details)", err=True
        )
        raise typer.Exit(1) from None
