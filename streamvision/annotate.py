"""Drawing results onto frames: mask effects, boxes with label and score, keypoints, pose skeletons,
classifier labels, an FPS overlay."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from streamvision.effects import apply_effect
from streamvision.frame import Detections, Estimates, Frame, Labels, Mask, Poses, RegionCount, ZoneCounts

# A qualitative palette (BGR); a class keeps its colour across frames and runs.
PALETTE = (
    (56, 56, 255),
    (151, 157, 255),
    (31, 112, 255),
    (29, 178, 255),
    (49, 210, 207),
    (10, 249, 72),
    (23, 204, 146),
    (134, 219, 61),
    (52, 147, 26),
    (187, 212, 0),
    (168, 153, 44),
    (255, 194, 0),
    (147, 69, 52),
    (255, 115, 100),
    (236, 24, 0),
    (255, 56, 132),
    (133, 0, 82),
    (255, 56, 203),
    (200, 149, 255),
    (199, 55, 255),
)


def color_for(key: int) -> tuple[int, int, int]:
    """The palette colour for a class id."""
    return PALETTE[key % len(PALETTE)]


def track_color(track_id: int) -> tuple[int, int, int]:
    """The colour of a track: the same for the whole run, different for consecutive ids."""
    return PALETTE[(track_id * 7) % len(PALETTE)]


POSE_MIN_SCORE = 0.3
"""Pose keypoints less sure than this are not drawn, nor the skeleton edges that end in them."""


class Annotator:
    """Draws every result of a frame (boxes with track ids, labels, zones and lines) and the FPS."""

    def __init__(self, thickness: int | None = None, show_fps: bool = True) -> None:
        self.thickness = thickness
        self.show_fps = show_fps

    def annotate(self, frame: Frame, fps: float | None = None) -> np.ndarray:
        """Returns a drawn copy of the frame's image; the frame itself is left untouched."""
        scene = frame.image.copy()
        for result in frame.results.values():
            # Effects first, so boxes and labels are drawn over a blurred or replaced background.
            if isinstance(result, Mask) and result.effect is not None:
                scene = apply_effect(scene, result.mask, result.effect)
        thickness = self.thickness or max(1, round(min(scene.shape[:2]) / 240))
        placed: dict[tuple[int, int], int] = {}
        for result in frame.results.values():
            if isinstance(result, ZoneCounts):
                for region in result.regions:
                    _draw_region(scene, region, thickness, placed)
        for result in frame.results.values():
            if isinstance(result, Detections):
                self._draw_detections(scene, result, thickness)
            elif isinstance(result, Poses):
                _draw_poses(scene, result, thickness)
        lines: dict[tuple[str | None, int], int] = {}
        for result in frame.results.values():
            if isinstance(result, Labels):
                texts = [
                    f"{name} {score:.2f}" for name, score in zip(result.class_name, result.score, strict=True)
                ]
                colors = [color_for(int(c)) for c in result.class_id]
                self._draw_rows(
                    scene, result.on, result.detection, texts, colors, frame.results, thickness, lines
                )
            elif isinstance(result, Estimates):
                texts = [f"{result.name} {value:.0f}" for value in result.value]
                colors = [(90, 90, 90)] * len(result)
                self._draw_rows(
                    scene, result.on, result.detection, texts, colors, frame.results, thickness, lines
                )
        if self.show_fps and fps is not None:
            _label(scene, f"{fps:.1f} FPS", (4, 4), (40, 40, 40), thickness)
        return scene

    def _draw_detections(self, scene: np.ndarray, detections: Detections, thickness: int) -> None:
        for i in range(len(detections)):
            track = -1 if detections.tracker_id is None else int(detections.tracker_id[i])
            if detections.tracker_id is not None and track < 0:
                continue  # tracked results: weak boxes outside any track only feed the tracker
            color = track_color(track) if track >= 0 else color_for(int(detections.class_id[i]))
            x1, y1, x2, y2 = (round(float(v)) for v in detections.xyxy[i])
            cv2.rectangle(scene, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
            text = f"{detections.class_name[i]} {detections.confidence[i]:.2f}"
            if track >= 0:
                text = f"#{track} {text}"
            _label(scene, text, (x1, y1), color, thickness, above=True)
            if detections.keypoints is not None:
                for x, y in detections.keypoints[i]:
                    cv2.circle(
                        scene, (round(float(x)), round(float(y))), thickness + 1, color, -1, cv2.LINE_AA
                    )

    def _draw_rows(
        self,
        scene: np.ndarray,
        on: str | None,
        rows: np.ndarray,
        texts: list[str],
        colors: list[tuple[int, int, int]],
        results: Mapping[str, Any],
        thickness: int,
        lines: dict[tuple[str | None, int], int],
    ) -> None:
        """Each text under the box of its detection row (whole-frame rows top left, under the FPS
        figure); ``lines`` counts texts already drawn per box, so several classifiers stack."""
        detections = results.get(on) if on is not None else None
        (_, h), baseline = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, 0.35 * thickness, 1)
        step = h + baseline + 2
        for row_value, text, color in zip(rows, texts, colors, strict=True):
            row = int(row_value)
            line = lines.get((on, row), 0)
            lines[(on, row)] = line + 1
            if isinstance(detections, Detections) and 0 <= row < len(detections):
                origin = (
                    round(float(detections.xyxy[row, 0])),
                    round(float(detections.xyxy[row, 3])) + line * step,
                )
            else:
                origin = (4, 4 + (line + 1) * step)
            _label(scene, text, origin, color, thickness)


