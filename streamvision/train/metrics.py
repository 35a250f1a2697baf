"""Classification metrics on a held-out split (numpy only), and their plots (matplotlib, no pyplot)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamvision.train import _deps


@dataclass(frozen=True)
class Evaluation:
    """What a classifier got right on a labelled split.

    Attributes:
        classes: class names in index order.
        confusion: (C, C) int64 counts; row = true class, column = predicted class.
        accuracy: share of samples predicted right.
        precision, recall, f1: (C,) per class; 0 where a class was never predicted / never present.
    """

    classes: tuple[str, ...]
    confusion: np.ndarray
    accuracy: float
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray

    @property
    def macro(self) -> dict[str, float]:
        """Unweighted means over the classes."""
        return {
            "precision": float(self.precision.mean()),
            "recall": float(self.recall.mean()),
            "f1": float(self.f1.mean()),
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        support = self.confusion.sum(axis=1)
        return {
            "samples": int(self.confusion.sum()),
            "accuracy": round(self.accuracy, 4),
            "macro": {k: round(v, 4) for k, v in self.macro.items()},
            "per_class": {
                name: {
                    "precision": round(float(self.precision[i]), 4),
                    "recall": round(float(self.recall[i]), 4),
                    "f1": round(float(self.f1[i]), 4),
                    "support": int(support[i]),
                }
                for i, name in enumerate(self.classes)
            },
            "confusion_matrix": self.confusion.tolist(),
        }


def evaluate(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> Evaluation:
    """Accuracy, per-class precision / recall / F1 and the confusion matrix.

    Raises:
        ValueError: the arrays differ in length, are empty, or hold a class index out of range.

    Example:
        >>> e = evaluate(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), ["a", "b"])
        >>> e.accuracy, e.confusion.tolist(), round(e.macro["f1"], 3)
        (0.75, [[1, 1], [0, 2]], 0.733)
    """
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    n = len(classes)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or not len(y_true):
        raise ValueError(f"need two equal, non-empty 1-D label arrays, got {y_true.shape} and {y_pred.shape}")
    if min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= n:
        raise ValueError(f"class indices must be in [0, {n})")
    confusion = np.zeros((n, n), np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    hits = np.diag(confusion).astype(np.float64)
    predicted, present = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros(n), where=predicted > 0)
    recall = np.divide(hits, present, out=np.zeros(n), where=present > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros(n), where=both > 0)
    return Evaluation(tuple(classes), confusion, float(hits.sum() / len(y_true)), precision, recall, f1)


def plot_history(history: Mapping[str, Sequence[float]], path: Path) -> Path:
    """Loss and accuracy per epoch, training against validation, as a PNG.

    Raises:
        TrainingError: matplotlib is not installed.
    """
    fig = _figure((10, 4))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            if key in history:
                values = list(history[key])
                ax.plot(range(1, len(values) + 1), values, style, marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_confusion(evaluation: Evaluation, path: Path) -> Path:
    """The confusion matrix with counts in each cell, as a PNG.

    Raises:
        TrainingError: matplotlib is not installed.
    """
    n = len(evaluation.classes)
    side = max(4.0, 0.5 * n + 2)
    fig = _figure((side, side))
    ax = fig.subplots()
    matrix = evaluation.confusion
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), evaluation.classes, rotation=90 if n > 10 else 0)
    ax.set_yticks(range(n), evaluation.classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"test accuracy {evaluation.accuracy:.3f}")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, col), count in np.ndenumerate(matrix):
        if count:
            colour = "white" if count > threshold else "black"
            ax.text(col, row, str(count), ha="center", va="center", color=colour, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _figure(size: tuple[float, float]) -> Any:
    """A figure not registered with pyplot: no global backend state, nothing to close."""
    figure = _deps.require("matplotlib.figure")
    return figure.Figure(figsize=size)
