"""Video files and network streams, decoded with PyAV (FFmpeg)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from functools import partial
from pathlib import Path

import av
import av.error
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from streamvision.errors import SourceError
from streamvision.redact import redact_url
from streamvision.sources.base import PendingImage, SourceStalled, fitted_size

log = logging.getLogger(__name__)


def stream_options(uri: str, transport: str, socket_timeout: float) -> dict[str, str]:
    """FFmpeg options for a network stream: the RTSP transport and a socket I/O timeout.

    The timeouts that matter (open, and no data while reading) are enforced by PyAV's interrupt
    callback for every protocol; the socket timeout is a backstop inside FFmpeg itself.
    """
    microseconds = str(int(socket_timeout * 1_000_000))
    if uri.startswith(("rtsp://", "rtsps://")):
        return {"rtsp_transport": transport, "timeout": microseconds}
    return {"rw_timeout": microseconds}


def _read_timeout(uri: str, stall_timeout: float) -> float:
    """PyAV's read timeout that makes a silent stream fail after ``stall_timeout`` seconds.

    FFmpeg's RTSP demuxer (TCP and UDP alike) gives up only after twice the read timeout without data,
    HTTP after once (measured with FFmpeg 8 against a frozen server).
    """
    return stall_timeout / 2 if uri.startswith(("rtsp://", "rtsps://")) else stall_timeout


_ROTATE = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}


def display_rotation(frame: av.VideoFrame) -> int:
    """How far ``frame`` must be turned counterclockwise to be shown upright, in degrees: 0, 90, 180
    or 270, from its display matrix (a phone's portrait video, a ``rotate`` tag of 90, gives 270).

    The display matrix's mirroring, rare outside front cameras, is not applied.
    """
    rotation = getattr(frame, "rotation", 0)  # PyAV 13 and later
    return round(rotation / 90) % 4 * 90


MAX_DECODE_THREADS = 4
"""Threads one decoder uses at most: a box running many sources has its cores busy with them all."""


def decode_threads() -> int:
    """Threads for one decoder: the cores this process may run on, at most :data:`MAX_DECODE_THREADS`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DECODE_THREADS))


class Converter:
    """Turns decoded frames into upright BGR arrays (see :func:`display_rotation`), optionally scaled
    down to a longest side, in one swscale call per frame.

    It keeps one swscale context between frames, on one thread: ``VideoFrame.to_ndarray(format=...)``
    sets a new one up for every frame, with a pool of threads, and took 4x the time at 640x272, 2.2x
    at 1280x720 (measured on 2 busy cores).

    Args:
        max_size: scale every frame so that its longer side is at most this (see
            :func:`~streamvision.sources.base.fitted_size`); None keeps the decoded size.
    """

    def __init__(self, max_size: int | None = None) -> None:
        self.max_size = max_size
        self._reformatter = VideoReformatter()
        # deferred frames are converted on the thread that keeps them; the context is not thread-safe
        self._lock = threading.Lock()

    def __call__(self, frame: av.VideoFrame, max_size: int | None = None) -> np.ndarray:
        """``frame`` as an upright BGR array, its longer side at most ``max_size`` (and the
        converter's own ``max_size``) when given."""
        limits = [limit for limit in (self.max_size, max_size) if limit is not None]
        size = fitted_size(frame.width, frame.height, min(limits) if limits else None)
        # area averaging when scaling down: swscale's default bilinear filter aliases
        interpolation = None if size == (frame.width, frame.height) else "AREA"
        with self._lock:
            converted = self._reformatter.reformat(
                frame, *size, format="bgr24", interpolation=interpolation, threads=1
            )
        image = converted.to_ndarray()
        rotation = display_rotation(frame)
        return cv2.rotate(image, _ROTATE[rotation]) if rotation else image


def upright_bgr(frame: av.VideoFrame, max_size: int | None = None) -> np.ndarray:
    """``frame`` as a BGR array, turned upright as its display matrix says (see
    :func:`display_rotation`), its longer side at most ``max_size`` when given. A source converting
    many frames keeps a :class:`Converter`."""
    return Converter(max_size)(frame)


