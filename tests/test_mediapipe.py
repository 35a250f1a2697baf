"""The MediaPipe backend of the face stage against the ONNX Runtime one, on real footage.

Runs where the ``mediapipe`` extra is installed (``make test-mediapipe``: its own virtualenv).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import cv2
import mediapipe as mediapipe_package  # noqa: F401 - the extra: a missing one fails here
import numpy as np
import pytest

from streamvision.config import OutputConfig, PipelineConfig, SourceConfig
from streamvision.errors import ModelError
from streamvision.frame import Detections, Frame
from streamvision.pipeline import Pipeline
from streamvision.runtime.manifest import ModelRegistry
from streamvision.runtime.nms import box_iou
from streamvision.runtime.session import ThreadBudget
from streamvision.stages import Stage, StageContext, build_stage
from streamvision.stages.faces import FaceDetectionConfig
from tests.conftest import decode_all

pytestmark = pytest.mark.mediapipe

FRAME_S = 1001 / 30000


def _stage(backend: str, live: bool = False, models: ModelRegistry | None = None, **options: object) -> Stage:
    config = FaceDetectionConfig.model_validate({"backend": backend, **options})
    return build_stage(config, StageContext(models or ModelRegistry(), ThreadBudget(1), live_source=live))


def _detect(stage: Stage, images: list[np.ndarray]) -> list[Detections]:
    found = []
    for index, image in enumerate(images):
        frame = stage.process(Frame(image, "clip", index, index * FRAME_S, time.monotonic()))
        found.append(frame.results["face_detection"])
    close = getattr(stage, "close", None)
    if close is not None:
        close()
    return found


def _on_mediapipe_grid(xyxy: np.ndarray) -> np.ndarray:
    """Boxes as MediaPipe reports its own: whole pixels, the origin and the size each truncated."""
    origin = np.floor(xyxy[:, :2])
    size = np.floor(xyxy[:, 2:] - xyxy[:, :2])
    return np.concatenate([origin, origin + size], axis=1).astype(np.float32)


def _matches(a: Detections, b: Detections) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching by IoU: (index in a, index in b, IoU) for each overlapping pair."""
    pairs = []
    free = list(range(len(b)))
    for i in np.argsort(-a.confidence):
        if not free:
            break
        ious = box_iou(a.xyxy[i], b.xyxy[free])
        best = int(np.argmax(ious))
        if ious[best] > 0:
            pairs.append((int(i), free.pop(best), float(ious[best])))
    return pairs


@pytest.mark.parametrize("live", [False, True], ids=["VIDEO", "LIVE_STREAM"])
def test_backends_agree_frame_by_frame_on_the_bundled_clip(sample_clip: Path, live: bool) -> None:
    images = decode_all(sample_clip)
    onnx = _detect(_stage("onnxruntime"), images)
    mediapipe_stage = _stage("mediapipe", live=live)
    assert getattr(mediapipe_stage, "running_mode") == ("LIVE_STREAM" if live else "VIDEO")  # noqa: B009
    mediapipe = _detect(mediapipe_stage, images)

    same_count = np.mean([len(a) == len(b) for a, b in zip(onnx, mediapipe, strict=True)])
    assert same_count >= 0.98
    ious, keypoint_errors, score_errors = [], [], []
    for a, b in zip(onnx, mediapipe, strict=True):
        # MediaPipe reports whole-pixel boxes, which alone costs up to ~0.07 IoU on these ~45 px
        # faces: the ONNX boxes are compared at that resolution (unsnapped: mean IoU 0.94).
        snapped = Detections(_on_mediapipe_grid(a.xyxy), a.confidence, a.class_id, a.class_name, a.keypoints)
        for i, j, iou in _matches(snapped, b):
            ious.append(iou)
            assert a.keypoints is not None and b.keypoints is not None
            keypoint_errors.append(float(np.abs(a.keypoints[i] - b.keypoints[j]).max()))
            score_errors.append(abs(float(a.confidence[i]) - float(b.confidence[j])))
    figures = (
        f"mean IoU {np.mean(ious):.4f} (min {min(ious):.4f}), same count {same_count:.1%}, keypoints "
        f"mean {np.mean(keypoint_errors):.2f} px (max {max(keypoint_errors):.2f}), score max "
        f"{max(score_errors):.3f}"
    )
    assert len(ious) >= 0.98 * len(images), figures
    assert min(ious) >= 0.9, figures
    # Keypoints come from MediaPipe as fractions, not whole pixels: compared as they are (faces ~45 px).
    assert np.mean(keypoint_errors) < 1.5 and max(keypoint_errors) < 3.0, figures
    assert max(score_errors) < 0.05, figures


