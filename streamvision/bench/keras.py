"""Keras / TensorFlow against ONNX Runtime on the same Keras model, batch 1, in one run.

Needs the ``convert`` extra (TensorFlow, tf2onnx). Each model is converted with
:mod:`streamvision.convert` (parity checked), then both runtimes are timed on the same seeded input.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from streamvision.bench.models import time_model
from streamvision.bench.progress import Progress, silent
from streamvision.errors import ConversionError
from streamvision.metrics import Samples
from streamvision.runtime.session import OnnxModel, OrtSettings


def _time_keras(model: Any, x: np.ndarray, runs: int, warmup: int = 5) -> dict[str, Any]:
    import time

    for _ in range(warmup):
        model(x, training=False)
    samples = Samples()
    for _ in range(runs):
        started = time.perf_counter()
        model(x, training=False)
        samples.add((time.perf_counter() - started) * 1000.0)
    return samples.percentiles()


def keras_vs_onnxruntime(
    paths: list[Path], settings: OrtSettings, runs: int, progress: Progress = silent
) -> list[dict[str, Any]]:
    """For each Keras file: ms p50 of ``model(x)`` in Keras and of the converted model in ONNX Runtime.

    Raises:
        ConversionError: TensorFlow is missing, a file is not a Keras model, or conversion fails.
    """
    from streamvision.convert import ConvertOptions, convert_file
    from streamvision.convert.keras import load_keras

    rows = []
    with tempfile.TemporaryDirectory(prefix="streamvision-keras-") as tmp:
        for path in paths:
            if not path.exists():
                raise ConversionError(f"no such Keras model: {path}")
            onnx_path = Path(tmp) / f"{path.stem}.onnx"
            result = convert_file(path, onnx_path, ConvertOptions())
            keras_model = load_keras(path)
            shape = [1 if d is None else int(d) for d in keras_model.inputs[0].shape]
            x = np.random.default_rng(0).random(shape, dtype=np.float32)
            ort_model = OnnxModel(onnx_path, settings.intra_op_threads, settings)
            keras_ms = _time_keras(keras_model, x, runs)
            ort_ms = time_model(ort_model, {ort_model.input_names[0]: x}, runs)
            rows.append(
                {
                    "model": path.name,
                    "input": shape,
                    "keras_ms": keras_ms,
                    "onnxruntime_ms": ort_ms,
                    "ratio": round(float(keras_ms["p50"] or 0) / float(ort_ms["p50"] or 1), 2),
                    "parity_max_abs": None if result.parity is None else result.parity.max_abs,
                }
            )
            progress(
                f"keras {path.name}",
                f"{keras_ms['p50'] or 0:.2f} ms in Keras, {ort_ms['p50'] or 0:.2f} ms in ONNX Runtime",
            )
    return rows
