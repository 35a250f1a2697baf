"""The sink protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from streamvision.frame import Frame

if TYPE_CHECKING:
    from streamvision.status import SourceStatus


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


@runtime_checkable
class StatusSink(Protocol):
    """A sink that also records source status changes (offline, back online)."""

    def write_status(self, status: SourceStatus) -> None:
        """Takes one status change; called from the same thread as :meth:`Sink.write`."""
        ...
