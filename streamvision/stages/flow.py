"""Moves boxes from one frame to the next by the sparse optical flow inside them: how a tracker
carries its objects over the frames the detector does not run on."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

FLOW_HEIGHT = 288
"""Height in pixels of the greyscale copy flow is measured on (half of 576: a walking person keeps
enough texture, and the cost stays near a millisecond)."""

GRID = 4
"""Points per side of the grid followed inside each box."""

INNER = 0.6
"""The grid spans this central fraction of a box: its edges are mostly background."""

MAX_ERROR = 1.0
"""Pixels (of the small copy): a point followed forward then back must land this close to where it
started to count (the forward-backward check)."""

MIN_POINTS = 3
"""A box with fewer points that pass the check is not moved by flow (the caller falls back)."""

_LK: dict[str, Any] = {
    "winSize": (15, 15),
    "maxLevel": 2,
    "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03),
}


class BoxFlow:
    """Follows boxes through a sequence of frames: give it every frame in order with :meth:`step`.

    Example:
        >>> flow = BoxFlow()
        >>> rng = np.random.default_rng(0)
        >>> scene = cv2.GaussianBlur(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), (5, 5), 0)
        >>> _ = flow.step(scene, np.zeros((0, 4)))
        >>> moved, found = flow.step(np.roll(scene, 6, axis=1), np.array([[100, 80, 160, 200]], np.float32))
        >>> found.tolist(), np.round(moved).tolist()
        ([True], [[106.0, 80.0, 166.0, 200.0]])
    """

    def __init__(self, height: int = FLOW_HEIGHT) -> None:
        self._height = height
        self._previous: np.ndarray | None = None

    def step(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Moves ``boxes`` (x1, y1, x2, y2 in the previous frame's pixels) into ``image`` and makes
        ``image`` the previous frame.

        Args:
            image: (H, W, 3) BGR, the same size as the previous frame.
            boxes: (N, 4) boxes in the previous frame.

        Returns:
            The moved boxes (float32; unmoved where flow found too few points, or on the first
            frame or a frame of another size), and an (N,) bool of which ones flow moved.
        """
        grey = self._grey(image)
        previous, self._previous = self._previous, grey
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        moved, found = boxes.copy(), np.zeros(len(boxes), bool)
        if previous is None or previous.shape != grey.shape or not len(boxes):
            return moved, found
        scale = grey.shape[0] / image.shape[0]
        points, owner = _grid(boxes * scale)
        ahead, ok, _ = cv2.calcOpticalFlowPyrLK(previous, grey, points, None, **_LK)
        back, ok_back, _ = cv2.calcOpticalFlowPyrLK(grey, previous, ahead, None, **_LK)
        good = (
            ok.ravel().astype(bool)
            & ok_back.ravel().astype(bool)
            & (np.linalg.norm(back - points, axis=2).ravel() < MAX_ERROR)
        )
        shift = (ahead - points).reshape(-1, 2) / scale
        for row in range(len(boxes)):
            mine = good & (owner == row)
            if mine.sum() >= MIN_POINTS:
                dx, dy = np.median(shift[mine], axis=0)
                moved[row] += np.array([dx, dy, dx, dy], np.float32)
                found[row] = True
        return moved, found

    def _grey(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        small_h = min(self._height, height)
        size = (max(1, round(width * small_h / height)), small_h)
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)


def _grid(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A GRID x GRID grid of points over the central INNER part of each box, as (K, 1, 2) float32,
    and each point's box row."""
    steps = (np.arange(GRID) + 0.5) / GRID * INNER + (1 - INNER) / 2
    grid_x, grid_y = np.meshgrid(steps, steps)
    x1, y1, x2, y2 = (boxes[:, i : i + 1] for i in range(4))
    xs = x1 + (x2 - x1) * grid_x.ravel()
    ys = y1 + (y2 - y1) * grid_y.ravel()
    points = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32).reshape(-1, 1, 2)
    owner = np.repeat(np.arange(len(boxes)), GRID * GRID)
    return points, owner
