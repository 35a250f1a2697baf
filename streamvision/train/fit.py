"""The training loop: seeded tf.data input with augmentation, Adam, callbacks, a per-epoch display."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from streamvision.train import _deps
from streamvision.train.models import BuiltModel


@dataclass(frozen=True)
class Augmentation:
    """Random changes applied to training batches only (never to validation or test images).

    Attributes:
        flip: mirror left-right (off for digits: a mirrored 2 is no 2).
        rotation: up to this many degrees either way.
        zoom: up to this fraction in or out.
    """

    flip: bool = False
    rotation: float = 10.0
    zoom: float = 0.1

    @property
    def enabled(self) -> bool:
        return self.flip or self.rotation > 0 or self.zoom > 0


@dataclass(frozen=True)
class FitSettings:
    """How to train."""

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    patience: int = 3
    """Epochs without a better validation loss before training stops (the best weights are kept)."""
    seed: int = 0


@dataclass(frozen=True)
class FitResult:
    """What training did."""

    history: dict[str, list[float]]
    epochs_run: int
    best_epoch: int
    seconds: float
    stopped_early: bool


def seed_everything(seed: int) -> None:
    """Seeds Python, numpy and TensorFlow, and makes TensorFlow's ops deterministic; call it before
    building a model so that its initial weights are seeded too.

    Raises:
        TrainingError: TensorFlow / Keras is not installed.
    """
    _deps.keras().utils.set_random_seed(seed)
    _deps.tensorflow().config.experimental.enable_op_determinism()


def fit(
    built: BuiltModel,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    classes: int,
    settings: FitSettings,
    augmentation: Augmentation,
    fill: float,
    out_dir: Path,
    console: Console | None = None,
) -> FitResult:
    """Compiles and trains ``built.model`` in place; the weights of the best validation epoch win.

    Args:
        built: the model to train.
        train: normalised float32 images (N, H, W, C) and their class indices.
        val: the same for validation.
        classes: number of classes (for one-hot targets).
        settings: epochs, batch size, learning rate, patience, seed.
        augmentation: what to vary in training batches.
        fill: the normalised value of a black pixel, for areas rotation and zoom uncover.
        out_dir: ``checkpoint.keras`` (best so far) and ``logs/`` (TensorBoard) go here.
        console: where the per-epoch display goes (stderr by default).

    Raises:
        TrainingError: TensorFlow / Keras is not installed.
    """
    keras = _deps.keras()
    tf = _deps.tensorflow()
    model = built.model
    model.compile(
        optimizer=keras.optimizers.Adam(settings.learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    x_train, y_train = train
    dataset = tf.data.Dataset.from_tensor_slices((x_train, keras.utils.to_categorical(y_train, classes)))
    dataset = dataset.shuffle(len(x_train), seed=settings.seed).batch(settings.batch_size)
    if augmentation.enabled:
        augment = _augmenter(keras, augmentation, fill, settings.seed)
        dataset = dataset.map(lambda x, y: (augment(x, training=True), y))
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    validation = (val[0], keras.utils.to_categorical(val[1], classes))
    steps = int(np.ceil(len(x_train) / settings.batch_size))
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=settings.patience, restore_best_weights=True
        ),
        keras.callbacks.ModelCheckpoint(
            str(out_dir / "checkpoint.keras"), monitor="val_loss", save_best_only=True
        ),
        keras.callbacks.TensorBoard(str(out_dir / "logs")),
        _progress(keras, console or Console(stderr=True), settings.epochs, steps),
    ]
    started = time.monotonic()
    record = model.fit(
        dataset,
        validation_data=validation,
        epochs=settings.epochs,
        verbose=0,
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles itself, seeded
    )
    seconds = time.monotonic() - started
    history = {key: [float(v) for v in values] for key, values in record.history.items()}
    epochs_run = len(history.get("loss", []))
    val_loss = history.get("val_loss", [])
    best = int(np.argmin(val_loss)) + 1 if val_loss else epochs_run
    return FitResult(history, epochs_run, best, seconds, stopped_early=epochs_run < settings.epochs)


def _augmenter(keras: Any, augmentation: Augmentation, fill: float, seed: int) -> Any:
    layers = keras.layers
    steps: list[Any] = []
    if augmentation.flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed))
    if augmentation.rotation > 0:
        steps.append(
            layers.RandomRotation(
                augmentation.rotation / 360.0, fill_mode="constant", fill_value=fill, seed=seed + 1
            )
        )
    if augmentation.zoom > 0:
        steps.append(
            layers.RandomZoom(
                (-augmentation.zoom, augmentation.zoom), fill_mode="constant", fill_value=fill, seed=seed + 2
            )
        )
    return keras.Sequential(steps, name="augmentation")


def _progress(keras: Any, console: Console, epochs: int, steps: int) -> Any:
    """A Keras callback: a batch progress bar per epoch, then one line with the epoch's figures."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    class RichProgress(keras.callbacks.Callback):  # type: ignore[misc]  # Keras ships no types
        def __init__(self) -> None:
            super().__init__()
            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
            self.task: Any = None
            self.started = 0.0

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            self.bar.start()

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.started = time.monotonic()
            self.task = self.bar.add_task(f"epoch {epoch + 1}/{epochs}", total=steps, loss=0.0)

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            self.bar.update(self.task, completed=batch + 1, loss=float((logs or {}).get("loss", 0.0)))

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.bar.remove_task(self.task)
            logs = logs or {}
            shown = (
                ("loss", "loss"),
                ("accuracy", "acc"),
                ("val_loss", "val_loss"),
                ("val_accuracy", "val_acc"),
            )
            figures = " ".join(f"{short} {float(logs[key]):.4f}" for key, short in shown if key in logs)
            console.print(f"epoch {epoch + 1}/{epochs} {figures} {time.monotonic() - self.started:.1f} s")

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            self.bar.stop()

    return RichProgress()
