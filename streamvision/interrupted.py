"""Ctrl-C while nothing needs finishing yet (the command line loading or being parsed): one line and
exit code 130, at once."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import NoReturn

EXIT_INTERRUPTED = 128 + signal.SIGINT.value
"""The code a shell gives a command that Ctrl-C ended."""


def exit_interrupted(_signum: int, _frame: FrameType | None) -> NoReturn:
    """A SIGINT handler: writes ``interrupted`` and ends the process with :data:`EXIT_INTERRUPTED`.

    It ends the process without unwinding the stack: a KeyboardInterrupt (or SystemExit) raised
    while modules load can be swallowed by a library's bare ``except``, and the command would then
    go on as if no Ctrl-C had come.
    """
    try:
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
    finally:
        os._exit(EXIT_INTERRUPTED)
