"""What every object-detection decoder shares: its settings, its result and the final selection.

A decoder turns one image's raw output tensors into boxes in model-input pixels; the stage then
undoes the letterbox (:class:`streamvision.runtime.preprocess.Letterbox`) and clips to the frame.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from streamvision.runtime.nms import batched_nms

PRE_NMS_TOP_K = 1000
"""Candidates kept by score before NMS, so a low threshold on a dense head stays fast."""


@dataclass(frozen=True)
class DecodeParams:
    """How a decoder selects detections.

    Attributes:
        score_threshold: minimum score (after the decoder's own sigmoid / objectness product).
        iou_threshold: class-aware NMS overlap limit; 1.0 turns NMS off.
        max_detections: keep at most this many, best first.
        classes: when set, only these class ids are kept (filtered before NMS).
    """

    score_threshold: float = 0.3
    iou_threshold: float = 0.45
    max_detections: int = 100
    classes: Collection[int] | None = None


@dataclass(frozen=True)
class DecodedBoxes:
    """One image's detections in model-input pixels: (N, 4) x1y1x2y2, (N,) scores, (N,) class ids."""

    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.xyxy)


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) centre x, centre y, width, height -> (N, 4) x1, y1, x2, y2."""
    half = boxes[:, 2:4] / 2
    return np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1)


def select(xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, params: DecodeParams) -> DecodedBoxes:
    """Threshold, class filter, top-k, class-aware NMS and the final cap, in that order.

    Args:
        xyxy: (N, 4) candidate boxes in input pixels.
        scores: (N,) candidate scores.
        class_ids: (N,) candidate classes.
        params: the selection settings.

    Raises:
        ValueError: the arrays do not have matching lengths.
    """
    if not (len(xyxy) == len(scores) == len(class_ids)):
        raise ValueError(
            f"xyxy, scores and class_ids must have the same length, got "
            f"{len(xyxy)}, {len(scores)}, {len(class_ids)}"
        )
    mask = scores >= params.score_threshold
    if params.classes is not None:
        mask &= np.isin(class_ids, np.fromiter(params.classes, np.int64))
    candidates = np.flatnonzero(mask)
    if len(candidates) > PRE_NMS_TOP_K:
        best = np.argpartition(-scores[candidates], PRE_NMS_TOP_K)[:PRE_NMS_TOP_K]
        candidates = candidates[best]
    keep = candidates[
        batched_nms(
            xyxy[candidates],
            scores[candidates],
            class_ids[candidates],
            params.iou_threshold,
            params.max_detections,
        )
    ]
    return DecodedBoxes(
        xyxy=xyxy[keep].astype(np.float32).reshape(-1, 4),
        scores=scores[keep].astype(np.float32),
        class_ids=class_ids[keep].astype(np.int32),
    )


def squeeze_batch(tensor: np.ndarray, ndim: int, name: str) -> np.ndarray:
    """Drops a leading batch axis of 1 so ``tensor`` has ``ndim`` dimensions.

    Raises:
        ValueError: the tensor has another rank or a batch of more than one image.
    """
    if tensor.ndim == ndim + 1:
        if tensor.shape[0] != 1:
            raise ValueError(f"{name}: expected a batch of one image, got shape {tensor.shape}")
        tensor = tensor[0]
    if tensor.ndim != ndim:
        raise ValueError(
            f"{name}: expected {ndim} dimensions (plus an optional batch of 1), got {tensor.shape}"
        )
    return tensor
