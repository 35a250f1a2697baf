"""Tracking, zones and counting lines on synthetic moving boxes."""

import json
from pathlib import Path

import numpy as np
import pytest

from streamvision.config import load_config, parse_config
from streamvision.errors import ConfigError
from streamvision.frame import Detections, Frame, ZoneCounts
from streamvision.pipeline import Pipeline
from streamvision.render.annotate import Annotator, color_for, track_color
from streamvision.runtime.manifest import ModelRegistry
from streamvision.stages.track import TrackConfig, Tracker
from streamvision.stages.zones import ZoneCounter, ZonesConfig
from tests.conftest import write_clip
from tests.test_objects import registry  # noqa: F401 - the tiny-detector registry fixture

IMAGE = np.zeros((300, 400, 3), np.uint8)


def _boxes(index: int) -> tuple[np.ndarray, np.ndarray]:
    """A person walking right along y 50..130 and a bicycle riding left along y 150..230."""
    person = [10 + 6 * index, 50, 50 + 6 * index, 130]
    bicycle = [340 - 8 * index, 150, 390 - 8 * index, 230]
    return np.array([person, bicycle], np.float32), np.array([0, 1], np.int32)


def _detections(index: int, order: list[int]) -> Detections:
    xyxy, class_id = _boxes(index)
    names = np.array(["person", "bicycle"])
    return Detections(
        xyxy[order], np.array([0.9, 0.8], np.float32)[order], class_id[order], names[class_id[order]]
    )


def _frame(index: int, detections: Detections | None) -> Frame:
    frame = Frame(IMAGE, "synthetic", index, None, 0.0)
    return frame if detections is None else frame.with_result("object_detection", detections)


def test_track_ids_follow_objects_and_keep_rows() -> None:
    tracker = Tracker(TrackConfig(), None)  # type: ignore[arg-type]
    ids_by_label: dict[str, set[int]] = {"person": set(), "bicycle": set()}
    for index in range(20):
        order = [0, 1] if index % 2 else [1, 0]  # rows swap every frame
        detections = _detections(index, order)
        tracked = tracker.process(_frame(index, detections)).results["object_detection"]
        np.testing.assert_array_equal(tracked.xyxy, detections.xyxy)  # same rows, same order
        assert tracked.tracker_id is not None
        if index == 0:
            assert tracked.tracker_id.tolist() == [-1, -1]  # not confirmed yet
            continue
        for name, track in zip(tracked.class_name, tracked.tracker_id, strict=True):
            ids_by_label[str(name)].add(int(track))
    assert len(ids_by_label["person"]) == 1 and len(ids_by_label["bicycle"]) == 1
    assert ids_by_label["person"] != ids_by_label["bicycle"]


def test_tracks_are_carried_between_detector_runs() -> None:
    tracker = Tracker(TrackConfig(), None)  # type: ignore[arg-type]
    for index in range(12):
        detections = _detections(index, [0, 1]) if index % 3 == 0 else None
        tracked = tracker.process(_frame(index, detections)).results["object_detection"]
        if index < 3:
            continue  # the tracks are confirmed at the second detector run (frame 3)
        assert tracked.tracker_id is not None and sorted(tracked.tracker_id.tolist()) == [0, 1]
        if detections is None and index > 6:  # velocity known after two confirmed runs
            truth, _ = _boxes(index)
            by_label = {str(n): box for n, box in zip(tracked.class_name, tracked.xyxy, strict=True)}
            np.testing.assert_allclose(by_label["person"], truth[0], atol=4)
            np.testing.assert_allclose(by_label["bicycle"], truth[1], atol=4)


def test_track_rejects_a_result_that_is_not_detections() -> None:
    frame = Frame(IMAGE, "s", 0, None, 0.0).with_result("object_detection", ZoneCounts(()))
    with pytest.raises(ConfigError, match="is ZoneCounts, not detections"):
        Tracker(TrackConfig(), None).process(frame)  # type: ignore[arg-type]


