"""The model service: one session per model for every source of a run, batches across the callers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from streamvision.config import parse_config
from streamvision.errors import ConfigError, ModelError, SourceError
from streamvision.frame import Detections
from streamvision.multi import MultiPipeline
from streamvision.pipeline import Pipeline, model_sessions
from streamvision.runtime.batcher import Batcher
from streamvision.runtime.manifest import ModelRegistry
from streamvision.runtime.service import ModelService
from streamvision.runtime.session import OnnxModel, ThreadBudget
from streamvision.samples import sample_path
from streamvision.stages import StageContext
from streamvision.stages.objects import ObjectDetectionConfig, ObjectDetector
from tests.conftest import decode_all, run_cli


@pytest.fixture(scope="module")
def bikes() -> list[np.ndarray]:
    """Frames of the bundled street clip, a few apart so their detections differ."""
    return decode_all(sample_path("bikes"))[110:160:10]


def objects_config(*sources: object, **extra: object) -> dict[str, object]:
    return {"sources": list(sources), "stages": [{"type": "object_detection"}], **extra}


def in_threads(*jobs: Callable[[], Any]) -> list[Any]:
    """Runs each callable on a thread of its own, all at once, and returns their results in order."""
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def run(index: int, job: Callable[[], Any]) -> None:
        try:
            start.wait()
            results[index] = job()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def test_two_sources_of_one_config_share_one_nanodet_session() -> None:
    config = parse_config(objects_config("sample:bikes", "sample:carphone", max_frames=6, threads=2))
    multi = MultiPipeline(config)
    (nanodet,) = multi.service.stats()
    assert multi.service.sessions == 1 and multi.service.opened == 1
    assert nanodet.name == "nanodet" and nanodet.batch is None  # its graph fixes the batch at 1
    assert nanodet.threads == 1  # 2 threads, 2 sources calling side by side: one each
    bikes, carphone = multi.run()
    assert multi.errors == {}
    assert bikes["frames_out"] == carphone["frames_out"] == 6
    assert multi.service.stats()[0].runs >= 6 + 6  # the frames of both sources went through it
    separate = MultiPipeline(config, share_models=False)
    assert separate.service.sessions == 0 and separate.pipelines[0].threads_per_model == 1
    alone = MultiPipeline(parse_config(objects_config("sample:bikes", threads=2)))
    assert alone.service.stats()[0].threads == 2  # one source: the whole budget
    for pipeline in alone.pipelines:
        pipeline.close()
    for pipeline in separate.pipelines:
        pipeline.close()


def test_stages_of_one_pipeline_naming_one_model_share_it() -> None:
    config = parse_config(
        {
            "source": "sample:carphone",
            "stages": [
                {"type": "object_detection"},
                {"type": "classify", "model": "gender", "name": "whole"},
                {"type": "classify", "model": "gender", "name": "people", "on": "object_detection"},
            ],
        }
    )
    assert model_sessions(config) == 2
    service = ModelService()
    pipeline = Pipeline(config, service=service)
    pipeline.close()
    assert sorted(s.name for s in service.stats()) == ["gender", "nanodet"]


def test_every_model_stage_opens_its_models_through_the_service() -> None:
    stages = [
        {"type": "face_detection"},
        {"type": "face_detection", "model": "mtcnn", "name": "mtcnn"},
        {"type": "segment"},
        {"type": "pose"},
    ]
    service = ModelService()
    Pipeline(parse_config({"source": "sample:carphone", "stages": stages}), service=service).close()
    mtcnn = ["mtcnn_onet", "mtcnn_pnet", "mtcnn_rnet"]
    opened = sorted(s.name for s in service.stats())
    assert opened == ["blazeface_short", "movenet_lightning", *mtcnn, "selfie_segmentation"]


def test_a_shared_session_finds_what_separate_sessions_find(bikes: list[np.ndarray]) -> None:
    models = ModelRegistry()
    config = ObjectDetectionConfig()
    shared = ModelService()

    def detector(service: ModelService, client: str) -> ObjectDetector:
        context = StageContext(models, ThreadBudget(2), service=service, client=client)
        return ObjectDetector(config, context)

    alone = [detector(ModelService(), "a"), detector(ModelService(), "b")]
    together = [detector(shared, "a"), detector(shared, "b")]
    assert shared.sessions == 1

    def detect_all(stage: ObjectDetector, frames: list[np.ndarray]) -> list[Detections]:
        return [stage.detect(frame) for frame in frames]

    reversed_frames = bikes[::-1]
    expected = [detect_all(alone[0], bikes), detect_all(alone[1], reversed_frames)]
    got = in_threads(lambda: detect_all(together[0], bikes), lambda: detect_all(together[1], reversed_frames))
    for want_run, got_run in zip(expected, got, strict=True):
        for want, have in zip(want_run, got_run, strict=True):
            assert len(want) > 0 and list(have.class_name) == list(want.class_name)
            np.testing.assert_allclose(have.xyxy, want.xyxy, atol=0.05)
            np.testing.assert_allclose(have.confidence, want.confidence, atol=1e-4)


def test_a_source_that_cannot_open_stops_nobody(tmp_path: Path) -> None:
    missing = tmp_path / "gone.mp4"
    config = parse_config(objects_config(str(missing), "sample:bikes", max_frames=30))
    multi = MultiPipeline(config)
    assert list(multi.errors) == ["gone.mp4"] and "no such video file" in str(multi.errors["gone.mp4"])
    gone, bikes = multi.run()
    assert gone["source"] == "gone.mp4" and gone["frames_out"] == 0 and "no such video file" in gone["error"]
    assert bikes["frames_out"] == 30 and "error" not in bikes
    with pytest.raises(SourceError, match="no such video file"):
        MultiPipeline(parse_config(objects_config(str(missing), str(tmp_path / "also-gone.mp4"))))
    report = tmp_path / "report.json"
    result = run_cli(
        "run", "--source", str(missing), "--source", "sample:carphone", "--report", str(report), "--quiet"
    )
    assert result.returncode == 2
    assert result.stderr.strip().endswith(f"error: source gone.mp4: no such video file: {missing}")
    frames = {s["source"]: s["frames_out"] for s in json.loads(report.read_text())["sources"]}
    assert frames == {"gone.mp4": 0, "carphone": 120}


def crops_of(frames: list[np.ndarray], size: int) -> list[np.ndarray]:
    """Grey ``size`` x ``size`` crops of real frames, as the 64 x 64 x 1 classifiers take them."""
    crops = []
    for frame in frames:
        for x in (100, 300, 500):
            grey = cv2.cvtColor(frame[60:200, x - 60 : x + 60], cv2.COLOR_BGR2GRAY)
            crops.append(cv2.resize(grey, (size, size)).astype(np.float32)[..., None] / 255)
    return crops


def test_batches_hand_each_caller_its_own_rows(bikes: list[np.ndarray]) -> None:
    path = ModelRegistry().verify("emotion")
    reference = OnnxModel(path, threads=1)
    name = reference.input_names[0]
    crops = crops_of(bikes, 64)
    # three callers: one crop, three crops of one frame (its regions), two crops
    requests = [np.stack(crops[0:1]), np.stack(crops[1:4]), np.stack(crops[4:6])]
    expected = [reference.run({name: r})[0] for r in requests]

    # a long window: the batch waits for all three callers, never for the clock
    service = ModelService(window_s=60)
    handles = [service.open(path, 2, client=f"cam{i}", batch=8, name="emotion") for i in range(3)]
    assert all(h.batched for h in handles)
    got = in_threads(*(lambda h=h, r=r: h.run({name: r})[0] for h, r in zip(handles, requests, strict=True)))
    for want, have in zip(expected, got, strict=True):
        assert np.shape(have) == want.shape
        np.testing.assert_allclose(have, want, atol=1e-5)
    (stats,) = service.stats()
    assert stats.runs == 1 and stats.largest_batch == 3 and stats.batched_requests == 3
    assert stats.clients == ("cam0", "cam1", "cam2")


def test_requests_that_cannot_stack_run_apart_and_fail_alone(bikes: list[np.ndarray]) -> None:
    path = ModelRegistry().verify("gender")
    service = ModelService(window_s=0.2)  # the second waits this long for the first, served already
    good, bad = (service.open(path, 1, client=c, batch=4) for c in ("good", "bad"))
    name = good.input_names[0]
    crop = np.stack(crops_of(bikes[:1], 64)[:1])
    wrong = np.zeros((1, 32, 32, 1), np.float32)
    results = in_threads(lambda: good.run({name: crop})[0], lambda: _error_of(lambda: bad.run({name: wrong})))
    np.testing.assert_allclose(results[0], OnnxModel(path).run({name: crop})[0], atol=1e-5)
    assert isinstance(results[1], Exception)


def _error_of(call: Callable[[], object]) -> Exception | None:
    try:
        call()
    except Exception as exc:
        return exc
    return None


def test_a_caller_that_never_comes_holds_a_batch_only_for_the_window(bikes: list[np.ndarray]) -> None:
    model = OnnxModel(ModelRegistry().verify("gender"))
    name = model.input_names[0]

    def run(inputs: Mapping[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        return model.run(dict(inputs), outputs)

    batcher = Batcher(run, max_rows=8, window_s=0.05)
    batcher.join("live")
    batcher.join("stalled")  # joined, but never sends anything
    crop = np.stack(crops_of(bikes[:1], 64)[:1])
    first = batcher.run("live", {name: crop}, model.output_names)
    batcher.leave("stalled")  # its pipeline ended: from now on nobody waits for it
    second = batcher.run("live", {name: crop}, model.output_names)
    np.testing.assert_allclose(first[0], second[0])
    assert batcher.runs == 2 and batcher.largest == 1 and batcher.clients == ("live",)


def test_asking_a_fixed_batch_model_to_batch_is_one_clear_error(tmp_path: Path) -> None:
    raw = {"source": "sample:carphone", "stages": [{"type": "object_detection", "batch": 4}]}
    with pytest.raises(ModelError) as caught:
        Pipeline(parse_config(raw))
    message = str(caught.value)
    assert message == (
        "model 'nanodet' cannot run batches: its graph fixes the batch size at 1 (input 'input_1:0' is "
        "[1, 3, 416, 416]); remove batch: 4 from the stage"
    )
    config = tmp_path / "batched.yaml"
    config.write_text("source: sample:carphone\nstages:\n  - type: object_detection\n    batch: 4\n")
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {message}"
    # batch: 1 asks for no batching, which every model can do
    Pipeline(parse_config({**raw, "stages": [{"type": "object_detection", "batch": 1}]})).close()
    with pytest.raises(ConfigError, match="batch: a track stage runs no model"):
        parse_config({"source": "sample:carphone", "stages": [{"type": "track", "batch": 2}]})
