"""Lazy imports of the conversion stack (TensorFlow, tf2onnx, onnx), with an install hint."""

from __future__ import annotations

import os
from types import ModuleType

from streamvision.errors import ConversionError
from streamvision.optional import require

INSTALL_HINT = "pip install 'streamvision[convert]'"


def _import(name: str) -> ModuleType:
    return require(name, "model conversion", INSTALL_HINT, ConversionError)


def tensorflow() -> ModuleType:
    """Imports TensorFlow with oneDNN off, so its results are reproducible enough for parity checks.

    ``TF_ENABLE_ONEDNN_OPTS`` is read once, when TensorFlow loads: with oneDNN on, TF itself drifts
    (several pixels on CenterNet's boxes), which would be blamed on the conversion.

    Raises:
        ConversionError: TensorFlow is not installed.
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    # 3: TensorFlow's C++ log says nothing; its failures still come back as Python exceptions. At 2 its
    # tf.data prints version-skew lines ("NodeDef mentions attribute ...") at ERROR level on every fit.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return _import("tensorflow")


def tf2onnx() -> ModuleType:
    """Imports tf2onnx (after TensorFlow, so the environment above applies).

    Raises:
        ConversionError: tf2onnx or TensorFlow is not installed.
    """
    tensorflow()
    return _import("tf2onnx")


def onnx() -> ModuleType:
    """Imports onnx.

    Raises:
        ConversionError: onnx is not installed.
    """
    return _import("onnx")
