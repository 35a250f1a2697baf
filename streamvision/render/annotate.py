"""Drawing results onto frames: mask effects, zones and lines, boxes with label and score, keypoints,
pose skeletons, classifier labels, captions (zone and line counts, whole-frame labels, the FPS when
asked for)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from streamvision.events.geometry import confirmed
from streamvision.frame import Detections, Estimates, Frame, Labels, Mask, Poses, RegionCount, ZoneCounts
from streamvision.render.effects import apply_effect

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


ZONE_COLOR = (0, 215, 255)
LINE_COLOR = (255, 255, 255)
CAPTION_COLOR = (60, 60, 60)
FPS_COLOR = (40, 40, 40)


class Annotator:
    """Draws every result of a frame: mask effects, then zones (tinted, outlined) and lines, then the
    boxes of confirmed objects with track ids, keypoints, poses and classifier labels, and last the
    captions (zone and line counts, whole-frame labels, the FPS), which no box or label covers.

    Args:
        thickness: line width in pixels; by default 1 per 240 lines of the frame.
        show_fps: draw the ``fps`` given to :meth:`annotate` top left. Off by default: the drawn
            picture goes into video files, clips and snapshots, where a figure of this run's speed
            is noise (the preview page and the run summary report it).
        zone_opacity: how strongly a zone's colour tints its inside, 0 (not at all) to 1.

    Raises:
        ValueError: ``zone_opacity`` outside 0..1.
    """

    def __init__(
        self, thickness: int | None = None, show_fps: bool = False, zone_opacity: float = 0.2
    ) -> None:
        if not 0.0 <= zone_opacity <= 1.0:
            raise ValueError(f"zone_opacity must be in 0..1, got {zone_opacity}")
        self.thickness = thickness
        self.show_fps = show_fps
        self.zone_opacity = zone_opacity

    def annotate(self, frame: Frame, fps: float | None = None) -> np.ndarray:
        """Returns a drawn copy of the frame's image; the frame itself is left untouched."""
        scene = frame.image.copy()
        for result in frame.results.values():
            # Effects first, so boxes and labels are drawn over a blurred or replaced background.
            if isinstance(result, Mask) and result.effect is not None:
                scene = apply_effect(scene, result.mask, result.effect)
        thickness = self.thickness or max(1, round(min(scene.shape[:2]) / 240))
        captions = _Captions()
        if self.show_fps and fps is not None:
            captions.add(f"{fps:.1f} FPS", (4, 4), FPS_COLOR)
        region_captions = []
        for result in frame.results.values():
            if isinstance(result, ZoneCounts):
                for region in result.regions:
                    region_captions.append(_draw_region(scene, region, thickness, self.zone_opacity))
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
            elif isinstance(result, Estimates):
                texts = [f"{result.name} {value:.0f}" for value in result.value]
                colors = [(90, 90, 90)] * len(result)
            else:
                continue
            self._draw_rows(
                scene, result.on, result.detection, texts, colors, frame.results, thickness, lines, captions
            )
        for text, corner in region_captions:
            captions.add(text, corner, CAPTION_COLOR)
        captions.draw(scene, thickness)
        return scene

    def _draw_detections(self, scene: np.ndarray, detections: Detections, thickness: int) -> None:
        drawn = confirmed(detections)  # after a track stage, weak boxes outside any track only feed it
        for i in np.flatnonzero(drawn):
            track = -1 if detections.tracker_id is None else int(detections.tracker_id[i])
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
        captions: _Captions,
    ) -> None:
        """Each text under the box of its detection row (none for a box that is not drawn); whole-frame
        rows become captions top left. ``lines`` counts texts already drawn per box, so several
        classifiers stack."""
        detections = results.get(on) if on is not None else None
        drawn = confirmed(detections) if isinstance(detections, Detections) else None
        (_, h), baseline = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, 0.35 * thickness, 1)
        step = h + baseline + 2
        for row_value, text, color in zip(rows, texts, colors, strict=True):
            row = int(row_value)
            if isinstance(detections, Detections) and drawn is not None and 0 <= row < len(detections):
                if not drawn[row]:
                    continue
                line = lines.get((on, row), 0)
                lines[(on, row)] = line + 1
                origin = (
                    round(float(detections.xyxy[row, 0])),
                    round(float(detections.xyxy[row, 3])) + line * step,
                )
                _label(scene, text, origin, color, thickness)
            else:
                captions.add(text, (4, 4), color)


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
    scene: np.ndarray, region: RegionCount, thickness: int, opacity: float
) -> tuple[str, tuple[int, int]]:
    """A zone tinted and outlined, or a line; returns its caption (occupancy, in / out counts) and the
    corner it belongs at."""
    points = np.rint(region.points).astype(np.int32)
    height, width = scene.shape[:2]
    # Drawn inside the frame by half its width, so an outline along the frame's edge stays visible.
    half = (thickness + (region.kind == "line")) // 2
    outline = np.clip(points, half, [width - 1 - half, height - 1 - half]).astype(np.int32)
    if region.kind == "zone":
        if opacity > 0:
            _tint(scene, points, ZONE_COLOR, opacity)
        cv2.polylines(scene, [outline], True, ZONE_COLOR, thickness, cv2.LINE_AA)
        text = f"{region.name}: {sum(region.inside.values())} in zone"
    else:
        (x1, y1), (x2, y2) = outline.tolist()
        cv2.line(scene, (x1, y1), (x2, y2), LINE_COLOR, thickness + 1, cv2.LINE_AA)
        text = region.name
    text += f" | in {sum(region.entered.values())} out {sum(region.exited.values())}"
    return text, (int(points[:, 0].min()), int(points[:, 1].min()))


