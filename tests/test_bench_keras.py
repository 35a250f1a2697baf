"""Keras against ONNX Runtime in ``streamvision bench --keras`` (needs the convert extra)."""

from __future__ import annotations

from pathlib import Path

import pytest
import tensorflow as tf

pytestmark = pytest.mark.convert

from streamvision.bench.keras import keras_vs_onnxruntime  # noqa: E402
from streamvision.bench.report import markdown  # noqa: E402
from streamvision.runtime.session import OrtSettings  # noqa: E402


def test_a_keras_cnn_is_timed_in_both_runtimes(tmp_path: Path) -> None:
    keras = tf.keras
    model = keras.Sequential(
        [
            keras.Input((32, 32, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )
    path = tmp_path / "cnn.keras"
    model.save(path)

    (row,) = keras_vs_onnxruntime([path], OrtSettings(intra_op_threads=1), runs=20)
    assert row["model"] == "cnn.keras" and row["input"] == [1, 32, 32, 1]
    assert row["parity_max_abs"] < 1e-4
    assert row["keras_ms"]["p50"] > 0 and row["onnxruntime_ms"]["p50"] > 0
    assert row["ratio"] == round(row["keras_ms"]["p50"] / row["onnxruntime_ms"]["p50"], 2)
    report_lines = markdown(
        {
            "source": "-",
            "machine": {"cpus": 2, "platform": "-", "onnxruntime": "-"},
            "ort_settings": {},
            "models": [],
            "ratios": {"pipeline_fps": 1.0, "sequential_fps": 1.0, "pipeline_vs_sequential": 1.0,
                       "slowest_step_bound_fps": 1.0, "pipeline_vs_slowest_step_bound": 1.0},
            "pipeline": {"step_ms": {}, "stage_ms": {}},
            "sequential": {"step_ms": {}, "stage_ms": {}},
            "keras": [row],
        }
    )  # fmt: skip
    assert "| cnn.keras | 1x32x32x1 |" in report_lines
