"""Cheap motion detection on a small greyscale copy of each frame, for motion-gated object detection."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

SCENE_CHANGE = 0.5
"""When more than this fraction of the small frame changed at once (a cut, the lights, a moved
camera), the background is replaced by the current frame instead of fading towards it."""

BACKGROUND_SECONDS = 0.5
"""Time constant of the running background: a thing that stops becomes background in about this
long. Longer keeps slow movers visible but leaves longer trails behind fast ones (bigger regions)
and a ghost where a parked car was."""

MAX_SHAKE = 0.04
"""The largest shift of the whole picture (a fraction of the small frame's height) taken for a
shaking or drifting camera and undone before differencing; a larger one is a pan or a large mover."""

MIN_SHAKE = 0.3
"""Shifts of the whole picture below this many pixels of the small frame are left alone."""


class MotionConfig(BaseModel):
    """``motion:`` of an ``object_detection`` stage: run the detector only where something moves.

    Example:
        >>> MotionConfig(frame_height=100).region_size
        320
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: int = Field(25, ge=1, le=255)
    """How far (grey levels, 0..255) a pixel of the small frame must differ from the background to
    count as moving; higher ignores more noise, rain and flicker."""
    min_area: float = Field(0.001, ge=0.0, le=0.5)
    """The smallest moving blob that counts (its bounding box), as a fraction of the frame's area:
    0.001 is 30 x 30 px of a 1280 x 720 frame."""
    frame_height: int = Field(120, ge=32, le=1080)
    """Height in pixels of the greyscale copy motion is found on (its width keeps the aspect ratio)."""
    region_size: int = Field(320, ge=32, le=4096)
    """Side in frame pixels of the smallest square cropped around moving things for the detector;
    a region grows to cover what it holds."""
    max_regions: int = Field(1, ge=1, le=16)
    """The most regions (detector runs) on one frame. Each costs as much as a whole-frame run, so
    with 1 gating never runs the detector more often than whole-frame detection would; more give
    far-apart movers more pixels each."""
    full_frame_interval: float = Field(5.0, gt=0.0, le=3600.0)
    """Seconds between whole-frame detections that run whether or not anything moves, so an object
    that never moved (or stopped unseen) is found and one that left unseen is dropped."""


@dataclass(frozen=True)
class Motion:
    """What moved in one frame.

    Attributes:
        boxes: (N, 4) float32 x1, y1, x2, y2 of the moving blobs, in frame pixels.
        changed: fraction of the frame that differs from the background (after thresholding).
        scene_change: so much changed (or this is the first frame) that the whole frame must be
            looked at again; the frame is the background now.
    """

    boxes: np.ndarray
    changed: float
    scene_change: bool


class MotionDetector:
    """Finds moving blobs by differencing a blurred small greyscale frame with a running background.

    The background fades towards each new frame with a time constant of :data:`BACKGROUND_SECONDS`,
    so frames given at any rate (every frame of 25 fps, or 5 a second) see the same motion.

    Example:
        >>> detector = MotionDetector(MotionConfig())
        >>> still = np.full((240, 320, 3), 80, np.uint8)
        >>> len(detector.update(still, 0.0).boxes), len(detector.update(still, 0.2).boxes)
        (0, 0)
        >>> moved = still.copy(); moved[100:140, 150:190] = 200
        >>> detector.update(moved, 0.4).boxes.shape
        (1, 4)
    """

    def __init__(self, config: MotionConfig) -> None:
        self._config = config
        self._background: np.ndarray | None = None
        self._time = 0.0
        self._window: np.ndarray | None = None
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))

    def update(self, image: np.ndarray, time: float) -> Motion:
        """Compares a BGR frame with the background, then moves the background towards it.

        Args:
            image: (H, W, 3) BGR uint8.
            time: the frame's time in seconds (its timestamp), for the background's fading.

        Returns:
            The moving blobs; none, and a scene change, on the first frame (it becomes the
            background) and on one of another size.

        Raises:
            ValueError: ``image`` is not an (H, W, 3) array.
        """
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be (H, W, 3) BGR, got shape {image.shape}")
        grey = self._small_grey(image)
        background = self._background
        if background is None or background.shape != grey.shape:  # the first frame, or a new size
            self._start(grey, time)
            return Motion(np.zeros((0, 4), np.float32), 1.0, scene_change=True)
        mask, changed = self._difference(grey, background)
        shift = self._shake(background, grey) if changed > 0 else None  # costly: not on still frames
        if shift is not None:
            move = np.array([[1, 0, shift[0]], [0, 1, shift[1]]], np.float32)
            background = cv2.warpAffine(background, move, grey.shape[::-1], borderMode=cv2.BORDER_REPLICATE)
            self._background = background
            # the band the picture moved in by has no background to compare with
            mask, changed = self._difference(grey, background, math.ceil(max(map(abs, shift))) + 1)
        if changed > SCENE_CHANGE:
            self._start(grey, time)
            return Motion(np.zeros((0, 4), np.float32), changed, scene_change=True)
        alpha = 1.0 - math.exp(-max(time - self._time, 0.0) / BACKGROUND_SECONDS)
        cv2.accumulateWeighted(grey, background, alpha)
        self._time = time
        return Motion(self._blobs(mask, image.shape[1], image.shape[0]), changed, scene_change=False)

    def _difference(
        self, grey: np.ndarray, background: np.ndarray, border: int = 0
    ) -> tuple[np.ndarray, float]:
        """The mask of the pixels that differ from the background (none in a ``border`` pixels wide
        band around the edges), and the fraction of them."""
        diff = cv2.absdiff(grey, cv2.convertScaleAbs(background))
        _, mask = cv2.threshold(diff, self._config.threshold, 255, cv2.THRESH_BINARY)
        if border:
            mask[:border], mask[-border:], mask[:, :border], mask[:, -border:] = 0, 0, 0, 0
        return mask, cv2.countNonZero(mask) / mask.size

    def _shake(self, background: np.ndarray, grey: np.ndarray) -> tuple[float, float] | None:
        """How far (x, y) the whole picture moved from the background when that is a small shift (a
        shaking or drifting camera, which would make every edge look like motion); else None."""
        if self._window is None or self._window.shape != grey.shape:
            self._window = cv2.createHanningWindow(grey.shape[::-1], cv2.CV_32F)
        (dx, dy), _ = cv2.phaseCorrelate(background, grey.astype(np.float32), self._window)
        return (dx, dy) if MIN_SHAKE <= math.hypot(dx, dy) <= MAX_SHAKE * grey.shape[0] else None

    def _start(self, grey: np.ndarray, time: float) -> None:
        self._background = grey.astype(np.float32)
        self._time = time

    def _small_grey(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        small_h = min(self._config.frame_height, height)
        small_w = max(1, round(width * small_h / height))
        # Bilinear sampling is some 30 times faster than area averaging here; the blur after it
        # does the averaging that keeps sensor and codec noise below the threshold.
        small = cv2.resize(image, (small_w, small_h), interpolation=cv2.INTER_LINEAR)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        return cv2.GaussianBlur(grey, (5, 5), 0)

    def _blobs(self, mask: np.ndarray, width: int, height: int) -> np.ndarray:
        """Bounding boxes, in frame pixels, of the dilated blobs of ``mask`` at least ``min_area`` big."""
        # Dilation joins the pieces of one mover (its edges move, its uniform middle barely does).
        mask = cv2.dilate(mask, self._kernel, iterations=2)
        # Outer contours' rectangles: several times faster than connected components here.
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        rects = np.array([cv2.boundingRect(c) for c in contours], np.float32).reshape(-1, 4)
        rects = rects[rects[:, 2] * rects[:, 3] >= self._config.min_area * mask.size]
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
        small_h, small_w = mask.shape
        scale = np.array([width / small_w, height / small_h] * 2, np.float32)
        return boxes * scale