def _draw_poses(scene: np.ndarray, poses: Poses, thickness: int) -> None:
    """Each pose's skeleton (edges between sure keypoints) and its sure keypoints, in colours that
    stay the same across frames."""
    for i in range(len(poses)):
        sure = poses.scores[i] >= POSE_MIN_SCORE
        points = np.rint(poses.points[i]).astype(np.int32)
        for a, b in poses.edges:
            if sure[a] and sure[b]:
                color = color_for(a + b)
                cv2.line(scene, tuple(points[a]), tuple(points[b]), color, thickness + 1, cv2.LINE_AA)
        for j in np.flatnonzero(sure):
            cv2.circle(scene, tuple(points[j]), thickness + 2, (255, 255, 255), -1, cv2.LINE_AA)


def _draw_region(
    scene: np.ndarray, region: RegionCount, thickness: int, placed: dict[tuple[int, int], int]
) -> None:
    """A zone's outline with its occupancy and in / out counts, or a line with its crossings.

    ``placed`` counts the labels already drawn at each corner, so labels that share one stack."""
    color = (255, 255, 255) if region.kind == "line" else (0, 215, 255)
    points = np.rint(region.points).astype(np.int32)
    if region.kind == "zone":
        cv2.polylines(scene, [points], True, color, thickness, cv2.LINE_AA)
        text = f"{region.name}: {sum(region.inside.values())} in zone"
    else:
        cv2.line(scene, tuple(points[0]), tuple(points[1]), color, thickness + 1, cv2.LINE_AA)
        text = region.name
    text += f" | in {sum(region.entered.values())} out {sum(region.exited.values())}"
    corner = (max(0, int(points[:, 0].min())), max(0, int(points[:, 1].min())))
    (_, h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.35 * thickness, 1)
    row = placed.get(corner, 0)
    placed[corner] = row + 1
    _label(scene, text, (corner[0], corner[1] + row * (h + baseline + 2)), (60, 60, 60), thickness)


def _label(
    scene: np.ndarray,
    text: str,
    origin: tuple[int, int],
    color: tuple[int, int, int],
    thickness: int,
    above: bool = False,
) -> None:
    scale = 0.35 * thickness
    (w, h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = origin
    top = y - h - baseline - 2 if above and y - h - baseline - 2 >= 0 else y
    cv2.rectangle(scene, (x, top), (x + w + 2, top + h + baseline + 2), color, -1)
    cv2.putText(
        scene, text, (x + 1, top + h + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
    )
