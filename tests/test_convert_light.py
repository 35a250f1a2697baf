"""The conversion package without TensorFlow: lazy imports, the install hint, graph checks."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from streamvision.convert.checks import canonical_names, check_converted, order_outputs, unconverted_ops
from streamvision.convert.parity import TensorSpec, check_parity, image_input, random_inputs
from streamvision.errors import ConversionError


def _graph(*nodes: onnx.NodeProto, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(
        list(nodes),
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 4]),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_importing_the_cli_loads_no_tensorflow() -> None:
    code = (
        "import sys, streamvision.cli, streamvision.convert; "
        "print('tensorflow' in sys.modules, 'tf2onnx' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "False"], done.stderr


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None, reason="TensorFlow is installed here")
def test_convert_without_the_extra_names_it(tmp_path: Path) -> None:
    (tmp_path / "m.h5").write_bytes(b"\0")
    cmd = [
        sys.executable,
        "-m",
        "streamvision",
        "convert",
        str(tmp_path / "m.h5"),
        "-o",
        str(tmp_path / "m.onnx"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "pip install 'streamvision[convert]'" in done.stderr and "Traceback" not in done.stderr


def test_ops_left_unconverted_or_above_the_opset_are_errors() -> None:
    fine = _graph(helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["x"], ["b"]))
    check_converted(fine)
    leftover = _graph(
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("TFL_Convolution2DTransposeBias", ["x"], ["b"]),
    )
    assert unconverted_ops(leftover) == ["ai.onnx::TFL_Convolution2DTransposeBias"]
    with pytest.raises(
        ConversionError, match=r"not ONNX at opset 17: ai\.onnx::TFL_Convolution2DTransposeBias"
    ):
        check_converted(leftover)
    custom = _graph(
        helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Foo", ["x"], ["b"], domain="my.ops")
    )
    assert unconverted_ops(custom) == ["my.ops::Foo"]
    old = _graph(helper.make_node("HardSwish", ["x"], ["a"]), helper.make_node("Neg", ["x"], ["b"]), opset=13)
    assert unconverted_ops(old) == ["ai.onnx::HardSwish"]


def test_outputs_reorder_and_names_become_deterministic() -> None:
    model = _graph(
        helper.make_node("Relu", ["x"], ["t__41"]),
        helper.make_node("Neg", ["t__41"], ["a"]),
        helper.make_node("Abs", ["x"], ["b"], name="n__7"),
    )
    order_outputs(model, ["b", "a"])
    assert [o.name for o in model.graph.output] == ["b", "a"]
    with pytest.raises(ConversionError, match="lack"):
        order_outputs(model, ["c"])
    canonical_names(model)
    assert model.graph.node[0].output[0] == "t__0" and model.graph.node[2].name == "n__1"


def test_parity_compares_every_output_and_fails_above_tolerance() -> None:
    spec = TensorSpec("x", (None, 4), "float32")
    samples = random_inputs([spec], count=2)
    assert samples[0][0].shape == (1, 4) and not np.array_equal(samples[0][0], samples[1][0])

    def source(inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs[0] * 2}

    def close(inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs[0] * 2 + 1e-6}

    report = check_parity(source, close, ["y"], samples, tolerance=1e-5)
    assert report.max_abs == pytest.approx(1e-6, rel=0.1) and report.ms_source > 0

    def far(inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs[0] * 2.5}

    with pytest.raises(ConversionError, match=r"max abs difference .* \(output y\) > tolerance 1e-05"):
        check_parity(source, far, ["y"], samples, tolerance=1e-5)


def test_a_real_image_becomes_the_input_the_spec_asks_for(astronaut: Path, tmp_path: Path) -> None:
    grey = image_input(astronaut, TensorSpec("x", (None, 64, 64, 1), "float32"), "-1..1")
    assert grey.shape == (1, 64, 64, 1) and grey.min() >= -1 and grey.max() <= 1 and grey.std() > 0.1
    unit = image_input(astronaut, TensorSpec("x", (1, 32, 48, 3), "float32"), "0..1")
    assert unit.shape == (1, 32, 48, 3) and unit.min() >= 0 and unit.max() <= 1
    raw = image_input(astronaut, TensorSpec("x", (1, 192, 192, 3), "int32"), "-1..1")
    assert raw.dtype == np.int32 and raw.max() > 200
    with pytest.raises(ConversionError, match="NHWC image input"):
        image_input(astronaut, TensorSpec("x", (1, 3, 64, 64), "float32"))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ConversionError, match="cannot read the image"):
        image_input(tmp_path / "bad.png", TensorSpec("x", (1, 64, 64, 3), "float32"))
