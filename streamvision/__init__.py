"""streamvision: real-time video analytics on ONNX Runtime.

Importing the package is cheap: it loads no model runtime, no video library and no TensorFlow. The
names below other than the errors load their modules when first used.

- :func:`load_stage` runs one stage on single images; :class:`Processor` runs a pipeline's stages on
  frames you supply; :func:`frames` iterates over a source's frames with their results
  (see :mod:`streamvision.api`).
- Results: :class:`Frame` and what stages put in its ``results``: :class:`Detections`,
  :class:`Labels`, :class:`Estimates`, :class:`Mask`, :class:`Poses`, :class:`ZoneCounts`.
- Configs: :class:`PipelineConfig`, :func:`parse_config`, :func:`load_config`; models:
  :class:`ModelRegistry`.
- Errors: :class:`StreamvisionError` and its subclasses.

Example:
    >>> import streamvision
    >>> detections = streamvision.Detections.empty()
    >>> len(detections), issubclass(streamvision.ModelError, streamvision.StreamvisionError)
    (0, True)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from streamvision.errors import (
    ClusterError,
    ConfigError,
    ConversionError,
    ModelError,
    SinkError,
    SourceError,
    StreamvisionError,
    TrainingError,
)

if TYPE_CHECKING:
    from streamvision.api import FrameStream, Processor, StageRunner, frames, load_stage
    from streamvision.config import PipelineConfig, load_config, parse_config
    from streamvision.frame import Detections, Estimates, Frame, Labels, Mask, Poses, RegionCount, ZoneCounts
    from streamvision.runtime.manifest import ModelRegistry

__version__ = "0.1.0"

_LAZY = {
    **dict.fromkeys(("FrameStream", "Processor", "StageRunner", "frames", "load_stage"), "streamvision.api"),
    **dict.fromkeys(("PipelineConfig", "load_config", "parse_config"), "streamvision.config"),
    **dict.fromkeys(
        ("Detections", "Estimates", "Frame", "Labels", "Mask", "Poses", "RegionCount", "ZoneCounts"),
        "streamvision.frame",
    ),
    "ModelRegistry": "streamvision.runtime.manifest",
}
"""Exported name -> the module that defines it, imported on first access."""

__all__ = [
    "ClusterError",
    "ConfigError",
    "ConversionError",
    "Detections",
    "Estimates",
    "Frame",
    "FrameStream",
    "Labels",
    "Mask",
    "ModelError",
    "ModelRegistry",
    "PipelineConfig",
    "Poses",
    "Processor",
    "RegionCount",
    "SinkError",
    "SourceError",
    "StageRunner",
    "StreamvisionError",
    "TrainingError",
    "ZoneCounts",
    "__version__",
    "frames",
    "load_config",
    "load_stage",
    "parse_config",
]


if not TYPE_CHECKING:  # type checkers see the imports above, and flag a misspelt name

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'streamvision' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups no longer reach __getattr__
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
