"""Stacks the requests of several callers into one run of a model with a free batch dimension."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from streamvision.errors import ModelError

log = logging.getLogger(__name__)

BATCH_WINDOW_S = 0.004
"""Longest a batch waits for the callers that have no request in yet (a source that is slow or gone)."""
RunFunction = Callable[[Mapping[str, np.ndarray], list[str]], list[np.ndarray]]


@dataclass(eq=False)
class _Request:
    client: str
    inputs: Mapping[str, np.ndarray]
    outputs: list[str]
    rows: int
    shapes: tuple[object, ...]
    wake: threading.Event = field(default_factory=threading.Event)
    """Set once: the request is done, or it leads the next batch."""
    result: list[np.ndarray] | None = None
    error: BaseException | None = None
    done: bool = False

    def outcome(self) -> list[np.ndarray]:
        if self.error is not None:
            raise self.error
        if self.result is None:  # the leader of its batch was interrupted before running it
            raise ModelError("the batch of this request was not run")
        return self.result


def _shapes(inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> tuple[object, ...] | None:
    """What requests must share to be stacked (every dimension but the first, dtypes, outputs), or None
    when the inputs disagree on their row count and cannot be stacked at all."""
    rows = {np.shape(value)[0] if np.ndim(value) else None for value in inputs.values()}
    if len(rows) != 1 or None in rows:
        return None
    parts = tuple(sorted((name, np.shape(v)[1:], np.asarray(v).dtype.str) for name, v in inputs.items()))
    return (parts, tuple(outputs))


class Batcher:
    """Stacks the requests of several callers into one run of a session with a free batch dimension.

    It has no thread of its own: one waiting caller at a time leads. The leader waits until every
    client that joined has a request waiting, ``max_rows`` rows that stack with its own are waiting,
    or ``window_s`` has passed; then it runs the requests that can be stacked with its own (same shapes
    past the first dimension, same dtypes and outputs) as one batch, outside the lock, hands each
    caller its rows and passes the lead to the oldest request left waiting. A batch that fails is run
    again request by request, so each caller gets its own result or its own error.

    Args:
        run: runs the session: ``run(inputs, outputs) -> arrays``.
        max_rows: most rows per run (a single larger request still runs whole).
        window_s: longest a leader waits for the clients without a request.
    """

    def __init__(self, run: RunFunction, max_rows: int, window_s: float = BATCH_WINDOW_S) -> None:
        self._run = run
        self.max_rows = max_rows
        self.window_s = window_s
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        """Wakes a gathering leader: a request came in or a client left."""
        self._pending: list[_Request] = []
        self._led = False
        """A caller leads: it gathers a batch or runs one."""
        self._clients: dict[str, int] = {}
        self.runs = 0
        """Session runs so far."""
        self.requests = 0
        self.largest = 0
        """The most requests one run stacked."""

    def join(self, client: str) -> None:
        """Counts ``client`` among the callers a batch waits for (once per handle it holds)."""
        with self._lock:
            self._clients[client] = self._clients.get(client, 0) + 1

    def leave(self, client: str) -> None:
        """Stops waiting for ``client``: it will not call again."""
        with self._lock:
            self._clients.pop(client, None)
            self._arrived.notify()

    @property
    def clients(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._clients)

    def run(self, client: str, inputs: Mapping[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        """Runs ``inputs`` (with the other callers' requests) and returns this caller's rows of ``outputs``.

        Raises:
            Exception: what ONNX Runtime raises for this request's inputs.
        """
        shapes = _shapes(inputs, outputs)
        if shapes is None:
            return self._run(inputs, outputs)
        request = _Request(client, inputs, outputs, int(np.shape(next(iter(inputs.values())))[0]), shapes)
        with self._lock:
            self._pending.append(request)
            follows = self._led
            self._led = True
            if follows:
                self._arrived.notify()
        if follows:
            request.wake.wait()
            if request.done:
                return request.outcome()
        return self._lead(request)

    def _lead(self, leader: _Request) -> list[np.ndarray]:
        batch: list[_Request] = []
        try:
            with self._lock:
                deadline = time.monotonic() + self.window_s
                while not self._full(leader) and (left := deadline - time.monotonic()) > 0:
                    self._arrived.wait(left)
                batch = self._take(leader)
                self.runs += 1
                self.requests += len(batch)
                self.largest = max(self.largest, len(batch))
            self._execute(batch)
        finally:
            with self._lock:
                if not batch:  # interrupted while gathering
                    self._pending.remove(leader)
                for item in batch:
                    item.done = True
                successor = self._pending[0] if self._pending else None
                self._led = successor is not None
            for item in batch:
                item.wake.set()
            if successor is not None:
                successor.wake.set()
        return leader.outcome()

    def _stackable(self, leader: _Request) -> list[_Request]:
        return [r for r in self._pending if r.shapes == leader.shapes]

    def _full(self, leader: _Request) -> bool:
        # A client whose request cannot join this batch is waiting all the same: it goes in the next.
        waiting = {r.client for r in self._pending}
        rows = sum(r.rows for r in self._stackable(leader))
        return rows >= self.max_rows or self._clients.keys() <= waiting

    def _take(self, leader: _Request) -> list[_Request]:
        batch, rows = [], 0
        for item in self._stackable(leader):
            if item is leader or rows + item.rows <= self.max_rows:
                batch.append(item)
                rows += item.rows
        taken = set(map(id, batch))
        self._pending = [r for r in self._pending if id(r) not in taken]
        return batch

    def _execute(self, batch: list[_Request]) -> None:
        if len(batch) > 1:
            names = list(batch[0].inputs)
            stacked = {name: np.concatenate([r.inputs[name] for r in batch]) for name in names}
            total = sum(r.rows for r in batch)
            try:
                outputs = self._run(stacked, batch[0].outputs)
                if any(np.shape(o)[:1] != (total,) for o in outputs):
                    raise ModelError(f"outputs of {[np.shape(o) for o in outputs]} for a batch of {total}")
            except Exception as exc:
                log.debug("a batch of %d failed (%s); running its requests one by one", len(batch), exc)
            else:
                start = 0
                for item in batch:
                    item.result = [o[start : start + item.rows] for o in outputs]
                    start += item.rows
                return
        for item in batch:
            try:
                item.result = self._run(item.inputs, item.outputs)
            except Exception as exc:
                item.error = exc
