"""``streamvision bench --cameras``: copies of the pedestrians clip played at once in real time, on
the real NanoDet, against every-frame detection (the figures depend on the machine: only what does
not is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from streamvision.bench.cameras import (
    BoxRecorder,
    camera_trial,
    every_frame,
    plan_clip,
    recall,
    reference_boxes,
)
from streamvision.cli.configs import ready_config
from streamvision.config import load_config
from streamvision.frame import Detections, Frame
from streamvision.pipeline import Pipeline
from streamvision.stages.objects import ObjectDetectionConfig
from tests.conftest import run_cli


def test_bench_cameras_reports_both_layouts_from_the_command_line(tmp_path: Path) -> None:
    result = run_cli(
        "bench", "--cameras", "2", "--seconds", "3", "--json", "cams.json", "--chart", "cams.png",
        cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "bench [1, " in result.stderr and "every-frame reference" in result.stderr
    assert "## Real-time cameras on" in result.stdout
    report = json.loads((tmp_path / "cams.json").read_text())
    section = report["cameras"]
    assert section["clip"] == {"frames": 30, "fps": 10.0, "seconds": 3.0}
    for name, runs_per_frame in (("config", 0.4), ("every_frame", 1.0)):
        layout = section[name]
        assert 0 <= layout["most_cameras"] <= 2
        assert layout["trials"][0]["cameras"] == 2
        for trial in layout["trials"]:
            assert len(trial["per_camera"]) == trial["cameras"]
            assert trial["keeps_up"] == all(row["kept"] >= 0.95 for row in trial["per_camera"])
            for row in trial["per_camera"]:
                assert 0 < row["frames_out"] <= 30 and row["error"] is None
                assert row["recall"] is not None and 0 <= row["recall"] <= 1
                runs = row["detector_runs_per_s"] * (30 / 10 + row["late_s"])
                if name == "every_frame":  # the detector ran on each frame the camera kept
                    assert abs(runs - row["frames_out"]) <= 1.5
                else:  # detect_fps 2 on a 10 fps camera
                    assert runs <= runs_per_frame * 30 + 1
    assert (tmp_path / "cams.png").stat().st_size > 0


def test_cameras_share_one_session_and_score_against_every_frame_detection(tmp_path: Path) -> None:
    config = load_config(ready_config("cameras"))
    clip = plan_clip(config, seconds=2)
    reference = reference_boxes(config, "object_detection", clip.frames)
    assert sorted(reference) == list(range(20))
    assert sum(len(boxes) for boxes in reference.values()) > 20 * 5  # people in every frame

    shared = camera_trial(config, 2, clip, reference, shared=True, folder=tmp_path / "shared")
    own = camera_trial(every_frame(config), 2, clip, reference, shared=False, folder=tmp_path / "own")
    assert shared["sessions"] == 1 and own["sessions"] == 2
    assert [row["camera"] for row in shared["per_camera"]] == ["cam1", "cam2"]
    for stage in every_frame(config).stages:
        if isinstance(stage, ObjectDetectionConfig):
            assert stage.detect_fps is None and stage.motion is None and stage.every == 1
    # each camera wrote its own event lines, as the config asks
    assert sorted(p.name for p in (tmp_path / "shared").iterdir()) == [
        "cameras.cam1.jsonl",
        "cameras.cam2.jsonl",
    ]


def test_recall_counts_confirmed_tracks_and_one_class() -> None:
    boxes = np.array([[0, 0, 10, 10], [20, 20, 40, 40]], np.float32)
    reference = Detections(
        boxes, np.array([0.9, 0.3], np.float32), np.array([0, 2]), np.array(["person", "car"])
    )
    tracked = Detections(
        boxes,
        np.array([0.5, 0.5], np.float32),
        np.array([0, 2]),
        np.array(["person", "car"]),
        tracker_id=np.array([-1, 4]),
    )
    assert recall({0: reference}, {0: tracked}, sure=0.4) == 0.0  # the person's track is not confirmed yet
    assert recall({0: reference}, {0: tracked}, sure=0.2) == 0.5
    assert recall({0: reference}, {0: tracked}, sure=0.2, label="car") == 1.0
    assert recall({0: reference}, {}, sure=0.2) is None


def test_a_box_recorder_keeps_each_frames_boxes_under_its_key() -> None:
    recorder = BoxRecorder("object_detection")
    frame = Frame(np.zeros((4, 4, 3), np.uint8), "cam", 7, 0.7, 0.0)
    recorder.write(frame.with_result("object_detection", Detections.empty()), None)
    recorder.write(Frame(frame.image, "cam", 8, 0.8, 0.0), None)  # no boxes: nothing kept
    assert list(recorder.boxes) == [7]


def test_bench_cameras_refuses_a_config_without_a_detector_and_a_live_source(tmp_path: Path) -> None:
    faces = run_cli("bench", "--cameras", "2", "-c", str(ready_config("faces")), cwd=tmp_path)
    assert faces.returncode == 2
    assert faces.stderr.strip().splitlines()[-1] == (
        "error: bench --cameras: the config has no object_detection stage to measure"
    )
    camera = run_cli("bench", "--cameras", "2", "--source", "http://127.0.0.1:9/x", cwd=tmp_path)
    assert camera.returncode == 2
    assert camera.stderr.strip().splitlines()[-1] == (
        "error: bench --cameras: http://127.0.0.1:9/x is not a video file with a frame rate and a length; "
        "give a clip with --source"
    )


def test_flow_carry_keeps_recall_where_velocity_drifts_at_two_detections_a_second() -> None:
    config = load_config(ready_config("cameras"))
    frames = 100
    reference = reference_boxes(config, "object_detection", frames)

    def tracked(carry: str) -> float:
        stages = [
            s.model_copy(update={"detect_fps": 2.0, "motion": None})
            if isinstance(s, ObjectDetectionConfig)
            else s.model_copy(update={"carry": carry})
            for s in config.stages
        ]
        single = config.model_copy(
            update={
                "sources": [config.source.model_copy(update={"realtime": False})],
                "stages": stages,
                "outputs": config.outputs.model_copy(update={"events": None}),
                "max_frames": frames,
            }
        )
        pipeline = Pipeline(single)
        recorder = BoxRecorder("object_detection")
        pipeline.sinks.append(recorder)
        pipeline.run()
        assert pipeline.summary()["detectors"]["object_detection"]["runs"] == 20
        found = recall(reference, recorder.boxes, 0.4, "person")
        assert found is not None
        return found

    flow, velocity = tracked("flow"), tracked("velocity")
    assert flow >= 0.85 and flow >= velocity + 0.05, (flow, velocity)
