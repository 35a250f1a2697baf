"""Keeps credentials out of everything streamvision prints, logs or writes."""

from __future__ import annotations

import re

# scheme://user:pass@ anywhere in a text. Like FFmpeg, the user part runs to the last "@" before the
# path, so a password with a raw "@" in it is hidden whole.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s'\"]*@")


def redact_url(text: str, mask: str = "***") -> str:
    """Replaces the user and password of every URL in ``text`` with ``mask`` (``""`` drops them).

    Works on a bare URL or on any message that quotes one (FFmpeg errors name the URL they failed on).

    Example:
        >>> redact_url("rtsp://admin:s3cret@10.0.0.7:554/live")
        'rtsp://***@10.0.0.7:554/live'
        >>> redact_url("cannot open 'http://u:p@cam/mjpg': refused")
        "cannot open 'http://***@cam/mjpg': refused"
        >>> redact_url("rtsp://u:p@w@cam/live", mask="")
        'rtsp://cam/live'
        >>> redact_url("clip.mp4")
        'clip.mp4'
    """
    replacement = rf"\g<scheme>{mask}@" if mask else r"\g<scheme>"
    return _USERINFO.sub(replacement, text)
