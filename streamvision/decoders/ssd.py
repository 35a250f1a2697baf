"""SSD / TensorFlow object-detection API (post-processed export) decoder.

Tensor contract (outputs in this order, as the manifest lists them):
    boxes: (1, N, 4) float32, normalised y1, x1, y2, x2 in [0, 1] of the model input.
    scores: (1, N) float32 in [0, 1].
    classes: (1, N) float32 or int class ids, used as indices into the manifest's labels as they
        are (TF exports count from 1 with 0 the background: list a placeholder label first).
    count: optional (1,) number of valid rows; rows past it are ignored.
The export has already run NMS per class; a class-aware NMS pass with the configured IoU
follows anyway (a no-op on well-formed output, a guard on exports without it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamvision.decoders.boxes import DecodedBoxes, DecodeParams, select, squeeze_batch


def decode_ssd(
    outputs: Sequence[np.ndarray], input_size: tuple[int, int], params: DecodeParams
) -> DecodedBoxes:
    """Turns TF object-detection API outputs into boxes in input pixels.

    Args:
        outputs: boxes, scores, classes and optionally count, in that order.
        input_size: model input (width, height) in pixels.
        params: score threshold, NMS IoU, class filter, cap.

    Raises:
        ValueError: not 3 or 4 outputs, or their shapes disagree.

    Example:
        >>> boxes = np.array([[[0.1, 0.2, 0.5, 0.6]]], np.float32)
        >>> out = decode_ssd([boxes, np.array([[0.9]]), np.array([[1.0]])], (300, 300), DecodeParams())
        >>> out.xyxy.round(1).tolist(), out.class_ids.tolist()
        ([[60.0, 30.0, 180.0, 150.0]], [1])
    """
    if len(outputs) not in (3, 4):
        raise ValueError(
            f"ssd: expected 3 or 4 outputs (boxes, scores, classes[, count]), got {len(outputs)}"
        )
    boxes = squeeze_batch(np.asarray(outputs[0]), 2, "ssd boxes")
    scores = squeeze_batch(np.asarray(outputs[1]), 1, "ssd scores")
    classes = squeeze_batch(np.asarray(outputs[2]), 1, "ssd classes")
    if boxes.shape[1] != 4 or not (len(boxes) == len(scores) == len(classes)):
        raise ValueError(
            f"ssd: expected boxes (N, 4), scores (N,), classes (N,), got "
            f"{boxes.shape}, {scores.shape}, {classes.shape}"
        )
    count = len(boxes)
    if len(outputs) == 4:
        count = min(count, int(np.asarray(outputs[3]).reshape(-1)[0]))
    width, height = input_size
    y1x1y2x2 = np.clip(boxes[:count], 0.0, 1.0)
    xyxy = y1x1y2x2[:, [1, 0, 3, 2]] * np.array([width, height, width, height], np.float32)
    class_ids = np.rint(classes[:count]).astype(np.int64)
    return select(xyxy, scores[:count], class_ids, params)
