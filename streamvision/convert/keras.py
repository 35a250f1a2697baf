"""Keras models (.keras, .h5) and SavedModel folders to ONNX, through a ``tf.function``.

Both become one concrete function whose outputs are a dict, so tf2onnx names the ONNX outputs
after the model's own output names; the same function is the TensorFlow reference for parity.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamvision.convert import _deps
from streamvision.convert.frontend import Converted
from streamvision.convert.parity import TensorSpec
from streamvision.errors import ConversionError


def load_keras(path: Path) -> Any:
    """Loads a .keras or .h5 model without its training configuration.

    Raises:
        ConversionError: TensorFlow is missing or Keras cannot read the file.
    """
    tf = _deps.tensorflow()
    try:
        return tf.keras.models.load_model(str(path), compile=False)
    except Exception as exc:  # Keras raises ValueError, OSError, TypeError... for unreadable files
        raise ConversionError(f"Keras cannot load {path}: {exc}") from exc


def convert_keras_model(model: Any, opset: int, nchw: bool = False) -> Converted:
    """Converts an in-memory Keras model (functional or sequential, with known inputs).

    Raises:
        ConversionError: the model declares no inputs, or tf2onnx fails.
    """
    tf = _deps.tensorflow()
    try:
        keras_inputs = list(model.inputs)
    except (AttributeError, ValueError) as exc:
        raise ConversionError(
            f"the Keras model declares no inputs (subclassed and never built?): {exc}"
        ) from exc
    if not keras_inputs:
        raise ConversionError("the Keras model declares no inputs")
    specs = [
        TensorSpec(_tensor_name(t, i), tuple(t.shape), tf.as_dtype(t.dtype).name)
        for i, t in enumerate(keras_inputs)
    ]
    names = _output_names(model)

    def call(*args: Any) -> dict[str, Any]:
        outputs = model(args[0] if len(args) == 1 else list(args), training=False)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        return dict(zip(names, outputs, strict=True))

    return _convert_function(call, specs, opset, nchw, kind="keras")


def convert_saved_model(
    folder: Path, opset: int, nchw: bool = False, signature: str = "serving_default"
) -> Converted:
    """Converts one signature of a SavedModel folder.

    Raises:
        ConversionError: TensorFlow cannot load the folder, the signature is missing or tf2onnx fails.
    """
    tf = _deps.tensorflow()
    try:
        loaded = tf.saved_model.load(str(folder))
    except Exception as exc:  # TF raises OSError or its own errors for unreadable folders
        raise ConversionError(f"TensorFlow cannot load the SavedModel {folder}: {exc}") from exc
    if signature not in loaded.signatures:
        raise ConversionError(f"{folder} has no signature {signature!r}; it has {sorted(loaded.signatures)}")
    fn = loaded.signatures[signature]
    arg_specs = fn.structured_input_signature[1]
    ordered = sorted(arg_specs)
    specs = [TensorSpec(n, tuple(arg_specs[n].shape), arg_specs[n].dtype.name) for n in ordered]

    def call(*args: Any) -> dict[str, Any]:
        return dict(fn(**dict(zip(ordered, args, strict=True))))

    converted = _convert_function(call, specs, opset, nchw, kind="saved_model")
    converted.notes.append(f"signature {signature}")
    return converted


def _convert_function(call: Any, specs: Sequence[TensorSpec], opset: int, nchw: bool, kind: str) -> Converted:
    tf = _deps.tensorflow()
    tf2onnx = _deps.tf2onnx()
    signature = [tf.TensorSpec(s.shape, tf.as_dtype(s.dtype), name=s.name) for s in specs]
    function = tf.function(call, input_signature=signature)
    nchw_names = [f"{s.name}:0" for s in specs if len(s.shape) == 4] if nchw else None
    try:
        model, _ = tf2onnx.convert.from_function(
            function, input_signature=signature, opset=opset, inputs_as_nchw=nchw_names
        )
    except Exception as exc:  # tf2onnx raises bare Exceptions and ValueErrors from deep inside
        raise ConversionError(f"tf2onnx cannot convert the {kind} model: {exc}") from exc

    def reference(inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        outputs = function(*[tf.constant(x) for x in inputs])
        return {name: value.numpy() for name, value in outputs.items()}

    return Converted(model, list(specs), reference, kind=kind, runtime="tensorflow", notes=[])


def _tensor_name(tensor: Any, index: int) -> str:
    name = str(getattr(tensor, "name", "") or f"input_{index}")
    return name.split(":")[0].replace("/", "_")


def _output_names(model: Any) -> list[str]:
    names = list(getattr(model, "output_names", None) or [])
    outputs = model.outputs if isinstance(model.outputs, (list, tuple)) else [model.outputs]
    if len(names) != len(outputs) or len(set(names)) != len(names):
        names = [f"output_{i}" for i in range(len(outputs))]
    return [n.replace("/", "_") for n in names]
