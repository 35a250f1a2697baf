"""Face detection end to end on the real BlazeFace model and real footage."""

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from streamvision.config import OutputConfig, PipelineConfig, SourceConfig, faces_config
from streamvision.frame import Detections
from streamvision.pipeline import Pipeline
from streamvision.runtime.nms import box_iou
from streamvision.stages.faces import FaceDetectionConfig


def _faces_config(uri: Path, **outputs: object) -> PipelineConfig:
    return PipelineConfig(
        source=SourceConfig(uri=str(uri)),
        stages=[FaceDetectionConfig()],
        outputs=OutputConfig.model_validate(outputs),
    )


def test_astronaut_gives_one_face_where_it_is(astronaut: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    Pipeline(_faces_config(astronaut, events=str(events))).run()
    (line,) = events.read_text().splitlines()
    (face,) = json.loads(line)["results"]["face_detection"]
    iou = box_iou(np.array([180, 82, 274, 176], np.float32), np.array([face["box"]], np.float32))[0]
    assert iou >= 0.5, face
    assert face["score"] > 0.8 and face["label"] == "face" and len(face["keypoints"]) == 6


def test_bundled_clip_has_a_face_in_nearly_every_frame(sample_clip: Path, tmp_path: Path) -> None:
    output, events = tmp_path / "faces.mp4", tmp_path / "events.jsonl"
    summary = Pipeline(_faces_config(sample_clip, video=output, events=str(events))).run()

    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [e["frame"] for e in lines] == list(range(120))
    with_face = sum(1 for e in lines if e["results"]["face_detection"])
    assert with_face >= 0.95 * len(lines)
    assert summary["frames_in"] == summary["frames_out"] == 120 and summary["dropped"] == 0

    with av.open(str(sample_clip)) as source, av.open(str(output)) as written:
        expected_rate = source.streams.video[0].average_rate
        stream = written.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.average_rate == expected_rate == Fraction(30000, 1001)
        assert sum(1 for _ in written.decode(stream)) == 120


def test_frames_carry_identity_and_timestamps(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    config = faces_config().model_copy(update={"outputs": OutputConfig(events=str(events)), "max_frames": 5})
    summary = Pipeline(config).run()
    assert summary["frames_out"] == 5 and summary["source"] == "sample"
    assert set(summary["stage_ms"]) == {"face_detection"}
    assert summary["latency_ms"]["p50"] is not None
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert {e["source"] for e in lines} == {"sample"}
    assert [e["pts"] for e in lines] == [round(i * 1001 / 30000, 4) for i in range(5)]


def test_detections_validate_their_shapes() -> None:
    import pytest

    with pytest.raises(ValueError, match="confidence must have shape"):
        Detections(np.zeros((2, 4)), np.zeros(3), np.zeros(2, np.int32), np.array(["a", "b"]))
    empty = Detections.empty()
    assert len(empty) == 0 and empty.to_records() == []
