"""streamvision: real-time video analytics on ONNX Runtime.

Importing the package is cheap: it loads no model runtime, no video library and no TensorFlow.
"""

__version__ = "0.1.0"
