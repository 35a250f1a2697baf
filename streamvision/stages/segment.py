"""Person segmentation (``type: segment``): a soft mask per frame, and an effect on the output picture.

The stage attaches a :class:`~streamvision.frame.Mask` and leaves ``Frame.image`` as the camera gave
it, so later stages detect and classify on the real picture. The effect (overlay, background blur,
replaced background) travels with the mask and the annotator applies it to the picture the sinks
write (see :mod:`streamvision.render.effects`).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import cv2
import numpy as np
from pydantic import Field, model_validator

from streamvision.decoders.segmentation import MASK_DECODERS, decode_mask, mask_to_frame
from streamvision.errors import ConfigError, ModelError
from streamvision.frame import Frame, Mask
from streamvision.render.effects import MaskEffect, fit_background
from streamvision.runtime.preprocess import letterbox, to_tensor
from streamvision.stages.base import StageConfig, StageContext


class SegmentConfig(StageConfig):
    """``type: segment``."""

    type: Literal["segment"] = "segment"
    model: str = "selfie_segmentation"
    """selfie_segmentation (256 x 256, MediaPipe) or meet (256 x 144, landscape)."""
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    """Mask values at or above it count as person (events, overlay outline)."""
    effect: Literal["none", "overlay", "blur", "replace"] = "none"
    """What the output picture shows: the mask tinted over the person, the background blurred, or
    the background replaced by ``background``."""
    background: Path | None = None
    """``effect: replace``: the image behind the person."""
    blur: int = Field(55, ge=3, le=401)
    """``effect: blur``: Gaussian kernel side in pixels of a 720-line frame (scaled with the frame)."""
    color: tuple[int, int, int] = (0, 200, 0)
    """``effect: overlay``: BGR tint."""
    opacity: float = Field(0.5, ge=0.0, le=1.0)
    """``effect: overlay``: tint strength."""
    smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    """Blend each mask with the previous frame's: 0 off; 0.5 halves flicker on a still camera."""

    model_sessions: ClassVar[int] = 1

    @model_validator(mode="after")
    def _effect_options(self) -> SegmentConfig:
        if self.effect == "replace" and self.background is None:
            raise ValueError("effect: replace needs background: an image path")
        if self.background is not None and self.effect != "replace":
            raise ValueError("background is only used by effect: replace")
        return self


class Segmenter:
    """Attaches a person :class:`Mask` in frame pixels, carrying the configured effect.

    Raises:
        ModelError: the model is unknown, missing or not a segmentation model.
        ConfigError: the background image cannot be read.
    """

    def __init__(self, config: SegmentConfig, context: StageContext) -> None:
        spec = context.models.get(config.model)
        if spec.decoder not in MASK_DECODERS:
            raise ModelError(
                f"model {config.model!r} has decoder {spec.decoder!r}; segment needs one of "
                f"{', '.join(MASK_DECODERS)}"
            )
        self.name = config.result_key
        self._config = config
        self._spec = spec
        self._label = spec.labels[-1] if spec.labels else "person"
        self._model = context.load_model(config.model, batch=config.batch)
        self._background = _read_background(config.background) if config.background is not None else None
        self._effects: dict[tuple[int, int], MaskEffect] = {}
        self._previous: np.ndarray | None = None

    def process(self, frame: Frame) -> Frame:
        spec = self._spec
        height, width = frame.image.shape[:2]
        image, box = letterbox(frame.image, spec.input.size)
        (output,) = self._model.run({spec.input.name: to_tensor([image], spec.input)}, [spec.outputs[0]])
        mask = mask_to_frame(decode_mask(output, spec.decoder), box, width, height)
        smoothing = self._config.smoothing
        if smoothing > 0 and self._previous is not None and self._previous.shape == mask.shape:
            mask = (smoothing * self._previous + (1 - smoothing) * mask).astype(np.float32)
        self._previous = mask
        mask.flags.writeable = False
        result = Mask(mask, self._label, self._config.threshold, self._effect(width, height))
        return frame.with_result(self.name, result)

    def _effect(self, width: int, height: int) -> MaskEffect | None:
        """The configured effect for frames of this size (the background fitted once per size)."""
        config = self._config
        if config.effect == "none":
            return None
        effect = self._effects.get((width, height))
        if effect is None:
            background = None
            if self._background is not None:
                background = fit_background(self._background, width, height).copy()
                background.flags.writeable = False
            effect = MaskEffect(config.effect, config.color, config.opacity, config.blur, background)
            self._effects[(width, height)] = effect
        return effect


def _read_background(path: Path) -> np.ndarray:
    """The BGR image at ``path``.

    Raises:
        ConfigError: it is missing or not an image OpenCV can read.
    """
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ConfigError(f"segment: cannot read the background image {path}")
    return image
