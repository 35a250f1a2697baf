"""The object-detection stage on tiny ONNX detectors that emit known tensors."""

import json
from pathlib import Path

import numpy as np
import pytest

from streamvision.config import OutputConfig, PipelineConfig, SourceConfig, parse_config
from streamvision.errors import ConfigError, ModelError
from streamvision.frame import Frame
from streamvision.pipeline import Pipeline
from streamvision.runtime.manifest import ModelRegistry
from streamvision.runtime.session import ThreadBudget
from streamvision.stages.base import StageContext
from streamvision.stages.objects import DetectionCounters, ObjectDetectionConfig, ObjectDetector
from tests.conftest import write_clip
from tests.detector_graphs import constant_detector, write_manifest

# A 640 x 480 frame letterboxed into 640 x 640 sits 80 px down: frame y = input y - 80.
FRAME_SIZE = (640, 480)
INPUT_SIZE = (640, 640)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    folder = tmp_path_factory.mktemp("detectors")
    yolov8 = np.zeros((1, 8, 8400), np.float32)  # 4 box channels + 4 classes
    yolov8[0, :4, 10] = [320, 320, 100, 50]  # person at frame [270, 215, 370, 265]
    yolov8[0, 4 + 0, 10] = 0.85
    yolov8[0, :4, 20] = [60, 100, 40, 20]  # car at frame [40, 10, 80, 30]
    yolov8[0, 4 + 2, 20] = 0.6
    yolov8[0, :4, 30] = [600, 60, 20, 20]  # entirely in the top padding: dropped
    yolov8[0, 4 + 1, 30] = 0.9
    yolov5 = np.zeros((1, 100, 9), np.float32)
    yolov5[0, 0, :5] = [320, 320, 100, 50, 0.9]
    yolov5[0, 0, 5 + 3] = 0.5  # motorcycle, 0.45
    ssd_boxes = np.zeros((1, 10, 4), np.float32)
    ssd_boxes[0, 0] = [0.25, 0.5, 0.5, 0.75]  # y1 x1 y2 x2 -> input [320, 160, 480, 320]
    ssd_scores = np.array([[0.8] + [0.0] * 9], np.float32)
    ssd_classes = np.array([[1] + [0] * 9], np.float32)
    entries = {
        "yolo_fixed": (
            constant_detector(folder / "yolo_fixed.onnx", {"output0": yolov8}, INPUT_SIZE),
            "yolov8",
            INPUT_SIZE,
            ["output0"],
        ),
        "yolov5_fixed": (
            constant_detector(folder / "yolov5_fixed.onnx", {"output0": yolov5}, INPUT_SIZE),
            "yolov5",
            INPUT_SIZE,
            ["output0"],
        ),
        "ssd_fixed": (
            constant_detector(
                folder / "ssd_fixed.onnx",
                {
                    "boxes": ssd_boxes,
                    "scores": ssd_scores,
                    "classes": ssd_classes,
                    "count": np.array([1.0], np.float32),
                },
                INPUT_SIZE,
            ),
            "ssd",
            INPUT_SIZE,
            ["boxes", "scores", "classes", "count"],
        ),
        "unknown_decoder": (folder / "yolo_fixed.onnx", "magic", INPUT_SIZE, ["output0"]),
    }
    return ModelRegistry(write_manifest(folder, entries))


def _detector(registry: ModelRegistry, **options: object) -> ObjectDetector:
    config = ObjectDetectionConfig.model_validate({"model": "yolo_fixed", **options})
    return ObjectDetector(config, StageContext(registry, ThreadBudget(1)))


def _frame(index: int = 0) -> Frame:
    width, height = FRAME_SIZE
    return Frame(np.zeros((height, width, 3), np.uint8), "test", index, None, 0.0)


def test_yolov8_boxes_come_back_in_frame_pixels_with_labels(registry: ModelRegistry) -> None:
    detections = _detector(registry).process(_frame()).results["object_detection"]
    assert detections.class_name.tolist() == ["person", "car"]
    np.testing.assert_allclose(detections.xyxy, [[270, 215, 370, 265], [40, 10, 80, 30]], atol=1e-3)
    np.testing.assert_allclose(detections.confidence, [0.85, 0.6], rtol=1e-6)
    assert detections.tracker_id is None


