"""Faces: detection (BlazeFace on ONNX Runtime, MTCNN, MediaPipe's BlazeFace), a gallery of known
faces, enrollment into it, and recognition against it."""

from __future__ import annotations

from streamvision.stages.base import Stage, StageContext
from streamvision.stages.faces.config import MTCNN, FaceDetectionConfig, MtcnnOptions, face_model_spec

__all__ = ["FaceDetectionConfig", "MtcnnOptions", "build_face_detector", "face_model_spec"]


def build_face_detector(config: FaceDetectionConfig, context: StageContext) -> Stage:
    """The face stage on the backend ``config`` names.

    Raises:
        ModelError: the model is unknown, invalid or not a BlazeFace face detector.
        StreamvisionError: ``backend: mediapipe`` without mediapipe installed (extra ``mediapipe``).
    """
    if config.model == MTCNN:
        from streamvision.stages.faces.mtcnn import MtcnnFaceDetector

        return MtcnnFaceDetector(config, context)
    if config.backend == "mediapipe":
        from streamvision.stages.faces.mediapipe import MediaPipeFaceDetector

        return MediaPipeFaceDetector(config, context)
    from streamvision.stages.faces.blazeface import FaceDetector

    return FaceDetector(config, context)
