"""One inference service per run: each model opened once, shared by every pipeline, batched on request.

Stages get their models from :meth:`~streamvision.stages.base.StageContext.load_model`, which asks the
run's :class:`ModelService`. A :class:`~streamvision.multi.MultiPipeline` hands one service to the
pipeline of every source, so N cameras running the same stages open each model once (and the stages of
one pipeline that name the same model share it too). The service belongs to a run, not to the process:
a pipeline stays self-contained, and two runs in one process (or one Ray worker) do not meet.

A stage's calls reach the shared session one of two ways:

- **directly**, by default. ``InferenceSession.run`` is thread-safe and callers do not take turns
  (:data:`SERIALIZE`): ONNX Runtime runs the calls of several pipelines side by side, each on its
  caller's thread plus the session's intra-op pool.
- **through a** :class:`Batcher`, for a stage that sets ``batch: N`` on a model with a free batch
  dimension (the classifiers, faceres, MTCNN): requests that meet within :data:`BATCH_WINDOW_S` (or as
  soon as every source using the model has one waiting) are stacked into one run and each caller gets
  its rows back. A model whose graph fixes its batch size (NanoDet, BlazeFace, MoveNet, the
  segmenters) never goes through it; asking is a :class:`~streamvision.errors.ModelError`.

A slow or dead source never holds the others up: a dead one stops calling (and
:meth:`ModelService.leave` stops batches waiting for it); a caller holds no lock while it prepares its
input or decodes its output, and a batch waits for a missing caller at most :data:`BATCH_WINDOW_S`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamvision.errors import ModelError
from streamvision.runtime.batcher import BATCH_WINDOW_S, Batcher
from streamvision.runtime.session import OnnxModel, OrtSettings

SERIALIZE = False
"""Whether callers of a shared session take turns (a lock around ``run``) instead of running side by
side: turns cost more CPU per inference and lowered throughput (:class:`ModelService`)."""


class _Served:
    """A session the service opened, with its callers' figures and, once asked for, its batcher."""

    def __init__(self, model: OnnxModel, name: str, serialize: bool) -> None:
        self.model = model
        self.name = name
        self.batcher: Batcher | None = None
        self.direct_runs = 0
        self._turn = threading.Lock() if serialize else None
        self._count = threading.Lock()

    def run(self, inputs: Mapping[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        """Runs the session for one caller that does not batch."""
        with self._count:
            self.direct_runs += 1
        return self.call(inputs, outputs)

    def call(self, inputs: Mapping[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        """Runs the session: the batcher's way in, and the direct callers'."""
        if self._turn is None:
            return self.model.run(dict(inputs), outputs)
        with self._turn:
            return self.model.run(dict(inputs), outputs)

    def batching(self, batch: int | None, window_s: float) -> Batcher | None:
        """The batcher for a stage that asks for ``batch`` rows per run, or None when its calls go
        straight to the session (``batch`` None or 1).

        Raises:
            ModelError: ``batch`` > 1 on a model whose graph fixes its batch size.
        """
        fixed = self.model.fixed_batch
        if batch is not None and batch > 1 and fixed is not None:
            name, shape = next(iter(self.model.input_shapes.items()))
            raise ModelError(
                f"model {self.name!r} cannot run batches: its graph fixes the batch size at {fixed} "
                f"(input {name!r} is {shape}); remove batch: {batch} from the stage"
            )
        if batch is None or batch <= 1:
            return None
        if self.batcher is None:
            self.batcher = Batcher(self.call, batch, window_s)
        else:
            self.batcher.max_rows = max(self.batcher.max_rows, batch)
        return self.batcher


class SharedModel(OnnxModel):
    """A stage's handle on a session that a :class:`ModelService` shares: the :class:`OnnxModel`
    interface, with each run going to the session directly or through its :class:`Batcher`."""

    def __init__(self, served: _Served, client: str, batcher: Batcher | None) -> None:
        # OnnxModel.__init__ would open a session of its own: this handle describes the shared one.
        model = served.model
        self.path = model.path
        self.settings = model.settings
        self.threads = model.threads
        self.input_names = model.input_names
        self.output_names = model.output_names
        self.input_shapes = model.input_shapes
        self.output_shapes = model.output_shapes
        self.client = client
        self._served = served
        self._batcher = batcher

    @property
    def batched(self) -> bool:
        """Whether this handle's runs go through the batcher."""
        return self._batcher is not None

    def run(self, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]:
        """Runs the shared session and returns the requested outputs (all by default), in order, with
        this caller's rows only.

        Raises:
            Exception: what ONNX Runtime raises for these inputs.
        """
        names = list(outputs or self.output_names)
        if self._batcher is not None:
            return self._batcher.run(self.client, inputs, names)
        return self._served.run(inputs, names)


@dataclass(frozen=True)
class ModelStats:
    """One open session as :meth:`ModelService.stats` reports it."""

    name: str
    path: Path
    threads: int
    batch: int | None
    """Most rows per run through the batcher; None when no caller batches."""
    clients: tuple[str, ...] = ()
    """The callers a batch waits for."""
    runs: int = 0
    """Session runs: direct calls plus batches."""
    batched_requests: int = 0
    largest_batch: int = 0


class ModelService:
    """Opens each model once, for every pipeline and stage of a run that asks for it.

    Sessions are keyed by the model file and the session settings. The first :meth:`open` of a key
    opens the session with the threads its ``threads`` callable grants (one share of the run's
    :class:`~streamvision.runtime.session.ThreadBudget`); later opens share it.

    Measured on 2 cores (medians; the box was shared, so CPU per unit of work is the figure to read):

    - Threads: NanoDet called by 2, 4 and 6 threads cost 42-43 ms of CPU per inference on one shared
      session with 1 intra-op thread, 43-44 ms on a session per caller, 45-48 ms on one session with
      2 threads and 46-49 ms when the callers took turns on it (the lowest throughput too). So a
      shared session gets the threads a session per caller would get
      (:class:`~streamvision.runtime.session.ThreadBudget` ``callers``) and its callers do not queue.
      The objects pipeline on 2, 4 and 6 real-time sources: 52.9, 56.2, 61.3 ms of CPU per kept
      frame shared, 52.2, 57.2, 60.9 separate, 56.0, 62.3, 64.6 shared with 2 threads; 6 sources
      took 129 MiB more memory shared, 281 MiB separate.
    - Batching: one run of k = 2-6 rows against k runs of one row (best of 15, one thread) was
      x1.01-1.08 faster for gender, x0.97-1.11 emotion, x1.14-1.32 age, x1.20-1.36 MTCNN R-Net,
      x1.05-1.07 O-Net and x0.86-0.96 (slower) faceres; through the :class:`Batcher`, 2-6 callers
      spent x0.97-1.19 the CPU per request of direct calls. So stacking is off unless a stage asks.

    Args:
        settings: session settings for every model (the intra-op count comes from ``threads``).
        serialize: callers of one session take turns instead of running side by side.
        window_s: longest a batch waits for callers that have no request in.
    """

    def __init__(
        self,
        settings: OrtSettings | None = None,
        serialize: bool = SERIALIZE,
        window_s: float = BATCH_WINDOW_S,
    ) -> None:
        self.settings = settings or OrtSettings()
        self.serialize = serialize
        self.window_s = window_s
        self.opened = 0
        """Sessions opened so far (one per model file and settings)."""
        self._served: dict[tuple[Path, OrtSettings], _Served] = {}
        self._lock = threading.Lock()

    def open(
        self,
        path: Path,
        threads: Callable[[], int] | int = 1,
        client: str = "",
        batch: int | None = None,
        name: str | None = None,
    ) -> SharedModel:
        """A handle on the session of ``path``, opened now when no caller opened it before.

        Args:
            path: the .onnx file.
            threads: intra-op threads for a session opened now (a callable is asked only then).
            client: who calls (a pipeline's source id): a batch waits for each client that has not left.
            batch: most rows per run, stacked from the requests of every client; None or 1: each call
                runs alone.
            name: the model's name in messages and stats; the file's stem by default.

        Raises:
            ModelError: the file is missing or ONNX Runtime rejects it; ``batch`` > 1 on a model whose
                graph fixes its batch size.
        """
        key = (path.resolve(), self.settings)
        with self._lock:
            served = self._served.get(key)
            if served is None:
                count = threads() if callable(threads) else threads
                model = OnnxModel(path, threads=count, settings=self.settings)
                served = _Served(model, name or path.stem, self.serialize)
                self._served[key] = served
                self.opened += 1
            batcher = served.batching(batch, self.window_s)
        if batcher is not None:
            batcher.join(client)
        return SharedModel(served, client, batcher)

    def leave(self, client: str) -> None:
        """``client`` will not call again (its pipeline ended): batches stop waiting for it."""
        with self._lock:
            batchers = [s.batcher for s in self._served.values() if s.batcher is not None]
        for batcher in batchers:
            batcher.leave(client)

    @property
    def sessions(self) -> int:
        """How many sessions are open."""
        with self._lock:
            return len(self._served)

    def stats(self) -> list[ModelStats]:
        """Every open session with its threads, callers and runs, in the order they were opened."""
        with self._lock:
            served = list(self._served.values())
        stats = []
        for item in served:
            batcher = item.batcher
            stats.append(
                ModelStats(
                    name=item.name,
                    path=item.model.path,
                    threads=item.model.threads,
                    batch=batcher.max_rows if batcher is not None else None,
                    clients=batcher.clients if batcher is not None else (),
                    runs=item.direct_runs + (batcher.runs if batcher is not None else 0),
                    batched_requests=batcher.requests if batcher is not None else 0,
                    largest_batch=batcher.largest if batcher is not None else 0,
                )
            )
        return stats
