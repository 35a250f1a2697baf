"""Classifier outputs -> the best K classes with their probabilities.

Tensor contract: one output of shape (N, C), one row per image, C == the number of labels in the
manifest. Decoder ``softmax``: the rows are probabilities already. Decoder ``logits``: raw scores,
turned into probabilities with a softmax here.
"""

from __future__ import annotations

import numpy as np

DECODERS = ("softmax", "logits")
REGRESSION_DECODERS = ("age_years",)
"""Outputs of shape (N, 1) holding a number per image, attached as :class:`~streamvision.frame.Estimates`."""


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) scores, computed stably in float64, returned as float32."""
    x = np.asarray(logits, np.float64)
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return np.asarray(e / e.sum(axis=1, keepdims=True), np.float32)


def decode_classes(scores: np.ndarray, k: int, decoder: str = "softmax") -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best classes of each row, best first.

    Args:
        scores: (N, C) model output.
        k: how many classes to keep (capped at C).
        decoder: ``softmax`` (rows are probabilities) or ``logits`` (apply softmax first).

    Returns:
        (N, k) int32 class indices and (N, k) float32 probabilities.

    Raises:
        ValueError: ``scores`` is not 2-D, ``k`` < 1, or ``decoder`` is unknown.

    Example:
        >>> ids, p = decode_classes(np.array([[0.1, 0.7, 0.2]], np.float32), 2)
        >>> ids.tolist(), p.round(2).tolist()
        ([[1, 2]], [[0.7, 0.2]])
    """
    if scores.ndim != 2:
        raise ValueError(f"classifier output must have shape (N, C), got {scores.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if decoder not in DECODERS:
        raise ValueError(f"unknown classifier decoder {decoder!r}; valid: {', '.join(DECODERS)}")
    probs = softmax(scores) if decoder == "logits" else np.asarray(scores, np.float32)
    k = min(k, probs.shape[1])
    ids = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return ids.astype(np.int32), np.take_along_axis(probs, ids, axis=1)
