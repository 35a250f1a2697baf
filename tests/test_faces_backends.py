"""The face stage's backend options and MediaPipe's weighted NMS, without MediaPipe installed."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from streamvision.config import parse_config
from streamvision.decoders.blazeface import anchor_centres, decode_blazeface
from streamvision.errors import ConfigError, StreamvisionError
from streamvision.runtime.manifest import ModelRegistry
from streamvision.runtime.nms import weighted_nms
from streamvision.runtime.session import ThreadBudget
from streamvision.stages import StageContext, build_stage
from streamvision.stages.faces import FaceDetectionConfig

SIZE = 128


def test_weighted_nms_groups_overlapping_boxes_behind_the_best() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 9, 9]], np.float32)
    groups = weighted_nms(boxes, np.array([0.8, 0.9, 0.7, 0.6]), 0.5)
    assert [g.tolist() for g in groups] == [[1, 0, 3], [2]]
    assert [g.tolist() for g in weighted_nms(boxes, np.array([0.8, 0.9, 0.7, 0.6]), 0.5, 1)] == [[1, 0, 3]]
    assert weighted_nms(boxes[:0], np.zeros(0), 0.5) == []


def test_weighted_nms_ends_when_no_box_can_overlap_enough() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    assert [g.tolist() for g in weighted_nms(boxes, np.array([0.9, 0.8]), 1.0)] == [[0], [1]]


def test_blended_face_is_the_score_weighted_mean_of_its_group() -> None:
    anchors = anchor_centres(SIZE)
    regressors = np.zeros((1, 896, 16), np.float32)
    scores = np.full((1, 896, 1), -10.0, np.float32)
    index = 600
    logits = {index: 2.0, index + 1: 0.0}  # same anchor centre; sigmoid 0.881 and 0.5
    regressors[0, index, :6] = [0, 0, 20, 20, 4, 0]
    regressors[0, index + 1, :6] = [2, 0, 20, 20, 8, 0]
    for anchor, logit in logits.items():
        scores[0, anchor, 0] = logit
    hard = decode_blazeface(regressors, scores, anchors, SIZE, 0.4, 0.3)
    blended = decode_blazeface(regressors, scores, anchors, SIZE, 0.4, 0.3, blend=True)
    p, q = 1 / (1 + np.exp(-2.0)), 0.5
    shift = 2 * q / (p + q)
    cx, cy = anchors[index] * SIZE
    assert len(hard.xyxy) == len(blended.xyxy) == 1
    np.testing.assert_allclose(hard.xyxy[0], [cx - 10, cy - 10, cx + 10, cy + 10], atol=1e-4)
    np.testing.assert_allclose(
        blended.xyxy[0], [cx - 10 + shift, cy - 10, cx + 10 + shift, cy + 10], atol=1e-4
    )
    np.testing.assert_allclose(blended.keypoints[0, 0], [cx + 4 + 2 * shift, cy], atol=1e-4)
    np.testing.assert_allclose(blended.scores, hard.scores)


def test_blended_decoding_of_no_faces_is_empty() -> None:
    regressors = np.zeros((1, 896, 16), np.float32)
    scores = np.full((1, 896, 1), -10.0, np.float32)
    faces = decode_blazeface(regressors, scores, anchor_centres(SIZE), SIZE, 0.5, 0.3, blend=True)
    assert faces.xyxy.shape == (0, 4) and faces.scores.shape == (0,) and faces.keypoints.shape == (0, 6, 2)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "mediapipe", "nms": "hard"}, "always uses weighted NMS"),
        ({"tflite": "face.tflite"}, "only used by backend: mediapipe"),
        ({"backend": "tensorrt"}, "stages.0.backend"),
    ],
)
def test_backend_options_are_checked_at_load(options: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"source": "clip.mp4", "stages": [{"type": "face_detection", **options}]})


def test_default_backend_is_onnx_runtime_with_mediapipes_weighted_nms() -> None:
    config = FaceDetectionConfig()
    assert config.backend == "onnxruntime" and config.nms == "weighted" and config.tflite is None


@pytest.mark.skipif(importlib.util.find_spec("mediapipe") is not None, reason="mediapipe is installed")
def test_mediapipe_backend_without_mediapipe_names_the_extra() -> None:
    context = StageContext(ModelRegistry(), ThreadBudget(1))
    with pytest.raises(StreamvisionError, match=r"pip install 'streamvision\[mediapipe\]'"):
        build_stage(FaceDetectionConfig(backend="mediapipe"), context)


def test_bench_compare_switches_only_the_face_backend() -> None:
    from streamvision.bench.compare import with_face_backend

    face = {"type": "face_detection", "score_threshold": 0.6, "name": "faces"}
    config = parse_config({"source": "clip.mp4", "stages": [face]})
    (stage,) = with_face_backend(config, "mediapipe").stages
    assert isinstance(stage, FaceDetectionConfig)
    assert stage.backend == "mediapipe" and stage.score_threshold == 0.6 and stage.result_key == "faces"
    (back,) = with_face_backend(with_face_backend(config, "mediapipe"), "onnxruntime").stages
    assert back == config.stages[0]


@pytest.mark.parametrize(
    ("stages", "peer", "message"),
    [
        ([{"type": "face_detection"}], "tensorrt", "unknown backend; valid: mediapipe"),
        ([], "mediapipe", "needs a pipeline with a face_detection stage"),
        ([{"type": "face_detection", "nms": "hard"}], "mediapipe", "always uses weighted NMS"),
    ],
)
def test_bench_compare_checks_its_backend_and_pipeline(stages: list[dict], peer: str, message: str) -> None:
    from streamvision.bench.compare import compare_backends

    config = parse_config({"source": "clip.mp4", "stages": stages})
    with pytest.raises(ConfigError, match=message):
        compare_backends(config, peer, repeat=1)
