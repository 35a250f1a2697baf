"""Multi-object tracking with ByteTrack (roboflow's ``trackers`` package, built on supervision)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from streamvision.errors import ConfigError
from streamvision.frame import Detections, Frame
from streamvision.stages.base import StageConfig, StageContext
from streamvision.stages.flow import BoxFlow
from streamvision.stages.sv_adapter import require, rows_of, to_supervision

# trackers measures time in frames of a 30 FPS video; timestamps of index / 30 make one frame of
# this source one tracker frame, so every setting below counts frames of the source.
_TRACKER_FPS = 30.0


class TrackConfig(StageConfig):
    """``type: track``."""

    type: Literal["track"] = "track"
    on: str = "object_detection"
    """Result key of the detection stage whose boxes get track ids (updated in place)."""
    high_threshold: float = Field(0.4, gt=0.0, le=1.0)
    """Detections at least this confident are matched first and may start tracks; less confident
    ones (down to the detector's threshold: keep that low) only extend existing tracks."""
    activation_threshold: float = Field(0.4, gt=0.0, le=1.0)
    """An unmatched detection starts a track only when it is at least this confident too
    (it has no effect below ``high_threshold``)."""
    match_iou: float = Field(0.1, gt=0.0, lt=1.0)
    """Least overlap between a track's predicted box and a detection for them to match."""
    lost_frames: int = Field(30, ge=0, le=10000)
    """Frames a track survives without a matching detection (occlusion, missed detections)."""
    min_frames: int = Field(2, ge=1, le=100)
    """Consecutive detector runs a new track needs before it gets an id."""
    class_aware: bool = True
    """Match boxes only to tracks of their own label (one ByteTrack per label, ids unique across
    labels), so a rider's track never jumps to the bicycle box under it; False: one tracker for all."""
    carry: Literal["flow", "velocity"] = "flow"
    """How tracks move on frames the detector skips (``every``, ``detect_fps``): by the optical flow
    inside each box, or on at the velocity between their last two detections (no cost; drifts on
    anything but steady motion). With ``flow`` and ``class_aware``, the followed boxes also reach
    the tracker as weak detections, which keep its motion model as close to the objects as an
    every-frame detector would, so the next detector run finds its tracks where they are. Measured
    on sample:pedestrians with detect_fps 3: recall against every-frame detection 0.96 (0.90 with
    velocity), about 0.25 ms of CPU per track and frame."""

    model_sessions: ClassVar[int] = 0


@dataclass(frozen=True)
class _Seen:
    """A confirmed track as the latest detector run saw it, with its velocity in pixels per frame."""

    box: np.ndarray
    velocity: np.ndarray
    moves: int
    index: int
    class_id: int
    class_name: str
    confidence: float


class Tracker:
    """Gives the detections of stage ``on`` stable track ids.

    The detections keep their rows and order and gain ``tracker_id`` (-1 for a box not yet part
    of a confirmed track), so results that refer to rows (labels) stay valid. On a frame where
    the detector did not run (``every`` > 1) the stage puts the confirmed tracks there instead,
    moved on at their last velocity.

    Raises:
        ConfigError: the ``trackers`` package is missing; at :meth:`process`, when the result
            under ``on`` is not detections.
    """

    def __init__(self, config: TrackConfig, context: StageContext) -> None:
        require("trackers", "track")
        self.name = config.result_key
        self._config = config
        self._on = config.on
        self._trackers: dict[int, Any] = {}
        """One ByteTrack per class id (a single one under -1 when not class aware)."""
        self._global_ids: dict[tuple[int, int], int] = {}
        self._next_id = 0
        self._lost_frames = config.lost_frames
        self._seen: dict[int, _Seen] = {}
        self._current: list[int] = []
        self._labels: dict[int, str] = {}
        """Class id -> label, as the detections named them."""
        self._flow = BoxFlow() if config.carry == "flow" else None
        self._carried = np.zeros((0, 4), np.float32)
        """The boxes of the ``_current`` tracks on the latest frame (flow moves them on from there)."""
        self._carried_index = -1

    def _new_tracker(self) -> Any:
        from trackers import ByteTrackTracker

        config = self._config
        return ByteTrackTracker(
            lost_track_buffer=config.lost_frames,
            frame_rate=_TRACKER_FPS,
            track_activation_threshold=config.activation_threshold,
            minimum_consecutive_frames=config.min_frames,
            minimum_iou_threshold=config.match_iou,
            high_conf_det_threshold=config.high_threshold,
        )

    def process(self, frame: Frame) -> Frame:
        detections = frame.results.get(self._on)
        if detections is None:
            return frame.with_result(self._on, self._carry(frame))
        if not isinstance(detections, Detections):
            raise ConfigError(
                f"{self.name}: the result {self._on!r} is {type(detections).__name__}, not detections"
            )
        tracked = self.update(detections, frame.index)
        if self._flow is not None:
            self._flow.step(frame.image, self._carried[:0])  # the frame the next carry starts from
        return frame.with_result(self._on, tracked)

    def update(self, detections: Detections, index: int, followed: bool = False) -> Detections:
        """Matches one detector run's boxes to the tracks; returns them with track ids.

        Args:
            detections: the boxes of frame ``index``.
            index: the frame's position in its source (gaps are frames without a detector run).
            followed: the boxes are the tracks' own, moved on by optical flow (weak detections: they
                extend tracks and never start one); the tracks keep their detected confidence.
        """
        for class_id, label in zip(detections.class_id.tolist(), detections.class_name.tolist(), strict=True):
            self._labels.setdefault(int(class_id), str(label))
        groups = detections.class_id if self._config.class_aware else np.full(len(detections), -1)
        for group in np.unique(groups).tolist():
            if group not in self._trackers:
                self._trackers[group] = self._new_tracker()
        ids = np.full(len(detections), -1, np.int64)
        # Every tracker sees every run, with no boxes when its class is absent, so its tracks age.
        for group, tracker in self._trackers.items():
            rows = np.flatnonzero(groups == group)
            tracked = tracker.update(to_supervision(detections[rows]), timestamp=index / _TRACKER_FPS)
            for row, local in zip(rows[rows_of(tracked)], np.asarray(tracked.tracker_id), strict=True):
                if local >= 0:
                    ids[row] = self._global_id(group, int(local))
        self._remember(detections, ids, index, followed)
        return replace(detections, tracker_id=ids)

    def _global_id(self, group: int, local: int) -> int:
        """The run-wide id of a tracker's local track id (each class's tracker counts from 0)."""
        key = (group, local)
        if key not in self._global_ids:
            self._global_ids[key] = self._next_id
            self._next_id += 1
        return self._global_ids[key]

    def _remember(self, detections: Detections, ids: np.ndarray, index: int, followed: bool = False) -> None:
        self._current = []
        for row in np.flatnonzero(ids >= 0):
            track = int(ids[row])
            box = detections.xyxy[row].astype(np.float64)
            before = self._seen.get(track)
            velocity, moves = np.zeros(4), 0
            if before is not None and index > before.index:
                velocity = (box - before.box) / (index - before.index)
                if before.moves:
                    # Half the latest displacement, half the old velocity: steadier than either alone.
                    velocity = 0.5 * velocity + 0.5 * before.velocity
                moves = before.moves + 1
            confidence = float(detections.confidence[row])
            if followed and before is not None:
                confidence = before.confidence  # a followed box says where, not how sure
            self._seen[track] = _Seen(
                box,
                velocity,
                moves,
                index,
                int(detections.class_id[row]),
                str(detections.class_name[row]),
                confidence,
            )
            self._current.append(track)
        self._carried = np.array([self._seen[t].box for t in self._current], np.float32).reshape(-1, 4)
        self._carried_index = index
        horizon = index - max(1, self._lost_frames)
        self._seen = {k: v for k, v in self._seen.items() if v.index >= horizon}
        # the trackers have dropped these tracks too, so their ids can go (memory stays bounded)
        self._global_ids = {k: v for k, v in self._global_ids.items() if v in self._seen}

    def _live_tracks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The box, class and run-wide id (-1 while unconfirmed) of every track the latest update
        matched, from the ByteTrack trackers' tracklets; None when the trackers package keeps them
        otherwise."""
        boxes, classes, ids = [], [], []
        try:
            for class_id, tracker in self._trackers.items():
                for tracklet in tracker.tracks:
                    if tracklet.time_since_update == 0:
                        boxes.append(np.asarray(tracklet.get_state_bbox(), np.float32).reshape(4))
                        classes.append(class_id)
                        ids.append(self._global_ids.get((class_id, int(tracklet.tracker_id)), -1))
        except (AttributeError, TypeError, ValueError):
            return None
        as_boxes = np.array(boxes, np.float32).reshape(-1, 4)
        return as_boxes, np.array(classes, np.int32), np.array(ids, np.int64)

    def _follow(
        self, frame: Frame, flow: BoxFlow, boxes: np.ndarray, classes: np.ndarray, ids: np.ndarray
    ) -> Detections:
        """Moves the live tracks on by optical flow (a track flow cannot follow at its velocity, or
        not at all before it has one) and gives them to the trackers as weak detections; returns the
        confirmed ones."""
        moved, found = flow.step(frame.image, boxes)
        gap = frame.index - self._carried_index
        for row in np.flatnonzero(~found & (ids >= 0)):
            seen = self._seen.get(int(ids[row]))
            if seen is not None:
                moved[row] += (seen.velocity * gap).astype(np.float32)
        height, width = frame.image.shape[:2]
        moved = np.clip(moved, 0, [width, height, width, height]).astype(np.float32)
        keep = (moved[:, 2] > moved[:, 0]) & (moved[:, 3] > moved[:, 1])
        weak = Detections(
            xyxy=moved[keep],
            confidence=np.full(int(keep.sum()), self._config.high_threshold / 2, np.float32),
            class_id=classes[keep],
            class_name=np.asarray([self._labels.get(int(c), f"class {c}") for c in classes[keep]]),
        )
        tracked = self.update(weak, frame.index, followed=True)
        tracked_ids = np.asarray(tracked.tracker_id)
        confirmed = tracked[tracked_ids >= 0]
        confidence = [self._seen[int(track)].confidence for track in tracked_ids[tracked_ids >= 0]]
        return replace(confirmed, confidence=np.array(confidence, np.float32))

    def _carry(self, frame: Frame) -> Detections:
        """The confirmed tracks moved on to a frame the detector skipped."""
        if self._flow is not None and self._config.class_aware:
            live = self._live_tracks()
            if live is not None:
                return self._follow(frame, self._flow, *live)
        tracks = [self._seen[t] for t in self._current]
        velocity = np.array([t.velocity for t in tracks], np.float32).reshape(-1, 4)
        gap = frame.index - self._carried_index  # more than 1 where a live source dropped frames
        boxes = self._carried + velocity * gap
        if self._flow is not None:
            moved, found = self._flow.step(frame.image, self._carried)
            boxes[found] = moved[found]
        self._carried, self._carried_index = boxes, frame.index
        if not self._current:
            return replace(Detections.empty(), tracker_id=np.zeros(0, np.int64))
        height, width = frame.image.shape[:2]
        boxes = np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)
        carried = Detections(
            xyxy=boxes,
            confidence=np.array([t.confidence for t in tracks], np.float32),
            class_id=np.array([t.class_id for t in tracks], np.int32),
            class_name=np.array([t.class_name for t in tracks]),
            tracker_id=np.array(self._current, np.int64),
        )
        return carried[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
