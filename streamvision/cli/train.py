"""``streamvision train``: train, evaluate, export and register an image classifier."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streamvision.cli.errors import reported_errors


def train(
    data: Annotated[
        str, typer.Argument(help="mnist-5k, digits, or a folder with one subfolder of images per class.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the model, plots and reports.")],
    model: Annotated[str, typer.Option("--model", "-m", help="cnn or mobilenet (MobileNetV3Small).")] = "cnn",
    name: Annotated[
        str | None, typer.Option("--name", help="Manifest name (default: <data>_<model>).")
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Most epochs to train.")] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 64,
    learning_rate: Annotated[float, typer.Option("--learning-rate", min=1e-7, max=1.0)] = 1e-3,
    patience: Annotated[
        int, typer.Option("--patience", min=1, help="Stop after this many epochs without a better val loss.")
    ] = 3,
    size: Annotated[int | None, typer.Option("--size", min=8, help="Square image side in pixels.")] = None,
    color: Annotated[str | None, typer.Option("--color", help="GRAY or RGB.")] = None,
    batch_norm: Annotated[
        bool, typer.Option("--batch-norm", help="BatchNormalization after each conv.")
    ] = False,
    flip: Annotated[
        bool | None,
        typer.Option("--flip/--no-flip", help="Mirror training images (default: not for digits)."),
    ] = None,
    rotation: Annotated[
        float, typer.Option("--rotation", min=0.0, max=180.0, help="Degrees, either way.")
    ] = 10.0,
    zoom: Annotated[float, typer.Option("--zoom", min=0.0, max=0.9, help="Fraction in or out.")] = 0.1,
    no_augment: Annotated[bool, typer.Option("--no-augment", help="No flip, rotation or zoom.")] = False,
    val: Annotated[float, typer.Option("--val", min=0.01, max=0.9, help="Validation fraction.")] = 0.1,
    test: Annotated[float, typer.Option("--test", min=0.01, max=0.9, help="Held-out test fraction.")] = 0.2,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    weights: Annotated[
        Path | None, typer.Option("--weights", help="Local MobileNetV3Small ImageNet weights (.h5).")
    ] = None,
    register: Annotated[
        bool, typer.Option("--register", help="Also add the model to the project's models/manifest.yaml.")
    ] = False,
) -> None:
    """Train an image classifier (Keras), evaluate it on a held-out split, export ONNX, register it."""
    with reported_errors():
        from rich.console import Console

        from streamvision.errors import ConfigError
        from streamvision.train.core import TrainOptions
        from streamvision.train.core import train as run_training
        from streamvision.train.fit import Augmentation, FitSettings
        from streamvision.train.models import ARCHITECTURES

        if model not in ARCHITECTURES:
            raise ConfigError(f"--model must be one of {', '.join(ARCHITECTURES)}, not {model!r}")
        if color is not None and color.upper() not in ("GRAY", "RGB"):
            raise ConfigError(f"--color must be GRAY or RGB, not {color!r}")
        augmentation = None
        if no_augment:
            augmentation = Augmentation(flip=False, rotation=0.0, zoom=0.0)
        elif flip is not None:
            augmentation = Augmentation(flip=flip, rotation=rotation, zoom=zoom)
        elif rotation != 10.0 or zoom != 0.1:
            augmentation = Augmentation(flip=data not in ("mnist-5k", "digits"), rotation=rotation, zoom=zoom)
        options = TrainOptions(
            data=data,
            out_dir=output,
            architecture=model,  # checked against ARCHITECTURES above
            name=name,
            size=size,
            color=None if color is None else color.upper(),  # type: ignore[arg-type]  # checked above
            batch_norm=batch_norm,
            augmentation=augmentation,
            fit=FitSettings(
                epochs=epochs,
                batch_size=batch_size,
                learning_rate=learning_rate,
                patience=patience,
                seed=seed,
            ),
            val_fraction=val,
            test_fraction=test,
            register=register,
            weights=weights,
        )
        console = Console(stderr=True)
        report = run_training(options, console)
        test_figures, export = report["test"], report["export"]
        typer.echo(
            f"{report['name']}: test accuracy {test_figures['accuracy']:.4f}, macro F1 "
            f"{test_figures['macro']['f1']:.4f}, trained in {report['training']['seconds']:.1f} s "
            f"({report['training']['epochs_run']} epochs)"
        )
        typer.echo(
            f"  ONNX {export['onnx']}: parity {export['parity_max_abs']:.3g}, manifest {export['manifest']}"
        )
        typer.echo(f"  report {output / 'report.md'}; run it: streamvision run --config {export['pipeline']}")
