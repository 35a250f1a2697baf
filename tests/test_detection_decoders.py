"""The object-detection decoders and class-aware NMS on made-up tensors."""

import numpy as np
import pytest

from streamvision.decoders.boxes import DecodeParams, select
from streamvision.decoders.centernet import decode_centernet
from streamvision.decoders.detection import DETECTION_DECODERS, detection_decoder
from streamvision.decoders.nanodet import REG_MAX, decode_nanodet, expected_distances, grid_centres
from streamvision.decoders.ssd import decode_ssd
from streamvision.decoders.yolov5 import decode_yolov5
from streamvision.decoders.yolov8 import decode_yolov8
from streamvision.runtime.nms import batched_nms

PARAMS = DecodeParams(score_threshold=0.3, iou_threshold=0.45, max_detections=100)


def test_batched_nms_suppresses_within_a_class_only() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    keep = batched_nms(boxes, scores, np.array([0, 0, 1, 0]), 0.5)
    assert keep.tolist() == [0, 2, 3]  # box 1 loses to box 0; box 2 is another class
    assert batched_nms(boxes, scores, np.array([0, 0, 1, 0]), 0.5, max_keep=2).tolist() == [0, 2]
    assert batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), 0.5).tolist() == []
    with pytest.raises(ValueError, match="same length"):
        batched_nms(boxes, scores[:2], np.zeros(4, int), 0.5)


def test_select_filters_classes_before_nms_and_caps() -> None:
    xyxy = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.9, 0.8, 0.2])
    out = select(xyxy, scores, np.array([1, 2, 2]), DecodeParams(0.1, 0.45, 10, classes=[2]))
    # class 1 is filtered out, so it cannot suppress anything; both class-2 boxes survive
    assert out.class_ids.tolist() == [2, 2] and out.scores.tolist() == pytest.approx([0.8, 0.2])
    assert len(select(xyxy, scores, np.array([1, 2, 2]), DecodeParams(0.1, 0.45, 1))) == 1


def test_centernet_clips_thresholds_and_deduplicates() -> None:
    rows = np.zeros((1, 100, 6), np.float32)
    rows[0, 0] = [-20, 10, 100, 200, 0.9, 0]  # person, partly outside the input: clipped
    rows[0, 1] = [-18, 12, 100, 200, 0.6, 0]  # the same person again: suppressed
    rows[0, 2] = [-18, 12, 100, 200, 0.5, 1]  # a bicycle at the same place: another class, kept
    rows[0, 3] = [300, 300, 400, 400, 0.1, 2]  # below the threshold
    rows[0, 4] = [600, 600, 700, 700, 0.8, 3]  # entirely outside: dropped
    out = decode_centernet([rows], (512, 512), PARAMS)
    assert out.class_ids.tolist() == [0, 1]
    np.testing.assert_allclose(out.xyxy[0], [0, 10, 100, 200])
    np.testing.assert_allclose(out.scores, [0.9, 0.5], rtol=1e-6)
    with pytest.raises(ValueError, match=r"expected \(N, 6\)"):
        decode_centernet([np.zeros((1, 100, 5))], (512, 512), PARAMS)
    with pytest.raises(ValueError, match="expected the detections output"):
        decode_centernet([], (512, 512), PARAMS)
    heatmap = np.zeros((1, 128, 128, 80), np.float32)
    assert decode_centernet([rows, heatmap], (512, 512), PARAMS).class_ids.tolist() == [0, 1]


