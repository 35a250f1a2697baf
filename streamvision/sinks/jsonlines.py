"""A JSON-lines stream: a file, or stdout for ``-``."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from streamvision.errors import SinkError


class JsonLinesStream:
    """Writes one compact JSON object per line and flushes it, so a killed run loses nothing written.

    Args:
        target: a file path (its folder is created), or ``-`` for stdout.
        append: add to an existing file instead of starting it anew.
        on_reader_gone: called once when stdout's reader has closed the pipe (``| head``); the stream
            then drops what it is given instead of failing.

    Raises:
        SinkError: the file cannot be opened, stdout is closed (at construction), or a write fails (in
            :meth:`write`).
    """

    def __init__(
        self, target: str, append: bool = False, on_reader_gone: Callable[[], None] | None = None
    ) -> None:
        self.target = target
        self._owns_stream = target != "-"
        self._on_reader_gone = on_reader_gone
        self.reader_gone = False
        if not self._owns_stream and sys.stdout is None:
            raise SinkError("events to - (stdout), but stdout is closed: give --events a file")
        try:
            if self._owns_stream:
                Path(target).parent.mkdir(parents=True, exist_ok=True)
            self._stream: TextIO = (
                Path(target).open("a" if append else "w", encoding="utf-8")  # noqa: SIM115 - see close()
                if self._owns_stream
                else sys.stdout
            )
        except OSError as exc:
            raise SinkError(f"cannot open events file {target}: {exc.strerror or exc}") from None

    def write(self, record: dict[str, Any]) -> None:
        if self.reader_gone:
            return
        try:
            self._stream.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._stream.flush()
        except BrokenPipeError:
            if self._owns_stream:
                raise SinkError(f"writing events to {self.target} failed: its reader closed it") from None
            self._reader_left()
        except OSError as exc:
            raise SinkError(f"writing events to {self.target} failed: {exc.strerror or exc}") from exc

    def _reader_left(self) -> None:
        self.reader_gone = True
        # Python flushes stdout again at exit: point it at /dev/null so that flush cannot fail
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)
        if self._on_reader_gone is not None:
            self._on_reader_gone()

    def close(self) -> None:
        """Closes a file (stdout stays open). Safe to call twice."""
        if self._owns_stream and not self._stream.closed:
            self._stream.close()
