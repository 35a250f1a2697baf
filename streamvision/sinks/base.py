"""The sink protocol."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from streamvision.frame import Frame


class Sink(Protocol):
    """Consumes finished frames. ``close`` finalizes output (and must run even after an error)."""

    step_name: str
    """The name its write time is reported under (``encode``, ``events``, ...)."""
    needs_annotation: bool
    """Whether the pipeline should draw results for this sink."""

    def write(self, frame: Frame, annotated: np.ndarray | None) -> None:
        """Takes one frame; ``annotated`` is its drawn image when the pipeline made one."""
        ...

    def close(self) -> None: ...
