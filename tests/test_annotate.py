"""What the annotator and the snapshots draw, checked on the pixels of rendered frames: labels stay in the
frame, zones show on its edges, captions are never covered, no FPS unless asked for, a snapshot shows the
zone or line of its event."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from streamvision.events.config import EventsConfig, SnapshotOutput
from streamvision.events.engine import RuleEngine
from streamvision.events.outputs.snapshot import SnapshotChannel
from streamvision.frame import Detections, Frame, Labels, RegionCount, ZoneCounts
from streamvision.render.annotate import CAPTION_COLOR, Annotator


def boxes(
    xyxy: list[tuple[float, float, float, float]], tracks: list[int] | None, label: str = "person"
) -> Detections:
    n = len(xyxy)
    return Detections(
        xyxy=np.asarray(xyxy, np.float32).reshape(n, 4),
        confidence=np.full(n, 0.93, np.float32),
        class_id=np.full(n, 3, np.int32),
        class_name=np.asarray([label] * n),
        tracker_id=None if tracks is None else np.asarray(tracks, np.int64),
    )


def zone(name: str, points: list[tuple[float, float]]) -> ZoneCounts:
    return ZoneCounts((RegionCount(name, "zone", np.asarray(points, np.float32), {"person": 1}, {}, {}),))


def frame(width: int, height: int, **results: object) -> Frame:
    drawn = Frame(np.zeros((height, width, 3), np.uint8), "cam", 0, 0.0, 0.0)
    for key, value in results.items():
        drawn = drawn.with_result(key, value)
    return drawn


def painted_patch(scene: np.ndarray, rows: slice) -> np.ndarray:
    """The smallest rectangle of ``scene[rows]`` that holds every pixel drawn there."""
    band = scene[rows]
    ys, xs = np.nonzero(band.any(axis=2))
    return band[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def test_a_label_at_the_right_edge_of_a_720p_frame_is_drawn_whole() -> None:
    text_rows = slice(0, 296)  # above the boxes' top edge (y = 300, 3 px wide at 720p): the labels only
    left = Annotator().annotate(frame(1280, 720, objects=boxes([(100, 300, 170, 420)], [12], "motorcycle")))
    edge = Annotator().annotate(frame(1280, 720, objects=boxes([(1215, 300, 1279, 420)], [12], "motorcycle")))
    reference = painted_patch(left, text_rows)
    assert reference.shape[1] > 100  # "#12 motorcycle 0.93" is wider than the 65 px from the box to the edge
    np.testing.assert_array_equal(painted_patch(edge, text_rows), reference)


def test_a_zone_along_the_frame_edges_is_tinted_and_outlined_inside_the_frame() -> None:
    right_half = zone("right_half", [(320, 0), (640, 0), (640, 272), (320, 272)])  # as relative: true gives
    scene = Annotator().annotate(frame(640, 272, zones=right_half))
    green = scene[..., 1].astype(int)  # the zone colour is orange: (0, 215, 255) in BGR
    assert (green[30:260, 639] > 150).all()  # the right edge
    assert (green[271, 330:630] > 150).all()  # the bottom edge
    assert 20 < green[136, 480] < 100 and scene[136, 480, 0] == 0  # the inside is tinted, not painted over
    assert not scene[:, :318].any()  # nothing outside the zone


def test_captions_are_drawn_over_box_labels() -> None:
    corner = zone("door", [(0, 0), (200, 0), (200, 150), (0, 150)])  # its caption goes top left
    alone = Annotator(thickness=1).annotate(frame(400, 300, zones=corner))
    under = boxes([(5, 22, 120, 120), (2, 14, 80, 60)], [1, 2])  # labels where the caption is
    both = Annotator(thickness=1).annotate(frame(400, 300, zones=corner, objects=under))
    ys, xs = np.nonzero((alone == CAPTION_COLOR).all(axis=2))
    assert len(ys) > 100
    caption = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    np.testing.assert_array_equal(both[caption], alone[caption])
    assert (
        both[ys.max() + 1 : 40, : xs.max()] != alone[ys.max() + 1 : 40, : xs.max()]
    ).any()  # labels, below


def test_whole_frame_labels_and_zone_captions_stack_instead_of_overlapping() -> None:
    scene_labels = Labels.from_top_k(
        np.array([-1]), np.array([[0]]), np.array([[0.9]], np.float32), np.array([["beach"]]), on=None
    )
    corner = zone("door", [(0, 0), (200, 0), (200, 150), (0, 150)])
    scene = Annotator(thickness=1).annotate(frame(400, 300, zones=corner, scene=scene_labels))
    caption_rows = np.flatnonzero((scene == CAPTION_COLOR).all(axis=2).any(axis=1))
    label_rows = np.flatnonzero(
        (scene[:60, :60] == (56, 56, 255)).all(axis=2).any(axis=1)
    )  # class 0's colour
    assert len(caption_rows) and len(label_rows) and set(caption_rows).isdisjoint(label_rows)


def test_no_fps_figure_unless_asked_for() -> None:
    objects = boxes([(300, 200, 380, 290)], [4])
    plain = frame(400, 300, objects=objects)
    top_left = (slice(0, 40), slice(0, 120))
    drawn = Annotator().annotate(plain, fps=29.97)
    np.testing.assert_array_equal(drawn[top_left], plain.image[top_left])
    assert drawn[200:, 300:].any()  # the box is drawn
    assert Annotator(show_fps=True).annotate(plain, fps=29.97)[top_left].any()


def test_labels_of_boxes_that_are_not_drawn_are_not_drawn_either() -> None:
    weak = boxes([(100, 100, 200, 200)], [-1])
    label = Labels.from_top_k(
        np.array([0]), np.array([[1]]), np.array([[0.8]], np.float32), np.array([["helmet"]]), on="objects"
    )
    assert not Annotator().annotate(frame(400, 300, objects=weak, kind=label)).any()
    kept = boxes([(100, 100, 200, 200)], [7])
    assert Annotator().annotate(frame(400, 300, objects=kept, kind=label))[200:230, 100:200].any()


def test_snapshots_show_the_zone_or_line_of_their_event(tmp_path: Path) -> None:
    events = EventsConfig.model_validate(
        {
            "zones": {"dock": [[250, 0], [400, 0], [400, 300], [250, 300]]},  # along the right edge
            "lines": {"gate": [[100, 300], [100, 0]]},
            "rules": [
                {"type": "zone", "zone": "dock", "debounce_frames": 1},
                {"type": "line", "line": "gate", "debounce_frames": 1},
            ],
        }
    )
    engine = RuleEngine(events)
    snapshots = SnapshotChannel(SnapshotOutput(dir=tmp_path / "snaps"))
    found = []
    for index, x in enumerate([60, 80, 120, 200, 280]):
        moving = Frame(np.full((300, 400, 3), 90, np.uint8), "cam", index, index / 10, 0.0)
        moving = moving.with_result("objects", boxes([(x - 10, 120, x + 10, 160)], [1]))
        image = Annotator().annotate(moving)
        for event in engine.process(moving):
            path = snapshots.claim(event)
            assert path is not None
            snapshots.submit(path, event, image)
            found.append((event.type, path))
    snapshots.close(time.monotonic() + 5)
    assert [kind for kind, _ in found] == ["line_crossed", "zone_entered"]

    def yellow(image: np.ndarray, points: list[tuple[int, int]]) -> bool:
        pixels = np.array([image[y, x] for x, y in points], int)
        return bool((pixels[:, 0] < 60).all() and (pixels[:, 1:] > 180).all())

    line_shot, zone_shot = (cv2.imread(path) for _, path in found)
    line_points = [(100, y) for y in range(20, 100, 10)]  # on the line, away from the box and the caption
    zone_points = [(250, y) for y in range(20, 100, 10)] + [(399, y) for y in range(20, 280, 20)]
    assert yellow(line_shot, line_points) and not yellow(line_shot, zone_points[:1])
    assert yellow(zone_shot, zone_points) and not yellow(zone_shot, line_points[:1])