class VideoSource:
    """Decodes the first video stream of a file or URL in presentation order, each frame turned
    upright as the stream's display matrix (rotation metadata) says.

    Args:
        uri: a file path or an ``rtsp(s)://`` / ``http(s)://`` (MJPEG, HLS) URL.
        source_id: the id put on every frame.
        live: treat it as a live stream (URLs) rather than a lossless file.
        transport: RTSP transport, ``tcp`` or ``udp`` (live only).
        open_timeout: seconds to connect and read the stream headers (live only).
        stall_timeout: a live stream with no frame for this long raises :class:`SourceStalled`.
        defer_conversion: return frames as a :class:`PendingImage` (converted to BGR only when the
            pipeline keeps them); the default is on for live streams, off for files.
        max_size: scale every frame, in the same step that converts it to BGR, so that its longer side
            is at most this many pixels (aspect ratio kept, sides even); None keeps the decoded size.

    A file is decoded with frame and slice threads, a live stream with slice threads only: frame
    threading holds a frame back per thread, latency a live stream must not have. Either way at most
    :func:`decode_threads` threads.

    Raises:
        SourceError: the file is missing or empty, is not a video, or holds no video stream; a stream
            cannot be reached within ``open_timeout``. Messages never hold URL credentials.
    """

    def __init__(
        self,
        uri: str,
        source_id: str,
        live: bool = False,
        *,
        transport: str = "tcp",
        open_timeout: float = 10.0,
        stall_timeout: float = 10.0,
        defer_conversion: bool | None = None,
        max_size: int | None = None,
    ) -> None:
        self.source_id = source_id
        self.live = live
        self._defer_conversion = live if defer_conversion is None else defer_conversion
        self._convert = Converter(max_size)
        self.errors = 0
        self._name = redact_url(uri)
        self._stall_timeout = stall_timeout
        if not live:
            path = Path(uri)
            if not path.is_file():
                raise SourceError(f"no such video file: {uri}")
            if path.stat().st_size == 0:
                raise SourceError(f"video file is empty: {uri}")
        opening = time.monotonic()
        try:
            if live:
                self._container = av.open(
                    uri,
                    options=stream_options(uri, transport, max(open_timeout, stall_timeout)),
                    timeout=(open_timeout, _read_timeout(uri, stall_timeout)),
                )
            else:
                self._container = av.open(uri)
        except (av.error.FFmpegError, OSError) as exc:
            timed_out = time.monotonic() - opening >= open_timeout
            raise SourceError(self._open_failure(exc, live, open_timeout, timed_out)) from None
        if not self._container.streams.video:
            self._container.close()
            raise SourceError(f"{self._name} holds no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "SLICE" if live else "AUTO"  # AUTO: frame and slice threads
        self._stream.codec_context.thread_count = decode_threads()
        rate = self._stream.average_rate or self._stream.base_rate
        self.rate: Fraction | None = Fraction(rate) if rate else None
        self.total_frames = (self._stream.frames or None) if not live else None
        # an HLS playlist closed with #EXT-X-ENDLIST has a duration (a live one has none)
        self.ends = live and self._container.format.name == "hls" and self._container.duration is not None
        """A live stream whose end is the end of the video, not an outage (a finished HLS playlist)."""
        self._frames = self._decode()
        self._decoded = 0

    def _open_failure(self, exc: BaseException, live: bool, open_timeout: float, timed_out: bool) -> str:
        reason = redact_url(getattr(exc, "strerror", None) or str(exc))
        if not live:
            return f"cannot open {self._name} as a video (corrupt, truncated or not a video): {reason}"
        if isinstance(exc, av.error.ExitError) or timed_out:
            # an interrupted RTSP handshake surfaces as "Invalid data": name the real cause
            reason = f"no answer within {open_timeout:g} s"
        return f"cannot open stream {self._name}: {reason}"

    def _decode(self) -> Iterator[av.VideoFrame]:
        last_frame = time.monotonic()
        for packet in self._container.demux(self._stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                self._skipped(f"a packet that does not decode ({exc.strerror or exc})")
                frames = []
            for frame in frames:
                if frame.is_corrupt:
                    self._skipped("a corrupt frame")
                    continue
                yield frame
                last_frame = time.monotonic()  # from when the reader asks again
            # data that never decodes into a frame is a stall too
            if self.live and time.monotonic() - last_frame > self._stall_timeout:
                raise SourceStalled(f"{self._name}: no frame for {self._stall_timeout:g} s")

    def _skipped(self, what: str) -> None:
        self.errors += 1
        # a camera sending garbage would log 30 lines a second: the first, then every hundredth
        level = logging.WARNING if self.errors == 1 or self.errors % 100 == 0 else logging.DEBUG
        log.log(level, "%s: skipped %s (%d skipped so far)", self.source_id, what, self.errors)

    def read(self) -> tuple[np.ndarray | PendingImage, float | None] | None:
        """Returns the next BGR frame (or a pending one) and its time in seconds, or None at the end.

        Raises:
            SourceStalled: a live stream sent no frame for ``stall_timeout`` seconds.
            SourceError: the file decodes to no frame at all (corrupt or truncated), or a stream failed.
        """
        try:
            frame = next(self._frames)
        except StopIteration:
            if self._decoded == 0:
                raise SourceError(f"{self._name}: no frame could be decoded") from None
            self._check_complete()
            return None
        except av.error.ExitError:
            if not self.live:
                raise SourceError(f"{self._name}: read interrupted") from None
            raise SourceStalled(f"{self._name}: no data for {self._stall_timeout:g} s") from None
        except av.error.FFmpegError as exc:
            reason = redact_url(exc.strerror or str(exc))
            raise SourceError(f"{self._name}: read failed: {reason}") from None
        self._decoded += 1
        if self._defer_conversion:
            return partial(self._convert, frame), frame.time
        return self._convert(frame), frame.time

    def _check_complete(self) -> None:
        """At the end of a file: it must have delivered about the frames its header announces.

        Raises:
            SourceError: it ended well short of them (a file cut off while it was copied or written).
        """
        total = self.total_frames
        if total is not None and total - self._decoded > max(2, total // 50):
            raise SourceError(
                f"{self._name}: ended after {self._decoded} of its {total} frames: the file is truncated "
                "or damaged (the frames before were processed)"
            )

    def close(self) -> None:
        self._container.close()
