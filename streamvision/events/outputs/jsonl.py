"""Events as JSON lines, in a file of their own or on stdout."""

from __future__ import annotations

from streamvision.events.config import JsonLinesOutput
from streamvision.events.event import Event
from streamvision.sinks.jsonlines import JsonLinesStream


class JsonLinesWriter:
    """Appends one JSON object per event (``"type"`` is the event type) and flushes it.

    Raises:
        SinkError: the file cannot be opened (at construction) or written (in :meth:`handle`).
    """

    def __init__(self, config: JsonLinesOutput) -> None:
        self.target = config.path
        self._stream = JsonLinesStream(config.path, append=True)

    def handle(self, event: Event) -> None:
        self._stream.write(event.to_record())

    def close(self) -> None:
        self._stream.close()
