"""One training run: data -> model -> fit -> test metrics and plots -> ONNX -> manifest -> reports."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import yaml
from rich.console import Console

from streamvision.errors import TrainingError
from streamvision.runtime.manifest import InputSpec, default_models_dir
from streamvision.runtime.session import OnnxModel
from streamvision.train import data as datasets
from streamvision.train.export import check_name, export_onnx, manifest_entry, write_entry
from streamvision.train.fit import Augmentation, FitSettings, fit, seed_everything
from streamvision.train.metrics import evaluate, plot_confusion, plot_history
from streamvision.train.models import NORMALISATION, Architecture, build
from streamvision.train.report import write_reports

log = logging.getLogger(__name__)

SAMPLES_PER_CLASS = 2
SAMPLE_SIDE = 112


@dataclass(frozen=True)
class TrainOptions:
    """Everything ``streamvision train`` takes.

    Attributes:
        data: ``mnist-5k``, ``digits`` or a folder with one subfolder of images per class.
        out_dir: where the model, plots, reports and manifest go.
        architecture: ``cnn`` or ``mobilenet``.
        name: the model's manifest name (default ``<data>_<architecture>``).
        size: square image side (default 28 for the CNN on digits, 64 for the CNN on folders,
            96 for MobileNet).
        color: ``GRAY`` or ``RGB`` (default GRAY for the CNN on digits; MobileNet is always RGB).
        augmentation: flip / rotation / zoom; None picks: no flip for digits, flip for folders.
        register: also add the model to the project's ``models/`` manifest.
        weights: a local MobileNetV3Small ImageNet weights file (the Keras cache is searched too).
    """

    data: str
    out_dir: Path
    architecture: Architecture = "cnn"
    name: str | None = None
    size: int | None = None
    color: Literal["GRAY", "RGB"] | None = None
    batch_norm: bool = False
    augmentation: Augmentation | None = None
    fit: FitSettings = field(default_factory=FitSettings)
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    register: bool = False
    weights: Path | None = None


def _resolved(options: TrainOptions) -> tuple[str, int, Literal["GRAY", "RGB"], Augmentation]:
    builtin = options.data in datasets.BUILTIN
    slug = options.data if builtin else Path(options.data).name
    name = check_name(options.name or f"{slug}_{options.architecture}".replace(" ", "_"))
    if options.architecture == "mobilenet":
        if options.color == "GRAY":
            raise TrainingError("MobileNetV3Small takes RGB images; drop --color GRAY or use --model cnn")
        color: Literal["GRAY", "RGB"] = "RGB"
        size = options.size or 96
    else:
        color = options.color or ("GRAY" if builtin else "RGB")
        size = options.size or (28 if builtin else 64)
    augmentation = options.augmentation or Augmentation(flip=not builtin)
    return name, size, color, augmentation


def train(options: TrainOptions, console: Console | None = None) -> dict[str, Any]:
    """Trains, evaluates on the held-out test split, exports to ONNX and writes the manifest.

    Returns the report (also written as ``report.json`` / ``report.md`` in ``out_dir``).

    Raises:
        TrainingError: bad data or options, a missing ``train`` extra, or an export that fails
            its parity check.
    """
    console = console or Console(stderr=True)
    started = time.monotonic()
    name, size, color, augmentation = _resolved(options)
    out = options.out_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainingError(f"cannot create {out}: {exc.strerror or exc}") from None
    dataset = datasets.load_dataset(options.data, size, color)
    split = datasets.stratified_split(
        dataset.labels, options.val_fraction, options.test_fraction, options.fit.seed
    )
    console.print(
        f"{dataset.name}: {len(dataset.labels)} images, {len(dataset.classes)} classes, "
        f"{size}x{size} {color}; train {len(split.train)}, validation {len(split.val)}, "
        f"test {len(split.test)}"
    )
    mean, std = NORMALISATION[options.architecture]
    x = (dataset.images.astype(np.float32) - np.float32(mean)) / np.float32(std)
    y = dataset.labels
    seed_everything(options.fit.seed)
    built = build(
        options.architecture, x.shape[1:], len(dataset.classes), options.batch_norm, options.weights
    )
    console.print(
        f"model {built.architecture}: {built.model.count_params():,} parameters; weights {built.weights}"
    )
    result = fit(
        built,
        (x[split.train], y[split.train]),
        (x[split.val], y[split.val]),
        len(dataset.classes),
        options.fit,
        augmentation,
        fill=float((0.0 - mean) / std),
        out_dir=out,
        console=console,
    )
    predicted = built.model.predict(x[split.test], verbose=0).argmax(axis=1)
    evaluation = evaluate(y[split.test], predicted, dataset.classes)
    plot_history(result.history, out / "curves.png")
    plot_confusion(evaluation, out / "confusion_matrix.png")

    exported = export_onnx(built.model, out, name, x[split.test[:64]])
    onnx_probs = OnnxModel(exported.onnx_file).run({"image": x[split.test]})[0]
    onnx_accuracy = float((onnx_probs.argmax(axis=1) == y[split.test]).mean())
    spec = InputSpec(
        name="image",
        size=(size, size),
        layout="NHWC",
        color=color,
        mean=(mean,) * x.shape[3],
        std=(std,) * x.shape[3],
    )
    entry = manifest_entry(
        exported,
        spec,
        dataset.classes,
        dataset.origin,
        {
            "trained_on": dataset.name,
            "test_accuracy": round(evaluation.accuracy, 4),
            "macro_f1": round(evaluation.macro["f1"], 4),
        },
    )
    manifest = write_entry(out, name, entry)
    registered = None
    if options.register:
        registered = write_entry(default_models_dir(), name, entry, model_file=exported.onnx_file)
        console.print(f"registered {name!r} in {registered}")
    samples = _write_samples(dataset, split.test, out / "samples")
    pipeline = _write_pipeline(out, name, samples)

    report = {
        "name": name,
        "data": {
            "name": dataset.name,
            "origin": vars(dataset.origin),
            "images": len(dataset.labels),
            "classes": list(dataset.classes),
            "size": size,
            "color": color,
            "normalisation": {"mean": mean, "std": std},
            "seed": options.fit.seed,
            "split": {"train": len(split.train), "val": len(split.val), "test": len(split.test)},
            "augmentation": vars(augmentation) if augmentation.enabled else "off",
        },
        "model": {
            "architecture": built.architecture,
            "parameters": int(built.model.count_params()),
            "batch_norm": options.batch_norm if built.architecture == "cnn" else None,
            "weights": built.weights,
            "frozen_backbone": built.frozen_backbone,
        },
        "training": {
            "epochs": options.fit.epochs,
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early,
            "seconds": round(result.seconds, 1),
            "batch_size": options.fit.batch_size,
            "learning_rate": options.fit.learning_rate,
            "patience": options.fit.patience,
            "history": result.history,
        },
        "test": evaluation.as_dict(),
        "export": {
            "keras": str(exported.keras_file),
            "onnx": str(exported.onnx_file),
            "sha256": exported.sha256,
            "opset": exported.opset,
            "parity_max_abs": exported.parity_max_abs,
            "parity_samples": exported.parity_samples,
            "parity_tolerance": 1e-4,
            "ms_keras": exported.ms_keras,
            "ms_onnx": exported.ms_onnx,
            "onnx_test_accuracy": round(onnx_accuracy, 4),
            "manifest": str(manifest),
            "registered": None if registered is None else str(registered),
            "pipeline": str(pipeline),
            "samples": str(samples),
        },
        "plots": {"curves": str(out / "curves.png"), "confusion_matrix": str(out / "confusion_matrix.png")},
        "seconds_total": round(time.monotonic() - started, 1),
    }
    try:
        write_reports(report, out)
    except OSError as exc:
        raise TrainingError(f"cannot write the reports into {out}: {exc.strerror or exc}") from None
    return report


def _write_samples(dataset: datasets.Dataset, test: np.ndarray, folder: Path) -> Path:
    """A few held-out test images per class, enlarged, as PNGs named ``NNN_<class>.png``."""
    folder.mkdir(exist_ok=True)
    k = 0
    for label, class_name in enumerate(dataset.classes):
        for index in test[dataset.labels[test] == label][:SAMPLES_PER_CLASS]:
            image = dataset.images[index]
            bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if image.shape[2] == 1 else cv2.COLOR_RGB2BGR)
            big = cv2.resize(bgr, (SAMPLE_SIDE, SAMPLE_SIDE), interpolation=cv2.INTER_LINEAR)
            cv2.imwrite(str(folder / f"{k:03d}_{class_name}.png"), big)
            k += 1
    return folder


def _write_pipeline(out: Path, name: str, samples: Path) -> Path:
    """A ready pipeline config: whole-frame classification of the sample images."""
    config = {
        "source": str(samples),
        "stages": [{"type": "classify", "model": name, "models": str(out), "top_k": 3}],
    }
    path = out / "pipeline.yaml"
    header = (
        f"# Whole-frame classification with {name!r} from `streamvision train`.\n"
        "# Paths are relative to the folder training ran in; set `source` to a camera, clip or folder.\n"
    )
    path.write_text(header + yaml.safe_dump(config, sort_keys=False))
    return path