def _nanodet_outputs(size: int = 416, classes: int = 80) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    outputs = {}
    for stride in (8, 16, 32):
        cells = (size // stride) ** 2
        scores = np.zeros((1, cells, classes), np.float32)
        # bins strongly peaked at 0: zero distances unless a test sets them
        boxes = np.full((1, cells, 4 * (REG_MAX + 1)), -30.0, np.float32)
        boxes[0, :, :: REG_MAX + 1] = 30.0
        outputs[stride] = (scores, boxes)
    return outputs


def test_nanodet_expected_distance_and_grid() -> None:
    logits = np.full((1, 44), -30.0, np.float32)
    logits[0, 3] = 30.0  # left: 3 bins
    logits[0, 11 + 5] = logits[0, 11 + 6] = 30.0  # top: half 5, half 6
    logits[0, 22 + 10] = 30.0  # right: 10 bins
    logits[0, 33:44] = 0.0  # bottom: uniform over 0..10, expectation 5
    np.testing.assert_allclose(expected_distances(logits)[0], [3, 5.5, 10, 5], atol=1e-5)
    centres = grid_centres(169, 32, (416, 416))
    np.testing.assert_allclose(centres[[0, 1, 13]], [[16, 16], [48, 16], [16, 48]])
    with pytest.raises(ValueError, match="do not form"):
        grid_centres(170, 32, (416, 416))


def test_nanodet_decodes_a_box_at_its_cell() -> None:
    outputs = _nanodet_outputs()
    scores, boxes = outputs[16]
    cell = 3 * 26 + 5  # stride 16, grid 26 x 26: row 3, column 5 -> centre (88, 56)
    scores[0, cell, 2] = 0.8  # a car
    boxes[0, cell] = -30.0
    for side, bins in enumerate([2, 1, 3, 4]):  # distances in strides: left 2, top 1, right 3, bottom 4
        boxes[0, cell, side * (REG_MAX + 1) + bins] = 30.0
    outputs[8][0][0, 10, 0] = 0.1  # below the threshold
    tensors = [t for pair in outputs.values() for t in pair][::-1]  # order does not matter
    out = decode_nanodet(tensors, (416, 416), PARAMS)
    assert out.class_ids.tolist() == [2]
    np.testing.assert_allclose(out.xyxy[0], [88 - 32, 56 - 16, 88 + 48, 56 + 64], atol=1e-3)
    np.testing.assert_allclose(out.scores, [0.8])


def test_nanodet_rejects_unpaired_outputs() -> None:
    outputs = _nanodet_outputs()
    with pytest.raises(ValueError, match="per stride"):
        decode_nanodet([outputs[8][0], outputs[16][1]], (416, 416), PARAMS)
    with pytest.raises(ValueError, match="match no stride"):
        decode_nanodet([np.zeros((1, 100, 80)), np.zeros((1, 100, 44))], (416, 416), PARAMS)


def test_yolov5_multiplies_objectness_and_class_score() -> None:
    rows = np.zeros((1, 25200, 85), np.float32)
    rows[0, 7, :5] = [320, 240, 100, 50, 0.9]
    rows[0, 7, 5 + 16] = 0.8  # dog: 0.72
    rows[0, 8, :5] = [322, 241, 100, 50, 0.9]
    rows[0, 8, 5 + 16] = 0.5  # the same dog, weaker: suppressed
    rows[0, 9, :5] = [100, 100, 20, 20, 0.5]
    rows[0, 9, 5 + 3] = 0.5  # 0.25: below the threshold
    rows[0, 10, :5] = [5, 5, 20, 20, 0.95]
    rows[0, 10, 5 + 1] = 0.9  # clipped at the top left
    out = decode_yolov5([rows], (640, 640), PARAMS)
    assert out.class_ids.tolist() == [1, 16]
    np.testing.assert_allclose(out.scores, [0.855, 0.72], rtol=1e-5)
    np.testing.assert_allclose(out.xyxy, [[0, 0, 15, 15], [270, 215, 370, 265]])


def test_yolov8_reads_channels_first_and_transposed() -> None:
    preds = np.zeros((1, 84, 8400), np.float32)
    preds[0, :4, 100] = [320, 240, 100, 50]
    preds[0, 4 + 0, 100] = 0.85  # person
    preds[0, 4 + 5, 100] = 0.4  # the same box's weaker class is ignored
    preds[0, :4, 200] = [50, 60, 20, 40]
    preds[0, 4 + 2, 200] = 0.5  # car
    out = decode_yolov8([preds], (640, 640), PARAMS)
    assert out.class_ids.tolist() == [0, 2]
    np.testing.assert_allclose(out.xyxy, [[270, 215, 370, 265], [40, 40, 60, 80]])
    np.testing.assert_allclose(out.scores, [0.85, 0.5])
    transposed = decode_yolov8([preds.transpose(0, 2, 1)], (640, 640), PARAMS)
    np.testing.assert_allclose(transposed.xyxy, out.xyxy)
    only_cars = decode_yolov8([preds], (640, 640), DecodeParams(0.3, 0.45, 100, classes=[2]))
    assert only_cars.class_ids.tolist() == [2]


def test_ssd_scales_normalised_boxes_and_honours_count() -> None:
    boxes = np.zeros((1, 10, 4), np.float32)
    boxes[0, 0] = [0.1, 0.2, 0.5, 0.6]  # y1, x1, y2, x2
    boxes[0, 1] = [0.0, 0.0, 1.2, 0.5]  # past the bottom edge: clipped
    boxes[0, 2] = [0.3, 0.3, 0.4, 0.4]  # past count: ignored even with a high score
    scores = np.array([[0.9, 0.7, 0.99] + [0.0] * 7], np.float32)
    classes = np.array([[1, 18, 3] + [0] * 7], np.float32)
    out = decode_ssd([boxes, scores, classes, np.array([2.0], np.float32)], (300, 200), PARAMS)
    assert out.class_ids.tolist() == [1, 18]
    np.testing.assert_allclose(out.xyxy, [[60, 20, 180, 100], [0, 0, 150, 200]], atol=1e-4)
    without_count = decode_ssd([boxes, scores, classes], (300, 200), PARAMS)
    assert without_count.class_ids.tolist() == [3, 1, 18]
    with pytest.raises(ValueError, match="expected boxes"):
        decode_ssd([boxes, scores[:, :5], classes], (300, 200), PARAMS)


def test_nothing_above_threshold_gives_empty_arrays() -> None:
    out = decode_yolov8([np.zeros((1, 84, 8400), np.float32)], (640, 640), PARAMS)
    assert out.xyxy.shape == (0, 4) and out.scores.shape == (0,) and out.class_ids.dtype == np.int32
    out = decode_nanodet([t for pair in _nanodet_outputs().values() for t in pair], (416, 416), PARAMS)
    assert len(out) == 0


def test_decoder_registry_lists_valid_names() -> None:
    assert detection_decoder("yolo11") is detection_decoder("yolov8")
    assert {"centernet", "nanodet", "yolov5", "yolov8", "ssd"} <= set(DETECTION_DECODERS)
    with pytest.raises(ValueError, match="unknown detection decoder 'yolo9'; valid: centernet, nanodet"):
        detection_decoder("yolo9")


def test_batch_of_two_is_an_error() -> None:
    with pytest.raises(ValueError, match="batch of one image"):
        decode_yolov5([np.zeros((2, 10, 85))], (640, 640), PARAMS)
