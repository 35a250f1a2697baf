"""Face detection with BlazeFace on ONNX Runtime (or, with ``backend: mediapipe``, on MediaPipe)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from streamvision.decoders.blazeface import anchor_centres, decode_blazeface
from streamvision.errors import ModelError
from streamvision.frame import Detections, Frame
from streamvision.runtime.manifest import ModelSpec
from streamvision.runtime.preprocess import letterbox, to_tensor
from streamvision.stages.base import Stage, StageConfig, StageContext

_DECODERS = frozenset({"blazeface_short"})


class FaceDetectionConfig(StageConfig):
    """``type: face_detection``."""

    type: Literal["face_detection"] = "face_detection"
    model: str = "blazeface_short"
    backend: Literal["onnxruntime", "mediapipe"] = "onnxruntime"
    """``mediapipe`` runs the tflite the model was converted from on MediaPipe Tasks (extra ``mediapipe``)."""
    tflite: Path | None = None
    """``mediapipe`` only: the tflite file; by default the manifest's source file beside the models."""
    nms: Literal["weighted", "hard"] = "weighted"
    """``weighted`` blends overlapping boxes as MediaPipe does; ``hard`` keeps the best box alone."""
    score_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    iou_threshold: float = Field(0.3, gt=0.0, le=1.0)
    max_faces: int = Field(20, ge=1)

    model_sessions: ClassVar[int] = 1

    @model_validator(mode="after")
    def _backend_options(self) -> FaceDetectionConfig:
        if self.backend == "mediapipe" and self.nms != "weighted":
            raise ValueError("the mediapipe backend always uses weighted NMS (nms: weighted)")
        if self.tflite is not None and self.backend != "mediapipe":
            raise ValueError("tflite is only used by backend: mediapipe")
        return self


def build_face_detector(config: FaceDetectionConfig, context: StageContext) -> Stage:
    """The face stage on the backend ``config`` names.

    Raises:
        ModelError: the model is unknown, invalid or not a BlazeFace face detector.
        StreamvisionError: ``backend: mediapipe`` without mediapipe installed (extra ``mediapipe``).
    """
    if config.backend == "mediapipe":
        from streamvision.stages.faces_mediapipe import MediaPipeFaceDetector

        return MediaPipeFaceDetector(config, context)
    return FaceDetector(config, context)


def face_model_spec(config: FaceDetectionConfig, context: StageContext) -> ModelSpec:
    """The manifest entry of ``config.model``, checked to be a square-input BlazeFace detector.

    Raises:
        ModelError: the model is unknown or not a BlazeFace face detector.
    """
    spec = context.models.get(config.model)
    if spec.decoder not in _DECODERS:
        raise ModelError(
            f"model {config.model!r} has decoder {spec.decoder!r}; face_detection needs one of "
            f"{', '.join(sorted(_DECODERS))}"
        )
    width, height = spec.input.size
    if width != height:
        raise ModelError(f"model {config.model!r}: BlazeFace needs a square input, got {spec.input.size}")
    return spec


class FaceDetector:
    """Finds faces and their six keypoints; attaches :class:`Detections` labelled ``face``.

    Raises:
        ModelError: the model is missing, invalid, or not a BlazeFace face detector.
    """

    def __init__(self, config: FaceDetectionConfig, context: StageContext) -> None:
        spec = face_model_spec(config, context)
        self.name = config.result_key
        self._config = config
        self._spec = spec
        self._model = context.load_model(config.model)
        self._anchors = anchor_centres(spec.input.size[0])

    def process(self, frame: Frame) -> Frame:
        spec = self._spec
        image, box = letterbox(frame.image, spec.input.size)
        regressors, scores = self._model.run(
            {spec.input.name: to_tensor([image], spec.input)}, list(spec.outputs)
        )
        faces = decode_blazeface(
            regressors[0],
            scores[0],
            self._anchors,
            spec.input.size[0],
            self._config.score_threshold,
            self._config.iou_threshold,
            self._config.max_faces,
            blend=self._config.nms == "weighted",
        )
        height, width = frame.image.shape[:2]
        xyxy = box.boxes_to_frame(faces.xyxy)
        xyxy = np.clip(xyxy, 0, [width, height, width, height]).astype(np.float32)
        detections = Detections(
            xyxy=xyxy,
            confidence=faces.scores,
            class_id=np.zeros(len(xyxy), np.int32),
            class_name=np.full(len(xyxy), spec.labels[0]),
            keypoints=box.points_to_frame(faces.keypoints).astype(np.float32),
        )
        return frame.with_result(self.name, detections)
