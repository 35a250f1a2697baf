"""Keras / SavedModel / TFLite / TF.js models to ONNX, with parity checks (extra: ``convert``).

TensorFlow and tf2onnx load only when a conversion runs; without them the functions here raise
:class:`~streamvision.errors.ConversionError` naming ``pip install 'streamvision[convert]'``. The
names below load on first use, so the command line can read this package's defaults cheaply.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamvision.convert.core import (
        ConversionResult,
        ConvertOptions,
        convert_file,
        convert_source,
        finish,
    )

__all__ = ["ConversionResult", "ConvertOptions", "convert_file", "convert_source", "finish"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("streamvision.convert.core"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