def test_class_filter_and_threshold(registry: ModelRegistry) -> None:
    only_cars = _detector(registry, classes=["car"]).detect(_frame().image)
    assert only_cars.class_name.tolist() == ["car"]
    confident = _detector(registry, score_threshold=0.7).detect(_frame().image)
    assert confident.class_name.tolist() == ["person"]
    with pytest.raises(ConfigError, match="'bike' not labels of model 'yolo_fixed'; its labels: person"):
        _detector(registry, classes=["bike"])


def test_yolov5_and_ssd_graphs_decode_to_known_boxes(registry: ModelRegistry) -> None:
    context = StageContext(registry, ThreadBudget(1))
    v5 = ObjectDetector(ObjectDetectionConfig(model="yolov5_fixed"), context).detect(_frame().image)
    assert v5.class_name.tolist() == ["motorcycle"]
    np.testing.assert_allclose(v5.xyxy, [[270, 215, 370, 265]], atol=1e-3)
    np.testing.assert_allclose(v5.confidence, [0.45], rtol=1e-5)
    ssd = ObjectDetector(ObjectDetectionConfig(model="ssd_fixed"), context).detect(_frame().image)
    assert ssd.class_name.tolist() == ["bicycle"]
    np.testing.assert_allclose(ssd.xyxy, [[320, 80, 480, 240]], atol=1e-3)


def test_decoder_option_overrides_the_manifest(registry: ModelRegistry) -> None:
    context = StageContext(registry, ThreadBudget(1))
    with pytest.raises(ModelError, match="has decoder 'magic'; object_detection needs one of centernet"):
        ObjectDetector(ObjectDetectionConfig(model="unknown_decoder"), context)
    fixed = ObjectDetector(ObjectDetectionConfig(model="unknown_decoder", decoder="yolo11"), context)
    assert len(fixed.detect(_frame().image)) == 2
    with pytest.raises(ConfigError, match="unknown decoder 'yolo99'; valid: centernet"):
        parse_config({"source": "a.mp4", "stages": [{"type": "object_detection", "decoder": "yolo99"}]})


def test_every_n_skips_frames_without_a_result(registry: ModelRegistry) -> None:
    detector = _detector(registry, every=3)
    ran = ["object_detection" in detector.process(_frame(i)).results for i in range(7)]
    assert ran == [True, False, False, True, False, False, True]
    assert detector.runs == 3
    assert detector.counters == DetectionCounters(frames=7, skipped_frames=4, full_frame_runs=3)


def test_pipeline_writes_object_events(registry: ModelRegistry, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "grey.mp4", [np.full((480, 640, 3), 90, np.uint8)] * 4)
    events = tmp_path / "events.jsonl"
    config = PipelineConfig(
        source=SourceConfig(uri=str(clip)),
        stages=[ObjectDetectionConfig(model="yolo_fixed", every=2)],
        outputs=OutputConfig(events=str(events)),
    )
    summary = Pipeline(config, models=registry).run()
    assert summary["frames_out"] == 4
    lines = [json.loads(line)["results"] for line in events.read_text().splitlines()]
    assert [sorted(r) for r in lines] == [["object_detection"], [], ["object_detection"], []]
    person = lines[0]["object_detection"][0]
    assert person["label"] == "person" and person["box"] == [270.0, 215.0, 370.0, 265.0]


def test_a_detector_from_another_manifest_folder(registry: ModelRegistry, models: ModelRegistry) -> None:
    config = ObjectDetectionConfig(model="yolo_fixed", models=registry.models_dir)
    detector = ObjectDetector(config, StageContext(models, ThreadBudget(1)))  # the project's registry
    assert detector.detect(_frame().image).class_name.tolist() == ["person", "car"]
    with pytest.raises(ModelError, match="unknown model 'yolo_fixed'"):
        ObjectDetector(ObjectDetectionConfig(model="yolo_fixed"), StageContext(models, ThreadBudget(1)))
