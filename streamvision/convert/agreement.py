"""How far an INT8 detector agrees with its float original on real frames, and how much faster it runs.

Agreement is box against box: per frame and class, each float box (best score first) takes the
best-overlapping INT8 box of its class not yet taken, if their IoU reaches the bar. Recall is the
share of float boxes found again, precision the share of INT8 boxes that match a float box.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from streamvision.errors import SourceError
from streamvision.frame import Detections
from streamvision.runtime.manifest import MANIFEST_NAME, ModelSpec, sha256_of
from streamvision.runtime.nms import box_iou
from streamvision.runtime.preprocess import to_tensor

if TYPE_CHECKING:
    from streamvision.stages.objects import ObjectDetector


@dataclass(frozen=True)
class ClipPlan:
    """Which frames of a clip calibrate and which judge: the first ones calibrate, the later ones are
    held out, both spread evenly over the clip."""

    path: Path
    total: int
    calibration: tuple[int, ...]
    evaluation: tuple[int, ...]


@dataclass(frozen=True)
class Agreement:
    """Box agreement of a candidate detector with a reference detector over some frames."""

    frames: int
    reference_boxes: int
    candidate_boxes: int
    matched: int

    @property
    def recall(self) -> float:
        """Share of the reference boxes the candidate finds (1.0 when there are none)."""
        return self.matched / self.reference_boxes if self.reference_boxes else 1.0

    @property
    def precision(self) -> float:
        """Share of the candidate's boxes that match a reference box (1.0 when there are none)."""
        return self.matched / self.candidate_boxes if self.candidate_boxes else 1.0

    def __add__(self, other: Agreement) -> Agreement:
        return Agreement(
            self.frames + other.frames,
            self.reference_boxes + other.reference_boxes,
            self.candidate_boxes + other.candidate_boxes,
            self.matched + other.matched,
        )

    def as_dict(self) -> dict[str, float | int]:
        return {
            "recall": round(self.recall, 4),
            "precision": round(self.precision, 4),
            "frames": self.frames,
            "float_boxes": self.reference_boxes,
            "int8_boxes": self.candidate_boxes,
            "matched": self.matched,
        }


NO_AGREEMENT = Agreement(0, 0, 0, 0)


def matched_boxes(reference: Detections, candidate: Detections, iou: float = 0.5) -> int:
    """How many reference boxes find a candidate box of their class with IoU >= ``iou``, each
    candidate box matching at most once (reference boxes in descending score order).

    Example:
        >>> box = np.array([[0, 0, 10, 10]], np.float32)
        >>> one = Detections(box, np.array([0.9], np.float32), np.array([1]), np.array(["a"]))
        >>> shifted = Detections(box + 4, np.array([0.8], np.float32), np.array([1]), np.array(["a"]))
        >>> matched_boxes(one, one), matched_boxes(one, shifted)
        (1, 0)
    """
    matched = 0
    for class_id in np.unique(reference.class_id):
        theirs = candidate.xyxy[candidate.class_id == class_id]
        if not len(theirs):
            continue
        free = np.ones(len(theirs), bool)
        ours = reference.class_id == class_id
        for box in reference.xyxy[ours][np.argsort(-reference.confidence[ours], kind="stable")]:
            overlaps = np.where(free, box_iou(box, theirs), -1.0)
            best = int(np.argmax(overlaps))
            if overlaps[best] >= iou:
                free[best] = False
                matched += 1
    return matched


def agreement(
    reference: Sequence[Detections], candidate: Sequence[Detections], threshold: float, iou: float = 0.5
) -> Agreement:
    """Agreement over frames, counting only boxes scored at least ``threshold`` on both sides.

    Raises:
        ValueError: the two sequences cover different numbers of frames.
    """
    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} reference frames against {len(candidate)} candidate frames")
    total = NO_AGREEMENT
    for ref, cand in zip(reference, candidate, strict=True):
        ref, cand = ref[ref.confidence >= threshold], cand[cand.confidence >= threshold]
        total += Agreement(1, len(ref), len(cand), matched_boxes(ref, cand, iou))
    return total


def plan_clip(clip: str, calibration: int, evaluation: int) -> ClipPlan:
    """Counts a clip's frames and picks ``calibration`` frames from its first part and ``evaluation``
    held-out frames after them, evenly spaced.

    Args:
        clip: a video file or a bundled ``sample:NAME``.
        calibration: frames to calibrate on (at least 1).
        evaluation: frames to judge on (at least 1).

    Raises:
        SourceError: the clip is missing, unreadable, or has fewer frames than asked for.
    """
    from streamvision.samples import resolve

    path = Path(resolve(clip))
    total = count_frames(path)
    wanted = calibration + evaluation
    if total < wanted:
        raise SourceError(
            f"{clip} has {total} frames: too short for {calibration} calibration + {evaluation} "
            f"evaluation frames (--frames + --eval-frames = {wanted})"
        )
    picks = [int(i) for i in np.linspace(0, total - 1, wanted).round()]
    return ClipPlan(path, total, tuple(picks[:calibration]), tuple(picks[calibration:]))


