"""Classification with any ONNX classifier from a manifest: on whole frames or on detection crops."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import cv2
import numpy as np
from pydantic import Field

from streamvision.decoders.classification import DECODERS, REGRESSION_DECODERS, decode_classes
from streamvision.errors import ConfigError, ModelError
from streamvision.frame import Detections, Estimates, Frame, Labels
from streamvision.runtime.crop import crop, crop_boxes
from streamvision.runtime.manifest import ModelRegistry, ModelSpec
from streamvision.runtime.preprocess import letterbox, to_tensor
from streamvision.runtime.session import OnnxModel
from streamvision.stages.base import StageConfig, StageContext

MIN_CROP_SIDE = 2
"""A detection whose crop is narrower or shorter than this many pixels gets no label: a sliver
holds too little to classify."""


class ClassifyConfig(StageConfig):
    """``type: classify``."""

    type: Literal["classify"] = "classify"
    model: str
    """A model name from the manifest; its decoder must be ``softmax``, ``logits`` or ``age_years``."""
    models: Path | None = None
    """Folder of the manifest that holds ``model`` (e.g. a ``streamvision train`` output folder);
    the project's ``models/`` by default."""
    on: str | None = None
    """Result key of an earlier detection stage: classify crops of its detections. None: whole frames."""
    classes: tuple[str, ...] | None = None
    """Only detections with these labels are classified (all of them by default)."""
    crop_scale: float = Field(1.0, ge=0.5, le=4.0)
    """Grow each detection box by this factor around its centre before cropping (1.4 for faces)."""
    square: bool = False
    """Square each crop to its longer side before scaling."""
    resize: Literal["letterbox", "stretch"] = "letterbox"
    """Fit crops to the model input keeping their aspect ratio (padding with black), or stretch them."""
    top_k: int = Field(3, ge=1, le=100)
    """How many of the best classes to keep per crop, with their probabilities."""
    output: str | None = None
    """The model output holding the class scores; the manifest's first output by default."""

    model_sessions: ClassVar[int] = 1
    needs_detections_every_frame: ClassVar[bool] = True
    """With ``on``: a detector that skips frames (``every`` > 1) needs a ``track`` stage before this
    one to carry its boxes over them (checked when the config loads)."""


