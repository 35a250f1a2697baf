"""ONNX Runtime latency per model and per session setting, on inputs shaped as the manifest says."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamvision.metrics import Samples
from streamvision.runtime.manifest import InputSpec, ModelRegistry
from streamvision.runtime.session import OnnxModel, OrtSettings


def input_shape(spec: InputSpec, batch: int) -> tuple[int, ...]:
    """The tensor shape for ``batch`` images of the spec's size, layout and colour."""
    width, height = spec.size
    channels = 1 if spec.color == "GRAY" else 3
    if spec.layout == "NCHW":
        return (batch, channels, height, width)
    return (batch, height, width, channels)


def random_input(spec: InputSpec, batch: int, seed: int = 0) -> np.ndarray:
    """Random pixels, normalised as the model expects."""
    pixels = np.random.default_rng(seed).integers(0, 256, input_shape(spec, batch))
    if spec.dtype != "float32":
        return pixels.astype(spec.dtype)
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)
    if spec.layout == "NCHW":
        mean, std = mean[:, None, None], std[:, None, None]
    return ((pixels - mean) / std).astype(np.float32)


def has_dynamic_batch(model: OnnxModel, input_name: str) -> bool:
    """True when the model's first input dimension is not fixed."""
    return not isinstance(model.input_shapes[input_name][0], int)


def time_model(model: OnnxModel, feeds: dict[str, np.ndarray], runs: int, warmup: int = 5) -> dict[str, Any]:
    """Latency percentiles (ms) of ``runs`` inferences after ``warmup`` untimed ones."""
    for _ in range(warmup):
        model.run(feeds)
    samples = Samples()
    for _ in range(runs):
        started = time.perf_counter()
        model.run(feeds)
        samples.add((time.perf_counter() - started) * 1000.0)
    return samples.percentiles()


def bench_models(
    models: list[tuple[ModelRegistry, str]], settings: OrtSettings, runs: int, batch: int
) -> list[dict[str, Any]]:
    """Batch-1 latency of each model, and batch-``batch`` latency where the batch size is free."""
    rows = []
    for registry, name in models:
        spec = registry.get(name)
        model = OnnxModel(registry.verify(name), settings.intra_op_threads, settings)
        row: dict[str, Any] = {
            "model": name,
            "task": spec.task,
            "batch_1_ms": time_model(model, {spec.input.name: random_input(spec.input, 1)}, runs),
        }
        if batch > 1 and has_dynamic_batch(model, spec.input.name):
            timing = time_model(model, {spec.input.name: random_input(spec.input, batch)}, max(runs // 4, 5))
            row[f"batch_{batch}_ms"] = timing
            row[f"batch_{batch}_ms_per_image"] = round(float(timing["p50"] or 0) / batch, 3)
        rows.append(row)
    return rows


SETTINGS_GRID = {
    "graph_optimization": ("disable", "basic", "all"),
    "intra_op_threads": (1, 2),
    "execution_mode": ("sequential", "parallel"),
    "spinning": (False, True),
}


def bench_settings(path: Path, spec: InputSpec, runs: int) -> list[dict[str, Any]]:
    """Batch-1 latency of one model under every combination of :data:`SETTINGS_GRID`, fastest first."""
    feeds = {spec.name: random_input(spec, 1)}
    rows = []
    keys = list(SETTINGS_GRID)
    for values in itertools.product(*SETTINGS_GRID.values()):
        settings = OrtSettings(**dict(zip(keys, values, strict=True)))  # type: ignore[arg-type]
        model = OnnxModel(path, settings.intra_op_threads, settings)
        rows.append({"settings": settings.as_dict(), "ms": time_model(model, feeds, runs)})
    return sorted(rows, key=lambda row: row["ms"]["p50"])
