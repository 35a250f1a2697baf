"""Face detection with BlazeFace on ONNX Runtime."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from streamvision.decoders.blazeface import anchor_centres, decode_blazeface
from streamvision.errors import ModelError
from streamvision.frame import Detections, Frame
from streamvision.runtime.preprocess import letterbox, to_tensor
from streamvision.stages.base import StageConfig, StageContext

_DECODERS = frozenset({"blazeface_short"})


class FaceDetectionConfig(StageConfig):
    """``type: face_detection``."""

    type: Literal["face_detection"] = "face_detection"
    model: str = "blazeface_short"
    score_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    iou_threshold: float = Field(0.3, gt=0.0, le=1.0)
    max_faces: int = Field(20, ge=1)

    model_sessions: ClassVar[int] = 1


class FaceDetector:
    """Finds faces and their six keypoints; attaches :class:`Detections` labelled ``face``.

    Raises:
        ModelError: the model is missing, invalid, or not a BlazeFace face detector.
    """

    def __init__(self, config: FaceDetectionConfig, context: StageContext) -> None:
        spec = context.models.get(config.model)
        if spec.decoder not in _DECODERS:
            raise ModelError(
                f"model {config.model!r} has decoder {spec.decoder!r}; face_detection needs one of "
                f"{', '.join(sorted(_DECODERS))}"
            )
        width, height = spec.input.size
        if width != height:
            raise ModelError(f"model {config.model!r}: BlazeFace needs a square input, got {spec.input.size}")
        self.name = config.result_key
        self._config = config
        self._spec = spec
        self._model = context.load_model(config.model)
        self._anchors = anchor_centres(width)

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
