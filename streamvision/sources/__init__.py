"""Sources: where frames come from. :func:`open_source` picks the backend from the URI."""

from __future__ import annotations

import glob
import threading
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from streamvision import samples
from streamvision.errors import SourceError
from streamvision.redact import redact_url
from streamvision.sources.base import Source

if TYPE_CHECKING:
    from streamvision.config import SourceConfig
    from streamvision.status import StatusCallback

__all__ = ["Source", "default_source_id", "open_source"]

_STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


def default_source_id(uri: str) -> str:
    """A short id for a source: the camera index, the sample's name, the file or folder name (the
    folder's for a glob), or the URL host/path.

    Credentials in a URL never reach the id.
    """
    if uri.isdigit():
        return f"camera{uri}"
    if samples.is_sample(uri):
        return uri[len(samples.PREFIX) :]
    if uri.startswith(_STREAM_SCHEMES):
        rest = redact_url(uri, mask="").split("://", 1)[1]
        return rest.strip("/") or redact_url(uri)
    path = Path(uri.rstrip("/"))
    if glob.has_magic(path.name):  # shots/*.jpg: the folder's name, not the pattern
        return path.parent.name or path.resolve().parent.name or "images"
    return path.name or uri


def is_stream_url(uri: str) -> bool:
    """True for network stream URLs (RTSP, HTTP, RTMP, UDP, TCP)."""
    return uri.startswith(_STREAM_SCHEMES)


def open_source(
    uri: str,
    source_id: str | None = None,
    realtime: bool = False,
    realtime_fps: float | None = None,
    *,
    network: SourceConfig | None = None,
    on_status: StatusCallback | None = None,
    stop: threading.Event | None = None,
) -> Source:
    """Opens a camera index, video file, image folder / glob / file, bundled ``sample:NAME`` clip,
    or stream URL.

    ``realtime`` plays a file or image sequence as a live source, at its own frame rate or at
    ``realtime_fps`` when given.

    A stream URL is opened with the transport, timeouts and reconnect policy of ``network`` (a
    :class:`~streamvision.config.SourceConfig`; its defaults when None) and wrapped in a
    :class:`~streamvision.sources.reconnect.ReconnectingSource`, which reports going offline and
    back through ``on_status`` and stops waiting to reconnect once ``stop`` is set.

    Raises:
        SourceError: the source cannot be opened (missing, not a video, no images, no camera, no
            such sample); for
            a stream, only when its retries are off (``max_retries: 0``).
    """
    sid = source_id or default_source_id(uri)
    uri = samples.resolve(uri)
    if is_stream_url(uri):
        return _open_stream(uri, sid, network, on_status, stop)
    played_live = bool(realtime or realtime_fps)
    source = _open(uri, sid, defer_conversion=played_live, max_size=network.max_size if network else None)
    if played_live and not source.live:
        from streamvision.sources.realtime import RealtimeSource

        rate = Fraction(realtime_fps).limit_denominator(1001) if realtime_fps else None
        return RealtimeSource(source, rate)
    return source


def _open(uri: str, sid: str, defer_conversion: bool, max_size: int | None = None) -> Source:
    from streamvision.sources.images import ImageSource, is_image_path

    if uri.isdigit():
        from streamvision.sources.camera import CameraSource

        return CameraSource(int(uri), sid)
    path = Path(uri)
    if path.is_dir():
        _check_not_a_folder_of_videos(path)
    if path.is_dir() or is_image_path(uri) or (not path.exists() and glob.has_magic(uri)):
        return ImageSource(uri, sid)
    from streamvision.sources.video import VideoSource

    return VideoSource(uri, sid, defer_conversion=defer_conversion, max_size=max_size)  # scaled as converted


VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".flv"})
"""Suffixes of the video files a folder may hold (``streamvision batch`` processes them)."""


def _check_not_a_folder_of_videos(folder: Path) -> None:
    """A folder source is a folder of images; one that holds videos and no image gets a hint.

    Raises:
        SourceError: ``folder`` has videos and no images.
    """
    from streamvision.sources.images import is_image_path

    files = [p for p in folder.iterdir() if p.is_file()]
    videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    if videos and not any(is_image_path(str(p)) for p in files):
        raise SourceError(
            f"{folder} holds {len(videos)} video file(s) and no images: a folder source is a folder of "
            f"images; give one video (--source {videos[0]}), or process them all with "
            f"`streamvision batch {folder}`"
        )


def _open_stream(
    uri: str,
    sid: str,
    network: SourceConfig | None,
    on_status: StatusCallback | None,
    stop: threading.Event | None,
) -> Source:
    from streamvision.config import SourceConfig
    from streamvision.sources.reconnect import ReconnectingSource
    from streamvision.sources.video import VideoSource

    options = network or SourceConfig(uri=uri)

    def connect() -> Source:
        return VideoSource(
            uri,
            sid,
            live=True,
            transport=options.transport,
            open_timeout=options.open_timeout,
            stall_timeout=options.stall_timeout,
            max_size=options.max_size,
        )

    return ReconnectingSource(connect, sid, options.reconnect, on_status, stop)
