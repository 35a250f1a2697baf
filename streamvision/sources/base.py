"""The source protocol every capture backend follows."""

from __future__ import annotations

from fractions import Fraction
from typing import Protocol

import numpy as np

from streamvision.errors import SourceError


class SourceStalled(SourceError):
    """A live source delivered no frame within its stall timeout (raised by :meth:`Source.read`)."""


class PendingImage(Protocol):
    """A decoded frame not yet converted to BGR: the conversion runs when it is called, so frames the
    pipeline drops are never converted."""

    def __call__(self, max_size: int | None = None) -> np.ndarray:
        """The frame as a BGR array, scaled (aspect ratio kept) so that its longer side is at most
        ``max_size`` as :func:`fitted_size` says, when given."""
        ...


def fitted_size(width: int, height: int, max_size: int | None) -> tuple[int, int]:
    """The size a ``width`` x ``height`` picture is scaled down to so that its longer side is at most
    ``max_size``: its aspect ratio kept, both sides made even (what H.264's 4:2:0 chroma needs). A
    picture that fits already, or any picture when ``max_size`` is None, keeps its own size.

    Example:
        >>> fitted_size(1280, 720, 640), fitted_size(640, 272, 320), fitted_size(176, 144, 640)
        ((640, 360), (320, 136), (176, 144))
    """
    longer = max(width, height)
    if max_size is None or longer <= max_size:
        return width, height
    limit = max(2, max_size // 2 * 2)

    def side(length: int) -> int:
        return max(2, min(limit, round(length * limit / longer / 2) * 2))

    return side(width), side(height)


def as_image(image: np.ndarray | PendingImage, max_size: int | None = None) -> np.ndarray:
    """The BGR array of what a source returned, converting it if it is still pending, and scaled down
    to :func:`fitted_size` when ``max_size`` is given (a pending frame in the same conversion step)."""
    if not isinstance(image, np.ndarray):
        return image(max_size)
    height, width = image.shape[:2]
    size = fitted_size(width, height, max_size)
    if size == (width, height):
        return image
    import cv2  # a source with nothing to scale never needs it

    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


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