def _run_zones(config: ZonesConfig, frames: int = 40) -> ZoneCounts:
    tracker = Tracker(TrackConfig(), None)  # type: ignore[arg-type]
    zones = ZoneCounter(config, None)  # type: ignore[arg-type]
    counts = ZoneCounts(())
    for index in range(frames):
        frame = zones.process(tracker.process(_frame(index, _detections(index, [0, 1]))))
        counts = frame.results["zones"]
    return counts


def test_line_counts_crossings_by_direction_and_class() -> None:
    # A vertical line at x = 200 drawn upwards: walking from start to end, its right is east.
    config = ZonesConfig(lines=[{"name": "gate", "start": (200, 300), "end": (200, 0)}])
    (gate,) = _run_zones(config).regions
    assert gate.kind == "line"
    assert dict(gate.entered) == {"person": 1}  # walked east, over to the right side
    assert dict(gate.exited) == {"bicycle": 1}  # rode west
    assert gate.to_record() == {
        "name": "gate",
        "kind": "line",
        "in": {"person": 1, "all": 1},
        "out": {"bicycle": 1, "all": 1},
    }
    # drawn the other way, the same crossings swap direction
    (reverse,) = _run_zones(ZonesConfig(lines=[{"name": "g", "start": (200, 0), "end": (200, 300)}])).regions
    assert dict(reverse.entered) == {"bicycle": 1} and dict(reverse.exited) == {"person": 1}


def test_zone_occupancy_entries_and_class_filter() -> None:
    east_half = [(0.5, 0), (1, 0), (1, 1), (0.5, 1)]  # fractions of 400 x 300: x >= 200
    config = ZonesConfig(
        zones=[
            {"name": "east", "polygon": east_half},
            {"name": "east_people", "polygon": east_half, "classes": ["person"]},
        ],
        relative=True,
    )
    after_20 = _run_zones(config, 20)
    east, people = after_20.regions
    # frame 19: person x 124..164 (west), bicycle 188..238 (bottom centre 213: east)
    assert dict(east.inside) == {"bicycle": 1} and dict(east.entered) == {}
    assert dict(people.inside) == {}
    east, people = _run_zones(config, 40).regions
    # frame 39: person x 244..284 (east: came in); bicycle x 28..78 (west: went out)
    assert dict(east.inside) == {"person": 1}
    assert dict(east.entered) == {"person": 1} and dict(east.exited) == {"bicycle": 1}
    assert dict(people.entered) == {"person": 1} and dict(people.exited) == {}
    np.testing.assert_allclose(east.points[1], [400, 0])


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ({"type": "zones"}, "give at least one zone or line"),
        (
            {"type": "zones", "lines": [{"name": "a", "start": [0, 0], "end": [1, 1]}] * 2},
            "names must be unique: a",
        ),
        ({"type": "zones", "zones": [{"name": "z", "polygon": [[0, 0], [1, 1]]}]}, "zones.0.polygon"),
        (
            {"type": "zones", "lines": [{"name": "l", "start": [0, 0], "end": [0, 0]}]},
            "start and end must differ",
        ),
        ({"type": "track", "lost_frame": 3}, "stages.1.lost_frame: unknown key"),
    ],
)
def test_bad_zone_and_track_configs(stage: dict, message: str) -> None:
    raw = {"source": "a.mp4", "stages": [{"type": "object_detection"}, stage]}
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_lines_without_track_ids_are_an_error() -> None:
    zones = ZoneCounter(ZonesConfig(lines=[{"name": "l", "start": (0, 0), "end": (9, 9)}]), None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="counting lines need track ids; add a track stage"):
        zones.process(_frame(0, _detections(0, [0, 1])))


