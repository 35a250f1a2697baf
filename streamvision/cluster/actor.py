"""One source's pipeline as a Ray actor: ``streamvision cluster run`` starts one per source.

The actor runs an unchanged :class:`~streamvision.pipeline.Pipeline` on a thread of its own, started by
the constructor, so a restarted actor (Ray re-runs the constructor on a surviving node) goes straight
back to work. The driver polls it for the events its rules raised and for its figures; events travel
as return values of those calls (Ray's own transport).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import warnings
from collections import deque
from pathlib import Path
from typing import Any, Literal

from streamvision.config import PipelineConfig
from streamvision.errors import describe
from streamvision.events.event import Event
from streamvision.reports import write_json

log = logging.getLogger(__name__)

ActorState = Literal["starting", "running", "finished", "stopped", "failed"]


FORWARD_LIMIT = 10_000


class ForwardedEvents:
    """An event channel that keeps events until the driver collects them with :meth:`take`.

    Args:
        limit: events kept at most; when full, the oldest is dropped and counted (a WARNING is logged
            at the first drop), so a driver that stops polling cannot exhaust the actor's memory.

    Raises:
        ValueError: ``limit`` is below 1.
    """

    name = "forward"

    def __init__(self, limit: int = FORWARD_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self._events: deque[Event] = deque(maxlen=limit)
        self._lock = threading.Lock()  # submit runs on the pipeline's thread, take on Ray's
        self.submitted = 0
        self.dropped = 0

    def submit(self, event: Event) -> None:
        """Keeps ``event`` for the next :meth:`take`; drops the oldest kept event when full."""
        with self._lock:
            full = len(self._events) == self.limit
            self._events.append(event)  # a full deque with a maxlen drops its oldest
            self.submitted += 1
            if full:
                self.dropped += 1
            first_drop = full and self.dropped == 1
        if first_drop:
            log.warning(
                "source %s: %d events wait for the driver to collect them: dropping the oldest",
                event.source,
                self.limit,
            )

    def take(self) -> list[dict[str, Any]]:
        """Every event kept since the last call, as JSON-ready records, oldest first."""
        with self._lock:
            taken = list(self._events)
            self._events.clear()
        return [event.to_record() for event in taken]

    def stats(self) -> dict[str, Any]:
        """Events submitted, dropped (buffer full) and waiting for the driver."""
        with self._lock:
            return {"submitted": self.submitted, "dropped": self.dropped, "backlog": len(self._events)}

    def close(self, deadline: float | None = None) -> None:
        """Nothing to finish: the driver collects what is left after the pipeline ends."""


class SourceActor:
    """Runs one source's pipeline; made a Ray actor class by :func:`streamvision.cluster.fleet.actor_class`.

    Args:
        config: a single-source pipeline config, its outputs already named for this source. A
            restarted actor writes next to the files of the one before (see :func:`next_outputs`).

    Never raises: a pipeline that cannot open or fails later reports ``state: failed`` with its error.
    """

    def __init__(self, config: PipelineConfig) -> None:
        self.config = next_outputs(config) if _reconstructed() else config
        self.incarnation = uuid.uuid4().hex
        self.state: ActorState = "starting"
        self.error: str | None = None
        self.first_frame_at: float | None = None  # seconds since the epoch
        self._forward = ForwardedEvents()
        self._pipeline: Any = None
        self._stop_requested = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sv-fleet-pipeline", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from streamvision.pipeline import Pipeline

        try:
            self._pipeline = Pipeline(self.config, forward_events=(self._forward,))
            if self._stop_requested.is_set():
                self._pipeline.request_stop("fleet stopped")
            self.state = "running"
            summary = self._pipeline.run(progress=self._on_frame)
            if self.config.outputs.report is not None:
                write_json(self.config.outputs.report, summary)
        except Exception as exc:  # the driver decides about restarts: the failure is reported as data
            self.error = describe(exc)
            log.warning("source %s failed: %s", self.config.source.id, self.error)
            self.state = "failed"
            return
        self.state = "stopped" if self._stop_requested.is_set() else "finished"

    def _on_frame(self, pipeline: Any) -> None:
        if self.first_frame_at is None:
            self.first_frame_at = time.time()

    def poll(self) -> dict[str, Any]:
        """The state, the node, the events since the last poll, how many events were dropped because
        the driver did not collect them in time (over the actor's life), and the pipeline's figures
        so far."""
        import ray

        pipeline = self._pipeline
        return {
            "incarnation": self.incarnation,
            "state": self.state,
            "error": self.error,
            "node": ray.util.get_node_ip_address(),
            "first_frame_at": self.first_frame_at,
            "events": self._forward.take(),
            "events_dropped": self._forward.dropped,
            "summary": None if pipeline is None else pipeline.summary(),
        }

    def stop(self, timeout: float) -> dict[str, Any]:
        """Stops the pipeline (its outputs are finalized) and waits up to ``timeout`` s; then polls."""
        self._stop_requested.set()
        if self._pipeline is not None:
            self._pipeline.request_stop("fleet stopped")
        self._thread.join(timeout)
        return self.poll()


def next_outputs(config: PipelineConfig) -> PipelineConfig:
    """``config`` with its output files (video, per-frame events, report) named ``name.restartN.ext``,
    N the first number none of them has yet, so a restarted pipeline keeps what the ones before wrote."""
    outputs = config.outputs
    files = [p for p in (outputs.video, outputs.report) if p is not None]
    if outputs.events not in (None, "-"):
        files.append(Path(str(outputs.events)))
    n = 1
    while any(_restart_name(path, n).exists() for path in files):
        n += 1
    return config.model_copy(update={"outputs": outputs.with_files(lambda path: _restart_name(path, n))})


def _restart_name(path: Path, n: int) -> Path:
    return path.with_name(f"{path.stem}.restart{n}{path.suffix}")


def _reconstructed() -> bool:
    """True in an actor Ray has restarted (after its node or process died, or the driver killed it)."""
    import ray

    with warnings.catch_warnings():  # Ray 2.60 warns about an API it uses itself inside this call
        warnings.simplefilter("ignore")
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)
