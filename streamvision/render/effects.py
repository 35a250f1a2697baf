"""What a segmentation mask does to the picture the sinks write: overlay, background blur or a
replaced background.

The effects are pure functions of an image and a soft mask. They run in the annotator, on the copy
it draws on, never on ``Frame.image``: every stage after the segmentation stage (faces, objects,
classifiers) still sees the camera's picture, and the blur costs time on the output thread, not on
the stage thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

EffectKind = Literal["overlay", "blur", "replace"]


@dataclass(frozen=True)
class MaskEffect:
    """How to apply a mask to the output picture.

    Attributes:
        kind: ``overlay`` tints the masked pixels with ``color``; ``blur`` blurs everything outside
            the mask; ``replace`` puts ``background`` outside the mask.
        color: BGR tint of ``overlay``.
        opacity: strength of ``overlay``'s tint, 0..1.
        blur: Gaussian kernel side of ``blur`` in pixels of a 720-line frame (scaled with the frame
            height, made odd).
        background: BGR uint8 image of ``replace`` (resized to each frame; read-only).

    Raises:
        ValueError: ``replace`` without a background, or an opacity outside 0..1.
    """

    kind: EffectKind
    color: tuple[int, int, int] = (0, 200, 0)
    opacity: float = 0.5
    blur: int = 55
    background: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.kind == "replace" and self.background is None:
            raise ValueError("a replace effect needs a background image")
        if not 0.0 <= self.opacity <= 1.0:
            raise ValueError(f"opacity must be in 0..1, got {self.opacity}")


def apply_effect(image: np.ndarray, mask: np.ndarray, effect: MaskEffect) -> np.ndarray:
    """A new image: ``image`` with ``effect`` applied through ``mask``.

    Args:
        image: BGR uint8 (H, W, 3).
        mask: (H, W) float32 0..1, 1 where the segmented class (the person) is.
        effect: what to do.

    Raises:
        ValueError: the mask and the image differ in size.

    Example:
        >>> img = np.full((4, 4, 3), 200, np.uint8)
        >>> m = np.zeros((4, 4), np.float32)
        >>> apply_effect(img, m, MaskEffect("overlay", color=(0, 0, 0), opacity=1.0)).max()
        np.uint8(200)
    """
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match the image {image.shape[:2]}")
    alpha = np.ascontiguousarray(mask, np.float32)
    if effect.kind == "overlay":
        tint = np.empty_like(image)
        tint[:] = effect.color
        weight = alpha * np.float32(effect.opacity)
        return cv2.blendLinear(image, tint, 1 - weight, weight)
    if effect.kind == "blur":
        behind = _blurred(image, max(3, round(effect.blur * image.shape[0] / 720)) | 1)
    elif effect.background is not None:
        behind = fit_background(effect.background, image.shape[1], image.shape[0])
    else:
        raise ValueError("a replace effect needs a background image")
    return cv2.blendLinear(image, behind, alpha, 1 - alpha)


def _blurred(image: np.ndarray, side: int) -> np.ndarray:
    """A Gaussian blur of kernel ``side``; a wide one runs on a quarter-size copy (a tenth of the
    time on a 720p frame, and a strong blur looks the same)."""
    if side < 21:
        return cv2.GaussianBlur(image, (side, side), 0)
    height, width = image.shape[:2]
    small = cv2.resize(image, (max(1, width // 4), max(1, height // 4)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, ((side // 4) | 1, (side // 4) | 1), 0)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def fit_background(background: np.ndarray, width: int, height: int) -> np.ndarray:
    """``background`` scaled to cover a ``width`` x ``height`` frame and centre-cropped to it (itself
    when it has that size already)."""
    bh, bw = background.shape[:2]
    if (bw, bh) == (width, height):
        return background
    scale = max(width / bw, height / bh)
    size = (max(width, round(bw * scale)), max(height, round(bh * scale)))
    resized = cv2.resize(background, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    x, y = (size[0] - width) // 2, (size[1] - height) // 2
    return resized[y : y + height, x : x + width]
