"""Train a Keras image classifier, evaluate it, export it to ONNX and register it (extra: ``train``).

TensorFlow loads only when training runs; without it :func:`streamvision.train.core.train`
raises :class:`~streamvision.errors.TrainingError` naming ``pip install 'streamvision[train]'``.
Dataset loading (:mod:`.data`) and the metrics (:mod:`.metrics`) need only numpy and OpenCV
(plus scikit-learn for the stratified split and the ``digits`` set).
"""