class Classifier:
    """Attaches :class:`Labels`: one row per whole frame, or one per classified detection; a
    regression model (decoder ``age_years``) attaches :class:`Estimates` the same way.

    All crops of one frame go to the model in one run; a model with a fixed batch size gets
    them in runs of that size, the last one padded with zeros.

    Raises:
        ModelError: the model is unknown, missing, not a classifier, or its input or output
            disagrees with the manifest.
        ConfigError: at :meth:`process`, when ``on`` names no detections on the frame.
    """

    def __init__(self, config: ClassifyConfig, context: StageContext) -> None:
        registry = ModelRegistry(config.models) if config.models is not None else context.models
        spec = registry.get(config.model)
        if spec.decoder not in DECODERS + REGRESSION_DECODERS:
            raise ModelError(
                f"model {config.model!r} has decoder {spec.decoder!r}; classify needs one of "
                f"{', '.join(DECODERS + REGRESSION_DECODERS)}"
            )
        if not spec.labels:
            raise ModelError(f"model {config.model!r} has no labels in its manifest")
        self.name = config.result_key
        self.model_calls = 0
        """How many times the model ran (one per frame unless its batch size is fixed)."""
        self._config = config
        self._spec = spec
        self._output = config.output or spec.outputs[0]
        self._labels = np.asarray(spec.labels)
        self._model = context.load_model(config.model, registry, config.batch)
        self._batch = _check_io(config.model, spec, self._model, self._output)

    def process(self, frame: Frame) -> Frame:
        on = self._config.on
        if on is None:
            rows = np.full(1, -1, np.int32)
            crops = [frame.image]
        else:
            rows, crops = self._detection_crops(frame, on)
        regression = self._spec.decoder in REGRESSION_DECODERS
        if not crops:
            if regression:
                empty = Estimates(np.zeros(0, np.int32), np.zeros(0, np.float32), str(self._labels[0]), on)
                return frame.with_result(self.name, empty)
            return frame.with_result(self.name, Labels.empty(on, min(self._config.top_k, len(self._labels))))
        scores = self._infer([self._fit(c) for c in crops])
        if regression:
            values = scores[:, 0].astype(np.float32)
            return frame.with_result(
                self.name, Estimates(rows.astype(np.int32), values, str(self._labels[0]), on)
            )
        ids, probs = decode_classes(scores, self._config.top_k, self._spec.decoder)
        names = self._labels[ids]
        return frame.with_result(self.name, Labels.from_top_k(rows, ids, probs, names, on))

    def _detection_crops(self, frame: Frame, on: str) -> tuple[np.ndarray, list[np.ndarray]]:
        detections = frame.results.get(on)
        if not isinstance(detections, Detections):
            have = ", ".join(sorted(frame.results)) or "none"
            raise ConfigError(
                f"classify {self.name!r}: no detections named {on!r} on the frame (results: {have})"
            )
        rows = np.arange(len(detections), dtype=np.int32)
        if self._config.classes is not None:
            rows = rows[np.isin(detections.class_name, self._config.classes)]
        height, width = frame.image.shape[:2]
        windows = crop_boxes(
            detections.xyxy[rows], (width, height), self._config.crop_scale, self._config.square
        )
        # A box wholly outside the frame clips to nothing, a thin one to a sliver: neither gets a label.
        sides = windows[:, 2:] - windows[:, :2]
        usable = np.all(sides >= MIN_CROP_SIDE, axis=1)
        return rows[usable], [crop(frame.image, w) for w in windows[usable]]

    def _fit(self, image: np.ndarray) -> np.ndarray:
        size = self._spec.input.size
        if self._config.resize == "letterbox":
            return letterbox(image, size)[0]
        shrinking = image.shape[1] > size[0] or image.shape[0] > size[1]
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)

    def _infer(self, images: list[np.ndarray]) -> np.ndarray:
        tensor = to_tensor(images, self._spec.input)
        step = self._batch or len(tensor)
        parts = []
        for start in range(0, len(tensor), step):
            chunk = tensor[start : start + step]
            if len(chunk) < step:
                padding = np.zeros((step - len(chunk), *chunk.shape[1:]), chunk.dtype)
                chunk = np.concatenate([chunk, padding])
            (scores,) = self._model.run({self._spec.input.name: chunk}, [self._output])
            self.model_calls += 1
            parts.append(scores[: min(step, len(tensor) - start)])
        scores = np.concatenate(parts).reshape(len(tensor), -1)
        if scores.shape[1] != len(self._labels):
            raise ModelError(
                f"model {self._config.model!r}: output {self._output!r} has {scores.shape[1]} scores per "
                f"image, the manifest lists {len(self._labels)} labels"
            )
        return scores


def _check_io(name: str, spec: ModelSpec, model: OnnxModel, output: str) -> int | None:
    """Checks the graph against the manifest; returns the fixed batch size, or None when it is free.

    Raises:
        ModelError: the input or output is missing, or the input's image size differs.
    """
    if spec.input.name not in model.input_shapes:
        raise ModelError(f"model {name!r} has no input {spec.input.name!r}; it has {model.input_names}")
    if output not in model.output_names:
        raise ModelError(f"model {name!r} has no output {output!r}; it has {model.output_names}")
    shape = model.input_shapes[spec.input.name]
    if len(shape) != 4:
        raise ModelError(f"model {name!r}: input {spec.input.name!r} is {shape}, not an image batch")
    height, width = (shape[1], shape[2]) if spec.input.layout == "NHWC" else (shape[2], shape[3])
    for actual, expected, what in (
        (width, spec.input.size[0], "width"),
        (height, spec.input.size[1], "height"),
    ):
        if isinstance(actual, int) and actual > 0 and actual != expected:
            raise ModelError(f"model {name!r}: input {what} is {actual}, the manifest says {expected}")
    batch = shape[0]
    return batch if isinstance(batch, int) and batch > 0 else None
