"""The driver of ``streamvision cluster run``: an actor per source, their events, restarts and figures.

Each source's pipeline runs in a Ray actor (:class:`~streamvision.cluster.actor.SourceActor`) with the
CPUs its fleet entry declares. The driver polls every actor, writes the events they raised to the
JSON-lines, webhook and MQTT outputs of that source's pipeline, and keeps one row of figures per source.

Faults: when an actor's node dies, Ray restarts the actor on a surviving node (``max_restarts``); a
pipeline that fails is restarted the same way, by killing its actor. The driver sends
``source_offline`` when it loses a source and ``source_online`` once the new actor processes frames;
during such an outage the pipeline's own status changes are not passed on. A source whose restarts are
used up is reported as failed; the others go on. An actor whose file source finished is ended at once,
so its CPUs go to sources still waiting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streamvision.cluster.actor import SourceActor
from streamvision.cluster.fleet_config import ClusterSettings, Fleet, FleetMember
from streamvision.errors import describe
from streamvision.events.config import JsonLinesOutput
from streamvision.events.engine import status_event
from streamvision.events.event import Event
from streamvision.events.sink import open_event_channel
from streamvision.events.worker import EventChannel
from streamvision.redact import redact_url
from streamvision.status import SourceStatus, StatusKind

log = logging.getLogger(__name__)

ENDED = frozenset({"finished", "stopped", "failed"})
STATUS_TYPES = frozenset({"source_offline", "source_online"})


@dataclass
class SourceRow:
    """What the driver knows of one source: the fleet summary's row."""

    member: FleetMember
    actor: Any
    channels: list[EventChannel]
    state: str = "starting"
    node: str | None = None
    restarts: int = 0
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    events: int = 0
    events_dropped: int = 0
    """Events the actors dropped because the driver did not collect them in time, over every life."""
    dropped_by_earlier: int = 0
    """The part of :attr:`events_dropped` dropped by the lives before the current one."""
    incarnation: str | None = None
    """The actor's current life: a new one after every restart."""
    killed_incarnation: str | None = None
    """The life the driver killed after its pipeline failed (Ray is restarting it)."""
    lost_incarnation: str | None = None
    """The life current when the source was lost."""
    last_status: str | None = None
    """The last ``source_offline`` / ``source_online`` sent, so that none is sent twice in a row."""
    offline_since: float | None = None
    lost_reason: str | None = None
    recoveries: list[dict[str, Any]] = field(default_factory=list)
    poll: Any = None

    @property
    def source_id(self) -> str:
        return self.member.source_id

    def to_record(self) -> dict[str, Any]:
        """The row as JSON: state, node, restarts, the pipeline's figures, recoveries."""
        latency = self.summary.get("latency_ms") or {}
        return {
            "source": self.source_id,
            "state": self.state,
            "node": self.node,
            "cpus": self.member.cpus,
            "restarts": self.restarts,
            "frames": self.summary.get("frames_out"),
            "fps": self.summary.get("fps_out"),
            "latency_p50_ms": latency.get("p50"),
            "latency_p95_ms": latency.get("p95"),
            "dropped": self.summary.get("dropped"),
            "events": self.events,
            "events_dropped": self.events_dropped,
            "error": self.error,
            "recoveries": self.recoveries,
            "pipeline": self.summary,
        }


def actor_class(ray: Any, settings: ClusterSettings) -> Any:
    """:class:`SourceActor` as a Ray actor class with the fleet's restart limit (CPUs are per source)."""
    strategy = "SPREAD" if settings.placement == "spread" else "DEFAULT"
    return ray.remote(max_restarts=settings.max_restarts, max_task_retries=0, scheduling_strategy=strategy)(
        SourceActor
    )


