"""The face stage on the MTCNN cascade (``type: face_detection`` with ``model: mtcnn``).

P-Net runs over an image pyramid and proposes windows (NMS 0.5 per level, 0.7 across levels);
R-Net re-scores and refines 24 x 24 patches of the squared proposals (NMS 0.7); O-Net does the same
on 48 x 48 patches and adds five landmarks. The last NMS follows the stage's ``nms`` setting, on
intersection over the smaller box as MTCNN does (``hard``), or MediaPipe-style blending
(``weighted``). The tensor contract and the decoding are in :mod:`streamvision.decoders.mtcnn`.
"""

from __future__ import annotations

import cv2
import numpy as np

from streamvision.decoders.blazeface import blend_overlapping
from streamvision.decoders.mtcnn import (
    decode_landmarks,
    decode_pnet,
    pyramid_scales,
    refine,
    square,
)
from streamvision.errors import ModelError
from streamvision.frame import Detections, Frame
from streamvision.runtime.nms import nms
from streamvision.stages.base import StageContext
from streamvision.stages.faces.config import FaceDetectionConfig, MtcnnOptions

NETS = ("mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet")
PNET_LEVEL_IOU = 0.5
PNET_ACROSS_IOU = 0.7
RNET_IOU = 0.7
MAX_PROPOSALS = 500
"""Proposals kept for R-Net (best first), so a busy frame cannot make the cascade unbounded."""


class MtcnnFaceDetector:
    """Finds faces and their five landmarks (image-left eye, image-right eye, nose, mouth left and
    right corners); attaches :class:`Detections` labelled ``face``.

    Raises:
        ModelError: one of the three networks is missing, fails its checksum, or has inputs other
            than the manifest says.
    """

    def __init__(self, config: FaceDetectionConfig, context: StageContext) -> None:
        self.name = config.result_key
        self._config = config
        self._options = config.mtcnn or MtcnnOptions()
        specs = [context.models.get(name) for name in NETS]
        for name, spec, outputs in zip(NETS, specs, (2, 2, 3), strict=True):
            if spec.decoder != name or len(spec.outputs) < outputs:
                raise ModelError(
                    f"model {name!r} (decoder {spec.decoder!r}, outputs {list(spec.outputs)}) is not "
                    f"MTCNN's {name.split('_')[1]}"
                )
        self._input = specs[0].input
        # The three nets run one after another, never at once: the stage counts as one session of the
        # thread budget (model_sessions = 1) and each net gets that session's whole share.
        self._pnet, self._rnet, self._onet = (context.load_model(name, batch=config.batch) for name in NETS)
        self._rnet_size = specs[1].input.size[0]
        self._onet_size = specs[2].input.size[0]
        self._input_names = [spec.input.name for spec in specs]
        self._outputs = [list(spec.outputs) for spec in specs]

    def process(self, frame: Frame) -> Frame:
        rgb = cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB).astype(np.float32)
        normalized = (rgb - np.float32(self._input.mean[0])) / np.float32(self._input.std[0])
        boxes, scores, points = self._detect(normalized)
        height, width = frame.image.shape[:2]
        xyxy = np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)
        detections = Detections(
            xyxy=xyxy.reshape(-1, 4),
            confidence=scores.astype(np.float32),
            class_id=np.zeros(len(xyxy), np.int32),
            class_name=np.full(len(xyxy), "face"),
            keypoints=points.astype(np.float32).reshape(-1, 5, 2),
        )
        return frame.with_result(self.name, detections)

    def _detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes, scores and landmarks of the faces in one normalized RGB image."""
        empty = (np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))
        boxes = self._proposals(image)
        if len(boxes) == 0:
            return empty
        offsets, probs = self._rnet.run(
            {self._input_names[1]: _patches(image, boxes, self._rnet_size)}, self._outputs[1][:2]
        )
        keep = probs[:, 1] > self._options.rnet_threshold
        boxes, scores = refine(boxes[keep], offsets[keep]), probs[keep, 1]
        boxes = square(boxes[nms(boxes, scores, RNET_IOU)])
        if len(boxes) == 0:
            return empty
        offsets, probs, landmarks = self._onet.run(
            {self._input_names[2]: _patches(image, boxes, self._onet_size)}, self._outputs[2][:3]
        )
        keep = probs[:, 1] > self._config.score_threshold
        points = decode_landmarks(boxes[keep], landmarks[keep])
        boxes, scores = refine(boxes[keep], offsets[keep]), probs[keep, 1].astype(np.float64)
        if self._config.nms == "weighted":
            faces = blend_overlapping(
                boxes, scores, points, self._config.iou_threshold, self._config.max_faces
            )
            return faces.xyxy, faces.scores, faces.keypoints
        best = nms(boxes, scores, self._config.iou_threshold, self._config.max_faces, min_area=True)
        return boxes[best], scores[best], points[best]

    def _proposals(self, image: np.ndarray) -> np.ndarray:
        """P-Net over the pyramid: squared candidate boxes in image pixels, best first."""
        height, width = image.shape[:2]
        found_boxes, found_scores = [], []
        for scale in pyramid_scales(width, height, self._options.min_face, self._options.scale_factor):
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            level = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            reg, prob = self._pnet.run({self._input_names[0]: level[None]}, self._outputs[0])
            boxes, scores = decode_pnet(reg, prob, scale, self._options.pnet_threshold)
            keep = nms(boxes, scores, PNET_LEVEL_IOU)
            found_boxes.append(boxes[keep])
            found_scores.append(scores[keep])
        if not found_boxes:
            return np.zeros((0, 4))
        boxes, scores = np.concatenate(found_boxes), np.concatenate(found_scores)
        return square(boxes[nms(boxes, scores, PNET_ACROSS_IOU, MAX_PROPOSALS)])


def _patches(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """(N, size, size, 3) float32 crops of ``boxes`` from a normalized image; parts of a box outside
    the image are zero (mid-grey once normalized), as MTCNN pads them."""
    height, width = image.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), np.float32)
    for i, (x1, y1, x2, y2) in enumerate(np.rint(boxes).astype(np.int64)):
        w, h = max(int(x2 - x1), 1), max(int(y2 - y1), 1)
        patch = np.zeros((h, w, 3), np.float32)
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
        if sx2 > sx1 and sy2 > sy1:
            patch[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = image[sy1:sy2, sx1:sx2]
        out[i] = cv2.resize(
            patch, (size, size), interpolation=cv2.INTER_AREA if w > size else cv2.INTER_LINEAR
        )
    return out
