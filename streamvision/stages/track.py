"""Multi-object tracking with ByteTrack (roboflow's ``trackers`` package, built on supervision)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from streamvision.errors import ConfigError
from streamvision.frame import Detections, Frame
from streamvision.stages.base import StageConfig, StageContext
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
        return frame.with_result(self._on, self.update(detections, frame.index))

    def update(self, detections: Detections, index: int) -> Detections:
        """Matches one detector run's boxes to the tracks; returns them with track ids.

        Args:
            detections: the boxes of frame ``index``.
            index: the frame's position in its source (gaps are frames without a detector run).
        """
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
        self._remember(detections, ids, index)
        return replace(detections, tracker_id=ids)

    def _global_id(self, group: int, local: int) -> int:
        """The run-wide id of a tracker's local track id (each class's tracker counts from 0)."""
        key = (group, local)
        if key not in self._global_ids:
            self._global_ids[key] = self._next_id
            self._next_id += 1
        return self._global_ids[key]

    def _remember(self, detections: Detections, ids: np.ndarray, index: int) -> None:
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
            self._seen[track] = _Seen(
                box,
                velocity,
                moves,
                index,
                int(detections.class_id[row]),
                str(detections.class_name[row]),
                float(detections.confidence[row]),
            )
            self._current.append(track)
        horizon = index - max(1, self._lost_frames)
        self._seen = {k: v for k, v in self._seen.items() if v.index >= horizon}
        # the trackers have dropped these tracks too, so their ids can go (memory stays bounded)
        self._global_ids = {k: v for k, v in self._global_ids.items() if v in self._seen}

    def _carry(self, frame: Frame) -> Detections:
        if not self._current:
            return replace(Detections.empty(), tracker_id=np.zeros(0, np.int64))
        height, width = frame.image.shape[:2]
        tracks = [self._seen[t] for t in self._current]
        boxes = np.array([t.box + t.velocity * (frame.index - t.index) for t in tracks])
        boxes = np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)
        carried = Detections(
            xyxy=boxes,
            confidence=np.array([t.confidence for t in tracks], np.float32),
            class_id=np.array([t.class_id for t in tracks], np.int32),
            class_name=np.array([t.class_name for t in tracks]),
            tracker_id=np.array(self._current, np.int64),
        )
        return carried[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
