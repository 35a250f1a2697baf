"""Body pose (``type: pose``): MoveNet keypoints on the whole frame or on each person detection."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from streamvision.decoders.movenet import COCO_EDGES, decode_movenet
from streamvision.errors import ConfigError, ModelError
from streamvision.frame import Detections, Frame, Poses
from streamvision.runtime.crop import crop, crop_boxes
from streamvision.runtime.preprocess import letterbox, to_tensor
from streamvision.stages.base import StageConfig, StageContext


class PoseConfig(StageConfig):
    """``type: pose``."""

    type: Literal["pose"] = "pose"
    model: str = "movenet_lightning"
    on: str | None = None
    """Result key of an earlier detection stage: one pose per detection of ``classes``. None: one
    pose for the whole frame (MoveNet finds the most prominent person)."""
    classes: tuple[str, ...] = ("person",)
    """With ``on``: the detection labels that get a pose."""
    crop_scale: float = Field(1.25, ge=1.0, le=3.0)
    """With ``on``: grow each (squared) box by this before cropping, so limbs at its edge stay in."""
    max_people: int = Field(6, ge=1, le=100)
    """With ``on``: at most this many poses per frame, the most confident detections first."""

    model_sessions: ClassVar[int] = 1
    needs_detections_every_frame: ClassVar[bool] = True
    """With ``on``: a detector that skips frames (``every`` > 1) needs a ``track`` stage before this
    one to carry its boxes over them (checked when the config loads)."""


class PoseEstimator:
    """Attaches :class:`Poses` (17 COCO keypoints each, with scores and the skeleton's edges).

    Raises:
        ModelError: the model is unknown, missing or not a MoveNet pose model.
        ConfigError: at :meth:`process`, when ``on`` names no detections on the frame.
    """

    def __init__(self, config: PoseConfig, context: StageContext) -> None:
        spec = context.models.get(config.model)
        if spec.decoder != "movenet" or len(spec.labels) != 17:
            raise ModelError(
                f"model {config.model!r} has decoder {spec.decoder!r} and {len(spec.labels)} labels; "
                "pose needs a movenet model with the 17 COCO keypoints"
            )
        self.name = config.result_key
        self._config = config
        self._spec = spec
        self._model = context.load_model(config.model, batch=config.batch)

    def process(self, frame: Frame) -> Frame:
        on = self._config.on
        if on is None:
            rows = np.full(1, -1, np.int32)
            points, scores = self._estimate(frame.image)
            all_points, all_scores = points[None], scores[None]
        else:
            rows, all_points, all_scores = self._per_detection(frame, on)
        poses = Poses(
            points=all_points.reshape(len(rows), len(self._spec.labels), 2),
            scores=all_scores.reshape(len(rows), len(self._spec.labels)),
            names=self._spec.labels,
            edges=COCO_EDGES,
            detection=rows,
            on=on,
        )
        return frame.with_result(self.name, poses)

    def _estimate(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        spec = self._spec
        fitted, box = letterbox(image, spec.input.size)
        (output,) = self._model.run({spec.input.name: to_tensor([fitted], spec.input)}, [spec.outputs[0]])
        return decode_movenet(output, spec.input.size, box)

    def _per_detection(self, frame: Frame, on: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        detections = frame.results.get(on)
        if not isinstance(detections, Detections):
            have = ", ".join(sorted(frame.results)) or "none"
            raise ConfigError(
                f"pose {self.name!r}: no detections named {on!r} on the frame (results: {have})"
            )
        rows = np.flatnonzero(np.isin(detections.class_name, self._config.classes))
        if detections.tracker_id is not None:
            rows = rows[detections.tracker_id[rows] >= 0]  # boxes outside confirmed tracks are not drawn
        rows = rows[np.argsort(-detections.confidence[rows], kind="stable")][: self._config.max_people]
        height, width = frame.image.shape[:2]
        windows = crop_boxes(detections.xyxy[rows], (width, height), self._config.crop_scale, square=True)
        usable = (windows[:, 2] > windows[:, 0]) & (windows[:, 3] > windows[:, 1])
        rows, windows = rows[usable], windows[usable]
        points, scores = [], []
        for window in windows:
            p, s = self._estimate(crop(frame.image, window))
            points.append(p + window[:2].astype(np.float32))
            scores.append(s)
        k = len(self._spec.labels)
        return (
            rows.astype(np.int32),
            np.asarray(points, np.float32).reshape(-1, k, 2),
            np.asarray(scores, np.float32).reshape(-1, k),
        )