def test_annotation_draws_track_colours_and_regions() -> None:
    tracker = Tracker(TrackConfig(), None)  # type: ignore[arg-type]
    zones = ZoneCounter(ZonesConfig(lines=[{"name": "gate", "start": (200, 0), "end": (200, 300)}]), None)  # type: ignore[arg-type]
    frame = _frame(0, None)
    for index in range(3):
        frame = zones.process(tracker.process(_frame(index, _detections(index, [0, 1]))))
    scene = Annotator(thickness=1, show_fps=False).annotate(frame)
    assert tuple(scene[280, 200]) == (255, 255, 255)  # the line, away from its label
    detections = frame.results["object_detection"]
    bicycle = int(np.flatnonzero(detections.class_name == "bicycle")[0])
    track = int(detections.tracker_id[bicycle])
    assert track_color(track) != color_for(1)

    def painted(color: tuple[int, int, int]) -> bool:
        return bool(np.all(scene == np.array(color, np.uint8), axis=2).any())

    assert painted(track_color(track)) and not painted(color_for(1))  # the track's colour, not the class's
    assert track_color(0) != track_color(1)


def test_pipeline_tracks_and_counts_from_yaml_config(registry: ModelRegistry, tmp_path: Path) -> None:  # noqa: F811
    clip = write_clip(tmp_path / "grey.mp4", [np.full((480, 640, 3), 90, np.uint8)] * 6)
    events = tmp_path / "events.jsonl"
    config = parse_config(
        {
            "source": str(clip),
            "stages": [
                {"type": "object_detection", "model": "yolo_fixed", "every": 2},
                {"type": "track"},
                {
                    "type": "zones",
                    "zones": [
                        {"name": "middle", "polygon": [[200, 200], [440, 200], [440, 300], [200, 300]]}
                    ],
                },
            ],
            "outputs": {"events": str(events)},
        }
    )
    Pipeline(config, models=registry).run()
    lines = [json.loads(line)["results"] for line in events.read_text().splitlines()]
    assert len(lines) == 6
    person_tracks = {
        d["track_id"] for r in lines[2:] for d in r["object_detection"] if d["label"] == "person"
    }
    assert len(person_tracks) == 1 and person_tracks != {-1}
    assert all(r["object_detection"] for r in lines[2:])  # carried on frames without a detector run
    assert lines[-1]["zones"] == [
        {
            "name": "middle",
            "kind": "zone",
            "inside": {"person": 1, "all": 1},
            "in": {"all": 0},
            "out": {"all": 0},
        }
    ]


def test_on_in_yaml_is_a_key_not_a_boolean(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "source: a.mp4\nstages:\n  - type: object_detection\n  - type: track\n    on: object_detection\n"
    )
    track = load_config(path).stages[1]
    assert isinstance(track, TrackConfig) and track.on == "object_detection"


def test_boxes_outside_any_track_are_not_drawn() -> None:
    tracker = Tracker(TrackConfig(), None)  # type: ignore[arg-type]
    frame = tracker.process(_frame(0, _detections(0, [0, 1])))  # first sight: no confirmed track yet
    assert frame.results["object_detection"].tracker_id.tolist() == [-1, -1]
    scene = Annotator(thickness=1, show_fps=False).annotate(frame)
    assert not scene.any()
    untracked = _frame(0, _detections(0, [0, 1]))  # without a track stage every box is drawn
    assert Annotator(thickness=1, show_fps=False).annotate(untracked).any()


@pytest.mark.parametrize("class_aware", [True, False])
def test_class_aware_tracks_do_not_jump_to_another_label(class_aware: bool) -> None:
    tracker = Tracker(TrackConfig(class_aware=class_aware), None)  # type: ignore[arg-type]
    box = np.array([[100, 100, 160, 220]], np.float32)
    ids = []
    for index in range(8):
        name, class_id = ("person", 0) if index < 4 else ("bicycle", 1)  # same place, another label
        detections = Detections(
            box, np.array([0.9], np.float32), np.array([class_id], np.int32), np.array([name])
        )
        ids.append(int(tracker.process(_frame(index, detections)).results["object_detection"].tracker_id[0]))
    person, bicycle = ids[3], ids[7]
    assert person >= 0 and bicycle >= 0
    assert (person != bicycle) == class_aware


def test_a_missing_tracking_package_is_a_config_error() -> None:
    from streamvision.stages.sv_adapter import require

    with pytest.raises(
        ConfigError, match=r"the track stage needs 'no_such_pkg', which is not installed.*pip install"
    ):
        require("no_such_pkg", "track")
