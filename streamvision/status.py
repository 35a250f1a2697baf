"""What a live source reports about itself: offline, or back online."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

StatusKind = Literal["source_offline", "source_online"]


@dataclass(frozen=True)
class SourceStatus:
    """A live source went offline or came back.

    Attributes:
        kind: ``source_offline`` or ``source_online``.
        source_id: the source's id.
        reason: why (credentials removed): the error, ``stalled ...``, ``connected``, ``reconnected``.
        reconnects: successful reconnects so far, this one included.
        offline_s: for ``source_online`` after an outage, how long the source was offline.
        at: when it happened, ``time.monotonic()``.
        wall_time: when it happened, in seconds since the epoch (for people reading the events).
    """

    kind: StatusKind
    source_id: str
    reason: str
    reconnects: int
    offline_s: float | None
    at: float
    wall_time: float

    def to_record(self) -> dict[str, Any]:
        """The JSON-ready form written to the events output."""
        record: dict[str, Any] = {
            "type": "status",
            "event": self.kind,
            "source": self.source_id,
            "reason": self.reason,
            "reconnects": self.reconnects,
            "time": round(self.wall_time, 3),
        }
        if self.offline_s is not None:
            record["offline_s"] = round(self.offline_s, 3)
        return record


StatusCallback = Callable[[SourceStatus], None]
