"""The model manifest, the ONNX Runtime wrapper, the thread budget, letterbox and NMS."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from streamvision.errors import ModelError
from streamvision.runtime.manifest import ModelRegistry, sha256_of
from streamvision.runtime.nms import nms
from streamvision.runtime.preprocess import letterbox, to_tensor
from streamvision.runtime.session import OnnxModel, ThreadBudget


def test_shipped_models_match_their_checksums(models: ModelRegistry) -> None:
    assert "blazeface_short" in models.names()
    for name in models.names():
        assert sha256_of(models.verify(name)) == models.get(name).sha256


def test_unknown_and_tampered_models_are_errors(models: ModelRegistry, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"unknown model 'nope'; known: .*blazeface_short"):
        models.get("nope")
    (tmp_path / "manifest.yaml").write_text((models.models_dir / "manifest.yaml").read_text())
    (tmp_path / models.get("blazeface_short").file).write_bytes(b"not a model")
    tampered = ModelRegistry(tmp_path)
    with pytest.raises(ModelError, match="fails its checksum"):
        tampered.verify("blazeface_short")


def test_onnx_model_runs_a_tiny_graph_and_rejects_garbage(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])],
        "double",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    path = tmp_path / "double.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    model = OnnxModel(path, threads=1)
    (y,) = model.run({"x": np.array([[1, 2, 3]], np.float32)})
    np.testing.assert_array_equal(y, [[2, 4, 6]])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="ONNX Runtime cannot load"):
        OnnxModel(garbage)
    with pytest.raises(ModelError, match="no such model file"):
        OnnxModel(tmp_path / "missing.onnx")


def test_thread_budget_never_exceeds_the_total() -> None:
    budget = ThreadBudget(total=4, sessions=3)
    assert [budget.take() for _ in range(3)] == [1, 1, 1]
    assert ThreadBudget(total=2, sessions=1).take() == 2
    assert ThreadBudget(total=2, sessions=5).take() == 1


def test_letterbox_round_trip() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    boxed, transform = letterbox(image, (128, 128))
    assert boxed.shape == (128, 128, 3)
    assert transform.scale == pytest.approx(0.64) and transform.pad_x == 0 and transform.pad_y == 32
    frame_box = np.array([[10.0, 20.0, 110.0, 70.0]], np.float32)
    input_box = frame_box * transform.scale + [0, 32, 0, 32]
    np.testing.assert_allclose(transform.boxes_to_frame(input_box), frame_box, atol=1e-4)
    np.testing.assert_allclose(transform.points_to_frame(input_box[:, :2]), frame_box[:, :2], atol=1e-4)


def test_to_tensor_normalises_and_reorders(models: ModelRegistry) -> None:
    spec = models.get("blazeface_short").input
    image = np.zeros((128, 128, 3), np.uint8)
    image[..., 2] = 255  # red in BGR
    tensor = to_tensor([image], spec)
    assert tensor.shape == (1, 128, 128, 3) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[0, 0, 0], [1.0, -1.0, -1.0])  # RGB, x/127.5 - 1
    nchw = to_tensor([image], spec.model_copy(update={"layout": "NCHW"}))
    assert nchw.shape == (1, 3, 128, 128)


def test_nms_keeps_separate_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], np.float32)
    assert nms(boxes, np.array([0.5, 0.9, 0.7]), 0.5).tolist() == [1, 2]
    assert nms(boxes, np.array([0.5, 0.9, 0.7]), 0.5, max_keep=1).tolist() == [1]


def test_default_thread_budget_is_a_thread_per_core() -> None:
    import os

    assert ThreadBudget().total == (os.cpu_count() or 1)
