"""``streamvision convert MODEL.onnx --int8``: NanoDet quantized with frames of the bundled bikes clip,
judged against the float model on held-out frames through the detector stage; the naive trap, the
exact -inf pad fold, the refusal below the bar and the one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from streamvision.convert.agreement import Agreement, agreement, matched_boxes
from streamvision.convert.int8_graph import fold_infinite_pads, node_groups
from streamvision.convert.quantize import QuantizeOptions, QuantizeResult, quantize_detector
from streamvision.frame import Detections
from streamvision.runtime.manifest import ModelRegistry
from streamvision.runtime.session import OnnxModel, ThreadBudget
from streamvision.samples import sample_path
from streamvision.stages.base import StageContext
from streamvision.stages.objects import ObjectDetectionConfig, ObjectDetector
from tests.conftest import decode_all, run_cli, write_clip

BIKES = "sample:bikes"
FEW = QuantizeOptions(frames=16, eval_frames=24, timing_runs=5)
"""Few frames keep the tests short; the figures in the README come from the defaults."""


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory, models: ModelRegistry) -> QuantizeResult:
    out = tmp_path_factory.mktemp("int8") / "nanodet_int8.onnx"
    return quantize_detector(models.path("nanodet"), models.get("nanodet"), BIKES, out, FEW)


@pytest.fixture
def manifest_dir(tmp_path: Path, models: ModelRegistry) -> Path:
    """A manifest folder holding the float NanoDet, to register INT8 models in."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copyfile(models.path("nanodet"), folder / "nanodet.onnx")
    entry = yaml.safe_load((models.models_dir / "manifest.yaml").read_text())["models"]["nanodet"]
    (folder / "manifest.yaml").write_text(yaml.safe_dump({"models": {"nanodet": entry}}))
    return folder


