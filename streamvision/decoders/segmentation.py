"""Person-segmentation decoders: model output -> a soft mask in frame pixels.

Tensor contract:
    ``sigmoid_mask`` (MediaPipe selfie segmentation): (1, H, W, 1) float32, already 0..1 (the graph
        ends in a sigmoid); 1 = person.
    ``softmax_mask`` (Google Meet segmentation, from Human): (1, H, W, C) float32 logits, channel 0
        background and the last channel the person; a softmax over channels gives the probability.
Both models see the frame letterboxed to their input (H x W); the padding is cut off before the mask
is scaled back to the frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from streamvision.runtime.preprocess import Letterbox

MASK_DECODERS = ("sigmoid_mask", "softmax_mask")


def decode_mask(output: np.ndarray, decoder: str) -> np.ndarray:
    """The (H, W) float32 person probability of one image's raw output.

    Raises:
        ValueError: unknown decoder, or an output that is not (1, H, W, C) / (H, W, C).

    Example:
        >>> logits = np.zeros((1, 2, 2, 2), np.float32)
        >>> logits[..., 1] = np.log(3.0)
        >>> decode_mask(logits, "softmax_mask").tolist()
        [[0.75, 0.75], [0.75, 0.75]]
    """
    if decoder not in MASK_DECODERS:
        raise ValueError(f"unknown mask decoder {decoder!r}; valid: {', '.join(MASK_DECODERS)}")
    tensor = output[0] if output.ndim == 4 and output.shape[0] == 1 else output
    if tensor.ndim != 3:
        raise ValueError(f"expected a mask output (1, H, W, C), got {output.shape}")
    if decoder == "sigmoid_mask":
        if tensor.shape[2] != 1:
            raise ValueError(f"sigmoid_mask expects one channel, got {tensor.shape[2]}")
        return np.asarray(np.clip(tensor[..., 0], 0.0, 1.0), np.float32)
    if tensor.shape[2] < 2:
        raise ValueError(f"softmax_mask expects background and person channels, got {tensor.shape[2]}")
    logits = tensor.astype(np.float64)
    logits -= logits.max(axis=2, keepdims=True)
    e = np.exp(logits)
    return np.asarray(e[..., -1] / e.sum(axis=2), np.float32)


def mask_to_frame(mask: np.ndarray, box: Letterbox, width: int, height: int) -> np.ndarray:
    """Cuts the letterbox padding off an input-sized mask and scales it to the frame (bilinear).

    Raises:
        ValueError: the letterbox leaves no part of the mask.
    """
    x1, y1 = round(box.pad_x), round(box.pad_y)
    x2 = min(mask.shape[1], round(box.pad_x + width * box.scale))
    y2 = min(mask.shape[0], round(box.pad_y + height * box.scale))
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"letterbox {box} leaves nothing of a {mask.shape} mask")
    inner = np.ascontiguousarray(mask[y1:y2, x1:x2])
    return cv2.resize(inner, (width, height), interpolation=cv2.INTER_LINEAR)
