"""YOLOv5 (and YOLOv7 / YOLOX-style exports with objectness) decoder.

Tensor contract (one output):
    predictions: (1, N, 5 + C) or (N, 5 + C) float32, one row per anchor:
        cx, cy, w, h in model-input pixels, objectness in [0, 1], then C class scores in [0, 1]
        (the usual ONNX export applies the sigmoid inside the graph). COCO exports have C = 80,
        N = 25200 at 640 x 640.
Score = objectness x best class score; class-aware NMS follows.
Input (Ultralytics export): 1 x 3 x H x W RGB, x / 255, letterboxed with grey 114.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamvision.decoders.boxes import DecodedBoxes, DecodeParams, cxcywh_to_xyxy, select, squeeze_batch


def decode_yolov5(
    outputs: Sequence[np.ndarray], input_size: tuple[int, int], params: DecodeParams
) -> DecodedBoxes:
    """Turns YOLOv5 rows into scored, de-duplicated boxes in input pixels.

    Args:
        outputs: the single predictions tensor.
        input_size: model input (width, height) in pixels (boxes are clipped to it).
        params: score threshold, NMS IoU, class filter, cap.

    Raises:
        ValueError: not exactly one output, or rows narrower than 6 columns.

    Example:
        >>> rows = np.zeros((1, 2, 85), np.float32)
        >>> rows[0, 0, :7] = [100, 100, 40, 20, 0.9, 0.0, 0.8]
        >>> decode_yolov5([rows], (640, 640), DecodeParams()).xyxy.tolist()
        [[80.0, 90.0, 120.0, 110.0]]
    """
    if len(outputs) != 1:
        raise ValueError(f"yolov5: expected 1 output (predictions), got {len(outputs)}")
    rows = squeeze_batch(np.asarray(outputs[0]), 2, "yolov5 predictions")
    if rows.shape[1] < 6:
        raise ValueError(f"yolov5 predictions: expected (N, 5 + classes) rows, got {rows.shape}")
    # Objectness first: most rows fall below the threshold before the class argmax is needed.
    candidates = np.flatnonzero(rows[:, 4] >= params.score_threshold)
    rows = rows[candidates]
    class_scores = rows[:, 5:]
    class_ids = class_scores.argmax(axis=1)
    scores = rows[:, 4] * class_scores[np.arange(len(rows)), class_ids]
    width, height = input_size
    xyxy = np.clip(cxcywh_to_xyxy(rows[:, :4]), 0, [width, height, width, height])
    return select(xyxy, scores, class_ids, params)
