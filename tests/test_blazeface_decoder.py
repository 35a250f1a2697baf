"""The BlazeFace decoder on made-up tensors."""

import numpy as np
import pytest

from streamvision.decoders.blazeface import anchor_centres, decode_blazeface

SIZE = 128


def test_anchor_layout_matches_mediapipe_short_range() -> None:
    anchors = anchor_centres(SIZE)
    assert anchors.shape == (896, 2)
    # stride 8: a 16 x 16 grid, two anchors per cell, row-major
    np.testing.assert_allclose(anchors[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[1], anchors[0])
    np.testing.assert_allclose(anchors[2], [1.5 / 16, 0.5 / 16])
    # stride 16: an 8 x 8 grid, six anchors per cell, after the 512 stride-8 anchors
    np.testing.assert_allclose(anchors[512:518], [[0.5 / 8, 0.5 / 8]] * 6)
    np.testing.assert_allclose(anchors[-1], [7.5 / 8, 7.5 / 8])


def _tensors(faces: dict[int, tuple[float, list[float]]]) -> tuple[np.ndarray, np.ndarray]:
    regressors = np.zeros((1, 896, 16), np.float32)
    scores = np.full((1, 896, 1), -10.0, np.float32)
    for anchor, (logit, values) in faces.items():
        scores[0, anchor, 0] = logit
        regressors[0, anchor, : len(values)] = values
    return regressors, scores


def test_decodes_box_and_keypoints_relative_to_the_anchor() -> None:
    anchors = anchor_centres(SIZE)
    index = 600  # a stride-16 anchor
    cx, cy = anchors[index] * SIZE
    keypoints = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    regressors, scores = _tensors({index: (3.0, [2.0, -4.0, 20.0, 30.0, *keypoints])})
    faces = decode_blazeface(regressors, scores, anchors, SIZE, 0.5, 0.3)
    assert len(faces.xyxy) == 1
    np.testing.assert_allclose(faces.xyxy[0], [cx + 2 - 10, cy - 4 - 15, cx + 2 + 10, cy - 4 + 15], atol=1e-4)
    np.testing.assert_allclose(faces.scores[0], 1 / (1 + np.exp(-3.0)), rtol=1e-6)
    assert faces.keypoints.shape == (1, 6, 2)
    np.testing.assert_allclose(faces.keypoints[0, 0], [cx + 1, cy + 2], atol=1e-4)
    np.testing.assert_allclose(faces.keypoints[0, 5], [cx + 11, cy + 12], atol=1e-4)


def test_threshold_and_nms_keep_the_best_of_overlapping_faces() -> None:
    anchors = anchor_centres(SIZE)
    box = [0.0, 0.0, 24.0, 24.0]
    regressors, scores = _tensors({600: (2.0, box), 601: (4.0, box), 100: (-2.0, box)})
    faces = decode_blazeface(regressors, scores, anchors, SIZE, score_threshold=0.5, iou_threshold=0.3)
    assert len(faces.scores) == 1  # 601 wins over 600 (same place); 100 is below the threshold
    np.testing.assert_allclose(faces.scores[0], 1 / (1 + np.exp(-4.0)), rtol=1e-6)


def test_no_faces_gives_empty_arrays() -> None:
    regressors, scores = _tensors({})
    faces = decode_blazeface(regressors, scores, anchor_centres(SIZE), SIZE, 0.5, 0.3)
    assert faces.xyxy.shape == (0, 4) and faces.keypoints.shape == (0, 6, 2)


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="expected regressors"):
        decode_blazeface(np.zeros((1, 10, 16)), np.zeros((1, 10, 1)), anchor_centres(SIZE), SIZE, 0.5, 0.3)
