"""The Python API (``streamvision.load_stage``, ``Processor``, ``frames``) on the bundled models, the
bundled clips and scikit-image's photos, and the README's examples of it as written."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

import streamvision
from streamvision.config import STREET_CLIP
from streamvision.stages.objects import ObjectDetectionConfig
from tests.conftest import decode_all, write_clip

ROOT = Path(__file__).resolve().parents[1]
OBJECTS_CONFIG = ROOT / "configs" / "objects.yaml"
TRACKED = [
    {"type": "object_detection", "model": "nanodet", "score_threshold": 0.2},
    {"type": "track", "on": "object_detection"},
]


@pytest.fixture(scope="module")
def astronaut_bgr() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def street() -> list[np.ndarray]:
    """Frames 30 to 59 of bikes.mp4: riders, pedestrians and cars crossing (the first 30 are nearly empty)."""
    return decode_all(STREET_CLIP)[30:60]


def _heavy_modules(code: str) -> list[str]:
    """The model runtime, video and TensorFlow modules a fresh interpreter has loaded after ``code``."""
    heavy = ("onnxruntime", "av", "cv2", "tensorflow", "mediapipe")
    probe = f"{code}\nimport sys\nprint(','.join(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return [name for name in done.stdout.strip().split(",") if name]


def test_importing_streamvision_loads_no_runtime_video_library_or_tensorflow() -> None:
    assert _heavy_modules("import streamvision") == []
    # the result types, configs' errors and the registry come without them too
    assert (
        _heavy_modules("import streamvision as sv; sv.Detections.empty(); sv.ModelRegistry; sv.ConfigError")
        == []
    )


def test_every_exported_name_resolves() -> None:
    for name in streamvision.__all__:
        assert getattr(streamvision, name) is not None, name
    assert set(streamvision.__all__) <= set(dir(streamvision))
    from streamvision import api, frame

    assert streamvision.Processor is api.Processor
    assert streamvision.Detections is frame.Detections
    assert issubclass(streamvision.ModelError, streamvision.StreamvisionError)
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = streamvision.no_such_name  # type: ignore[attr-defined]


def test_a_detector_finds_the_astronaut(astronaut_bgr: np.ndarray, astronaut: Path) -> None:
    with streamvision.load_stage("object_detection", model="nanodet", threads=1) as detect:
        detections = detect(astronaut_bgr)
        assert isinstance(detections, streamvision.Detections)
        people = detections[detections.class_name == "person"]
        assert len(people) >= 1 and people.confidence.max() > 0.5
        x1, y1, x2, y2 = people.xyxy[int(np.argmax(people.confidence))]
        assert x1 < 60 and y1 < 60 and 320 < x2 < 420 and y2 > 450  # she fills the left two thirds
        # the same image as a file, and as an RGB photo's reversed (non-contiguous) view
        from_file = detect(astronaut)
        np.testing.assert_array_equal(from_file.xyxy, detections.xyxy)
        from_view = detect(cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2RGB)[..., ::-1])
        np.testing.assert_array_equal(from_view.xyxy, detections.xyxy)
        # each call is the next frame of one sequence
        assert detect.frame(astronaut_bgr, pts=2.0).index == 3


def test_a_stage_is_given_as_a_type_a_mapping_or_a_config(astronaut_bgr: np.ndarray) -> None:
    forms = [
        streamvision.load_stage("object_detection", score_threshold=0.6, threads=1),
        streamvision.load_stage({"type": "object_detection", "score_threshold": 0.6}, threads=1),
        streamvision.load_stage(ObjectDetectionConfig(score_threshold=0.2), score_threshold=0.6, threads=1),
    ]
    found = []
    for runner in forms:
        with runner:
            assert runner.name == "object_detection" and runner.config.model_dump()["score_threshold"] == 0.6
            found.append(runner(astronaut_bgr))
    assert [d.class_name.tolist() for d in found] == [["person"]] * 3


def test_face_detection_finds_the_one_face(astronaut_bgr: np.ndarray) -> None:
    with streamvision.load_stage("face_detection", threads=1) as faces:
        found = faces(astronaut_bgr)
    assert len(found) == 1 and found.class_name.tolist() == ["face"]
    x1, y1, x2, y2 = found.xyxy[0]
    assert 150 < x1 < x2 < 300 and 50 < y1 < y2 < 200  # her face, above the shoulders
    assert found.keypoints is not None and found.keypoints.shape == (1, 6, 2)


def test_a_processor_tracks_objects_across_the_frames_it_is_given(street: list[np.ndarray]) -> None:
    pts = [i / 25 for i in range(len(street))]
    with streamvision.Processor({"stages": TRACKED}, threads=1) as processor:
        frames = list(processor.process(zip(street, pts, strict=True)))
    assert [f.index for f in frames] == list(range(30))
    assert [f.pts for f in frames] == pts
    assert all(f.image is image for f, image in zip(frames, street, strict=True))
    ids = [set(f.results["object_detection"].tracker_id.tolist()) - {-1} for f in frames]
    kept = sum(len(now & after) for now, after in itertools.pairwise(ids))
    seen = sum(len(now) for now in ids[:-1])
    assert len(set().union(*ids)) >= 4 and seen >= 60
    assert kept / seen >= 0.85  # measured 105 of 114


def test_a_processor_runs_a_config_file_without_its_source_or_outputs(
    street: list[np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where the config's outputs (objects.mp4, objects.jsonl) would go
    with streamvision.Processor(OBJECTS_CONFIG, threads=1) as processor:
        first = processor(street[0])
        second = processor(street[1], pts=0.04)
    assert list(first.results) == ["object_detection", "zones"]
    assert isinstance(first.results["zones"], streamvision.ZoneCounts)
    assert (first.index, second.index, second.pts, second.source_id) == (0, 1, 0.04, "frames")
    assert list(tmp_path.iterdir()) == []


def test_frames_reads_a_source_with_a_capture_thread() -> None:
    stages = [{"type": "face_detection"}]
    with streamvision.frames("sample:carphone", stages, max_frames=5, threads=1) as stream:
        frames = list(stream)
    assert [f.index for f in frames] == list(range(5))
    assert [f.source_id for f in frames] == ["carphone"] * 5
    assert all(len(f.results["face_detection"]) == 1 for f in frames)
    pts = [f.pts for f in frames]
    assert pts[0] == 0.0 and all(
        a is not None and b is not None and a < b for a, b in itertools.pairwise(pts)
    )

    # the config's source, and a stream left before its end stops reading at close()
    stream = streamvision.frames(config=OBJECTS_CONFIG, threads=1)
    first = next(stream)
    assert first.source_id == "bikes" and first.image.shape == (272, 640, 3)
    stream.close()
    assert not [t for t in threading.enumerate() if t.name == "sv-api-capture"]
    with pytest.raises(StopIteration):
        next(stream)


def test_mistakes_raise_streamvision_errors(tmp_path: Path, astronaut_bgr: np.ndarray) -> None:
    with pytest.raises(streamvision.ConfigError, match=r"stages\.0\.score_threshold"):
        streamvision.Processor({"stages": [{"type": "object_detection", "score_threshold": 2}]})
    with pytest.raises(streamvision.ConfigError, match="unknown key"):
        streamvision.load_stage("face_detection", treshold=0.5)
    with pytest.raises(streamvision.ConfigError, match="unknown stage type 'faces'"):
        streamvision.load_stage("faces")
    with pytest.raises(streamvision.ConfigError, match="Processor"):
        streamvision.load_stage("track")
    with pytest.raises(streamvision.ConfigError, match="cannot read config"):
        streamvision.Processor(tmp_path / "missing.yaml")
    with pytest.raises(streamvision.ConfigError, match="source"):
        streamvision.frames()
    with pytest.raises(streamvision.ModelError, match="unknown model 'yolo_nope'"):
        streamvision.load_stage("object_detection", model="yolo_nope")
    with pytest.raises(streamvision.ModelError, match="unknown model 'blazeface_nope'"):
        streamvision.Processor([{"type": "face_detection", "model": "blazeface_nope"}])
    with pytest.raises(streamvision.SourceError):
        streamvision.frames(tmp_path / "missing.mp4")
    with streamvision.load_stage("face_detection", threads=1) as faces:
        with pytest.raises(streamvision.SourceError, match="cannot read an image"):
            faces(tmp_path / "missing.jpg")
        with pytest.raises(ValueError, match="uint8"):
            faces(astronaut_bgr.astype(np.float32))
        with pytest.raises(TypeError, match="numpy image or a path"):
            faces(astronaut_bgr.tolist())


def readme_examples() -> list[str]:
    """The python code blocks of the README's "Python API" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_the_readme_examples_run_as_written(
    tmp_path: Path, astronaut_bgr: np.ndarray, street: list[np.ndarray]
) -> None:
    examples = readme_examples()
    assert len(examples) == 3
    # what a user's folder holds: a photo, a video, the configs
    cv2.imwrite(str(tmp_path / "photo.jpg"), astronaut_bgr)
    write_clip(tmp_path / "my-video.mp4", street)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    outputs = []
    for code in examples:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert re.match(r"person 0\.\d\d at \[", outputs[0])
    lines = outputs[1].splitlines()
    assert len(lines) == 30 and lines[0].startswith("0 {") and lines[-1].startswith("29 {")
    assert "'kind': 'zone'" in outputs[2] and "'kind': 'line'" in outputs[2]
