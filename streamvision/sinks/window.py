"""A desktop window showing the annotated stream (OpenCV HighGUI)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

import cv2
import numpy as np

from streamvision.errors import SinkError
from streamvision.frame import Frame

_QUIT_KEYS = {ord("q"), 27}  # q, Esc


class WindowSink:
    """Shows each annotated frame; q or Esc calls ``on_quit``. ``fps``, when given, is shown in the
    window's title once a second, so the picture itself stays as the outputs have it.

    Must be driven from the main thread (GUI toolkits require it).

    Raises:
        SinkError: no display is available.
    """

    step_name = "window"
    needs_annotation = True

    def __init__(
        self, on_quit: Callable[[], None], title: str = "streamvision", fps: Callable[[], float] | None = None
    ) -> None:
        if sys.platform.startswith("linux") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        ):
            # Checked here: without a display, OpenCV's Qt aborts the whole process on the first frame.
            raise SinkError(
                "--show needs a display (DISPLAY is not set); write a video with --output instead"
            )
        self._on_quit = on_quit
        self._title = title
        self._fps = fps
        self._titled_at = 0.0
        self._open = False

    def write(self, frame: Frame, annotated: np.ndarray | None) -> None:
        try:
            cv2.imshow(self._title, frame.image if annotated is None else annotated)
        except cv2.error as exc:
            raise SinkError(f"cannot open a window (no display?): {exc.err}") from None
        self._open = True
        now = time.monotonic()
        if self._fps is not None and now - self._titled_at >= 1.0:
            self._titled_at = now
            cv2.setWindowTitle(self._title, f"{self._title} - {self._fps():.1f} FPS")
        if cv2.waitKey(1) & 0xFF in _QUIT_KEYS:
            self._on_quit()

    def close(self) -> None:
        if self._open:
            cv2.destroyWindow(self._title)
            self._open = False
