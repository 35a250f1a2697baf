"""Person segmentation with its effects, and MoveNet pose: decoders on made-up tensors, stages on the
astronaut photo, both from YAML through a pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamvision.config import load_config, parse_config
from streamvision.decoders.movenet import decode_movenet
from streamvision.decoders.segmentation import decode_mask, mask_to_frame
from streamvision.errors import ConfigError
from streamvision.frame import Detections, Frame, Mask, Poses
from streamvision.pipeline import Pipeline
from streamvision.render.annotate import Annotator
from streamvision.render.effects import MaskEffect, apply_effect, fit_background
from streamvision.runtime.manifest import ModelRegistry
from streamvision.runtime.preprocess import Letterbox
from streamvision.runtime.session import ThreadBudget
from streamvision.stages import StageContext, build_stage
from streamvision.stages.pose import PoseConfig

# A rough outline of the astronaut (head, shoulders, suit and the helmet at her side), drawn by hand.
PERSON = np.array(
    [(160, 60), (200, 15), (260, 15), (300, 60), (300, 180), (390, 230), (470, 330), (512, 340), (512, 512),
     (30, 512), (20, 300), (110, 200), (160, 180)],
    np.int32,
)  # fmt: skip
FACE = np.array([180, 82, 274, 176], np.float32)


@pytest.fixture(scope="module")
def photo(astronaut: Path) -> np.ndarray:
    image = cv2.imread(str(astronaut))
    assert image is not None
    return image


@pytest.fixture(scope="module")
def person_region() -> np.ndarray:
    region = np.zeros((512, 512), np.uint8)
    cv2.fillPoly(region, [PERSON], 1)
    return region.astype(bool)


def _run_stage(image: np.ndarray, **stage: object) -> Frame:
    (config,) = parse_config({"source": "x.mp4", "stages": [stage]}).stages
    built = build_stage(config, StageContext(ModelRegistry(), ThreadBudget(2)))
    return built.process(Frame(image, "test", 0, None, 0.0))


def test_mask_decoders_and_the_letterbox_undone() -> None:
    sigmoid = np.array([[[[0.2], [1.3]]]], np.float32)
    np.testing.assert_allclose(decode_mask(sigmoid, "sigmoid_mask"), [[0.2, 1.0]])
    logits = np.zeros((1, 1, 2, 2), np.float32)
    logits[0, 0, 0] = [0.0, np.log(4.0)]
    np.testing.assert_allclose(decode_mask(logits, "softmax_mask"), [[0.8, 0.5]], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown mask decoder"):
        decode_mask(sigmoid, "argmax")
    with pytest.raises(ValueError, match="background and person"):
        decode_mask(sigmoid, "softmax_mask")
    # An 8 x 4 frame letterboxed into 8 x 8: rows 2..5 hold the picture; the person is its left half.
    mask = np.zeros((8, 8), np.float32)
    mask[2:6, :4] = 1.0
    framed = mask_to_frame(mask, Letterbox(scale=1.0, pad_x=0, pad_y=2), 8, 4)
    assert framed.shape == (4, 8)
    np.testing.assert_allclose(framed[:, :3], 1.0)
    np.testing.assert_allclose(framed[:, 5:], 0.0)


def test_effects_keep_the_person_and_change_the_rest() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    mask = np.zeros((40, 60), np.float32)
    mask[:, :30] = 1.0
    for effect in (
        MaskEffect("blur", blur=15),
        MaskEffect("replace", background=np.zeros((10, 10, 3), np.uint8)),
    ):
        out = apply_effect(image, mask, effect)
        assert np.array_equal(out[:, :30], image[:, :30])
        assert np.abs(out[:, 31:].astype(int) - image[:, 31:]).mean() > 20
    tinted = apply_effect(image, mask, MaskEffect("overlay", color=(0, 0, 255), opacity=1.0))
    assert (tinted[:, :30] == (0, 0, 255)).all() and np.array_equal(tinted[:, 30:], image[:, 30:])
    assert fit_background(np.zeros((10, 20, 3), np.uint8), 60, 40).shape == (40, 60, 3)
    with pytest.raises(ValueError, match="background"):
        MaskEffect("replace")


@pytest.mark.parametrize(("model", "min_iou"), [("selfie_segmentation", 0.75), ("meet", 0.55)])
def test_person_mask_covers_the_astronaut(
    photo: np.ndarray, person_region: np.ndarray, model: str, min_iou: float
) -> None:
    result = _run_stage(photo, type="segment", model=model).results["segment"]
    assert isinstance(result, Mask) and result.mask.shape == photo.shape[:2] and result.effect is None
    person = result.binary()
    iou = (person & person_region).sum() / (person | person_region).sum()
    assert iou >= min_iou, iou
    assert person[95:160, 200:255].mean() > 0.98  # the middle of her face is all person


def test_background_blur_changes_the_background_but_not_the_person(photo: np.ndarray) -> None:
    frame = _run_stage(photo, type="segment", effect="blur")
    result = frame.results["segment"]
    assert isinstance(result, Mask) and result.effect is not None
    out = Annotator(show_fps=False).annotate(frame)
    assert np.array_equal(frame.image, photo)  # later stages still see the camera's picture
    diff = np.abs(out.astype(int) - photo.astype(int)).max(axis=2)
    sure_person, sure_background = result.mask > 0.99, result.mask < 0.01
    assert sure_person.mean() > 0.3 and sure_background.mean() > 0.2
    assert np.percentile(diff[sure_person], 99) <= 1
    assert diff[sure_background].mean() > 5


def test_segment_options_are_checked_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs background"):
        parse_config({"source": "x.mp4", "stages": [{"type": "segment", "effect": "replace"}]})
    with pytest.raises(ConfigError, match="only used by effect: replace"):
        parse_config({"source": "x.mp4", "stages": [{"type": "segment", "background": "b.jpg"}]})
    with pytest.raises(ConfigError, match="cannot read the background"):
        _run_stage(
            np.zeros((8, 8, 3), np.uint8),
            type="segment",
            effect="replace",
            background=str(tmp_path / "no.jpg"),
        )


def test_movenet_decoder_undoes_the_letterbox() -> None:
    output = np.zeros((1, 1, 17, 3), np.float32)
    output[0, 0, 0] = [0.5, 0.25, 0.9]
    points, scores = decode_movenet(output, (192, 192), Letterbox(scale=0.5, pad_x=0, pad_y=48))
    assert points.shape == (17, 2) and scores.shape == (17,)
    np.testing.assert_allclose(points[0], [96, 96])
    with pytest.raises(ValueError, match="y, x, score"):
        decode_movenet(np.zeros((1, 17, 2), np.float32), (192, 192), Letterbox(1, 0, 0))


def test_pose_on_the_astronaut_puts_nose_and_eyes_in_her_face(photo: np.ndarray) -> None:
    poses = _run_stage(photo, type="pose").results["pose"]
    assert isinstance(poses, Poses) and len(poses) == 1 and poses.detection.tolist() == [-1]
    for name in ("nose", "left_eye", "right_eye"):
        j = poses.names.index(name)
        (x, y), score = poses.points[0, j], poses.scores[0, j]
        assert score > 0.3 and FACE[0] <= x <= FACE[2] and FACE[1] <= y <= FACE[3], (name, x, y, score)
    left, right = poses.names.index("left_shoulder"), poses.names.index("right_shoulder")
    assert poses.points[0, left, 1] > FACE[3] and poses.points[0, right, 1] > FACE[3]


def test_pose_per_person_detection_maps_crops_back(photo: np.ndarray) -> None:
    person = Detections(
        xyxy=np.array([[20, 10, 500, 512], [0, 0, 20, 20]], np.float32),
        confidence=np.array([0.9, 0.8], np.float32),
        class_id=np.array([0, 1], np.int32),
        class_name=np.array(["person", "cup"]),
    )
    stage = build_stage(PoseConfig(on="people"), StageContext(ModelRegistry(), ThreadBudget(2)))
    poses = stage.process(Frame(photo, "t", 0, None, 0.0).with_result("people", person)).results["pose"]
    assert isinstance(poses, Poses) and poses.detection.tolist() == [0] and poses.on == "people"
    nose = poses.points[0, poses.names.index("nose")]
    assert FACE[0] <= nose[0] <= FACE[2] and FACE[1] <= nose[1] <= FACE[3]
    with pytest.raises(ConfigError, match="no detections named 'people'"):
        stage.process(Frame(photo, "t", 0, None, 0.0))


def test_segment_and_pose_from_yaml_write_masks_poses_and_a_video(astronaut: Path, tmp_path: Path) -> None:
    config_file = tmp_path / "people.yaml"
    events = tmp_path / "events.jsonl"
    config_file.write_text(
        f"source: {astronaut}\n"
        "stages:\n"
        "  - {type: segment, model: selfie_segmentation, effect: overlay, opacity: 0.4}\n"
        "  - {type: pose}\n"
        f"outputs: {{events: {events}, video: {tmp_path / 'people.mp4'}}}\n"
    )
    summary = Pipeline(load_config(config_file)).run()
    assert set(summary["stage_ms"]) == {"segment", "pose"}
    (line,) = events.read_text().splitlines()
    results = json.loads(line)["results"]
    (mask,) = results["segment"]
    assert mask["label"] == "person" and 0.3 < mask["area"] < 0.8
    (pose,) = results["pose"]
    assert pose["detection"] is None and set(pose["keypoints"]) >= {"nose", "left_ankle"}
    assert (tmp_path / "people.mp4").stat().st_size > 0
