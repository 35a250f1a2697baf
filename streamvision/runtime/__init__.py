"""Running models: the model manifest, ONNX Runtime sessions and the shared pre/post-processing."""
