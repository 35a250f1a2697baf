"""``type: face_detection`` settings: BlazeFace (short or full range) or the MTCNN cascade on ONNX
Runtime, or BlazeFace on MediaPipe (``backend: mediapipe``); and the check of a BlazeFace model."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from streamvision.decoders.blazeface import ANCHOR_LAYOUTS
from streamvision.errors import ModelError
from streamvision.runtime.manifest import ModelSpec
from streamvision.stages.base import StageConfig, StageContext
from streamvision.strict import StrictModel

_DECODERS = frozenset(ANCHOR_LAYOUTS)
MTCNN = "mtcnn"
"""The ``model`` name of the MTCNN cascade (manifest models mtcnn_pnet, mtcnn_rnet, mtcnn_onet)."""


class MtcnnOptions(StrictModel):
    """``mtcnn:`` settings of the cascade's first two networks (O-Net uses ``score_threshold``)."""

    min_face: float = Field(20.0, ge=12.0, le=4096.0)
    """The smallest face side in frame pixels that P-Net looks for; larger is faster."""
    scale_factor: float = Field(0.709, gt=0.3, lt=0.95)
    """Each pyramid level is this times the previous one."""
    pnet_threshold: float = Field(0.6, gt=0.0, lt=1.0)
    rnet_threshold: float = Field(0.7, gt=0.0, lt=1.0)


class FaceDetectionConfig(StageConfig):
    """``type: face_detection``."""

    type: Literal["face_detection"] = "face_detection"
    model: str = "blazeface_short"
    """blazeface_short (faces within ~2 m), blazeface_full (up to ~5 m) or mtcnn (the P/R/O-Net
    cascade, with five landmarks)."""
    backend: Literal["onnxruntime", "mediapipe"] = "onnxruntime"
    """``mediapipe`` runs the tflite the model was converted from on MediaPipe Tasks (extra ``mediapipe``)."""
    tflite: Path | None = None
    """``mediapipe`` only: the tflite file; by default the manifest's source file beside the models."""
    nms: Literal["weighted", "hard"] = "weighted"
    """``weighted`` blends overlapping boxes as MediaPipe does; ``hard`` keeps the best box alone."""
    score_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    iou_threshold: float = Field(0.3, gt=0.0, le=1.0)
    max_faces: int = Field(20, ge=1)
    mtcnn: MtcnnOptions | None = None
    """``model: mtcnn`` only: the pyramid and the first two thresholds."""

    model_sessions: ClassVar[int] = 1

    @model_validator(mode="after")
    def _backend_options(self) -> FaceDetectionConfig:
        if self.backend == "mediapipe" and self.nms != "weighted":
            raise ValueError("the mediapipe backend always uses weighted NMS (nms: weighted)")
        if self.tflite is not None and self.backend != "mediapipe":
            raise ValueError("tflite is only used by backend: mediapipe")
        if self.mtcnn is not None and self.model != MTCNN:
            raise ValueError("mtcnn options are only used by model: mtcnn")
        if self.model == MTCNN and self.backend != "onnxruntime":
            raise ValueError("model: mtcnn runs on backend: onnxruntime only")
        return self


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
