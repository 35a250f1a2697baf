"""Face recognition (``type: recognize``): a name and a similarity for each face, from a gallery."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from streamvision.decoders.faceres import match
from streamvision.errors import ConfigError, ModelError
from streamvision.frame import Detections, Frame, Labels
from streamvision.stages.base import StageConfig, StageContext
from streamvision.stages.faces.gallery import FaceDescriber, Gallery


class RecognizeConfig(StageConfig):
    """``type: recognize``."""

    type: Literal["recognize"] = "recognize"
    gallery: Path
    """A gallery file from ``streamvision faces enroll``."""
    on: str = "face_detection"
    """Result key of the face detection stage whose faces are recognized."""
    threshold: float = Field(0.6, gt=0.0, lt=1.0)
    """Cosine similarity a match needs; below it a face is ``unknown``."""
    top_k: int = Field(3, ge=1, le=100)
    """How many of the most similar people to list per face."""

    model_sessions: ClassVar[int] = 1
    needs_detections_every_frame: ClassVar[bool] = True
    """With ``on``: a detector that skips frames (``every`` > 1) needs a ``track`` stage before this
    one to carry its boxes over them (checked when the config loads)."""


class Recognizer:
    """Attaches :class:`Labels` on the faces of ``on``: the person's name (or ``unknown``) and the
    similarity, with the next most similar people as top-k. Rule events of type ``recognized`` read
    them like classifier labels.

    Raises:
        ConfigError: the gallery is missing, not a gallery or empty; at :meth:`process`, ``on``
            names no detections on the frame.
        ModelError: the gallery's descriptor model is unknown or missing.
    """

    def __init__(self, config: RecognizeConfig, context: StageContext) -> None:
        gallery = Gallery.load(config.gallery)
        if len(gallery.names) == 0:
            raise ConfigError(f"gallery {config.gallery} enrolls nobody")
        self.name = config.result_key
        self._config = config
        self._gallery = gallery
        try:
            self._describer = FaceDescriber(
                context.models, gallery.model, context.budget.take(), gallery.crop_scale
            )
        except ModelError as exc:
            raise ModelError(f"gallery {config.gallery}: {exc}") from None
        self._k = min(config.top_k, len(gallery.people))

    def process(self, frame: Frame) -> Frame:
        on = self._config.on
        faces = frame.results.get(on)
        if not isinstance(faces, Detections):
            have = ", ".join(sorted(frame.results)) or "none"
            raise ConfigError(
                f"recognize {self.name!r}: no detections named {on!r} on the frame (results: {have})"
            )
        descriptors, rows = self._describer.describe(frame.image, faces.xyxy)
        if len(rows) == 0:
            return frame.with_result(self.name, Labels.empty(on, self._k))
        names, similarity = match(
            descriptors, self._gallery.descriptors, self._gallery.names, self._config.threshold, self._k
        )
        people = {name: i for i, name in enumerate(self._gallery.people)}
        ids = np.vectorize(lambda n: people.get(n, -1), otypes=[np.int32])(names)
        return frame.with_result(self.name, Labels.from_top_k(rows, ids, similarity, names, on))
