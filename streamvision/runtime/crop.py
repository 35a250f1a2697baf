"""Crops around detections: boxes grown by a factor, optionally squared, clipped to the frame."""

from __future__ import annotations

import numpy as np


def crop_boxes(
    xyxy: np.ndarray, frame_size: tuple[int, int], scale: float = 1.0, square: bool = False
) -> np.ndarray:
    """Integer crop windows for (N, 4) boxes, in frame pixels.

    Each box is grown by ``scale`` around its centre (squared first to its longer side when
    ``square``), then clipped to the frame. A window that ends up empty has x1 == x2 or y1 == y2.

    Args:
        xyxy: (N, 4) x1, y1, x2, y2 in frame pixels.
        frame_size: the frame's (width, height).
        scale: 1.4 crops 40 % more than the box in each direction (faces for classifiers).
        square: make each window square before scaling, as most classifiers expect.

    Returns:
        (N, 4) int32 windows x1, y1, x2, y2 with 0 <= x1 <= x2 <= width (same for y).

    Raises:
        ValueError: ``scale`` is not positive or ``xyxy`` is not (N, 4).

    Example:
        >>> crop_boxes(np.array([[10, 10, 30, 20]], np.float32), (100, 100), 2.0).tolist()
        [[0, 5, 40, 25]]
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    boxes = np.asarray(xyxy, np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"xyxy must have shape (N, 4), got {boxes.shape}")
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2
    if square:
        half = np.repeat(half.max(axis=1, keepdims=True), 2, axis=1)
    half = half * scale
    width, height = frame_size
    low = np.floor(centre - half)
    high = np.ceil(centre + half)
    limits = np.array([width, height], np.float64)
    low = np.clip(low, 0, limits)
    high = np.clip(high, low, limits)
    return np.concatenate([low, high], axis=1).astype(np.int32)


def crop(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """The part of ``image`` inside one window from :func:`crop_boxes` (a view, not a copy)."""
    x1, y1, x2, y2 = (int(v) for v in window)
    return image[y1:y2, x1:x2]
