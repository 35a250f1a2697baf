"""The frame that travels through a pipeline and the result types stages attach to it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from streamvision.render.effects import MaskEffect


@dataclass(frozen=True)
class Detections:
    """Boxes found in one frame, as parallel arrays (one row per detection).

    Attributes:
        xyxy: (N, 4) float32 boxes as x1, y1, x2, y2 in frame pixels.
        confidence: (N,) float32 scores in [0, 1].
        class_id: (N,) int32 indices into the model's labels.
        class_name: (N,) str labels.
        keypoints: optional (N, K, 2) float32 points in frame pixels.
        tracker_id: optional (N,) int track ids (set by a tracking stage; -1 for an untracked box).

    Raises:
        ValueError: when the arrays do not share the same first dimension or have the wrong shape.

    Example:
        >>> d = Detections.empty()
        >>> len(d)
        0
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    class_name: np.ndarray
    keypoints: np.ndarray | None = None
    tracker_id: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.shape != (n, 4):
            raise ValueError(f"xyxy must have shape (N, 4), got {self.xyxy.shape}")
        for name in ("confidence", "class_id", "class_name"):
            shape = getattr(self, name).shape
            if shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {shape}")
        if self.keypoints is not None and (
            self.keypoints.ndim != 3 or self.keypoints.shape[0] != n or self.keypoints.shape[2] != 2
        ):
            raise ValueError(f"keypoints must have shape ({n}, K, 2), got {self.keypoints.shape}")
        if self.tracker_id is not None and self.tracker_id.shape != (n,):
            raise ValueError(f"tracker_id must have shape ({n},), got {self.tracker_id.shape}")

    @classmethod
    def empty(cls) -> Detections:
        """Returns a container with no detections."""
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            confidence=np.zeros(0, np.float32),
            class_id=np.zeros(0, np.int32),
            class_name=np.zeros(0, dtype="<U1"),
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | slice) -> Detections:
        """Selects rows by boolean mask, index array or slice; returns a new instance."""
        return Detections(
            xyxy=self.xyxy[index],
            confidence=self.confidence[index],
            class_id=self.class_id[index],
            class_name=self.class_name[index],
            keypoints=None if self.keypoints is None else self.keypoints[index],
            tracker_id=None if self.tracker_id is None else self.tracker_id[index],
        )

    def to_records(self) -> list[dict[str, Any]]:
        """Returns one JSON-ready dict per detection (box, score, label, keypoints, track id)."""
        records = []
        for i in range(len(self)):
            record: dict[str, Any] = {
                "label": str(self.class_name[i]),
                "class_id": int(self.class_id[i]),
                "score": round(float(self.confidence[i]), 4),
                "box": [round(float(v), 1) for v in self.xyxy[i]],
            }
            if self.tracker_id is not None:
                record["track_id"] = int(self.tracker_id[i])
            if self.keypoints is not None:
                record["keypoints"] = [[round(float(x), 1), round(float(y), 1)] for x, y in self.keypoints[i]]
            records.append(record)
        return records


def detection_ref(row: Any) -> int | None:
    """The detection row a label, estimate or pose refers to, for events: None for the whole frame (-1)."""
    index = int(row)
    return None if index < 0 else index