def _tint(scene: np.ndarray, points: np.ndarray, color: tuple[int, int, int], opacity: float) -> None:
    """Blends ``color`` into the pixels inside the polygon ``points``, in place."""
    x, y, w, h = cv2.boundingRect(points)
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, scene.shape[1]), min(y + h, scene.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    roi = scene[y0:y1, x0:x1]
    inside = np.zeros(roi.shape[:2], np.uint8)
    cv2.fillPoly(inside, [points - np.array([x0, y0], np.int32)], 255)
    tinted = cv2.addWeighted(roi, 1 - opacity, np.full_like(roi, color), opacity, 0)
    np.copyto(roi, tinted, where=inside[..., None].astype(bool))


class _Captions:
    """Texts drawn last, each at its place or, where it would cover one placed before, below it."""

    def __init__(self) -> None:
        self._items: list[tuple[str, tuple[int, int], tuple[int, int, int]]] = []

    def add(self, text: str, origin: tuple[int, int], color: tuple[int, int, int]) -> None:
        self._items.append((text, origin, color))

    def draw(self, scene: np.ndarray, thickness: int) -> None:
        placed: list[tuple[int, int, int, int]] = []
        for text, (x, y), color in self._items:
            w, h = _label_size(text, thickness)
            x, y = _inside(scene, x, y, w, h)
            moved = True
            while moved:
                moved = False
                for px, py, pw, ph in placed:
                    if x <= px + pw and px <= x + w and y <= py + ph and py <= y + h:
                        y, moved = py + ph + 1, True
            if y + h > scene.shape[0] - 1:
                continue  # no room left below: dropped rather than drawn over another caption
            placed.append((x, y, w, h))
            _label(scene, text, (x, y), color, thickness)


def _label_size(text: str, thickness: int) -> tuple[int, int]:
    """Width and height of a label's box."""
    (w, h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.35 * thickness, 1)
    return w + 2, h + baseline + 2


def _inside(scene: np.ndarray, x: int, y: int, w: int, h: int) -> tuple[int, int]:
    """The top left corner nearest ``x, y`` for a ``w`` x ``h`` box that the frame holds whole."""
    height, width = scene.shape[:2]
    return min(max(0, x), max(0, width - 1 - w)), min(max(0, y), max(0, height - 1 - h))


def _label(
    scene: np.ndarray,
    text: str,
    origin: tuple[int, int],
    color: tuple[int, int, int],
    thickness: int,
    above: bool = False,
) -> None:
    """Text on a filled box at ``origin`` (its top left corner, or bottom left ``above``), moved
    into the frame where it would stick out."""
    w, h = _label_size(text, thickness)
    x, y = origin
    top = y - h if above and y - h >= 0 else y
    x, top = _inside(scene, x, top, w, h)
    cv2.rectangle(scene, (x, top), (x + w, top + h), color, -1)
    (_, text_h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.35 * thickness, 1)
    cv2.putText(
        scene,
        text,
        (x + 1, top + text_h + 1),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.35 * thickness,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
