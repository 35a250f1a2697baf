"""Image to tensor: letterboxing and normalisation, and mapping results back to the frame."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from streamvision.runtime.manifest import InputSpec


@dataclass(frozen=True)
class Letterbox:
    """How a frame was scaled and padded into a model input, so results can be mapped back."""

    scale: float
    pad_x: float
    pad_y: float

    def boxes_to_frame(self, xyxy: np.ndarray) -> np.ndarray:
        """Maps (N, 4) boxes from input pixels to frame pixels."""
        shift = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], np.float32)
        return (xyxy - shift) / self.scale

    def points_to_frame(self, points: np.ndarray) -> np.ndarray:
        """Maps (..., 2) points from input pixels to frame pixels."""
        return (points - np.array([self.pad_x, self.pad_y], np.float32)) / self.scale


def letterbox(image: np.ndarray, size: tuple[int, int], fill: int = 0) -> tuple[np.ndarray, Letterbox]:
    """Resizes ``image`` to fit ``size`` (width, height) keeping its aspect ratio, padding the rest.

    The image is centred; padding is ``fill``. A side never rounds below one pixel, so a sliver
    (a 2 x 300 crop into 224 x 224) still fits.
    """
    height, width = image.shape[:2]
    target_w, target_h = size
    scale = min(target_w / width, target_h / height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    pad_x, pad_y = (target_w - new_w) // 2, (target_h - new_h) // 2
    padded = cv2.copyMakeBorder(
        resized,
        pad_y,
        target_h - new_h - pad_y,
        pad_x,
        target_w - new_w - pad_x,
        cv2.BORDER_CONSTANT,
        value=(fill, fill, fill),
    )
    return padded, Letterbox(scale=scale, pad_x=pad_x, pad_y=pad_y)


def to_tensor(images: list[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Turns BGR images already at the input size into one batch tensor as ``spec`` describes."""
    batch = np.stack([_convert_color(image, spec.color) for image in images])
    if spec.dtype == "float32":
        tensor = batch.astype(np.float32)
        tensor -= np.asarray(spec.mean, np.float32)
        tensor /= np.asarray(spec.std, np.float32)
    else:
        tensor = batch.astype(spec.dtype)
    if spec.layout == "NCHW":
        tensor = np.ascontiguousarray(tensor.transpose(0, 3, 1, 2))
    return tensor


def _convert_color(image: np.ndarray, color: str) -> np.ndarray:
    if color == "RGB":
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if color == "GRAY":
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[..., None]
    return image
