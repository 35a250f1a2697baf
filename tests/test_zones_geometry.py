"""One geometry for zones and lines: the zones stage, the event rules and the annotator agree on what is
inside, what crossed and which boxes are objects at all (confirmed tracks only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from streamvision.config import PipelineConfig, parse_config, read_yaml
from streamvision.errors import ConfigError
from streamvision.events import Event
from streamvision.events.config import EventsConfig
from streamvision.events.engine import RuleEngine
from streamvision.events.rules import CountThresholdRule
from streamvision.frame import Detections, Frame, RegionCount
from streamvision.pipeline import Pipeline
from streamvision.render.annotate import Annotator
from streamvision.samples import sample_path
from streamvision.stages.zones import ZoneCounter, ZonesConfig
from tests.conftest import decode_all

IMAGE = np.zeros((300, 400, 3), np.uint8)
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def tracked(
    boxes: list[tuple[float, float, float, float]], tracks: list[int], label: str = "person"
) -> Detections:
    n = len(boxes)
    return Detections(
        xyxy=np.asarray(boxes, np.float32).reshape(n, 4),
        confidence=np.full(n, 0.9, np.float32),
        class_id=np.zeros(n, np.int32),
        class_name=np.asarray([label] * n),
        tracker_id=np.asarray(tracks, np.int64),
    )


def walker(x: float, track: int = 5) -> Detections:
    """One 20 x 40 box whose bottom centre is at (x, 140)."""
    return tracked([(x - 10, 100, x + 10, 140)], [track])


def pipeline(zones: dict[str, Any], events: dict[str, Any]) -> PipelineConfig:
    """A config as a user writes it: detector, tracker, a zones stage, and event rules."""
    return parse_config(
        {
            "source": "a.mp4",
            "stages": [{"type": "object_detection"}, {"type": "track"}, {"type": "zones", **zones}],
            "events": events,
        }
    )


class Run:
    """The zones stage and the rule engine of ``config`` over hand-made frames."""

    def __init__(self, config: PipelineConfig) -> None:
        zones = config.stages[-1]
        assert isinstance(zones, ZonesConfig) and config.events is not None
        self.stage = ZoneCounter(zones, None)  # type: ignore[arg-type]
        self.engine = RuleEngine(config.events)
        self.index = 0

    def step(self, detections: Detections) -> tuple[Frame, dict[str, RegionCount], list[Event]]:
        frame = Frame(IMAGE, "cam", self.index, self.index / 10, 0.0).with_result(
            "object_detection", detections
        )
        self.index += 1
        frame = self.stage.process(frame)
        regions = {region.name: region for region in frame.results["zones"].regions}
        return frame, regions, self.engine.process(frame)


def test_a_line_crossing_counts_once_in_the_stage_and_the_rule_alike() -> None:
    # Drawn upwards at x = 200: walking it from start to end, its right ("in") is the right of the picture.
    config = pipeline(
        {"lines": [{"name": "gate", "start": [200, 300], "end": [200, 0], "min_crossing_frames": 2}]},
        {"rules": [{"type": "line", "line": "gate", "debounce_frames": 2}]},
    )
    run = Run(config)
    path = [150, 165, 180, 195, 205, 220, 235, 250]  # walks right, over the line
    path += [260, 262, 258, 261, 259]  # stays there, a little jittery
    path += [240, 215, 195, 180, 170]  # and walks back
    stage_changes, rule_events = [], []
    before = (0, 0)
    for x in path:
        frame, regions, events = run.step(walker(x))
        gate = regions["gate"]
        now = (sum(gate.entered.values()), sum(gate.exited.values()))
        if now != before:
            stage_changes.append((frame.index, "in" if now[0] > before[0] else "out"))
        before = now
        rule_events += [(e.frame, e.extra["direction"]) for e in events]
    assert stage_changes == [(5, "in"), (16, "out")]  # the second frame on the new side, once each way
    assert rule_events == stage_changes
    assert dict(regions["gate"].entered) == {"person": 1} and dict(regions["gate"].exited) == {"person": 1}


def test_an_unconfirmed_box_is_ignored_everywhere() -> None:
    config = pipeline(
        {"zones": [{"name": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}], "relative": True},
        {
            "rules": [
                {"type": "appear", "debounce_frames": 1},
                {"type": "count", "above": 0, "debounce_frames": 1},
                {"type": "count", "above": 0, "zone": "all", "debounce_frames": 1},
                {"type": "zone", "zone": "all", "debounce_frames": 1},
            ]
        },
    )
    unconfirmed, confirmed = Run(config), Run(config)
    found = []
    for _ in range(5):
        frame, regions, events = unconfirmed.step(walker(100, track=-1))
        assert dict(regions["all"].inside) == {}
        found += events
        # drawn as if the box were not there at all
        nothing = frame.with_result("object_detection", tracked([], []))
        np.testing.assert_array_equal(Annotator().annotate(frame), Annotator().annotate(nothing))
    assert found == []
    # the same box once the tracker confirmed it: every rule sees it, the zone counts it
    frame, regions, events = confirmed.step(walker(100, track=4))
    assert dict(regions["all"].inside) == {"person": 1}
    assert sorted(e.type for e in events) == ["count_above", "count_above", "object_appeared", "zone_entered"]
    assert (Annotator().annotate(frame) != Annotator().annotate(nothing)).any()


def test_a_zone_is_counted_by_the_stage_and_the_rule_alike() -> None:
    # The zone is defined once, in the stage, in fractions of the frame: x from 200 on.
    config = pipeline(
        {"zones": [{"name": "east", "polygon": [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}], "relative": True},
        {
            "rules": [
                {"type": "count", "name": "crowd", "above": 5, "zone": "east"},
                {"type": "zone", "zone": "east", "debounce_frames": 1, "leave_frames": 1},
            ]
        },
    )
    run = Run(config)
    (count_rule,) = [rule for rule in run.engine.rules if isinstance(rule, CountThresholdRule)]
    entered: list[int | None] = []
    left: list[int | None] = []
    for i in range(30):
        walker_x = 150 + 6 * i  # walks east: in at frame 9
        comer_x = 180 + 6 * i if i < 15 else 264 - 8 * (i - 15)  # in at frame 4, out again at frame 24
        boxes = [(walker_x - 10, 100, walker_x + 10, 140), (comer_x - 10, 50, comer_x + 10, 90)]
        stander = (190, 150, 210, 200)  # on the zone's edge (x = 200), which is inside
        frame, regions, events = run.step(tracked([*boxes, stander], [1, 2, 3]))
        assert sum(regions["east"].inside.values()) == count_rule.count(frame)
        entered += [e.track_id for e in events if e.type == "zone_entered"]
        left += [e.track_id for e in events if e.type == "zone_left"]
    east = regions["east"]
    assert sum(east.inside.values()) == count_rule.count(frame) == 2  # the walker and the stander
    # Tracks that cross the zone's edge: the stage's in / out counts and the rule's events agree.
    assert entered == [3, 2, 1] and left == [2]
    assert sum(east.entered.values()) == 2 and sum(east.exited.values()) == 1
    # The rule reports presence: the stander, first seen inside, is in the zone. The stage counts only
    # tracks that went over the edge, so its "in" leaves the stander out.


def test_rules_take_the_anchor_and_classes_of_a_zone_of_the_stage() -> None:
    config = pipeline(
        {"zones": [{"name": "top", "polygon": [[0, 0], [400, 0], [400, 120], [0, 120]], "anchor": "center"}]},
        {
            "rules": [
                {"type": "count", "above": 0, "zone": "top"},
                {"type": "count", "above": 0, "zone": "top", "anchor": "bottom_center"},
            ]
        },
    )
    run = Run(config)
    frame, regions, _ = run.step(walker(100))  # centre (100, 120) on the edge: inside; bottom (100, 140) not
    centre, bottom = run.engine.rules
    assert isinstance(centre, CountThresholdRule) and isinstance(bottom, CountThresholdRule)
    assert sum(regions["top"].inside.values()) == centre.count(frame) == 1 and bottom.count(frame) == 0

    people_only = pipeline(
        {
            "zones": [
                {"name": "z", "polygon": [[0, 0], [400, 0], [400, 300], [0, 300]], "classes": ["person"]}
            ]
        },
        {"rules": [{"type": "count", "above": 0, "zone": "z"}]},
    )
    run = Run(people_only)
    frame, regions, _ = run.step(tracked([(0, 0, 9, 9), (20, 0, 29, 9)], [1, 2], label="car"))
    (rule,) = run.engine.rules
    assert isinstance(rule, CountThresholdRule) and rule.count(frame) == 0 and dict(regions["z"].inside) == {}


def test_corners_anchor_in_rules_as_in_the_stage() -> None:
    events = {
        "zones": {"box": [[100, 0], [300, 0], [300, 300], [100, 300]]},
        "rules": [{"type": "count", "above": 0, "zone": "box", "anchor": "corners"}],
    }
    engine = RuleEngine(EventsConfig.model_validate(events))
    (rule,) = engine.rules
    assert isinstance(rule, CountThresholdRule)
    half_in = Frame(IMAGE, "cam", 0, 0.0, 0.0).with_result("o", tracked([(80, 10, 120, 50)], [1]))
    all_in = Frame(IMAGE, "cam", 1, 0.1, 0.0).with_result("o", tracked([(110, 10, 150, 50)], [1]))
    assert rule.count(half_in) == 0 and rule.count(all_in) == 1


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ({"rules": [{"type": "zone", "zone": "door"}]}, "rules.0: no zone named 'door' (zones: right_half)"),
        ({"rules": [{"type": "line", "line": "right_half"}]}, "no line named 'right_half' (lines: middle)"),
        (
            {
                "zones": {"right_half": [[0, 0], [1, 0], [1, 1]]},
                "rules": [{"type": "count", "above": 1, "zone": "right_half"}],
            },
            "zone 'right_half' is defined twice (events.zones and a zones stage): rename one",
        ),
        ({"lines": {"l": [[5, 5], [5, 5]]}}, "line 'l': its two points must differ"),
    ],
)
def test_names_of_zones_and_lines_are_checked_across_the_stage_and_the_events(
    events: dict[str, Any], message: str
) -> None:
    raw = read_yaml(CONFIGS / "objects.yaml")
    with pytest.raises(ConfigError) as excinfo:
        parse_config({**raw, "events": events}, origin="objects.yaml")
    assert message in str(excinfo.value)


def test_the_shipped_objects_config_can_watch_its_own_zone_and_line() -> None:
    raw = read_yaml(CONFIGS / "objects.yaml")
    rules = [{"type": "line", "line": "middle"}, {"type": "zone", "zone": "right_half"}]
    config = parse_config({**raw, "events": {"rules": rules}})
    assert config.events is not None and len(RuleEngine(config.events).rules) == 2
    with pytest.raises(ConfigError, match="no zone named 'right_half'"):
        RuleEngine(EventsConfig.model_validate({"rules": [rules[1]]}))  # without the stage, unknown


def test_zone_counts_on_bikes_equal_the_drawn_boxes_in_the_zone() -> None:
    """NanoDet + track + zones (configs/objects.yaml) on the street clip: the zone holds exactly the boxes
    the annotator draws (confirmed tracks) whose bottom centre is in it, and so does a count rule."""
    config = parse_config({**read_yaml(CONFIGS / "objects.yaml"), "outputs": {}})
    built = Pipeline(config)
    right_half = [[320, 0], [640, 0], [640, 272], [320, 272]]  # the config's, in pixels of the clip
    events = {"zones": {"right": right_half}, "rules": [{"type": "count", "above": 99, "zone": "right"}]}
    (rule,) = RuleEngine(EventsConfig.model_validate(events)).rules
    assert isinstance(rule, CountThresholdRule)
    weak_inside = 0
    try:
        for index, image in enumerate(decode_all(sample_path("bikes"))[:50]):
            frame = Frame(image, "bikes", index, index / 25, 0.0)
            for stage in built.stages:
                frame = stage.process(frame)
            detections = frame.results["object_detection"]
            zone = {r.name: r for r in frame.results["zones"].regions}["right_half"]
            in_right_half = np.rint((detections.xyxy[:, 0] + detections.xyxy[:, 2]) / 2) >= 320
            drawn = detections.tracker_id >= 0
            assert sum(zone.inside.values()) == int((drawn & in_right_half).sum()) == rule.count(frame), index
            weak_inside += int((~drawn & in_right_half).sum())
    finally:
        built.close()
    assert weak_inside >= 10  # the clip has plenty of weak boxes there, which are not counted


def test_the_readme_example_of_rules_on_the_stages_zones_is_a_valid_config() -> None:
    readme = (CONFIGS.parent / "README.md").read_text()
    section = readme.split("## Events and outputs", 1)[1].split("**Zones and lines.**", 1)[1]
    config = parse_config(
        yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0]), sources=["a.mp4"]
    )
    assert config.events is not None
    assert [type(rule).__name__ for rule in RuleEngine(config.events).rules] == [
        "CountThresholdRule",
        "LineCrossRule",
    ]
