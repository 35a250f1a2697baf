"""The one place streamvision's :class:`Detections` meet ``supervision.Detections``.

supervision (and roboflow's ``trackers``, which builds on it) is imported lazily, when a
``track`` or ``zones`` stage is built, so ``import streamvision`` stays fast.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamvision import optional
from streamvision.errors import ConfigError
from streamvision.frame import Detections


def require(package: str, stage: str) -> None:
    """Imports ``package`` (``supervision`` or ``trackers``) so a missing one fails when the stage is built.

    Raises:
        ConfigError: the package is not installed; the message says how to install it.
    """
    optional.require(package, f"the {stage} stage", f"pip install {package}", ConfigError)


ROW_KEY = "streamvision_row"
"""Name of the per-detection ``data`` array that remembers each box's row in the input."""


def to_supervision(detections: Detections) -> Any:
    """A ``supervision.Detections`` with the same boxes, scores, classes and track ids.

    Each box's row in ``detections`` is kept in ``data[ROW_KEY]``, so results that come back
    reordered or filtered (as a tracker's do) can be mapped to the input rows.
    """
    import supervision as sv

    return sv.Detections(
        xyxy=detections.xyxy.astype(np.float32).reshape(-1, 4),
        confidence=detections.confidence.astype(np.float32),
        class_id=detections.class_id.astype(int),
        tracker_id=None if detections.tracker_id is None else detections.tracker_id.astype(int),
        data={ROW_KEY: np.arange(len(detections))},
    )


def rows_of(sv_detections: Any) -> np.ndarray:
    """The input rows of a result that came back from supervision or trackers.

    Raises:
        ValueError: the result lost the row numbers :func:`to_supervision` attached.
    """
    if len(sv_detections) == 0:
        return np.zeros(0, np.int64)
    rows = sv_detections.data.get(ROW_KEY)
    if rows is None:
        raise ValueError("supervision detections carry no row numbers; build them with to_supervision()")
    return np.asarray(rows, np.int64)
