"""Sources: where frames come from. :func:`open_source` picks the backend from the URI."""

from __future__ import annotations

import glob
from fractions import Fraction
from pathlib import Path

from streamvision.sources.base import Source

__all__ = ["Source", "default_source_id", "open_source"]

_STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


def default_source_id(uri: str) -> str:
    """A short id for a source: the camera index, the file or folder name, or the URL host/path."""
    if uri.isdigit():
        return f"camera{uri}"
    if uri.startswith(_STREAM_SCHEMES):
        rest = uri.split("://", 1)[1].rsplit("@", 1)[-1]
        return rest.strip("/") or uri
    return Path(uri.rstrip("/")).name or uri


def open_source(
    uri: str, source_id: str | None = None, realtime: bool = False, realtime_fps: float | None = None
) -> Source:
    """Opens a camera index, video file, image folder / glob / file, or stream URL.

    ``realtime`` plays a file or image sequence as a live source, at its own frame rate or at
    ``realtime_fps`` when given.

    Raises:
        SourceError: the source cannot be opened (missing, not a video, no images, no camera).
    """
    source = _open(uri, source_id or default_source_id(uri))
    if (realtime or realtime_fps) and not source.live:
        from streamvision.sources.realtime import RealtimeSource

        rate = Fraction(realtime_fps).limit_denominator(1001) if realtime_fps else None
        return RealtimeSource(source, rate)
    return source


def _open(uri: str, sid: str) -> Source:
    from streamvision.sources.images import ImageSource, is_image_path

    if uri.isdigit():
        from streamvision.sources.camera import CameraSource

        return CameraSource(int(uri), sid)
    if uri.startswith(_STREAM_SCHEMES):
        from streamvision.sources.video import VideoSource

        return VideoSource(uri, sid, live=True)
    path = Path(uri)
    if path.is_dir() or is_image_path(uri) or (not path.exists() and glob.has_magic(uri)):
        return ImageSource(uri, sid)
    from streamvision.sources.video import VideoSource

    return VideoSource(uri, sid)