def test_astronaut_matches_what_mediapipe_reports(astronaut: Path) -> None:
    (faces,) = _detect(_stage("mediapipe"), [cv2.imread(str(astronaut))])
    assert len(faces) == 1 and faces.class_name[0] == "face"
    np.testing.assert_allclose(faces.xyxy[0], [177, 82, 272, 177], atol=1)
    assert faces.confidence[0] == pytest.approx(0.92, abs=0.01)
    assert faces.keypoints is not None and faces.keypoints.shape == (1, 6, 2)


def test_pipeline_picks_video_mode_for_files_and_live_stream_for_live_sources(
    sample_clip: Path, tmp_path: Path
) -> None:
    for realtime, mode in ((False, "VIDEO"), (True, "LIVE_STREAM")):
        config = PipelineConfig(
            source=SourceConfig(uri=str(sample_clip), realtime_fps=240 if realtime else None),
            stages=[FaceDetectionConfig(backend="mediapipe")],
            outputs=OutputConfig(video=tmp_path / f"{mode}.mp4"),
            max_frames=30,
        )
        pipeline = Pipeline(config)
        assert getattr(pipeline.stages[0], "running_mode") == mode  # noqa: B009
        summary = pipeline.run()
        assert summary["frames_in"] == 30 and summary["detections"] > 0
        assert summary["frames_out"] + summary["dropped"] == 30


def test_tflite_must_exist_and_match_the_manifest(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="missing"):
        _stage("mediapipe", tflite=str(tmp_path / "none.tflite"))
    models = ModelRegistry()
    copy = tmp_path / "models"
    shutil.copytree(models.models_dir, copy)
    tflite = copy / "face_detection_short_range.tflite"
    data = bytearray(tflite.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tflite.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum"):
        _stage("mediapipe", models=ModelRegistry(copy))
    tflite.unlink()
    with pytest.raises(ModelError, match=r"pip download mediapipe==0\.10\.21"):
        _stage("mediapipe", models=ModelRegistry(copy))


def test_bench_compare_runs_both_backends_on_the_same_clip() -> None:
    from streamvision.bench.report import markdown
    from streamvision.bench.session import run_bench
    from streamvision.config import faces_config

    config = faces_config().model_copy(update={"max_frames": 30})
    report = run_bench(config, repeat=1, runs=10, batch=1, live_fps=0, grid=False, compare="mediapipe")

    compare = report["compare"]
    assert [run["backend"] for run in compare["runs"]] == ["onnxruntime", "mediapipe"]
    base, peer = compare["runs"]
    for run in (base, peer):
        assert run["frames"] == 30 and run["detections"] >= 29 and run["face_ms"]["p50"] > 0
        assert run["pipeline_ms_per_frame"] == round(1000 / run["pipeline_fps"], 3)
    assert compare["ratios"]["pipeline_fps"] == round(base["pipeline_fps"] / peer["pipeline_fps"], 3)
    assert compare["ratios"]["face_ms_p50"] == round(peer["face_ms"]["p50"] / base["face_ms"]["p50"], 3)
    assert "| onnxruntime / mediapipe |" in markdown(report)
