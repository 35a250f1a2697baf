"""One ONNX Runtime wrapper: session options and a thread budget shared by every session."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np

from streamvision.errors import ModelError

log = logging.getLogger(__name__)


class ThreadBudget:
    """Splits a fixed number of intra-op threads between the sessions of one process.

    Each session gets ``total // sessions`` threads (at least one), so the sessions of a pipeline
    together never ask for more threads than there are cores.

    Args:
        total: threads to share; defaults to the machine's core count.
        sessions: how many sessions will share them.

    Raises:
        ValueError: ``total`` or ``sessions`` below 1.
    """

    def __init__(self, total: int | None = None, sessions: int = 1) -> None:
        self.total = total or os.cpu_count() or 1
        if self.total < 1 or sessions < 1:
            raise ValueError(f"need total >= 1 and sessions >= 1, got {self.total}, {sessions}")
        if sessions > self.total:
            log.warning("%d model sessions share %d threads: one each", sessions, self.total)
        self.per_session = max(1, self.total // sessions)
        self.granted = 0
        self._lock = threading.Lock()

    def take(self) -> int:
        """Grants one session its share of intra-op threads."""
        with self._lock:
            self.granted += self.per_session
            return self.per_session


class OnnxModel:
    """An ONNX Runtime inference session on the CPU.

    Args:
        path: the .onnx file.
        threads: intra-op threads for this session (from a :class:`ThreadBudget`).

    Raises:
        ModelError: the file is missing or ONNX Runtime rejects it.
    """

    def __init__(self, path: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        if not path.is_file():
            raise ModelError(f"no such model file: {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning workers burn a core while idle, which starves decoding and encoding threads.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad graphs
            raise ModelError(f"ONNX Runtime cannot load {path}: {exc}") from exc
        self.path = path
        self.threads = threads
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]

    def run(self, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]:
        """Runs the model and returns the requested outputs (all of them by default), in order."""
        return self._session.run(outputs or self.output_names, inputs)
