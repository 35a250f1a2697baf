"""``streamvision bench --compare mediapipe``: the face pipeline on ONNX Runtime and on a peer backend.

Both backends run the same pipeline config (same clip, same stages, same H.264 output), alternately
``repeat`` times each as the threaded pipeline and as the sequential loop; the run with the median
FPS is reported for each, with the face stage's per-frame time and the ratios.
"""

from __future__ import annotations

import statistics
from typing import Any

from streamvision.bench.loops import run_pipeline, run_sequential
from streamvision.bench.progress import Progress, silent
from streamvision.config import PipelineConfig
from streamvision.errors import ConfigError
from streamvision.stages.faces import FaceDetectionConfig

BASELINE = "onnxruntime"
PEERS = ("mediapipe",)


def with_face_backend(config: PipelineConfig, backend: str) -> PipelineConfig:
    """``config`` with every ``face_detection`` stage on ``backend``, all its other settings kept.

    Raises:
        ConfigError: the config has no face stage, or a stage's settings do not suit ``backend``
            (``nms: hard`` on mediapipe).
    """
    if not any(isinstance(stage, FaceDetectionConfig) for stage in config.stages):
        raise ConfigError("--compare needs a pipeline with a face_detection stage")
    stages = []
    for stage in config.stages:
        if isinstance(stage, FaceDetectionConfig):
            settings = stage.model_dump()
            settings["backend"] = backend
            if backend != "mediapipe":
                settings["tflite"] = None
            try:
                stage = FaceDetectionConfig.model_validate(settings)
            except ValueError as exc:
                raise ConfigError(f"--compare {backend}: stage {stage.result_key!r}: {exc}") from None
        stages.append(stage)
    return config.model_copy(update={"stages": stages})


def compare_backends(
    config: PipelineConfig, peer: str, repeat: int, progress: Progress = silent
) -> dict[str, Any]:
    """Runs ``config`` on ONNX Runtime and on ``peer`` and returns the comparison (``progress`` hears of
    each of the ``4 * repeat`` runs).

    Returns:
        ``peer``, one row per backend (FPS and ms per frame of the pipeline and of the sequential
        loop, face stage ms, faces found) and ``ratios``: ONNX Runtime against ``peer``.

    Raises:
        ConfigError: ``peer`` is not a known backend, or the config has no face stage.
        StreamvisionError: the peer backend is not installed (its extra) or cannot load the model.
    """
    if peer not in PEERS:
        raise ConfigError(f"--compare {peer!r}: unknown backend; valid: {', '.join(PEERS)}")
    configs = {backend: with_face_backend(config, backend) for backend in (BASELINE, peer)}
    face_stages = [s.result_key for s in config.stages if isinstance(s, FaceDetectionConfig)]
    pipelines: dict[str, list[dict[str, Any]]] = {backend: [] for backend in configs}
    loops: dict[str, list[dict[str, Any]]] = {backend: [] for backend in configs}
    for i in range(repeat):
        for backend, measured in configs.items():
            pipelines[backend].append(run_pipeline(measured))
            progress(
                f"{backend} pipeline run {i + 1}/{repeat}", f"{pipelines[backend][-1]['fps_out']:.1f} FPS"
            )
            loops[backend].append(run_sequential(measured))
            progress(
                f"{backend} sequential loop {i + 1}/{repeat}", f"{loops[backend][-1]['fps_out']:.1f} FPS"
            )
    rows = [
        _row(backend, _median(pipelines[backend]), _median(loops[backend]), face_stages)
        for backend in configs
    ]
    base, other = rows
    return {
        "peer": peer,
        "versions": _versions(peer),
        "runs": rows,
        "ratios": {
            "pipeline_fps": _ratio(base["pipeline_fps"], other["pipeline_fps"]),
            "sequential_fps": _ratio(base["sequential_fps"], other["sequential_fps"]),
            "face_ms_p50": _ratio(other["face_ms"]["p50"], base["face_ms"]["p50"]),
        },
    }


def _row(
    backend: str, pipeline: dict[str, Any], sequential: dict[str, Any], face_stages: list[str]
) -> dict[str, Any]:
    # The face stage's time per frame comes from the sequential loop, where nothing competes with it.
    face = [sequential["stage_ms"][name] for name in face_stages]
    return {
        "backend": backend,
        "frames": pipeline["frames_out"],
        "detections": pipeline["detections"],
        "pipeline_fps": pipeline["fps_out"],
        "pipeline_ms_per_frame": _per_frame(pipeline["fps_out"]),
        "sequential_fps": sequential["fps_out"],
        "sequential_ms_per_frame": _per_frame(sequential["fps_out"]),
        "face_ms": {key: round(sum(ms[key] or 0.0 for ms in face), 3) for key in ("p50", "p95", "mean")},
    }


def _per_frame(fps: float) -> float:
    return round(1000.0 / fps, 3) if fps > 0 else 0.0


def _ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3) if denominator > 0 else 0.0


def _median(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    fps = statistics.median_low(s["fps_out"] for s in summaries)
    return next(s for s in summaries if s["fps_out"] == fps)


def _versions(peer: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("onnxruntime", peer):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions
