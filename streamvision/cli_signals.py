"""How long-running commands stop: SIGINT / SIGTERM ask for a clean stop, a second signal aborts."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Protocol

import typer


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
