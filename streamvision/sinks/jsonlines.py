"""A JSON-lines stream: a file, or stdout for ``-``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from streamvision.errors import SinkError


class JsonLinesStream:
    """Writes one compact JSON object per line and flushes it, so a killed run loses nothing written.

    Args:
        target: a file path (its folder is created), or ``-`` for stdout.
        append: add to an existing file instead of starting it anew.

    Raises:
        SinkError: the file cannot be opened (at construction) or written (in :meth:`write`).
    """

    def __init__(self, target: str, append: bool = False) -> None:
        self.target = target
        self._owns_stream = target != "-"
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
        try:
            self._stream.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._stream.flush()
        except OSError as exc:
            raise SinkError(f"writing events to {self.target} failed: {exc}") from exc

    def close(self) -> None:
        """Closes a file (stdout stays open). Safe to call twice."""
        if self._owns_stream and not self._stream.closed:
            self._stream.close()
