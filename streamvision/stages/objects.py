"""Object detection with any detector in the manifest; a decoder per model family reads its output."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from streamvision.decoders.boxes import DecodeParams
from streamvision.decoders.detection import DETECTION_DECODERS, detection_decoder
from streamvision.errors import ConfigError, ModelError, describe
from streamvision.frame import Detections, Frame
from streamvision.runtime.manifest import ModelRegistry
from streamvision.runtime.nms import batched_nms
from streamvision.runtime.preprocess import letterbox, to_tensor
from streamvision.runtime.session import OnnxModel
from streamvision.stages.base import StageConfig, StageContext
from streamvision.stages.cadence import DetectClock
from streamvision.stages.motion import MotionConfig, MotionDetector
from streamvision.stages.regions import contained, plan_regions, repeats, touching

REGION_OBJECT_SCORE = 0.4
"""A known object at least this confident (the track stage's default for starting a track) that
motion touches gets a region that covers it whole; weaker boxes, often spurious and huge, would
only grow regions into a whole-frame run."""

_INTERVAL_EPSILON = 1e-6
"""Seconds: a forced whole-frame run due at 5.0 s is not missed by a timestamp of 4.9999999."""


class ObjectDetectionConfig(StageConfig):
    """``type: object_detection``."""

    type: Literal["object_detection"] = "object_detection"
    model: str = "nanodet"
    """A model name from the manifest (``nanodet`` and ``centernet`` detect the 80 COCO classes)."""
    models: Path | None = None
    """Folder of another manifest that holds ``model`` (your own detectors); the project's
    ``models/`` by default."""
    decoder: str | None = None
    """How to read the model's output (centernet, nanodet, yolov5, yolov8, yolo11, ssd); the
    manifest entry's ``decoder`` by default. Set it for a model whose entry names another."""
    classes: tuple[str, ...] | None = None
    """Keep only these labels (all of the model's labels by default)."""
    score_threshold: float = Field(0.3, gt=0.0, lt=1.0)
    iou_threshold: float = Field(0.45, gt=0.0, le=1.0)
    """Class-aware NMS: a box overlapping a better box of its class by more than this is dropped."""
    max_detections: int = Field(100, ge=1, le=10000)
    every: int = Field(1, ge=1, le=1000)
    """Run the detector on every Nth frame; a ``track`` stage after it carries the objects between runs."""
    detect_fps: float | None = Field(None, gt=0.0, le=1000.0)
    """Run the detector this many times per second of the source's time (timestamps; capture time
    for a live source), so a 25 fps and a 10 fps camera are treated alike; a ``track`` stage after
    it carries the objects between runs. Above the source's frame rate it is an error."""
    motion: MotionConfig | None = None
    """Run the detector only where something moves, and not at all while nothing does (``motion:
    {}`` or ``motion: true`` for the defaults; see :class:`MotionConfig`)."""
    pad_value: int = Field(0, ge=0, le=255)
    """Grey level of the letterbox padding (114 for Ultralytics YOLO exports)."""

    model_sessions: ClassVar[int] = 1

    @property
    def skipping(self) -> str | None:
        """The setting that makes the detector leave frames without detections (``every: 3``,
        ``detect_fps: 5``), or None. Motion gating leaves none: it repeats the last boxes."""
        if self.detect_fps is not None:
            return f"detect_fps: {self.detect_fps:g}"
        return f"every: {self.every}" if self.every > 1 else None

    @field_validator("motion", mode="before")
    @classmethod
    def _motion_switch(cls, value: Any) -> Any:
        if value is True:
            return {}
        return None if value is False else value

    @model_validator(mode="after")
    def _one_cadence(self) -> ObjectDetectionConfig:
        if self.detect_fps is not None and self.every > 1:
            raise ValueError("give every or detect_fps, not both")
        return self

    @field_validator("decoder")
    @classmethod
    def _known_decoder(cls, value: str | None) -> str | None:
        if value is not None and value not in DETECTION_DECODERS:
            raise ValueError(f"unknown decoder {value!r}; valid: {', '.join(sorted(DETECTION_DECODERS))}")
        return value


@dataclass
class DetectionCounters:
    """What an object detection stage did with the frames it saw (for benchmarks and reports)."""

    frames: int = 0
    skipped_frames: int = 0
    """Frames not due (``every``, ``detect_fps``): no detections attached."""
    still_frames: int = 0
    """Due frames on which nothing moved (``motion``): the last detections attached, no run."""
    full_frame_runs: int = 0
    region_frames: int = 0
    """Frames the detector looked at in regions only."""
    region_runs: int = 0

    @property
    def runs(self) -> int:
        """Detector runs (model inferences): whole frames plus regions."""
        return self.full_frame_runs + self.region_runs

    @property
    def regions_per_frame(self) -> float:
        """Regions per frame the detector looked at in regions (0 when there was none)."""
        return self.region_runs / self.region_frames if self.region_frames else 0.0

    def as_dict(self) -> dict[str, int]:
        """The counts and the runs, for a run's summary."""
        return {**asdict(self), "runs": self.runs}


class ObjectDetector:
    """Finds objects; attaches :class:`Detections` in frame pixels, labelled from the manifest.

    On frames it skips (``every`` > 1, ``detect_fps``) it attaches nothing, so a later ``track``
    stage knows the detector did not run and carries its tracks forward.

    With ``motion``, the frames it does not skip are compared with a running background: where
    something moves, the detector runs on square regions around it (and around the known objects it
    touches) at more pixels than a whole-frame run gives them; the known objects elsewhere are kept
    as they were. When nothing moves it does not run and attaches the last detections again. It
    runs on the whole frame at the start, after a scene change, when the regions would cover most
    of the frame, and every ``full_frame_interval`` seconds.

    Raises:
        ModelError: the model is missing or invalid, its decoder is not a detection decoder, or the
            model does not fit its decoder or manifest.
        ConfigError: ``classes`` names a label the model does not have; at :meth:`process`,
            ``detect_fps`` is above the source's frame rate.
    """

    def __init__(self, config: ObjectDetectionConfig, context: StageContext) -> None:
        registry = ModelRegistry(config.models) if config.models is not None else context.models
        spec = registry.get(config.model)
        decoder_name = config.decoder or spec.decoder
        if decoder_name not in DETECTION_DECODERS:
            raise ModelError(
                f"model {config.model!r} has decoder {decoder_name!r}; object_detection needs one of "
                f"{', '.join(sorted(DETECTION_DECODERS))} (or set the stage's decoder option)"
            )
        if not spec.labels:
            raise ModelError(f"model {config.model!r} has no labels in its manifest")
        self._labels = np.asarray(spec.labels)
        class_ids = None
        if config.classes is not None:
            unknown = [name for name in config.classes if name not in spec.labels]
            if unknown:
                raise ConfigError(
                    f"{config.result_key}.classes: {', '.join(map(repr, unknown))} not labels of model "
                    f"{config.model!r}; its labels: {', '.join(spec.labels)}"
                )
            class_ids = frozenset(i for i, label in enumerate(spec.labels) if label in config.classes)
        self.name = config.result_key
        self.counters = DetectionCounters()
        self._config = config
        self._spec = spec
        self._decode = detection_decoder(decoder_name)
        self._params = DecodeParams(
            score_threshold=config.score_threshold,
            iou_threshold=config.iou_threshold,
            max_detections=config.max_detections,
            classes=class_ids,
        )
        self._model: OnnxModel = context.load_model(config.model, registry, config.batch)
        self._clock = DetectClock(self.name, config.every, config.detect_fps, context.live_source)
        self._motion = None if config.motion is None else MotionDetector(config.motion)
        self._known: Detections | None = None
        """The last detections, for motion gating."""
        self._last_full = 0.0
        self.regions = np.zeros((0, 4), np.int32)
        """The windows (x1, y1, x2, y2) the detector ran on for the latest frame; none when it ran on
        the whole frame or not at all (see :attr:`counters`)."""
        self._check_fit(decoder_name)

    @property
    def runs(self) -> int:
        """Detector runs (model inferences): whole frames plus regions."""
        return self.counters.runs

    def _check_fit(self, decoder_name: str) -> None:
        """Runs the model once on a blank input, so a model that does not fit its manifest (input name,
        size) or its decoder fails here, with its name, instead of at the first frame.

        Raises:
            ModelError: the model cannot run on its manifest's input, or the decoder cannot read it.
        """
        width, height = self._spec.input.size
        try:
            self.detect(np.zeros((height, width, 3), np.uint8))
        except Exception as exc:
            raise ModelError(
                f"model {self._config.model!r} does not fit decoder {decoder_name!r} or its manifest: "
                f"{describe(exc)}"
            ) from exc

    def process(self, frame: Frame) -> Frame:
        self.counters.frames += 1
        self.regions = np.zeros((0, 4), np.int32)
        if not self._clock.due(frame):
            self.counters.skipped_frames += 1
            return frame
        if self._motion is None or self._config.motion is None:
            self.counters.full_frame_runs += 1
            return frame.with_result(self.name, self.detect(frame.image))
        return frame.with_result(self.name, self._gated(frame, self._motion, self._config.motion))

    def _gated(self, frame: Frame, detector: MotionDetector, settings: MotionConfig) -> Detections:
        """The detections of a due frame under motion gating (see the class docstring)."""
        now = self._clock.time(frame)
        motion = detector.update(frame.image, now)
        known = self._known
        since_full = now - self._last_full
        height, width = frame.image.shape[:2]
        if (
            known is None
            or motion.scene_change
            or not 0 <= since_full < settings.full_frame_interval - _INTERVAL_EPSILON
        ):
            return self._full_frame(frame.image, now)
        size = (width, height)
        sure = known.xyxy[known.confidence >= REGION_OBJECT_SCORE]
        plan = plan_regions(motion.boxes, sure, size, settings.region_size, settings.max_regions)
        if plan.full_frame:
            return self._full_frame(frame.image, now)
        if not len(plan.windows):
            self.counters.still_frames += 1
            return known
        self.counters.region_frames += 1
        self.counters.region_runs += len(plan.windows)
        self.regions = plan.windows
        fresh = self.detect_regions(frame.image, plan.windows)
        # Known objects that moved or that a window holds whole were looked at again: the fresh
        # boxes stand for them. The rest stayed where they were.
        looked_at = touching(known.xyxy, motion.boxes) | contained(known.xyxy, plan.windows)
        kept = known[~looked_at]
        cut = repeats(
            fresh.xyxy,
            fresh.class_id,
            kept.xyxy,
            kept.class_id,
            plan.windows,
            size,
            self._config.iou_threshold,
        )
        self._known = _joined([fresh[~cut], kept])
        return self._known

    def _full_frame(self, image: np.ndarray, now: float) -> Detections:
        self.counters.full_frame_runs += 1
        self._last_full = now
        self._known = self.detect(image)
        return self._known

    def detect_regions(self, image: np.ndarray, windows: np.ndarray) -> Detections:
        """Runs the detector on each window of one BGR image (a crop letterboxed to the model input)
        and returns the detections in image pixels, the duplicates of overlapping windows removed
        with class-aware NMS.

        Args:
            image: (H, W, 3) BGR.
            windows: (K, 4) integer x1, y1, x2, y2 crops inside the image.

        Raises:
            ValueError: the model's output does not match its decoder's tensor contract.
        """
        parts = []
        for x1, y1, x2, y2 in np.asarray(windows, np.int64).tolist():
            found = self.detect(image[y1:y2, x1:x2])
            shift = np.array([x1, y1, x1, y1], np.float32)
            parts.append(Detections(found.xyxy + shift, found.confidence, found.class_id, found.class_name))
        joined = _joined(parts)
        keep = batched_nms(
            joined.xyxy,
            joined.confidence,
            joined.class_id,
            self._config.iou_threshold,
            self._config.max_detections,
        )
        return joined[keep]

    def detect(self, image: np.ndarray) -> Detections:
        """Runs the detector on one BGR image and returns its detections in image pixels.

        Raises:
            ValueError: the model's output does not match its decoder's tensor contract.
        """
        spec = self._spec
        boxed, transform = letterbox(image, spec.input.size, fill=self._config.pad_value)
        outputs = self._model.run({spec.input.name: to_tensor([boxed], spec.input)}, list(spec.outputs))
        found = self._decode(outputs, spec.input.size, self._params)
        height, width = image.shape[:2]
        xyxy = np.clip(transform.boxes_to_frame(found.xyxy), 0, [width, height, width, height])
        visible = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        class_ids = found.class_ids[visible]
        return Detections(
            xyxy=xyxy[visible].astype(np.float32),
            confidence=found.scores[visible],
            class_id=class_ids,
            class_name=self._label_names(class_ids),
        )

    def _label_names(self, class_ids: np.ndarray) -> np.ndarray:
        # A user model may emit ids past its label list; name those by number rather than fail.
        known = (class_ids >= 0) & (class_ids < len(self._labels))
        names = [str(self._labels[c]) if ok else f"class {c}" for c, ok in zip(class_ids, known, strict=True)]
        return np.asarray(names) if names else np.zeros(0, dtype="<U1")


def _joined(parts: list[Detections]) -> Detections:
    """The rows of several detections without keypoints or track ids, in order."""
    parts = [part for part in parts if len(part)]
    if not parts:
        return Detections.empty()
    return Detections(
        xyxy=np.concatenate([p.xyxy for p in parts]),
        confidence=np.concatenate([p.confidence for p in parts]),
        class_id=np.concatenate([p.class_id for p in parts]),
        class_name=np.concatenate([p.class_name for p in parts]),
    )
