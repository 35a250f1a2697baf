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


_END_MARKERS = {".jpg": b"\xff\xd9", ".jpeg": b"\xff\xd9", ".png": b"IEND"}
"""What the last bytes of a whole file hold, for formats OpenCV decodes half-way without a word."""


def read_image(path: Path) -> tuple[np.ndarray | None, str]:
    """An image file as BGR, or None and why not: unreadable, not an image, or cut off (a JPEG or
    PNG without its end marker, which OpenCV would fill with grey and call a picture)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot read it: {exc.strerror or exc}"
    marker = _END_MARKERS.get(path.suffix.lower())
    if marker is not None and marker not in data[-64:]:
        return None, "the file is truncated"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return (image, "") if image is not None else (None, "not an image OpenCV can read")


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
        self._uri = uri
        self._read = 0
        self.total_frames: int | None = len(self._files)
        self._next = 0

    def read(self) -> tuple[np.ndarray, float | None] | None:
        """Returns the next readable image, or None after the last one. Unreadable and truncated
        files are skipped, counted and logged.

        Raises:
            SourceError: not one of the images could be read.
        """
        while self._next < len(self._files):
            path = self._files[self._next]
            self._next += 1
            image, problem = read_image(path)
            if image is not None:
                self._read += 1
                return image, (self._next - 1) / self._fps
            self.errors += 1
            log.warning("%s: skipped %s: %s", self.source_id, path, problem)
        if self._read == 0 and self.errors:
            raise SourceError(f"none of the {self.errors} images at {self._uri} could be read")
        return None

    def close(self) -> None:
        self._next = len(self._files)
