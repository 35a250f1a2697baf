"""BlazeFace (MediaPipe face detection) decoder.

Tensor contract, short-range model (128 x 128 input):
    regressors: (1, 896, 16) float32 in input pixels, relative to each anchor's centre:
        cx, cy, w, h, then 6 keypoints as x, y (right eye, left eye, nose tip, mouth centre,
        right ear tragion, left ear tragion).
    scores: (1, 896, 1) float32 logits.
Anchors: stride 8 on a 16 x 16 grid (2 per cell) then stride 16 on an 8 x 8 grid (6 per cell),
centres at ((gx + 0.5) / g, (gy + 0.5) / g), all of unit size.

Full-range model (192 x 192 input): the same tensors with 2304 anchors, one per cell of a 48 x 48
grid (stride 4); regressors in 192-input pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamvision.runtime.nms import nms, weighted_nms

SHORT_RANGE_STRIDES = (8, 16, 16, 16)
FULL_RANGE_STRIDES = (4,)
ANCHOR_LAYOUTS: dict[str, tuple[tuple[int, ...], int]] = {
    "blazeface_short": (SHORT_RANGE_STRIDES, 2),
    "blazeface_full": (FULL_RANGE_STRIDES, 1),
}
"""Decoder name -> (strides, anchors per layer per cell), as MediaPipe configures each model."""
NUM_KEYPOINTS = 6


def anchor_centres(
    input_size: int, strides: tuple[int, ...] = SHORT_RANGE_STRIDES, per_layer: int = 2
) -> np.ndarray:
    """(A, 2) anchor centres in [0, 1] as MediaPipe's SsdAnchorsCalculator lays them out.

    Consecutive layers with the same stride share one grid, with ``per_layer`` anchors per layer per
    cell (2 for the short-range model, 1 for the full-range one).

    Example:
        >>> anchor_centres(128).shape
        (896, 2)
        >>> anchor_centres(192, FULL_RANGE_STRIDES, 1).shape
        (2304, 2)
    """
    centres = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        per_cell = 0
        while layer < len(strides) and strides[layer] == stride:
            per_cell += per_layer
            layer += 1
        grid = input_size // stride
        ys, xs = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
        cell = np.stack([(xs + 0.5) / grid, (ys + 0.5) / grid], axis=-1).reshape(-1, 2)
        centres.append(np.repeat(cell, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


@dataclass(frozen=True)
class FaceBoxes:
    """Decoded faces in input pixels: (N, 4) boxes, (N,) scores, (N, 6, 2) keypoints."""

    xyxy: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray


def decode_blazeface(
    regressors: np.ndarray,
    scores: np.ndarray,
    anchors: np.ndarray,
    input_size: int,
    score_threshold: float,
    iou_threshold: float,
    max_faces: int | None = None,
    blend: bool = False,
) -> FaceBoxes:
    """Turns one image's raw BlazeFace outputs into scored, de-duplicated faces.

    Args:
        regressors: (A, 16) or (1, A, 16) raw box and keypoint offsets.
        scores: (A,), (A, 1) or (1, A, 1) logits.
        anchors: (A, 2) centres from :func:`anchor_centres`.
        input_size: the square model input side in pixels.
        score_threshold: minimum sigmoid score.
        iou_threshold: NMS overlap limit.
        max_faces: keep at most this many.
        blend: MediaPipe's weighted NMS: each face is the score-weighted mean of the boxes and
            keypoints that overlap its best box by more than ``iou_threshold`` (with the best
            score). Off: plain greedy NMS keeps the best box alone.

    Raises:
        ValueError: the tensor shapes do not match the anchors.
    """
    regressors = regressors.reshape(-1, regressors.shape[-1])
    logits = scores.reshape(-1)
    if regressors.shape != (len(anchors), 4 + 2 * NUM_KEYPOINTS) or logits.shape != (len(anchors),):
        raise ValueError(
            f"expected regressors ({len(anchors)}, 16) and scores ({len(anchors)},), "
            f"got {regressors.shape} and {logits.shape}"
        )
    probability = 1.0 / (1.0 + np.exp(-np.clip(logits, -80.0, 80.0)))
    selected = np.flatnonzero(probability >= score_threshold)
    centres = anchors[selected] * input_size
    raw = regressors[selected]
    cx = centres[:, 0] + raw[:, 0]
    cy = centres[:, 1] + raw[:, 1]
    half_w, half_h = raw[:, 2] / 2, raw[:, 3] / 2
    xyxy = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    keypoints = raw[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) + centres[:, None, :]
    if blend:
        return blend_overlapping(xyxy, probability[selected], keypoints, iou_threshold, max_faces)
    keep = nms(xyxy, probability[selected], iou_threshold, max_faces)
    return FaceBoxes(
        xyxy=xyxy[keep].astype(np.float32),
        scores=probability[selected][keep].astype(np.float32),
        keypoints=keypoints[keep].astype(np.float32),
    )


def blend_overlapping(
    xyxy: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, iou_threshold: float, max_faces: int | None
) -> FaceBoxes:
    """Weighted NMS for any face detector: each group of overlapping faces becomes the score-weighted
    mean of its boxes and (N, K, 2) keypoints, with the score of its best member."""
    groups = weighted_nms(xyxy, scores, iou_threshold, max_faces)
    boxes = np.zeros((len(groups), 4), np.float32)
    points = np.zeros((len(groups), keypoints.shape[1], 2), np.float32)
    for i, group in enumerate(groups):
        weights = scores[group] / scores[group].sum()
        boxes[i] = weights @ xyxy[group]
        points[i] = np.tensordot(weights, keypoints[group], axes=1)
    best = np.asarray([group[0] for group in groups], np.int64)
    return FaceBoxes(xyxy=boxes, scores=scores[best].astype(np.float32), keypoints=points)
