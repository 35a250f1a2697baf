"""Still images: a folder, a glob pattern or a single file, read in sorted order."""

from __future__ import annotations

import glob
import logging
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from streamvision.errors import SourceError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


def is_image_path(uri: str) -> bool:
    """True when ``uri`` names an image file by its suffix."""
    return Path(uri).suffix.lower() in IMAGE_SUFFIXES


class ImageSource:
    """Reads images one by one; unreadable files are skipped and counted.

    Args:
        uri: a folder, a glob pattern (``shots/*.png``) or one image file.
        source_id: the id put on every frame.
        fps: the frame rate assigned to the sequence (timestamps are index / fps).

    Raises:
        SourceError: nothing matches, or the folder holds no images.
    """

    def __init__(self, uri: str, source_id: str, fps: int = 10) -> None:
        self.source_id = source_id
        self.live = False
        self.errors = 0
        self.rate: Fraction | None = Fraction(fps)
        self._fps = fps
        path = Path(uri)
        if path.is_dir():
            files = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        elif path.is_file():
            files = [path]
        else:
            files = [Path(p) for p in glob.glob(uri) if is_image_path(p)]
        if not files:
            raise SourceError(f"no images found at {uri}")
        self._files = sorted(files)
        self.total_frames: int | None = len(self._files)
        self._next = 0

    def read(self) -> tuple[np.ndarray, float | None] | None:
        """Returns the next readable image, or None after the last one."""
        while self._next < len(self._files):
            path = self._files[self._next]
            self._next += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                return image, (self._next - 1) / self._fps
            self.errors += 1
            log.warning("%s: skipped unreadable image %s", self.source_id, path)
        return None

    def close(self) -> None:
        self._next = len(self._files)
