"""MoveNet (single pose) decoder.

Tensor contract (``movenet_lightning``): input (1, 192, 192, 3) int32 RGB 0..255; output ``keypoints``
(1, 1, 17, 3) float32: for each COCO keypoint y, x as fractions of the input side, then a score
0..1. The image is letterboxed into the input; the letterbox is undone here.
"""

from __future__ import annotations

import numpy as np

from streamvision.runtime.preprocess import Letterbox

COCO_EDGES: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 2), (1, 3), (2, 4),
    (5, 6), (5, 7), (7, 9), (6, 8), (8, 10),
    (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14), (14, 16),
)  # fmt: skip
"""The skeleton over the 17 COCO keypoints (nose, eyes, ears, shoulders, elbows, wrists, hips,
knees, ankles; left before right)."""


def decode_movenet(
    output: np.ndarray, input_size: tuple[int, int], box: Letterbox
) -> tuple[np.ndarray, np.ndarray]:
    """One pose in the pixels of the image that was letterboxed into the input.

    Args:
        output: (1, 1, K, 3), (1, K, 3) or (K, 3) rows of y, x, score; y and x in 0..1.
        input_size: the model input's (width, height).
        box: the letterbox that made the input.

    Returns:
        (K, 2) float32 points as x, y and (K,) float32 scores.

    Raises:
        ValueError: the output does not have three values per keypoint.

    Example:
        >>> out = np.array([[0.5, 0.25, 0.9]], np.float32)
        >>> pts, sc = decode_movenet(out, (192, 192), Letterbox(scale=0.5, pad_x=0, pad_y=48))
        >>> pts.tolist(), sc.round(1).tolist()
        ([[96.0, 96.0]], [0.9])
    """
    rows = output.reshape(-1, output.shape[-1])
    if rows.shape[1] != 3:
        raise ValueError(f"expected (..., K, 3) keypoints as y, x, score, got {output.shape}")
    width, height = input_size
    xy = np.stack([rows[:, 1] * width, rows[:, 0] * height], axis=1)
    return box.points_to_frame(xy).astype(np.float32), rows[:, 2].astype(np.float32)