def _one_error_line(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit 2 and a single line on stderr, an ``error:`` holding every fragment. (The progress and the
    figures of a run that got that far go to stdout.)"""
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _detections(rows: list[tuple[float, float, float, float, float, int]]) -> Detections:
    array = np.asarray(rows, np.float32).reshape(-1, 6)
    ids = array[:, 5].astype(np.int32)
    return Detections(array[:, :4], array[:, 4], ids, np.asarray([str(i) for i in ids]))


def test_boxes_match_once_per_class_at_the_iou_bar() -> None:
    ref = _detections([(0, 0, 10, 10, 0.9, 0), (20, 20, 30, 30, 0.8, 0), (0, 0, 10, 10, 0.7, 1)])
    # one copy of the first box (taken by it), a box of the wrong class, one 4 px off (IoU 0.39)
    cand = _detections([(0, 0, 10, 10, 0.6, 0), (20, 20, 30, 30, 0.5, 1), (4, 0, 14, 10, 0.5, 1)])
    assert matched_boxes(ref, cand, 0.5) == 1
    assert matched_boxes(ref, cand, 0.3) == 2
    found = agreement([ref], [cand], threshold=0.3)
    assert (found.recall, found.precision) == (1 / 3, 1 / 3)
    # at 0.65 only the float boxes above it count, and no INT8 box is left
    strict = agreement([ref], [cand], threshold=0.65)
    assert strict == Agreement(frames=1, reference_boxes=3, candidate_boxes=0, matched=0)


def test_minus_inf_pad_folds_into_the_max_pool_exactly(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(
        [
            helper.make_node("Pad", ["x", "pads", "inf"], ["p"], name="pad"),
            helper.make_node("MaxPool", ["p"], ["y"], name="pool", kernel_shape=[3, 3], strides=[2, 2]),
        ],
        "g",
        [x],
        [y],
        [
            numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
            numpy_helper.from_array(np.array(-np.inf, np.float32), "inf"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    before = ort.InferenceSession(model.SerializeToString())
    notes = fold_infinite_pads(model)
    assert notes == ["folded pad (Pad with -inf) into pool (MaxPool pads [1, 1, 1, 1])"]
    assert [n.op_type for n in model.graph.node] == ["MaxPool"] and not model.graph.initializer
    after = ort.InferenceSession(model.SerializeToString())
    # all negative: the border must never win a max
    feed = {"x": -1 - np.random.default_rng(0).random((1, 2, 5, 5), np.float32)}
    np.testing.assert_array_equal(before.run(None, feed)[0], after.run(None, feed)[0])


def test_only_the_minus_inf_pad_of_nanodet_folds(models: ModelRegistry) -> None:
    model = onnx.load(str(models.path("nanodet")))
    pads = sum(n.op_type == "Pad" for n in model.graph.node)
    assert len(fold_infinite_pads(model)) == 1  # the one before NanoDet's MaxPool
    assert sum(n.op_type == "Pad" for n in model.graph.node) == pads - 1
    groups = node_groups(model)
    assert groups["Conv__4"] == [
        "PartitionedCall/Pad",
        "Conv__4",
        "PartitionedCall/onnx_tf_prefix_LeakyRelu_1",
    ]
    assert "all Sigmoid" in groups


@pytest.mark.slow
def test_int8_nanodet_is_judged_on_real_boxes(quantized: QuantizeResult, models: ModelRegistry) -> None:
    assert any("(Pad with -inf)" in note for note in quantized.notes)
    graph = onnx.load(str(quantized.output))
    ops = {n.op_type for n in graph.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    model = OnnxModel(quantized.output, threads=1)
    assert model.output_names == list(models.get("nanodet").outputs)
    [held_out] = quantized.evaluations.values()
    found = held_out[FEW.score_threshold]
    assert found.frames == FEW.eval_frames and found.reference_boxes > 20 and found.candidate_boxes > 20
    assert 0 < found.matched <= min(found.reference_boxes, found.candidate_boxes)
    assert quantized.recall == found.matched / found.reference_boxes
    # the float boxes the INT8 model loses sit near the threshold: fewer of the stricter ones go missing
    assert held_out[0.4].reference_boxes < found.reference_boxes
    assert quantized.ms_float > 0 and quantized.ms_int8 > 0
    # the search starts from everything in INT8 and only ever adds groups to float
    assert [s.float_nodes for s in quantized.steps] == sorted(s.float_nodes for s in quantized.steps)
    assert quantized.steps[0].recall > 0.5  # with the -inf pad folded, INT8 NanoDet finds most boxes


@pytest.mark.slow
def test_naive_int8_nanodet_finds_none_of_the_float_boxes(tmp_path: Path, models: ModelRegistry) -> None:
    naive = QuantizeOptions(frames=16, eval_frames=16, timing_runs=3, naive=True)
    result = quantize_detector(
        models.path("nanodet"), models.get("nanodet"), BIKES, tmp_path / "naive.onnx", naive
    )
    [held_out] = result.evaluations.values()
    found = held_out[naive.score_threshold]
    assert found.reference_boxes > 20
    assert found.recall < 0.1 and result.float_nodes == [] and not result.notes
    assert not result.passed


@pytest.mark.slow
def test_below_the_bar_the_model_is_not_registered(manifest_dir: Path) -> None:
    out = manifest_dir / "nanodet_int8.onnx"
    args = ["convert", str(manifest_dir / "nanodet.onnx"), "--int8", "--calibrate", BIKES, "--no-search"]
    done = run_cli(*args, "--frames", "16", "--eval-frames", "16", "--min-recall", "0.99", timeout=600)
    _one_error_line(done, "below --min-recall 0.99", "nanodet_int8 not registered")
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["passed"] is False and report["recall"] < 0.99
    assert out.with_suffix(".report.md").read_text().startswith("# INT8 nanodet_int8.onnx from nanodet")
    assert ModelRegistry(manifest_dir).names() == ["nanodet"]


@pytest.mark.slow
def test_above_the_bar_the_stage_runs_it_by_name(manifest_dir: Path) -> None:
    args = ["convert", str(manifest_dir / "nanodet.onnx"), "--int8", "--calibrate", BIKES, "--no-search"]
    done = run_cli(*args, "--frames", "8", "--eval-frames", "8", "--min-recall", "0.5", timeout=600)
    assert done.returncode == 0, done.stderr
    assert "registered nanodet_int8" in done.stdout
    registry = ModelRegistry(manifest_dir)
    entry = registry.get("nanodet_int8")
    assert entry.input == registry.get("nanodet").input and entry.decoder == "nanodet"
    assert entry.conversion["quantized_from"] == {
        "model": "nanodet",
        "sha256": registry.get("nanodet").sha256,
    }
    agreed = entry.conversion["agreement"]
    assert isinstance(agreed, dict) and 0.5 <= agreed["recall"] <= 1
    config = ObjectDetectionConfig(model="nanodet_int8", models=manifest_dir)
    detector = ObjectDetector(config, StageContext(models=registry, budget=ThreadBudget(total=1)))
    bikes = decode_all(sample_path("bikes"))
    assert any(len(detector.detect(frame)) for frame in bikes[100:110])


def test_a_missing_clip_is_one_line(manifest_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    done = run_cli("convert", str(manifest_dir / "nanodet.onnx"), "--int8", "--calibrate", str(missing))
    _one_error_line(done, f"no such video file: {missing}")


def test_a_short_clip_is_one_line(manifest_dir: Path, tmp_path: Path, sample_clip: Path) -> None:
    short = write_clip(tmp_path / "short.mp4", decode_all(sample_clip)[:20])
    done = run_cli("convert", str(manifest_dir / "nanodet.onnx"), "--int8", "--calibrate", str(short))
    _one_error_line(done, "has 20 frames: too short for 32 calibration + 64 evaluation frames")
    assert not (manifest_dir / "nanodet_int8.onnx").exists()


def test_a_model_without_a_manifest_entry_is_one_line(tmp_path: Path, models: ModelRegistry) -> None:
    model = shutil.copyfile(models.path("nanodet"), tmp_path / "detector.onnx")
    done = run_cli("convert", str(model), "--int8", "--calibrate", BIKES)
    _one_error_line(done, f"no manifest.yaml in {tmp_path}", "pass --manifest DIR")
    (tmp_path / "manifest.yaml").write_text("models: {}\n")
    done = run_cli("convert", str(model), "--int8", "--calibrate", BIKES)
    _one_error_line(done, f"{model} has no entry in {tmp_path / 'manifest.yaml'}")


def test_int8_options_need_each_other(manifest_dir: Path) -> None:
    model = str(manifest_dir / "nanodet.onnx")
    _one_error_line(run_cli("convert", model, "--int8"), "--int8 needs --calibrate CLIP")
    _one_error_line(run_cli("convert", model, "--calibrate", BIKES), "--calibrate goes with --int8")
