"""The rich consoles that print tables and progress."""

from __future__ import annotations

import os

from rich.console import Console

PIPED_WIDTH = 200
"""Columns of a table written to a file or pipe: rich's default there is 80, which cuts wide tables."""


def make_console(stderr: bool = False, quiet: bool = False) -> Console:
    """A console on stdout (or stderr): the terminal's width, or ``PIPED_WIDTH`` off a terminal unless
    COLUMNS says otherwise; a ``quiet`` one prints nothing."""
    console = Console(stderr=stderr, quiet=quiet)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPED_WIDTH
    return console
