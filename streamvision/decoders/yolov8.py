"""YOLOv8 / YOLO11 (Ultralytics, anchor-free, no objectness) decoder.

Tensor contract (one output):
    predictions: (1, 4 + C, N) float32, channels first: cx, cy, w, h in model-input pixels, then
        C class scores in [0, 1]. COCO exports have C = 80 and N = 8400 at 640 x 640.
        A transposed (1, N, 4 + C) export is accepted too, told apart by N > 4 + C (true of every
        real export; hand-made test tensors need N > 4 + C as well).
Score = best class score; class-aware NMS follows.
Input (Ultralytics export): 1 x 3 x H x W RGB, x / 255, letterboxed with grey 114.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamvision.decoders.boxes import DecodedBoxes, DecodeParams, cxcywh_to_xyxy, select, squeeze_batch


def decode_yolov8(
    outputs: Sequence[np.ndarray], input_size: tuple[int, int], params: DecodeParams
) -> DecodedBoxes:
    """Turns YOLOv8 / YOLO11 predictions into scored, de-duplicated boxes in input pixels.

    Args:
        outputs: the single predictions tensor.
        input_size: model input (width, height) in pixels (boxes are clipped to it).
        params: score threshold, NMS IoU, class filter, cap.

    Raises:
        ValueError: not exactly one output, or fewer than 5 channels.

    Example:
        >>> preds = np.zeros((1, 84, 100), np.float32)
        >>> preds[0, :4, 1] = [100, 100, 40, 20]; preds[0, 4 + 2, 1] = 0.7
        >>> decode_yolov8([preds], (640, 640), DecodeParams()).class_ids.tolist()
        [2]
    """
    if len(outputs) != 1:
        raise ValueError(f"yolov8: expected 1 output (predictions), got {len(outputs)}")
    preds = squeeze_batch(np.asarray(outputs[0]), 2, "yolov8 predictions")
    rows = preds if preds.shape[0] > preds.shape[1] else preds.T
    if rows.shape[1] < 5:
        raise ValueError(f"yolov8 predictions: expected (4 + classes, N), got {preds.shape}")
    class_scores = rows[:, 4:]
    class_ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(rows)), class_ids]
    candidates = np.flatnonzero(scores >= params.score_threshold)
    width, height = input_size
    xyxy = np.clip(cxcywh_to_xyxy(rows[candidates, :4]), 0, [width, height, width, height])
    return select(xyxy, scores[candidates], class_ids[candidates], params)