@dataclass(frozen=True)
class Estimates:
    """Numbers a regression model read off whole frames or detections (an age in years, ...).

    Attributes:
        detection: (N,) int32 row of each estimated detection in the results named ``on``; -1 for
            the whole frame.
        value: (N,) float32 the estimates.
        name: what is estimated (the model's single label, e.g. ``age``).
        on: result key of the detections the rows refer to; None for whole-frame estimates.

    Raises:
        ValueError: ``detection`` and ``value`` differ in shape or are not 1-D.
    """

    detection: np.ndarray
    value: np.ndarray
    name: str
    on: str | None = None

    def __post_init__(self) -> None:
        if self.detection.ndim != 1 or self.value.shape != self.detection.shape:
            raise ValueError(
                f"detection and value must be (N,), got {self.detection.shape}, {self.value.shape}"
            )

    def __len__(self) -> int:
        return len(self.detection)

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per row: the detection it belongs to, the name and the value."""
        return [
            {
                "on": self.on,
                "detection": detection_ref(d),
                "name": self.name,
                "value": round(float(v), 2),
            }
            for d, v in zip(self.detection, self.value, strict=True)
        ]


@dataclass(frozen=True)
class Labels:
    """What a classifier said about whole frames or detections, as parallel arrays (one row each).

    Attributes:
        detection: (N,) int32 row of each labelled detection in the results named ``on``; -1 when
            the row describes the whole frame.
        class_id: (N,) int32 best class.
        class_name: (N,) str best label.
        score: (N,) float32 probability of the best class.
        top_k_id: (N, K) int32 the K best classes, best first (column 0 is ``class_id``).
        top_k_score: (N, K) float32 their probabilities.
        top_k_name: (N, K) str their labels.
        on: result key of the detections the rows refer to; None for whole-frame labels.

    Raises:
        ValueError: when the arrays do not share the same first dimension or have the wrong shape.

    Example:
        >>> labels = Labels.empty(on="face_detection")
        >>> len(labels), labels.on
        (0, 'face_detection')
    """

    detection: np.ndarray
    class_id: np.ndarray
    class_name: np.ndarray
    score: np.ndarray
    top_k_id: np.ndarray
    top_k_score: np.ndarray
    top_k_name: np.ndarray
    on: str | None = None

    def __post_init__(self) -> None:
        n = len(self.detection)
        for name in ("detection", "class_id", "class_name", "score"):
            shape = getattr(self, name).shape
            if shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {shape}")
        k = self.top_k_id.shape[1] if self.top_k_id.ndim == 2 else -1
        for name in ("top_k_id", "top_k_score", "top_k_name"):
            shape = getattr(self, name).shape
            if len(shape) != 2 or shape != (n, k):
                raise ValueError(f"{name} must have shape ({n}, K) like top_k_id, got {shape}")

    @classmethod
    def empty(cls, on: str | None = None, k: int = 1) -> Labels:
        """Returns a container with no rows (``k`` columns of top-k)."""
        return cls(
            detection=np.zeros(0, np.int32),
            class_id=np.zeros(0, np.int32),
            class_name=np.zeros(0, dtype="<U1"),
            score=np.zeros(0, np.float32),
            top_k_id=np.zeros((0, k), np.int32),
            top_k_score=np.zeros((0, k), np.float32),
            top_k_name=np.zeros((0, k), dtype="<U1"),
            on=on,
        )

    @classmethod
    def from_top_k(
        cls, detection: np.ndarray, ids: np.ndarray, scores: np.ndarray, names: np.ndarray, on: str | None
    ) -> Labels:
        """Builds labels from (N, K) top-k ids, scores and names, best first; column 0 is each row's label."""
        return cls(
            detection=detection.astype(np.int32),
            class_id=ids[:, 0],
            class_name=names[:, 0],
            score=scores[:, 0],
            top_k_id=ids,
            top_k_score=scores,
            top_k_name=names,
            on=on,
        )

    def __len__(self) -> int:
        return len(self.detection)

    def for_detection(self, index: int) -> Labels:
        """The rows that describe detection ``index`` (-1: the whole frame); a new instance."""
        mask = self.detection == index
        return replace(
            self,
            detection=self.detection[mask],
            class_id=self.class_id[mask],
            class_name=self.class_name[mask],
            score=self.score[mask],
            top_k_id=self.top_k_id[mask],
            top_k_score=self.top_k_score[mask],
            top_k_name=self.top_k_name[mask],
        )

    def to_records(self) -> list[dict[str, Any]]:
        """Returns one JSON-ready dict per row: the detection it belongs to, label, score, top-k."""
        records = []
        for i in range(len(self)):
            records.append(
                {
                    "on": self.on,
                    "detection": detection_ref(self.detection[i]),
                    "label": str(self.class_name[i]),
                    "class_id": int(self.class_id[i]),
                    "score": round(float(self.score[i]), 4),
                    "top_k": [
                        {"label": str(name), "class_id": int(cid), "score": round(float(p), 4)}
                        for cid, name, p in zip(
                            self.top_k_id[i], self.top_k_name[i], self.top_k_score[i], strict=True
                        )
                    ],
                }
            )
        return records


@dataclass(frozen=True)
class Frame:
    """One decoded image and everything known about it.

    Attributes:
        image: BGR uint8 array of shape (H, W, 3).
        source_id: which source produced it.
        index: position in its source, from 0.
        pts: presentation timestamp in seconds, when the source has one.
        capture_time: ``time.monotonic()`` when the frame was read.
        results: stage name -> result; stages add entries with :meth:`with_result`.
    """

    image: np.ndarray
    source_id: str
    index: int
    pts: float | None
    capture_time: float
    results: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def with_result(self, stage_name: str, result: Any) -> Frame:
        """Returns a new frame with ``result`` attached under ``stage_name``."""
        return replace(self, results=MappingProxyType({**self.results, stage_name: result}))


