"""Defaults of ``streamvision convert`` that its command line shows without loading the converter."""

DEFAULT_TOLERANCE = 1e-3
"""Largest absolute difference between the source model's outputs and ONNX Runtime's that passes."""
