"""The two architectures ``streamvision train`` builds: the classic small CNN and MobileNetV3Small.

Both take ``image`` (N, H, W, C) float32 already normalised as :data:`NORMALISATION` says and end
in a softmax named ``probabilities``, so the ONNX export has those tensor names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from streamvision.errors import TrainingError
from streamvision.train import _deps

Architecture = Literal["cnn", "mobilenet"]
ARCHITECTURES: tuple[Architecture, ...] = ("cnn", "mobilenet")

NORMALISATION: dict[Architecture, tuple[float, float]] = {"cnn": (0.0, 255.0), "mobilenet": (127.5, 127.5)}
"""(mean, std) per architecture: the model input is ``(pixel - mean) / std``: 0..1 for the CNN,
-1..1 for MobileNetV3 built without its own preprocessing layers."""

IMAGENET_WEIGHTS_FILE = "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"
"""The file Keras itself would download for MobileNetV3Small without its top; found only locally."""


@dataclass(frozen=True)
class BuiltModel:
    """A compiled-ready Keras model and how its weights started."""

    model: Any
    architecture: Architecture
    weights: str
    """``imagenet (PATH)`` or ``none (trained from scratch): REASON``."""
    frozen_backbone: bool


def build_cnn(input_shape: tuple[int, int, int], classes: int, batch_norm: bool = False) -> BuiltModel:
    """Conv2D 32 3x3 -> MaxPool -> Conv2D 64 -> MaxPool -> Conv2D 64 -> Flatten -> Dense 64 ->
    Dropout 0.5 -> softmax; with ``batch_norm`` each convolution is followed by BatchNormalization.

    Raises:
        TrainingError: Keras is missing, or the input is too small for three 3x3 convolutions and
            two poolings (needs at least 18 x 18).
    """
    if min(input_shape[:2]) < 18:
        raise TrainingError(f"the CNN needs images of at least 18 x 18 pixels, got {input_shape[:2]}")
    keras = _deps.keras()
    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for i, filters in enumerate((32, 64, 64)):
        x = layers.Conv2D(filters, 3, use_bias=not batch_norm, name=f"conv{i + 1}")(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"bn{i + 1}")(x)
        x = layers.Activation("relu", name=f"relu{i + 1}")(x)
        if i < 2:
            x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(64, activation="relu", name="dense")(x)
    x = layers.Dropout(0.5, name="dropout")(x)
    outputs = layers.Dense(classes, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name="cnn")
    return BuiltModel(model, "cnn", "none (trained from scratch)", frozen_backbone=False)


def find_imagenet_weights(explicit: Path | None = None) -> Path | None:
    """The local MobileNetV3Small ImageNet weights: ``explicit``, or Keras's own cache
    (``$KERAS_HOME/models`` or ``~/.keras/models``). Never downloads.

    Raises:
        TrainingError: ``explicit`` is given but is not a file.
    """
    if explicit is not None:
        if not explicit.is_file():
            raise TrainingError(f"no such weights file: {explicit}")
        return explicit
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    cached = home / "models" / IMAGENET_WEIGHTS_FILE
    return cached if cached.is_file() else None


def build_mobilenet(
    input_shape: tuple[int, int, int], classes: int, weights_file: Path | None = None
) -> BuiltModel:
    """MobileNetV3Small (no top, global average pooling) -> Dropout 0.2 -> softmax.

    With local ImageNet weights (see :func:`find_imagenet_weights`) the backbone is loaded and
    frozen, and only the head trains; without them the whole network trains from scratch.

    Raises:
        TrainingError: Keras is missing, the input is not 3-channel or smaller than 32 x 32, or the
            weights file does not fit the backbone.
    """
    if input_shape[2] != 3 or min(input_shape[:2]) < 32:
        raise TrainingError(f"MobileNetV3Small needs RGB images of at least 32 x 32, got {input_shape}")
    keras = _deps.keras()
    weights = find_imagenet_weights(weights_file)
    try:
        backbone = keras.applications.MobileNetV3Small(
            input_shape=input_shape,
            include_top=False,
            weights=None if weights is None else str(weights),
            pooling="avg",
            include_preprocessing=False,
        )
    except (ValueError, OSError) as exc:
        raise TrainingError(f"cannot build MobileNetV3Small with weights {weights}: {exc}") from exc
    pretrained = weights is not None
    backbone.trainable = not pretrained
    inputs = keras.Input(input_shape, name="image")
    x = backbone(inputs, training=False) if pretrained else backbone(inputs)
    x = keras.layers.Dropout(0.2, name="dropout")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name="mobilenet_v3_small")
    described = (
        f"imagenet ({weights})"
        if pretrained
        else "none (trained from scratch): no local ImageNet weights "
        f"({IMAGENET_WEIGHTS_FILE} in the Keras cache, or --weights); nothing is downloaded"
    )
    return BuiltModel(model, "mobilenet", described, frozen_backbone=pretrained)


def build(
    architecture: Architecture,
    input_shape: tuple[int, int, int],
    classes: int,
    batch_norm: bool = False,
    weights_file: Path | None = None,
) -> BuiltModel:
    """Builds ``architecture``.

    Raises:
        TrainingError: as :func:`build_cnn` / :func:`build_mobilenet`, or an unknown architecture.
    """
    if architecture == "cnn":
        return build_cnn(input_shape, classes, batch_norm)
    if architecture == "mobilenet":
        return build_mobilenet(input_shape, classes, weights_file)
    raise TrainingError(f"unknown model {architecture!r}; valid: {', '.join(ARCHITECTURES)}")
