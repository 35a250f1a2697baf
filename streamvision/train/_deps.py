"""Lazy imports of the training stack (TensorFlow / Keras, scikit-learn, matplotlib), with an install hint."""

from __future__ import annotations

import os
from types import ModuleType

from streamvision import optional
from streamvision.errors import TrainingError

INSTALL_HINT = "pip install 'streamvision[train]'"


def require(name: str) -> ModuleType:
    """Imports ``name``.

    Raises:
        TrainingError: it is not installed; the message names the ``train`` extra.
    """
    return optional.require(name, "training", INSTALL_HINT, TrainingError)


def keras() -> ModuleType:
    """Imports Keras on TensorFlow with oneDNN off (reproducible runs, and parity checks that hold).

    Raises:
        TrainingError: TensorFlow or Keras is not installed.
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    # 3: TensorFlow's C++ log says nothing; its failures still come back as Python exceptions. At 2 its
    # tf.data prints version-skew lines ("NodeDef mentions attribute ...") at ERROR level on every fit.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    require("tensorflow")
    return require("keras")


def tensorflow() -> ModuleType:
    """Imports TensorFlow (see :func:`keras`).

    Raises:
        TrainingError: TensorFlow is not installed.
    """
    keras()
    return require("tensorflow")
