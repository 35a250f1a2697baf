"""Local cameras (webcams, capture cards) through OpenCV."""

from __future__ import annotations

import time
from fractions import Fraction

import cv2
import numpy as np

from streamvision.errors import SourceError


class CameraSource:
    """Reads a camera by device index (``--source 0``); always live.

    Raises:
        SourceError: no camera with that index can be opened.
    """

    def __init__(self, index: int, source_id: str) -> None:
        self.source_id = source_id
        self.live = True
        self.errors = 0
        self.total_frames: int | None = None
        quiet = cv2.utils.logging.getLogLevel()
        # OpenCV logs a paragraph per backend it tries; the SourceError below says it in one line.
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        try:
            self._capture = cv2.VideoCapture(index)
        finally:
            cv2.utils.logging.setLogLevel(quiet)
        if not self._capture.isOpened():
            raise SourceError(f"cannot open camera {index}")
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.rate: Fraction | None = Fraction(fps).limit_denominator(1001) if fps > 0 else None
        self._index = index
        self._start = time.monotonic()

    def read(self) -> tuple[np.ndarray, float | None] | None:
        """Returns the next frame, or None when the camera stops delivering."""
        ok, image = self._capture.read()
        if not ok:
            return None
        return image, time.monotonic() - self._start

    def close(self) -> None:
        self._capture.release()
