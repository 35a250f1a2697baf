"""Non-maximum suppression."""

from __future__ import annotations

import numpy as np


def box_iou(box: np.ndarray, boxes: np.ndarray, min_area: bool = False) -> np.ndarray:
    """IoU of one (4,) x1y1x2y2 box against (N, 4) boxes; with ``min_area``, the intersection over
    the smaller of the two areas instead (MTCNN's last stage: a box inside another one overlaps it fully)."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = np.minimum(area, areas) if min_area else area + areas - inter
    return np.asarray(inter / np.maximum(union, 1e-9))


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    max_keep: int | None = None,
    min_area: bool = False,
) -> np.ndarray:
    """Greedy NMS: indices of the boxes kept, best score first.

    Args:
        boxes: (N, 4) x1, y1, x2, y2.
        scores: (N,).
        iou_threshold: a box overlapping a kept one by more than this is dropped.
        max_keep: stop after this many.
        min_area: measure overlap as intersection over the smaller area (see :func:`box_iou`).

    Example:
        >>> b = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], np.float32)
        >>> nms(b, np.array([0.9, 0.8, 0.7]), 0.5).tolist()
        [0, 2]
    """
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        if max_keep is not None and len(keep) >= max_keep:
            break
        rest = order[1:]
        order = rest[box_iou(boxes[best], boxes[rest], min_area) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float,
    max_keep: int | None = None,
) -> np.ndarray:
    """Class-aware NMS: boxes only suppress boxes of their own class.

    Each class's boxes are shifted to their own region of the plane, far from every other
    class, so one greedy pass suppresses within classes only.

    Args:
        boxes: (N, 4) x1, y1, x2, y2.
        scores: (N,).
        class_ids: (N,) integer classes.
        iou_threshold: a box overlapping a kept box of its class by more than this is dropped.
        max_keep: stop after this many.

    Returns:
        Indices of the boxes kept, best score first.

    Raises:
        ValueError: the arrays do not have matching lengths.

    Example:
        >>> b = np.array([[0, 0, 10, 10], [1, 1, 10, 10]], np.float32)
        >>> batched_nms(b, np.array([0.9, 0.8]), np.array([0, 1]), 0.5).tolist()
        [0, 1]
    """
    if not (len(boxes) == len(scores) == len(class_ids)):
        raise ValueError(
            f"boxes, scores and class_ids must have the same length, got "
            f"{len(boxes)}, {len(scores)}, {len(class_ids)}"
        )
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    boxes = boxes.astype(np.float64)
    span = float(boxes.max() - min(boxes.min(), 0.0)) + 1.0
    shifted = boxes + (class_ids.astype(np.float64) * span)[:, None]
    return nms(shifted, scores, iou_threshold, max_keep)


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int | None = None
) -> list[np.ndarray]:
    """MediaPipe's weighted NMS: groups of overlapping boxes, best group first.

    Greedy as :func:`nms`, but a kept box does not discard the boxes it overlaps by more than
    ``iou_threshold``: they form its group (the kept box first), whose members a caller blends,
    weighted by score, into one result. This is how MediaPipe post-processes BlazeFace.

    Args:
        boxes: (N, 4) x1, y1, x2, y2.
        scores: (N,).
        iou_threshold: a box overlapping the group's best box by more than this joins its group.
        max_keep: stop after this many groups.

    Returns:
        One index array per group, the best box first.

    Example:
        >>> b = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], np.float32)
        >>> [g.tolist() for g in weighted_nms(b, np.array([0.9, 0.8, 0.7]), 0.5)]
        [[0, 1], [2]]
    """
    order = np.argsort(-scores, kind="stable")
    groups: list[np.ndarray] = []
    while order.size:
        member = box_iou(boxes[order[0]], boxes[order]) > iou_threshold
        member[0] = True  # the best box always leads its group, even when degenerate
        groups.append(order[member].astype(np.int64))
        if max_keep is not None and len(groups) >= max_keep:
            break
        order = order[~member]
    return groups
