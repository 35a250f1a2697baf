"""Tiny ONNX detectors built with onnx.helper: they ignore the image and emit fixed tensors,
so a stage's decoding and letterbox undo can be checked against known boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper

from streamvision.runtime.manifest import sha256_of

COCO_FIRST = ("person", "bicycle", "car", "motorcycle")


def constant_detector(path: Path, outputs: dict[str, np.ndarray], size: tuple[int, int]) -> Path:
    """A graph with input ``images`` (1, 3, H, W) whose outputs are ``outputs`` whatever the image."""
    width, height = size
    nodes = [helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0)]
    nodes.append(helper.make_node("Mul", ["mean", "zero"], ["nothing"]))
    initializers = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    graph_outputs = []
    for name, value in outputs.items():
        initializers.append(numpy_helper.from_array(value.astype(np.float32), f"{name}_value"))
        nodes.append(helper.make_node("Add", [f"{name}_value", "nothing"], [name]))
        graph_outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(
        nodes,
        "constant_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, height, width])],
        graph_outputs,
        initializer=initializers,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def write_manifest(folder: Path, entries: dict[str, tuple[Path, str, tuple[int, int], list[str]]]) -> Path:
    """A manifest in ``folder`` for models given as name -> (file, decoder, input size, outputs)."""
    models = {}
    for name, (file, decoder, size, outputs) in entries.items():
        models[name] = {
            "file": file.name,
            "sha256": sha256_of(file),
            "task": "object_detection",
            "decoder": decoder,
            "input": {
                "name": "images",
                "size": list(size),
                "layout": "NCHW",
                "color": "RGB",
                "mean": [0, 0, 0],
                "std": [255, 255, 255],
            },
            "outputs": outputs,
            "labels": list(COCO_FIRST),
            "license": "test",
            "source": {
                "registry": "none",
                "package": "tests",
                "version": "0",
                "file": file.name,
                "sha256": "0",
            },
        }
    (folder / "manifest.yaml").write_text(yaml.safe_dump({"models": models}))
    return folder