@dataclass(frozen=True)
class RegionCount:
    """The counts of one zone (a polygon) or counting line, per class label.

    Attributes:
        name: the region's name in the config.
        kind: ``zone`` or ``line``.
        points: (K, 2) float32 polygon vertices (zone) or start and end point (line), frame pixels.
        inside: objects inside the zone now, per label (always empty for a line).
        entered: tracks that went into the zone, or crossed the line to its right as seen walking
            from start to end on screen, since the run started; per label.
        exited: tracks that left the zone, or crossed the line to its left; per label.
    """

    name: str
    kind: str
    points: np.ndarray
    inside: Mapping[str, int]
    entered: Mapping[str, int]
    exited: Mapping[str, int]

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict: name, kind, and the counts per label (with a total under ``all``)."""

        def with_total(counts: Mapping[str, int]) -> dict[str, int]:
            return {**dict(sorted(counts.items())), "all": sum(counts.values())}

        record: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "zone":
            record["inside"] = with_total(self.inside)
        record["in"] = with_total(self.entered)
        record["out"] = with_total(self.exited)
        return record


@dataclass(frozen=True)
class ZoneCounts:
    """Every zone's and line's counts on one frame (see :class:`RegionCount`).

    Example:
        >>> ZoneCounts(()).to_records()
        []
    """

    regions: tuple[RegionCount, ...]

    def __len__(self) -> int:
        return len(self.regions)

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per region."""
        return [region.to_record() for region in self.regions]


@dataclass(frozen=True)
class Mask:
    """A soft segmentation mask of one frame (one class, usually ``person``).

    Attributes:
        mask: (H, W) float32 in 0..1, in frame pixels: how sure the model is that each pixel
            belongs to ``label``.
        label: the segmented class.
        threshold: pixels at or above it count as ``label`` (:meth:`binary`).
        effect: what the annotator does with the mask on the output picture (see
            :mod:`streamvision.render.effects`); None draws nothing.

    Raises:
        ValueError: the mask is not a 2-D float32 array.

    Example:
        >>> m = Mask(np.ones((2, 4), np.float32))
        >>> m.to_records()
        [{'label': 'person', 'area': 1.0, 'box': [0, 0, 4, 2]}]
    """

    mask: np.ndarray
    label: str = "person"
    threshold: float = 0.5
    effect: MaskEffect | None = None

    def __post_init__(self) -> None:
        if self.mask.ndim != 2 or self.mask.dtype != np.float32:
            raise ValueError(f"mask must be a 2-D float32 array, got {self.mask.dtype} {self.mask.shape}")

    def binary(self) -> np.ndarray:
        """(H, W) bool: the pixels of ``label``."""
        return self.mask >= self.threshold

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict: the label, the fraction of the frame it covers, and its bounding box
        (x1, y1, x2, y2 in frame pixels; absent when the mask is empty)."""
        binary = self.binary()
        record: dict[str, Any] = {"label": self.label, "area": round(float(binary.mean()), 4)}
        ys, xs = np.nonzero(binary)
        if len(xs):
            record["box"] = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
        return [record]


@dataclass(frozen=True)
class Poses:
    """Body keypoints of one or more people, as parallel arrays (one row per person).

    Attributes:
        points: (N, K, 2) float32 x, y in frame pixels.
        scores: (N, K) float32 confidence of each point, 0..1.
        names: the K keypoint names.
        edges: pairs of keypoint indices that form the skeleton.
        detection: (N,) int32 row of each pose in the detections named ``on``; -1 for a pose found
            on the whole frame.
        on: result key of the detections the poses belong to; None for whole-frame poses.

    Raises:
        ValueError: the arrays disagree in shape.
    """

    points: np.ndarray
    scores: np.ndarray
    names: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    detection: np.ndarray
    on: str | None = None

    def __post_init__(self) -> None:
        n, k = len(self.points), len(self.names)
        if self.points.shape != (n, k, 2):
            raise ValueError(f"points must have shape (N, {k}, 2), got {self.points.shape}")
        if self.scores.shape != (n, k):
            raise ValueError(f"scores must have shape ({n}, {k}), got {self.scores.shape}")
        if self.detection.shape != (n,):
            raise ValueError(f"detection must have shape ({n},), got {self.detection.shape}")
        if any(not (0 <= a < k and 0 <= b < k) for a, b in self.edges):
            raise ValueError(f"edges must index the {k} keypoints")

    def __len__(self) -> int:
        return len(self.points)

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per pose: the detection it belongs to and each named point with its score."""
        records = []
        for i in range(len(self)):
            records.append(
                {
                    "on": self.on,
                    "detection": detection_ref(self.detection[i]),
                    "keypoints": {
                        name: [
                            round(float(self.points[i, j, 0]), 1),
                            round(float(self.points[i, j, 1]), 1),
                            round(float(self.scores[i, j]), 3),
                        ]
                        for j, name in enumerate(self.names)
                    },
                }
            )
        return records
