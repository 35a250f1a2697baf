"""Events as JSON lines, in a file of their own or on stdout."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

from streamvision.errors import SinkError
from streamvision.events.config import JsonLinesOutput
from streamvision.events.event import Event


class JsonLinesWriter:
    """Appends one JSON object per event (``"type"`` is the event type) and flushes it.

    Raises:
        SinkError: the file cannot be opened (at construction) or written (in :meth:`handle`).
    """

    def __init__(self, config: JsonLinesOutput) -> None:
        self.target = config.path
        self._owns_stream = config.path != "-"
        try:
            if self._owns_stream:
                Path(config.path).parent.mkdir(parents=True, exist_ok=True)
            self._stream: TextIO = (
                Path(config.path).open("a", encoding="utf-8")  # noqa: SIM115 - closed in close()
                if self._owns_stream
                else sys.stdout
            )
        except OSError as exc:
            raise SinkError(f"cannot open events file {config.path}: {exc.strerror or exc}") from None

    def handle(self, event: Event) -> None:
        try:
            self._stream.write(json.dumps(event.to_record(), separators=(",", ":")) + "\n")
            self._stream.flush()
        except OSError as exc:
            raise SinkError(f"writing events to {self.target} failed: {exc}") from exc

    def close(self) -> None:
        if self._owns_stream and not self._stream.closed:
            self._stream.close()