def count_frames(path: Path) -> int:
    """Frames in a video file: the container's count, or a full decode when it has none.

    Raises:
        SourceError: missing, empty, unreadable, or not a video.
    """
    from streamvision.sources.video import VideoSource

    source = VideoSource(str(path), path.stem)
    try:
        if source.total_frames:
            return source.total_frames
        count = 0
        while source.read() is not None:
            count += 1
        return count
    finally:
        source.close()


def spread(total: int, count: int) -> tuple[int, ...]:
    """``count`` frame indices evenly spread over ``total`` frames (all of them when fewer)."""
    return tuple(int(i) for i in np.unique(np.linspace(0, total - 1, min(count, total)).round()))


def read_frames(path: Path, indices: Sequence[int]) -> Iterator[np.ndarray]:
    """Decodes ``path`` once and yields the BGR frames at ``indices`` (ascending), as a pipeline's
    video source decodes them.

    Raises:
        SourceError: the file cannot be opened or read.
    """
    from streamvision.sources.video import VideoSource

    wanted = set(indices)
    source = VideoSource(str(path), path.stem)
    try:
        index = 0
        while wanted and (item := source.read()) is not None:
            if index in wanted:
                wanted.discard(index)
                image = item[0]
                yield image if isinstance(image, np.ndarray) else image()
            index += 1
    finally:
        source.close()


def median_ms_pair(
    first: Callable[[], object], second: Callable[[], object], runs: int = 30
) -> tuple[float, float]:
    """Median ms per call of two callables, timed alternately so that load from elsewhere on the
    machine weighs on both alike; two warm-up calls each.

    Raises:
        ValueError: ``runs`` below 1.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    for _ in range(2):
        first()
        second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for call, samples in zip((first, second), times, strict=True):
            start = time.perf_counter()
            call()
            samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times[0]), statistics.median(times[1])


def stage_detector(
    model: Path, spec: ModelSpec, threshold: float, threads: int, folder: Path
) -> ObjectDetector:
    """The object-detection stage running ``model`` as if it were ``spec``'s model: same letterbox,
    normalisation, decoder, NMS and mapping back to the frame, through a one-entry manifest written
    to ``folder``.

    Raises:
        ModelError: ONNX Runtime cannot load ``model`` or it does not fit the decoder.
    """
    from streamvision.runtime.manifest import ModelRegistry
    from streamvision.runtime.session import ThreadBudget
    from streamvision.stages.base import StageContext
    from streamvision.stages.objects import ObjectDetectionConfig, ObjectDetector

    folder.mkdir(parents=True, exist_ok=True)
    entry = {**spec.model_dump(mode="json"), "file": str(model.resolve()), "sha256": sha256_of(model)}
    (folder / MANIFEST_NAME).write_text(yaml.safe_dump({"models": {"model": entry}}))
    registry = ModelRegistry(folder)
    config = ObjectDetectionConfig(model="model", models=folder, score_threshold=threshold)
    return ObjectDetector(config, StageContext(models=registry, budget=ThreadBudget(total=threads)))


def judge(
    reference: ObjectDetector,
    candidate: ObjectDetector,
    path: Path,
    indices: Sequence[int],
    thresholds: Sequence[float],
    iou: float,
) -> dict[float, Agreement]:
    """Agreement of ``candidate`` with ``reference`` on the frames ``indices`` of ``path``, at each
    score threshold (both detectors must score down to the lowest).

    Raises:
        SourceError: the clip cannot be read.
    """
    pairs = [(reference.detect(frame), candidate.detect(frame)) for frame in read_frames(path, indices)]
    references, candidates = [p[0] for p in pairs], [p[1] for p in pairs]
    return {t: agreement(references, candidates, t, iou) for t in thresholds}


def time_models(
    first: Path, second: Path, spec: ModelSpec, image: np.ndarray, threads: int, runs: int
) -> tuple[float, float]:
    """Median ms per inference of two models on the same input tensor (``image`` at the input size),
    alternately, each in the runtime's own session settings with ``threads`` intra-op threads.

    Raises:
        ModelError: ONNX Runtime cannot load a model.
    """
    from streamvision.runtime.session import OnnxModel

    feed = {spec.input.name: to_tensor([image], spec.input)}
    a, b = OnnxModel(first, threads=threads), OnnxModel(second, threads=threads)
    return median_ms_pair(lambda: a.run(feed), lambda: b.run(feed), runs)