class FleetRunner:
    """Starts the fleet's actors on the connected cluster and watches them until all have ended or
    :meth:`request_stop` is called.

    Args:
        fleet: the validated fleet.
        ray: the ``ray`` module, connected.

    Raises:
        SinkError: an event output of the driver cannot be opened (those opened before are closed).
    """

    def __init__(self, fleet: Fleet, ray: Any) -> None:
        self.fleet = fleet
        self.settings = fleet.settings
        self._ray = ray
        self._stop = threading.Event()
        self.stop_reason: str | None = None
        self.rows: list[SourceRow] = []
        self._channels: list[EventChannel] = []
        cls = actor_class(ray, fleet.settings)
        try:
            jsonl: dict[str, EventChannel] = {}  # one writer per file, whatever the number of sources
            for member in fleet.members:
                row = SourceRow(member, None, [])
                self.rows.append(row)
                for i, output in enumerate(member.forwarded_outputs):
                    key = output.path if isinstance(output, JsonLinesOutput) else None
                    channel = jsonl.get(key) if key is not None else None
                    if channel is None:
                        channel = open_event_channel(output, f"{output.type}.{i}", member.source_id)
                        self._channels.append(channel)
                        if key is not None:
                            jsonl[key] = channel
                    row.channels.append(channel)
                row.actor = cls.options(num_cpus=member.cpus).remote(member.config)
        except Exception:
            self._close_channels()  # actors started so far end with the Ray connection
            raise

    def request_stop(self, reason: str = "stopped") -> None:
        """Asks :meth:`run` to stop every pipeline (their outputs are finalized) and return."""
        if not self._stop.is_set():
            self.stop_reason = reason
            self._stop.set()

    def run(self, on_poll: Callable[[list[SourceRow]], None] | None = None) -> list[SourceRow]:
        """Polls the actors until every source has ended or a stop is requested; returns the rows.

        ``on_poll(rows)`` is called after each round of polls.
        """
        try:
            while not self._stop.is_set() and any(row.state not in ENDED for row in self.rows):
                started = time.monotonic()
                live = [row for row in self.rows if row.state not in ENDED]
                for row in live:
                    if row.poll is None:
                        row.poll = row.actor.poll.remote()
                self._collect({row.poll: row for row in live}, self.settings.poll_interval)
                if on_poll is not None:
                    on_poll(self.rows)
                self._stop.wait(max(0.0, self.settings.poll_interval - (time.monotonic() - started)))
            if self._stop.is_set():
                self._stop_all()
        finally:
            for row in self.rows:
                if row.actor is not None:
                    self._ray.kill(row.actor, no_restart=True)
            self._close_channels()
        return self.rows

    def _collect(self, polls: dict[Any, SourceRow], timeout: float) -> None:
        """Handles the polls that answer within ``timeout`` s; the others stay pending."""
        ray = self._ray
        ready, _ = ray.wait(list(polls), num_returns=len(polls), timeout=timeout)
        for ref in ready:
            row = polls[ref]
            row.poll = None
            try:
                report = ray.get(ref)
            except ray.exceptions.ActorDiedError as exc:
                self._gone(row, row.error or describe(exc))
            except ray.exceptions.RayActorError as exc:  # unavailable for now: Ray is restarting it
                self._lost(row, f"actor unavailable ({type(exc).__name__})")
            except ray.exceptions.RayError as exc:  # the poll itself failed: treat as a failed pipeline
                row.error = describe(exc)
                self._restart_or_fail(row)
            else:
                self._handle(row, report)

    def _handle(self, row: SourceRow, report: dict[str, Any]) -> None:
        if row.incarnation is not None and report["incarnation"] != row.incarnation:
            row.restarts += 1
            row.dropped_by_earlier = row.events_dropped
            self._lost(row, row.lost_reason or "actor restarted")
        row.incarnation = report["incarnation"]
        row.events_dropped = row.dropped_by_earlier + report["events_dropped"]
        row.node = report["node"]
        if report["summary"] is not None:
            row.summary = report["summary"]
        self._dispatch(row, report["events"])
        state = report["state"]
        if state == "failed":
            row.error = report["error"]
            if self._stop.is_set():
                row.state = "failed"  # stopping: no restart
            else:
                self._restart_or_fail(row)
            return
        row.state = state
        if row.offline_since is not None:
            if report["incarnation"] == row.lost_incarnation:  # the same actor answers again
                self._back(row, time.time(), f"reachable again on {row.node}")
            elif report["first_frame_at"] is not None:
                self._back(row, report["first_frame_at"], f"restarted on {row.node}")
            elif state not in ENDED:
                row.state = "offline"  # restarted, no frame yet
        if state == "finished":
            self._ray.kill(row.actor, no_restart=True)  # frees its CPUs for sources still waiting

    def _restart_or_fail(self, row: SourceRow) -> None:
        """Kills a failed pipeline's actor so that Ray restarts it, unless its restarts are used up."""
        if row.restarts >= self.settings.max_restarts:
            self._gone(row, row.error or "failed")
            return
        if row.killed_incarnation == row.incarnation:
            return  # already killed; Ray is restarting it
        row.killed_incarnation = row.incarnation
        self._lost(row, f"pipeline failed: {row.error}")
        self._ray.kill(row.actor, no_restart=False)

    def _lost(self, row: SourceRow, reason: str) -> None:
        row.state = "offline"
        if row.offline_since is None:
            row.offline_since = time.time()
            row.lost_reason = redact_url(reason)
            row.lost_incarnation = row.incarnation
            log.warning("source %s offline: %s", row.source_id, row.lost_reason)
            self._status(row, "source_offline", row.lost_reason, None)

    def _back(self, row: SourceRow, at: float, reason: str) -> None:
        """The source processes frames again since ``at`` (seconds since the epoch)."""
        assert row.offline_since is not None
        offline_s = max(0.0, at - row.offline_since)
        row.recoveries.append(
            {
                "lost_at": round(row.offline_since, 3),
                "reason": row.lost_reason,
                "first_frame_at": round(at, 3),
                "offline_s": round(offline_s, 3),
                "node": row.node,
            }
        )
        row.offline_since = None
        row.lost_reason = None
        row.error = None
        self._status(row, "source_online", reason, offline_s)

    def _gone(self, row: SourceRow, error: str) -> None:
        """The source has ended for good: its restarts are used up or its actor cannot be restarted."""
        self._lost(row, error)
        row.state = "failed"
        row.error = redact_url(error)
        self._ray.kill(row.actor, no_restart=True)

    def _status(self, row: SourceRow, kind: StatusKind, reason: str, offline_s: float | None) -> None:
        events = row.member.config.events
        if events is None or events.source_status:
            status = SourceStatus(
                kind, row.source_id, reason, row.restarts, offline_s, time.monotonic(), time.time()
            )
            self._send(row, status_event(status))

    def _dispatch(self, row: SourceRow, records: list[dict[str, Any]]) -> None:
        for record in records:
            if record["type"] in STATUS_TYPES and row.offline_since is not None:
                continue  # the driver reports this outage itself
            self._send(row, Event.from_record(record))

    def _send(self, row: SourceRow, event: Event) -> None:
        if event.type in STATUS_TYPES:
            if row.last_status == event.type:
                return
            row.last_status = event.type
        row.events += 1
        for channel in row.channels:
            channel.submit(event)

    def _stop_all(self) -> None:
        """Stops every pipeline still running and collects its last events and figures."""
        ray = self._ray
        in_flight = {row.poll: row for row in self.rows if row.state not in ENDED and row.poll is not None}
        if in_flight:  # their events are taken from the actors already: handle them first
            self._collect(in_flight, self.settings.stop_timeout)
        live = [row for row in self.rows if row.state not in ENDED]
        refs = {row.actor.stop.remote(self.settings.stop_timeout): row for row in live}
        ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=self.settings.stop_timeout + 5)
        for ref in ready:
            row = refs[ref]
            try:
                self._handle(row, ray.get(ref))
            except ray.exceptions.RayError as exc:
                row.error = row.error or describe(exc)
        for ref in late:
            log.warning(
                "source %s did not stop within %g s: its files may be unfinished",
                refs[ref].source_id,
                self.settings.stop_timeout,
            )
        for row in live:
            if row.state not in ENDED:
                row.state = "stopped"

    def _close_channels(self) -> None:
        for channel in self._channels:
            try:
                channel.close()
            except Exception as exc:
                log.error("closing output %s failed: %s", channel.name, exc)
