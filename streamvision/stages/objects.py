"""Object detection with any detector in the manifest; a decoder per model family reads its output."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from streamvision.decoders.boxes import DecodeParams
from streamvision.decoders.detection import DETECTION_DECODERS, detection_decoder
from streamvision.errors import ConfigError, ModelError, describe
from streamvision.frame import Detections, Frame
from streamvision.runtime.manifest import ModelRegistry
from streamvision.runtime.preprocess import letterbox, to_tensor
from streamvision.runtime.session import OnnxModel
from streamvision.stages.base import StageConfig, StageContext


class ObjectDetectionConfig(StageConfig):
    """``type: object_detection``."""

    type: Literal["object_detection"] = "object_detection"
    model: str = "nanodet"
    """A model name from the manifest (``nanodet`` and ``centernet`` detect the 80 COCO classes)."""
    models: Path | None = None
    """Folder of another manifest that holds ``model`` (your own detectors); the project's
    ``models/`` by default."""
    decoder: str | None = None
    """How to read the model's output (centernet, nanodet, yolov5, yolov8, yolo11, ssd); the
    manifest entry's ``decoder`` by default. Set it for a model whose entry names another."""
    classes: tuple[str, ...] | None = None
    """Keep only these labels (all of the model's labels by default)."""
    score_threshold: float = Field(0.3, gt=0.0, lt=1.0)
    iou_threshold: float = Field(0.45, gt=0.0, le=1.0)
    """Class-aware NMS: a box overlapping a better box of its class by more than this is dropped."""
    max_detections: int = Field(100, ge=1, le=10000)
    every: int = Field(1, ge=1, le=1000)
    """Run the detector on every Nth frame; a ``track`` stage after it carries the objects between runs."""
    pad_value: int = Field(0, ge=0, le=255)
    """Grey level of the letterbox padding (114 for Ultralytics YOLO exports)."""

    model_sessions: ClassVar[int] = 1

    @field_validator("decoder")
    @classmethod
    def _known_decoder(cls, value: str | None) -> str | None:
        if value is not None and value not in DETECTION_DECODERS:
            raise ValueError(f"unknown decoder {value!r}; valid: {', '.join(sorted(DETECTION_DECODERS))}")
        return value


class ObjectDetector:
    """Finds objects; attaches :class:`Detections` in frame pixels, labelled from the manifest.

    On frames it skips (``every`` > 1) it attaches nothing, so a later ``track`` stage knows the
    detector did not run and carries its tracks forward.

    Raises:
        ModelError: the model is missing or invalid, its decoder is not a detection decoder, or the
            model does not fit its decoder or manifest.
        ConfigError: ``classes`` names a label the model does not have.
    """

    def __init__(self, config: ObjectDetectionConfig, context: StageContext) -> None:
        registry = ModelRegistry(config.models) if config.models is not None else context.models
        spec = registry.get(config.model)
        decoder_name = config.decoder or spec.decoder
        if decoder_name not in DETECTION_DECODERS:
            raise ModelError(
                f"model {config.model!r} has decoder {decoder_name!r}; object_detection needs one of "
                f"{', '.join(sorted(DETECTION_DECODERS))} (or set the stage's decoder option)"
            )
        if not spec.labels:
            raise ModelError(f"model {config.model!r} has no labels in its manifest")
        self._labels = np.asarray(spec.labels)
        class_ids = None
        if config.classes is not None:
            unknown = [name for name in config.classes if name not in spec.labels]
            if unknown:
                raise ConfigError(
                    f"{config.result_key}.classes: {', '.join(map(repr, unknown))} not labels of model "
                    f"{config.model!r}; its labels: {', '.join(spec.labels)}"
                )
            class_ids = frozenset(i for i, label in enumerate(spec.labels) if label in config.classes)
        self.name = config.result_key
        self.runs = 0
        """How many frames the detector ran on."""
        self._config = config
        self._spec = spec
        self._decode = detection_decoder(decoder_name)
        self._params = DecodeParams(
            score_threshold=config.score_threshold,
            iou_threshold=config.iou_threshold,
            max_detections=config.max_detections,
            classes=class_ids,
        )
        self._model = OnnxModel(registry.verify(config.model), threads=context.budget.take())
        self._seen = 0
        self._check_fit(decoder_name)

    def _check_fit(self, decoder_name: str) -> None:
        """Runs the model once on a blank input, so a model that does not fit its manifest (input name,
        size) or its decoder fails here, with its name, instead of at the first frame.

        Raises:
            ModelError: the model cannot run on its manifest's input, or the decoder cannot read it.
        """
        width, height = self._spec.input.size
        try:
            self.detect(np.zeros((height, width, 3), np.uint8))
        except Exception as exc:
            raise ModelError(
                f"model {self._config.model!r} does not fit decoder {decoder_name!r} or its manifest: "
                f"{describe(exc)}"
            ) from exc

    def process(self, frame: Frame) -> Frame:
        due = self._seen % self._config.every == 0
        self._seen += 1
        if not due:
            return frame
        self.runs += 1
        return frame.with_result(self.name, self.detect(frame.image))

    def detect(self, image: np.ndarray) -> Detections:
        """Runs the detector on one BGR image and returns its detections in image pixels.

        Raises:
            ValueError: the model's output does not match its decoder's tensor contract.
        """
        spec = self._spec
        boxed, transform = letterbox(image, spec.input.size, fill=self._config.pad_value)
        outputs = self._model.run({spec.input.name: to_tensor([boxed], spec.input)}, list(spec.outputs))
        found = self._decode(outputs, spec.input.size, self._params)
        height, width = image.shape[:2]
        xyxy = np.clip(transform.boxes_to_frame(found.xyxy), 0, [width, height, width, height])
        visible = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        class_ids = found.class_ids[visible]
        return Detections(
            xyxy=xyxy[visible].astype(np.float32),
            confidence=found.scores[visible],
            class_id=class_ids,
            class_name=self._label_names(class_ids),
        )

    def _label_names(self, class_ids: np.ndarray) -> np.ndarray:
        # A user model may emit ids past its label list; name those by number rather than fail.
        known = (class_ids >= 0) & (class_ids < len(self._labels))
        names = [str(self._labels[c]) if ok else f"class {c}" for c, ok in zip(class_ids, known, strict=True)]
        return np.asarray(names) if names else np.zeros(0, dtype="<U1")
