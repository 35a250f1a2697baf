"""Video files and network streams, decoded with PyAV (FFmpeg)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np

from streamvision.errors import SourceError

log = logging.getLogger(__name__)

_STREAM_OPTIONS = {"rtsp_transport": "tcp", "timeout": "5000000"}


class VideoSource:
    """Decodes the first video stream of a file or URL in presentation order.

    Args:
        uri: a file path or an ``rtsp://`` / ``http(s)://`` URL.
        source_id: the id put on every frame.
        live: treat it as a live stream (URLs) rather than a lossless file.

    Raises:
        SourceError: the file is missing or empty, is not a video, or holds no video stream.
    """

    def __init__(self, uri: str, source_id: str, live: bool = False) -> None:
        self.source_id = source_id
        self.live = live
        self.errors = 0
        if not live:
            path = Path(uri)
            if not path.is_file():
                raise SourceError(f"no such video file: {uri}")
            if path.stat().st_size == 0:
                raise SourceError(f"video file is empty: {uri}")
        try:
            self._container = av.open(uri, options=_STREAM_OPTIONS if live else None)
        except (av.error.FFmpegError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise SourceError(
                f"cannot open {uri} as a video (corrupt, truncated or not a video): {reason}"
            ) from exc
        if not self._container.streams.video:
            self._container.close()
            raise SourceError(f"{uri} holds no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        rate = self._stream.average_rate or self._stream.base_rate
        self.rate: Fraction | None = Fraction(rate) if rate else None
        self.total_frames = (self._stream.frames or None) if not live else None
        self._uri = uri
        self._frames = self._decode()
        self._decoded = 0

    def _decode(self) -> Iterator[av.VideoFrame]:
        for packet in self._container.demux(self._stream):
            try:
                yield from packet.decode()
            except av.error.InvalidDataError as exc:
                self.errors += 1
                log.warning("%s: skipped a corrupt packet: %s", self.source_id, exc)

    def read(self) -> tuple[np.ndarray, float | None] | None:
        """Returns the next BGR frame and its time in seconds, or None at the end.

        Raises:
            SourceError: the file decodes to no frame at all (corrupt or truncated).
        """
        try:
            frame = next(self._frames)
        except StopIteration:
            if self._decoded == 0:
                raise SourceError(f"{self._uri}: no frame could be decoded") from None
            return None
        except av.error.FFmpegError as exc:
            raise SourceError(f"{self._uri}: read failed: {exc.strerror or exc}") from exc
        self._decoded += 1
        return frame.to_ndarray(format="bgr24"), frame.time

    def close(self) -> None:
        self._container.close()
