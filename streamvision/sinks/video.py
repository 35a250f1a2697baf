"""Annotated video as H.264 in mp4, encoded with PyAV's libx264 (plays in browsers)."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import av.error
import cv2
import numpy as np

from streamvision.errors import SinkError
from streamvision.frame import Frame

log = logging.getLogger(__name__)

DEFAULT_RATE = Fraction(25)


class VideoFileSink:
    """Writes annotated frames one for one at the source's frame rate.

    The file is opened on the first frame (its size is known then). Odd widths or heights are
    padded by one pixel, since H.264 with 4:2:0 chroma needs even sizes.

    Args:
        path: the .mp4 to write (its folder is created).
        rate: frames per second, exact (e.g. 30000/1001); 25 when the source gives none.
        crf: x264 quality, 0 (lossless) to 51.

    Raises:
        SinkError: the file cannot be created or encoding fails.
    """

    step_name = "encode"
    needs_annotation = True

    def __init__(self, path: Path, rate: Fraction | None = None, crf: int = 23) -> None:
        self.path = path
        self.rate = rate or DEFAULT_RATE
        self.crf = crf
        self.frames_written = 0
        self._container: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None

    def _open(self, width: int, height: int) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            container = av.open(str(self.path), mode="w", options={"movflags": "+faststart"})
        except (OSError, av.error.FFmpegError) as exc:
            raise SinkError(f"cannot create {self.path}: {exc}") from exc
        stream = container.add_stream("libx264", rate=self.rate)
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(self.crf), "preset": "veryfast"}
        self._container, self._stream = container, stream

    def write(self, frame: Frame, annotated: np.ndarray | None) -> None:
        image = frame.image if annotated is None else annotated
        height, width = image.shape[:2]
        if self._container is None:
            self._open(width, height)
        if width % 2 or height % 2:
            image = cv2.copyMakeBorder(image, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE)
        video_frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        video_frame.pts = self.frames_written
        self._encode(video_frame)
        self.frames_written += 1

    def _encode(self, video_frame: av.VideoFrame | None) -> None:
        if self._stream is None or self._container is None:
            return
        try:
            for packet in self._stream.encode(video_frame):
                self._container.mux(packet)
        except (OSError, av.error.FFmpegError) as exc:
            raise SinkError(f"writing {self.path} failed: {exc}") from exc

    def close(self) -> None:
        """Flushes the encoder and finalizes the mp4. Safe to call twice."""
        container = self._container
        if container is None:
            return
        try:
            self._encode(None)
        finally:
            container.close()
            self._container = self._stream = None
        log.info("wrote %d frames to %s", self.frames_written, self.path)
