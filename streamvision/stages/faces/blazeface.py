"""Faces with BlazeFace (short or full range) on ONNX Runtime: boxes and six keypoints."""

from __future__ import annotations

import numpy as np

from streamvision.decoders.blazeface import ANCHOR_LAYOUTS, anchor_centres, decode_blazeface
from streamvision.frame import Detections, Frame
from streamvision.runtime.preprocess import letterbox, to_tensor
from streamvision.stages.base import StageContext
from streamvision.stages.faces.config import FaceDetectionConfig, face_model_spec


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
        self._model = context.load_model(config.model, batch=config.batch)
        strides, per_layer = ANCHOR_LAYOUTS[spec.decoder]
        self._anchors = anchor_centres(spec.input.size[0], strides, per_layer)

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
