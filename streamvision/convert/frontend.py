"""What every source frontend (Keras, SavedModel, TFLite, TF.js) hands to the conversion core."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamvision.convert.parity import Runner, TensorSpec


@dataclass
class Converted:
    """A source model converted to ONNX, plus a way to run the source itself.

    Attributes:
        model: the ``onnx.ModelProto`` as tf2onnx produced it.
        inputs: the source's inputs, in order, channels-last as the source declares them.
        reference: runs the source; its outputs are keyed by the ONNX output names.
        kind: ``keras``, ``saved_model``, ``tflite`` or ``tfjs``.
        runtime: what ``reference`` runs on, for the timing report (``tensorflow``, ``tflite``).
        notes: what the frontend had to repair on the way (densified weights, replaced ops, ...).
    """

    model: Any
    inputs: list[TensorSpec]
    reference: Runner
    kind: str
    runtime: str
    notes: list[str]
