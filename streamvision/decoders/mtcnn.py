"""MTCNN (P-Net, R-Net, O-Net cascade) decoders, as the ``mtcnn`` 1.0.0 package post-processes them.

Tensor contract (NHWC, RGB, ``(pixel - 127.5) / 128``):
    P-Net, any image size (H, W): ``bbox_reg`` (1, h, w, 4) offsets of a 12 x 12 window at stride 2,
        as fractions of the window side (x1, y1, x2, y2); ``face_prob`` (1, h, w, 2) softmax
        (background, face).
    R-Net, (N, 24, 24, 3) patches: ``bbox_reg`` (N, 4) offsets as fractions of the patch box side
        plus one; ``face_prob`` (N, 2).
    O-Net, (N, 48, 48, 3) patches: as R-Net, plus ``landmarks`` (N, 10): x of five points then y of
        five points, as fractions of the patch box (image-left eye, image-right eye, nose, mouth
        left corner, mouth right corner).

Every function here is pure numpy; boxes are (N, 4) x1, y1, x2, y2 in image pixels.
"""

from __future__ import annotations

import numpy as np

PNET_STRIDE = 2
PNET_CELL = 12
NUM_LANDMARKS = 5


def pyramid_scales(width: int, height: int, min_face: float, factor: float = 0.709) -> np.ndarray:
    """The image scales P-Net runs at: a face of ``min_face`` pixels fills its 12-pixel window at the
    first scale; each next scale is ``factor`` times the previous, while the image stays >= 12 px.

    Raises:
        ValueError: ``min_face`` < 1 or ``factor`` outside (0, 1).

    Example:
        >>> pyramid_scales(100, 60, 20).round(3).tolist()
        [0.6, 0.425, 0.302, 0.214]
    """
    if min_face < 1 or not 0 < factor < 1:
        raise ValueError(f"need min_face >= 1 and 0 < factor < 1, got {min_face}, {factor}")
    scales = []
    scale = PNET_CELL / min_face
    while min(width, height) * scale >= PNET_CELL:
        scales.append(scale)
        scale *= factor
    return np.asarray(scales, np.float64)


def decode_pnet(
    bbox_reg: np.ndarray, face_prob: np.ndarray, scale: float, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Face windows of one pyramid level, in pixels of the original image.

    Args:
        bbox_reg: (h, w, 4) or (1, h, w, 4) P-Net offsets.
        face_prob: (h, w, 2) or (1, h, w, 2) P-Net probabilities (column 1: face).
        scale: the level's scale (its image is the original times ``scale``).
        threshold: minimum face probability.

    Returns:
        (N, 4) float64 boxes and (N,) scores, best first.

    Raises:
        ValueError: the two maps do not have the same grid or the expected channels.
    """
    reg = bbox_reg.reshape(bbox_reg.shape[-3:]) if bbox_reg.ndim == 4 else bbox_reg
    prob = face_prob.reshape(face_prob.shape[-3:]) if face_prob.ndim == 4 else face_prob
    if reg.ndim != 3 or reg.shape[2] != 4 or prob.shape != (*reg.shape[:2], 2):
        raise ValueError(
            f"expected bbox_reg (h, w, 4) and face_prob (h, w, 2), got {reg.shape}, {prob.shape}"
        )
    ys, xs = np.nonzero(prob[:, :, 1] > threshold)
    scores = prob[ys, xs, 1].astype(np.float64)
    offsets = reg[ys, xs].astype(np.float64)
    x1, y1 = xs * PNET_STRIDE, ys * PNET_STRIDE
    windows = np.stack([x1, y1, x1 + PNET_CELL, y1 + PNET_CELL], axis=1).astype(np.float64)
    boxes = (windows + offsets * PNET_CELL) / scale
    order = np.argsort(-scores, kind="stable")
    return boxes[order].reshape(-1, 4), scores[order]


def square(boxes: np.ndarray) -> np.ndarray:
    """Each box grown to a square of its longer side around its centre.

    Example:
        >>> square(np.array([[0.0, 0.0, 10.0, 4.0]])).tolist()
        [[0.0, -3.0, 10.0, 7.0]]
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    size = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    return np.stack([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], axis=1)


def refine(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """R-Net / O-Net box regression: each side moves by its offset times the box side plus one.

    Raises:
        ValueError: ``boxes`` and ``offsets`` are not both (N, 4).

    Example:
        >>> refine(np.array([[10.0, 10.0, 19.0, 29.0]]), np.array([[0.1, 0.0, -0.1, 0.05]])).tolist()
        [[11.0, 10.0, 18.0, 30.0]]
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    offsets = np.asarray(offsets, np.float64)
    if offsets.shape != boxes.shape:
        raise ValueError(f"expected offsets of shape {boxes.shape}, got {offsets.shape}")
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    return np.asarray(boxes + offsets * np.stack([w, h, w, h], axis=1))


def decode_landmarks(boxes: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """O-Net's five points in image pixels, relative to the boxes the patches were cut from.

    Args:
        boxes: (N, 4) the O-Net input boxes (before :func:`refine`).
        landmarks: (N, 10) x1..x5 then y1..y5 as fractions of each box.

    Returns:
        (N, 5, 2) float64 points as x, y.

    Raises:
        ValueError: the shapes do not match.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.shape != (len(boxes), 2 * NUM_LANDMARKS):
        raise ValueError(f"expected landmarks of shape ({len(boxes)}, 10), got {landmarks.shape}")
    w = boxes[:, 2:3] - boxes[:, 0:1] + 1
    h = boxes[:, 3:4] - boxes[:, 1:2] + 1
    xs = w * landmarks[:, :NUM_LANDMARKS] + boxes[:, 0:1] - 1
    ys = h * landmarks[:, NUM_LANDMARKS:] + boxes[:, 1:2] - 1
    return np.stack([xs, ys], axis=-1)
