"""One ONNX Runtime wrapper: session options and a thread budget shared by every session."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from streamvision.errors import ModelError

log = logging.getLogger(__name__)


def default_threads() -> int:
    """Intra-op threads a pipeline's models share by default: one per core."""
    return os.cpu_count() or 1


class ThreadBudget:
    """Splits a fixed number of intra-op threads between the sessions of one process.

    Each session gets ``total // sessions`` threads (at least one), so the sessions of a pipeline
    together never ask for more threads than there are cores.

    By default the sessions share a thread per core. Leaving a core to the capture and output threads
    pays only when inference is light: on 2 cores the face pipeline ran at 324 FPS with 1 intra-op
    thread against 282 FPS with 2, but the NanoDet pipeline at 19.5 FPS against 30.5 FPS
    (``streamvision bench``; its thread table shows the figures for any pipeline).

    A session that several pipelines call side by side (one shared by every source of a run, see
    :mod:`streamvision.runtime.service`) counts once per caller: N concurrent calls of a session use the
    N calling threads plus its intra-op pool, so it gets ``total // (sessions * callers)``. With NanoDet
    called by 2 to 6 threads on 2 cores, 1 intra-op thread cost 42-44 ms of CPU per inference and 2
    threads 45-48 ms, shared or not.

    Args:
        total: threads to share; defaults to the core count.
        sessions: how many sessions will share them.
        callers: how many threads call each session at once (the sources sharing it).

    Raises:
        ValueError: ``total``, ``sessions`` or ``callers`` below 1.
    """

    def __init__(self, total: int | None = None, sessions: int = 1, callers: int = 1) -> None:
        self.total = total or default_threads()
        if self.total < 1 or sessions < 1 or callers < 1:
            raise ValueError(
                f"need total, sessions and callers >= 1, got {self.total}, {sessions}, {callers}"
            )
        if sessions * callers > self.total:
            callers_text = f", each called by {callers} pipelines," if callers > 1 else ""
            log.warning("%d model sessions%s share %d threads: one each", sessions, callers_text, self.total)
        self.per_session = max(1, self.total // (sessions * callers))
        self.granted = 0
        self._lock = threading.Lock()

    def take(self) -> int:
        """Grants one session its share of intra-op threads."""
        with self._lock:
            self.granted += self.per_session
            return self.per_session


@dataclass(frozen=True)
class OrtSettings:
    """ONNX Runtime session settings, defaults chosen from ``streamvision bench`` on a 2-core CPU.

    Full graph optimisation: BlazeFace 1.25 ms against 2.2 ms with basic or none. Sequential execution:
    parallel made no difference. No spinning: spinning workers make one model faster alone (0.97 ms
    against 1.38 ms with 2 threads) but slow the pipeline, whose decode and encode threads need the
    cores (246 FPS against 282 FPS with 2 threads; 320 against 324 with 1).
    """

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    execution_mode: Literal["sequential", "parallel"] = "sequential"
    spinning: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def session_options(self) -> Any:
        """The equivalent ``onnxruntime.SessionOptions``."""
        import onnxruntime as ort

        levels = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        options.graph_optimization_level = levels[self.graph_optimization]
        options.execution_mode = (
            ort.ExecutionMode.ORT_PARALLEL
            if self.execution_mode == "parallel"
            else ort.ExecutionMode.ORT_SEQUENTIAL
        )
        # Spinning workers burn a core while idle, which starves the decoding and encoding threads.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "1" if self.spinning else "0")
        return options


class OnnxModel:
    """An ONNX Runtime inference session on the CPU.

    Args:
        path: the .onnx file.
        threads: intra-op threads for this session (from a :class:`ThreadBudget`).
        settings: the other session settings; ``threads`` overrides its intra-op count.

    Raises:
        ModelError: the file is missing or ONNX Runtime rejects it.
    """

    def __init__(self, path: Path, threads: int = 1, settings: OrtSettings | None = None) -> None:
        import onnxruntime as ort

        if not path.is_file():
            raise ModelError(f"no such model file: {path}")
        self.settings = replace(settings or OrtSettings(), intra_op_threads=threads)
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=self.settings.session_options(), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad graphs
            raise ModelError(f"ONNX Runtime cannot load {path}: {exc}") from exc
        self.path = path
        self.threads = threads
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]
        self.input_shapes = {i.name: list(i.shape) for i in self._session.get_inputs()}
        self.output_shapes = {o.name: list(o.shape) for o in self._session.get_outputs()}

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the graph fixes (the first dimension of an input or output that is a number),
        or None when every input and output leaves it free, so requests can be stacked into one run."""
        for shape in (*self.input_shapes.values(), *self.output_shapes.values()):
            if shape and isinstance(shape[0], int) and shape[0] > 0:
                return shape[0]
        return None

    def run(self, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]:
        """Runs the model and returns the requested outputs (all of them by default), in order."""
        results: list[np.ndarray] = self._session.run(outputs or self.output_names, inputs)
        return results
