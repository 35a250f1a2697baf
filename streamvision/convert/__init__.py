"""Keras / SavedModel / TFLite / TF.js models to ONNX, with parity checks (extra: ``convert``).

TensorFlow and tf2onnx load only when a conversion runs; without them the functions here raise
:class:`~streamvision.errors.ConversionError` naming ``pip install 'streamvision[convert]'``.
"""

from streamvision.convert.core import ConversionResult, ConvertOptions, convert_file, convert_source, finish

__all__ = ["ConversionResult", "ConvertOptions", "convert_file", "convert_source", "finish"]
