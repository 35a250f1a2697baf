"""Where to run a detector on a frame: square regions around motion and the objects it moves, and
which boxes of the regions repeat objects known from before. Pure geometry on (N, 4) x1, y1, x2, y2
boxes in frame pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamvision.runtime.nms import box_iou

FULL_FRAME_COVERAGE = 0.6
"""Regions that together cover more than this fraction of the frame give way to one whole-frame run:
it costs no more, and the regions would gain little resolution over it."""

CONTEXT = 0.1
"""Each group of boxes is grown by this fraction of its size on every side before its window is
made: the motion mask and a box cut by last frame's window may both stop short of the object, and
a detector does better with some surroundings."""

EDGE_MARGIN = 2.0
"""Pixels: a box this close to a region's edge inside the frame may have been cut by the crop."""


@dataclass(frozen=True)
class RegionPlan:
    """The detector runs of one frame.

    Attributes:
        windows: (K, 4) int32 crops in frame pixels, inside the frame; (0, 4) when nothing moved or
            for a whole-frame run.
        full_frame: run once on the whole frame instead of ``windows``.
    """

    windows: np.ndarray
    full_frame: bool


def plan_regions(
    motion: np.ndarray,
    objects: np.ndarray,
    frame_size: tuple[int, int],
    region_size: int,
    max_regions: int,
) -> RegionPlan:
    """Square windows that cover every moving blob, and whole every object a blob touches.

    The motion mask often catches only part of a mover (its edges, the half that changed); the
    object's last box makes its window cover all of it. Blobs and boxes that touch are grouped;
    each group gets a square window of side ``region_size`` or more, grown to cover the group,
    moved and clipped into the frame. Two windows merge while one window around both is no bigger
    than the two, and while there are more than ``max_regions`` (each window costs a detector run,
    as much as the whole frame: merging never costs more).

    Args:
        motion: (N, 4) moving blobs.
        objects: (M, 4) boxes of objects known from the last detections.
        frame_size: the frame's (width, height).
        region_size: the smallest window side in pixels.
        max_regions: the most windows (detector runs) for one frame.

    Returns:
        The windows, or a whole-frame run when they would cover more than
        :data:`FULL_FRAME_COVERAGE` of the frame.

    Raises:
        ValueError: ``motion`` or ``objects`` is not (N, 4), or ``region_size`` is not positive.

    Example:
        >>> plan = plan_regions(np.array([[100, 100, 120, 140]]), np.zeros((0, 4)), (1280, 720), 320, 4)
        >>> plan.windows.tolist(), plan.full_frame
        ([[0, 0, 320, 320]], False)
    """
    motion = _as_boxes(motion, "motion")
    objects = _as_boxes(objects, "objects")
    if region_size <= 0:
        raise ValueError(f"region_size must be positive, got {region_size}")
    if not len(motion):
        return RegionPlan(np.zeros((0, 4), np.int32), False)
    moved = objects[touching(objects, motion)]
    windows = _windows(np.concatenate([motion, moved]), frame_size, region_size, max_regions)
    width, height = frame_size
    if float(_area(windows).sum()) > FULL_FRAME_COVERAGE * width * height:
        return RegionPlan(np.zeros((0, 4), np.int32), True)
    return RegionPlan(windows.astype(np.int32), False)


