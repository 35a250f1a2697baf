"""The source protocol every capture backend follows."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Protocol

import numpy as np

from streamvision.errors import SourceError


class SourceStalled(SourceError):
    """A live source delivered no frame within its stall timeout (raised by :meth:`Source.read`)."""


PendingImage = Callable[[], np.ndarray]
"""Converts a decoded frame to a BGR array when called."""


def as_image(image: np.ndarray | PendingImage) -> np.ndarray:
    """The BGR array of what a source returned, converting it if it is still pending."""
    return image if isinstance(image, np.ndarray) else image()


class Source(Protocol):
    """Yields decoded frames from one place (camera, file, image folder, stream).

    Lifecycle: construct (which opens, raising :class:`~streamvision.errors.SourceError` when the
    source cannot be opened), call :meth:`read` until it returns None, then :meth:`close`.
    """

    source_id: str
    live: bool
    """Live sources (cameras, streams) run in real time: a slow consumer drops their frames."""
    rate: Fraction | None
    """Nominal frame rate, exact (30000/1001 for NTSC video), when known."""
    total_frames: int | None
    """Frame count, when known in advance (files)."""

    @property
    def errors(self) -> int:
        """Frames that could not be decoded or read and were skipped."""
        ...

    def read(self) -> tuple[np.ndarray | PendingImage, float | None] | None:
        """Returns the next BGR image and its presentation time in seconds, or None at the end.

        A live source may return the image as a :data:`PendingImage`: the decoded frame not yet
        converted to BGR, so that frames the pipeline drops are never converted.

        Raises:
            SourceError: the source failed in a way that ends it.
        """
        ...

    def close(self) -> None:
        """Releases the device, file or connection. Safe to call twice."""
        ...
