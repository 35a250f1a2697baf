"""How long-running commands stop: SIGINT / SIGTERM ask for a clean stop, a second signal aborts.

Before a command runs, while the command line is parsed, Ctrl-C exits at once with code 130
(:func:`exit_on_interrupt`); a command's body gets KeyboardInterrupt back (:func:`interrupt_raises`).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Protocol

import typer

from streamvision.interrupted import exit_interrupted


class Stoppable(Protocol):
    def request_stop(self, reason: str = "stopped") -> None: ...


def stop_on_signals(target: Stoppable) -> dict[str, str]:
    """SIGINT / SIGTERM call ``target.request_stop`` with the signal's name; a second one raises
    KeyboardInterrupt. Returns a mapping that gets ``signal`` once one arrived."""
    received: dict[str, str] = {}

    def handle(signum: int, _frame: FrameType | None) -> None:
        if received:
            raise KeyboardInterrupt
        received["signal"] = signal.Signals(signum).name
        target.request_stop(received["signal"])

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return received


def exit_for_signal(stopped_by: dict[str, str]) -> None:
    """Raises typer.Exit(128 + N) when signal N stopped the command (from :func:`stop_on_signals`)."""
    if "signal" in stopped_by:
        raise typer.Exit(128 + signal.Signals[stopped_by["signal"]].value)


def exit_on_interrupt() -> None:
    """From now until :func:`interrupt_raises`, SIGINT prints ``interrupted`` and exits 130.

    Click turns a KeyboardInterrupt raised while it parses the command line into "Aborted!" and exit
    code 1; SystemExit passes through it. Call from the main thread.
    """
    signal.signal(signal.SIGINT, exit_interrupted)


def interrupt_raises() -> None:
    """SIGINT raises KeyboardInterrupt again where :func:`exit_on_interrupt` made it exit: a command's
    body (its cleanups and its own handlers) expects the exception. Does nothing otherwise."""
    if (
        signal.getsignal(signal.SIGINT) is exit_interrupted
        and threading.current_thread() is threading.main_thread()
    ):
        signal.signal(signal.SIGINT, signal.default_int_handler)