def touching(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """(N,) bool: each box overlaps at least one of ``others`` (sharing an edge is not overlapping).

    Raises:
        ValueError: an argument is not (N, 4).
    """
    boxes, others = _as_boxes(boxes, "boxes"), _as_boxes(others, "others")
    if not len(boxes) or not len(others):
        return np.zeros(len(boxes), bool)
    b, o = boxes[:, None, :], others[None, :, :]
    overlap = (
        (b[..., 0] < o[..., 2]) & (o[..., 0] < b[..., 2]) & (b[..., 1] < o[..., 3]) & (o[..., 1] < b[..., 3])
    )
    return np.asarray(overlap.any(axis=1))


def contained(boxes: np.ndarray, windows: np.ndarray, margin: float = 1.0) -> np.ndarray:
    """(N,) bool: each box lies inside one of ``windows`` (give or take ``margin`` pixels).

    Raises:
        ValueError: an argument is not (N, 4).
    """
    boxes, windows = _as_boxes(boxes, "boxes"), _as_boxes(windows, "windows")
    if not len(boxes) or not len(windows):
        return np.zeros(len(boxes), bool)
    b, w = boxes[:, None, :], windows[None, :, :]
    starts = np.all(b[..., :2] >= w[..., :2] - margin, axis=2)
    ends = np.all(b[..., 2:] <= w[..., 2:] + margin, axis=2)
    return np.asarray(np.any(starts & ends, axis=1))


def repeats(
    fresh: np.ndarray,
    fresh_class: np.ndarray,
    kept: np.ndarray,
    kept_class: np.ndarray,
    windows: np.ndarray,
    frame_size: tuple[int, int],
    iou_threshold: float,
) -> np.ndarray:
    """(N,) bool: which boxes found in ``windows`` repeat a kept box of their class (an object known
    from before that the windows cut): overlapping it by more than ``iou_threshold``, or touching
    it while lying on an edge of a window inside the frame, where the crop may have cut the object.

    Raises:
        ValueError: a box argument is not (N, 4).
    """
    fresh, kept = _as_boxes(fresh, "fresh"), _as_boxes(kept, "kept")
    windows = _as_boxes(windows, "windows")
    found = np.zeros(len(fresh), bool)
    if not len(fresh) or not len(kept):
        return found
    on_edge = np.zeros(len(fresh), bool)
    for window in windows:
        on_edge |= touching(fresh, window[None]) & _on_inner_edge(fresh, window, frame_size)
    for row, (box, class_id) in enumerate(zip(fresh, fresh_class, strict=True)):
        same = kept[kept_class == class_id]
        if not len(same):
            continue
        iou = box_iou(box, same)
        found[row] = bool((iou > iou_threshold).any() or (on_edge[row] and touching(box[None], same)[0]))
    return found


def _on_inner_edge(boxes: np.ndarray, window: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    width, height = frame_size
    x1, y1, x2, y2 = (float(v) for v in window)
    left = (x1 > 0) & (boxes[:, 0] <= x1 + EDGE_MARGIN)
    top = (y1 > 0) & (boxes[:, 1] <= y1 + EDGE_MARGIN)
    right = (x2 < width) & (boxes[:, 2] >= x2 - EDGE_MARGIN)
    bottom = (y2 < height) & (boxes[:, 3] >= y2 - EDGE_MARGIN)
    return np.asarray(left | top | right | bottom)


def _as_boxes(boxes: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(boxes, np.float64)
    if array.size == 0:
        return array.reshape(0, 4)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {array.shape}")
    return array


def _windows(boxes: np.ndarray, frame_size: tuple[int, int], region_size: int, most: int) -> np.ndarray:
    """Square windows around the groups of ``boxes``; the two whose joint window is smallest merge
    while it is no bigger than both together (they overlap heavily) or there are more than ``most``.
    When the first windows already cover too much of the frame they are returned unmerged."""
    windows = _squares(_merge_touching(boxes), frame_size, region_size, CONTEXT)
    width, height = frame_size
    # Merged windows cover at least what these do: a shaking camera's dozens of blobs stop here.
    if _covered(windows, frame_size) > FULL_FRAME_COVERAGE * width * height:
        return windows
    while len(windows) > 1:
        first, second = np.triu_indices(len(windows), 1)
        joined = _squares(_union_pairs(windows[first], windows[second]), frame_size, region_size)
        best = int(np.argmin(_area(joined)))
        i, j = int(first[best]), int(second[best])
        areas = _area(windows)
        if len(windows) <= most and _area(joined[best : best + 1])[0] > areas[i] + areas[j]:
            break
        windows = np.concatenate([np.delete(windows, [i, j], axis=0), joined[best : best + 1]])
    return windows


def _merge_touching(boxes: np.ndarray) -> np.ndarray:
    """The bounding boxes of the groups of boxes that touch or overlap, merged until no two touch."""
    while len(boxes) > 1:
        b, o = boxes[:, None, :], boxes[None, :, :]
        touch = (
            (b[..., 0] <= o[..., 2])
            & (o[..., 0] <= b[..., 2])
            & (b[..., 1] <= o[..., 3])
            & (o[..., 1] <= b[..., 3])
        )
        # Connected components: each box takes the smallest label among the boxes it touches.
        labels = np.arange(len(boxes))
        while True:
            spread = np.where(touch, labels[None, :], len(boxes)).min(axis=1)
            if (spread == labels).all():
                break
            labels = spread[spread]
        _, group = np.unique(labels, return_inverse=True)
        if group.max() + 1 == len(boxes):
            break
        merged = np.empty((group.max() + 1, 4))
        merged[:, :2], merged[:, 2:] = np.inf, -np.inf
        np.minimum.at(merged[:, :2], group, boxes[:, :2])
        np.maximum.at(merged[:, 2:], group, boxes[:, 2:])
        boxes = merged
    return boxes


def _squares(
    boxes: np.ndarray, frame_size: tuple[int, int], region_size: int, context: float = 0.0
) -> np.ndarray:
    """The square window centred on each box, of side ``region_size`` or the box's longer side grown
    by ``context`` at both ends when that is longer, moved into the frame; a side longer than the
    frame's is cut to it."""
    longer = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    side = np.ceil(np.maximum(region_size, (1 + 2 * context) * longer))
    out = np.empty((len(boxes), 4))
    for axis, limit in enumerate(frame_size):
        span = np.minimum(side, limit)
        centre = (boxes[:, axis] + boxes[:, axis + 2]) / 2
        start = np.clip(np.floor(centre - span / 2), 0, limit - span)
        out[:, axis], out[:, axis + 2] = start, start + span
    return np.floor(out)


def _covered(windows: np.ndarray, frame_size: tuple[int, int], cells: int = 64) -> float:
    """About how many pixels of the frame the windows cover together (on a grid of cells x cells)."""
    width, height = frame_size
    xs = (np.arange(cells) + 0.5) * width / cells
    ys = (np.arange(cells) + 0.5) * height / cells
    in_x = (xs[None, :] >= windows[:, :1]) & (xs[None, :] < windows[:, 2:3])
    in_y = (ys[None, :] >= windows[:, 1:2]) & (ys[None, :] < windows[:, 3:4])
    covered = (in_y[:, :, None] & in_x[:, None, :]).any(axis=0)
    return float(covered.mean()) * width * height


def _union_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.concatenate([np.minimum(a[:, :2], b[:, :2]), np.maximum(a[:, 2:], b[:, 2:])], axis=1)


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.asarray((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
