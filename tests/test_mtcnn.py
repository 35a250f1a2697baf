"""MTCNN: the decoders on made-up tensors, the cascade on the astronaut photo and the sample clip;
BlazeFace full range on the astronaut."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamvision.config import OutputConfig, PipelineConfig, SourceConfig, parse_config
from streamvision.decoders.blazeface import anchor_centres, decode_blazeface
from streamvision.decoders.mtcnn import decode_landmarks, decode_pnet, pyramid_scales, refine, square
from streamvision.errors import ConfigError
from streamvision.pipeline import Pipeline
from streamvision.runtime.nms import box_iou, nms
from streamvision.stages.faces import FaceDetectionConfig, MtcnnOptions

ASTRONAUT_FACE = np.array([180, 82, 274, 176], np.float32)


def test_pyramid_stops_before_the_image_is_smaller_than_a_pnet_window() -> None:
    scales = pyramid_scales(640, 480, 40, 0.5)
    np.testing.assert_allclose(scales, [0.3, 0.15, 0.075, 0.0375])
    assert (480 * scales >= 12).all() and 480 * scales[-1] * 0.5 < 12
    assert pyramid_scales(10, 10, 20).size == 0
    with pytest.raises(ValueError, match="factor"):
        pyramid_scales(100, 100, 20, 1.2)


def test_pnet_cells_map_to_windows_of_the_original_image() -> None:
    reg = np.zeros((1, 5, 6, 4), np.float32)
    prob = np.zeros((1, 5, 6, 2), np.float32)
    prob[0, :, :, 0] = 1.0
    prob[0, 2, 3] = [0.1, 0.9]  # row 2, column 3: window x 6..18, y 4..16 at this level
    prob[0, 4, 0] = [0.3, 0.7]
    reg[0, 2, 3] = [0.5, 0.0, 0.0, -0.25]
    boxes, scores = decode_pnet(reg, prob, 0.5, 0.6)
    np.testing.assert_allclose(scores, [0.9, 0.7], rtol=1e-6)
    np.testing.assert_allclose(boxes[0], [(6 + 6) / 0.5, 4 / 0.5, 18 / 0.5, (16 - 3) / 0.5])
    np.testing.assert_allclose(boxes[1], [0, 16, 24, 40])
    assert decode_pnet(reg, prob, 1.0, 0.95)[0].shape == (0, 4)
    with pytest.raises(ValueError, match="face_prob"):
        decode_pnet(reg, prob[..., :1], 1.0, 0.5)


def test_square_refine_and_landmarks_follow_mtcnn_conventions() -> None:
    np.testing.assert_allclose(square(np.array([[10, 20, 30, 60]])), [[0, 20, 40, 60]])
    box = np.array([[10.0, 20.0, 49.0, 59.0]])  # 40 px wide counting both ends
    np.testing.assert_allclose(refine(box, np.array([[0.1, -0.1, 0.0, 0.25]])), [[14, 16, 49, 69]])
    marks = np.array([[0.0, 1.0, 0.5, 0.25, 0.75, 0.0, 0.0, 0.5, 1.0, 1.0]])
    points = decode_landmarks(box, marks)
    np.testing.assert_allclose(points[0], [[9, 19], [49, 19], [29, 39], [19, 59], [39, 59]])
    with pytest.raises(ValueError, match="landmarks"):
        decode_landmarks(box, marks[:, :8])


def test_min_area_nms_drops_a_box_inside_a_better_one() -> None:
    boxes = np.array([[0, 0, 100, 100], [10, 10, 40, 40]], np.float32)
    scores = np.array([0.9, 0.8])
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, 0.5, min_area=True).tolist() == [0]


def test_full_range_anchors_are_one_per_cell_of_a_48_grid() -> None:
    anchors = anchor_centres(192, (4,), 1)
    regressors = np.zeros((1, 2304, 16), np.float32)
    scores = np.full((1, 2304, 1), -10.0, np.float32)
    index = 48 * 10 + 20  # row 10, column 20
    regressors[0, index, :4] = [0, 0, 30, 30]
    scores[0, index, 0] = 3.0
    faces = decode_blazeface(regressors, scores, anchors, 192, 0.5, 0.3)
    np.testing.assert_allclose(faces.xyxy[0], [82 - 15, 42 - 15, 82 + 15, 42 + 15], atol=1e-4)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mtcnn": {"min_face": 30}}, "only used by model: mtcnn"),
        ({"model": "mtcnn", "backend": "mediapipe"}, "onnxruntime only"),
        ({"model": "mtcnn", "mtcnn": {"min_face": 5}}, "stages.0.mtcnn.min_face"),
    ],
)
def test_mtcnn_options_are_checked_at_load(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"source": "clip.mp4", "stages": [{"type": "face_detection", **options}]})


def _faces(uri: Path, events: Path, **face: object) -> list[dict]:
    config = PipelineConfig(
        source=SourceConfig(uri=str(uri)),
        stages=[FaceDetectionConfig.model_validate(face)],
        outputs=OutputConfig(events=str(events)),
    )
    Pipeline(config).run()
    return [json.loads(line)["results"]["face_detection"] for line in events.read_text().splitlines()]


@pytest.mark.parametrize(
    "face", [{"model": "mtcnn"}, {"model": "mtcnn", "nms": "hard"}, {"model": "blazeface_full"}]
)
def test_astronaut_face_is_found_where_it_is(astronaut: Path, tmp_path: Path, face: dict) -> None:
    (faces,) = _faces(astronaut, tmp_path / "events.jsonl", **face)
    boxes = np.array([f["box"] for f in faces], np.float32)
    overlapping = [f for f, iou in zip(faces, box_iou(ASTRONAUT_FACE, boxes), strict=True) if iou >= 0.5]
    assert len(overlapping) == 1, faces
    keypoints = np.array(overlapping[0]["keypoints"])
    assert len(keypoints) == (5 if face["model"] == "mtcnn" else 6)
    eyes = keypoints[:2]  # both models list the two eyes first, inside the face box
    assert ((eyes >= ASTRONAUT_FACE[:2]) & (eyes <= ASTRONAUT_FACE[2:])).all(), keypoints


def test_mtcnn_finds_a_face_in_nearly_every_frame_of_the_sample_clip(
    sample_clip: Path, tmp_path: Path
) -> None:
    frames = _faces(sample_clip, tmp_path / "events.jsonl", model="mtcnn")
    assert len(frames) == 120
    assert sum(1 for faces in frames if faces) >= 0.9 * len(frames)
    larger = _faces(sample_clip, tmp_path / "larger.jsonl", model="mtcnn", mtcnn=MtcnnOptions(min_face=40))
    assert sum(1 for faces in larger if faces) >= 0.9 * len(larger)  # the caller's face is larger than 40 px
