"""ONNX Runtime latency per model and per session setting, on inputs shaped as the manifest says."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamvision.bench.progress import Progress, silent
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
    models: list[tuple[ModelRegistry, str]],
    settings: OrtSettings,
    runs: int,
    batch: int,
    progress: Progress = silent,
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
        result = f"{row['batch_1_ms']['p50']:.2f} ms p50 at batch 1"
        if batch > 1 and has_dynamic_batch(model, spec.input.name):
            timing = time_model(model, {spec.input.name: random_input(spec.input, batch)}, max(runs // 4, 5))
            row[f"batch_{batch}_ms"] = timing
            row[f"batch_{batch}_ms_per_image"] = round(float(timing["p50"] or 0) / batch, 3)
            result += f", {row[f'batch_{batch}_ms_per_image']:.2f} ms per image at batch {batch}"
        rows.append(row)
        progress(f"model {name}", result)
    return rows


SETTINGS_GRID = {
    "graph_optimization": ("disable", "basic", "all"),
    "intra_op_threads": (1, 2),
    "execution_mode": ("sequential", "parallel"),
    "spinning": (False, True),
}


GRID_KEYS = ("graph_optimization", "intra_op_threads", "execution_mode", "spinning", "inter_op_threads")
"""The settings that tell two grid rows apart."""


def grid_settings(current: OrtSettings) -> list[OrtSettings]:
    """Every combination of :data:`SETTINGS_GRID`, plus ``current`` where the grid lacks it (a thread
    count outside the grid's, say), so that the recommendation can always compare against it."""
    keys = list(SETTINGS_GRID)
    combos = [
        OrtSettings(**dict(zip(keys, values, strict=True)))  # type: ignore[arg-type]
        for values in itertools.product(*SETTINGS_GRID.values())
    ]
    if all(_key(c.as_dict()) != _key(current.as_dict()) for c in combos):
        combos.append(current)
    return combos


def bench_settings(
    path: Path,
    spec: InputSpec,
    runs: int,
    current: OrtSettings | None = None,
    progress: Progress = silent,
) -> list[dict[str, Any]]:
    """Batch-1 latency of one model under every setting of :func:`grid_settings`, fastest first.

    The row with ``current``'s settings (the ones the pipeline runs with) has ``"current": True``.
    """
    current = current or OrtSettings()
    feeds = {spec.name: random_input(spec, 1)}
    rows = []
    for settings in grid_settings(current):
        model = OnnxModel(path, settings.intra_op_threads, settings)
        row: dict[str, Any] = {"settings": settings.as_dict(), "ms": time_model(model, feeds, runs)}
        if _key(row["settings"]) == _key(current.as_dict()):
            row["current"] = True
        rows.append(row)
        progress(f"settings {describe_settings(row['settings'])}", f"{row['ms']['p50']:.2f} ms p50")
    return sorted(rows, key=lambda row: row["ms"]["p50"])


def settings_recommendation(model: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest row of :func:`bench_settings` against the current one, with the line that says so.

    >>> rows = [{"settings": {"graph_optimization": "all", "intra_op_threads": 1}, "ms": {"p50": 1.2}},
    ...         {"settings": {"graph_optimization": "all", "intra_op_threads": 2}, "ms": {"p50": 1.5},
    ...          "current": True}]
    >>> for part in settings_recommendation("blazeface_short", rows)["text"].split("; "):
    ...     print(part)
    fastest: graph_optimization=all, intra_op_threads=1 (1.20 ms p50)
    the config's current setting (intra_op_threads=2) is 1.50 ms p50, 1.25x the fastest
    """
    fastest = min(rows, key=lambda row: row["ms"]["p50"])
    current = next(row for row in rows if row.get("current"))
    fast_ms, current_ms = float(fastest["ms"]["p50"]), float(current["ms"]["p50"])
    text = f"fastest: {describe_settings(fastest['settings'])} ({fast_ms:.2f} ms p50); "
    if fastest is current:
        text += f"the config's current setting is this one ({current_ms:.2f} ms p50)"
    else:
        changed = {k: v for k, v in current["settings"].items() if fastest["settings"].get(k) != v}
        differs = describe_settings(changed) or ", ".join(f"{k}={v}" for k, v in changed.items())
        text += (
            f"the config's current setting ({differs}) is {current_ms:.2f} ms p50, "
            f"{current_ms / fast_ms:.2f}x the fastest"
        )
    if fastest["settings"].get("spinning") and fastest is not current:
        # measured on the model alone: spinning workers take the cores that decoding and encoding need
        text += "; spinning helps a model alone but can slow the pipeline: check its FPS before you switch"
    return {
        "model": model,
        "fastest": fastest["settings"],
        "fastest_ms_p50": round(fast_ms, 3),
        "current": current["settings"],
        "current_ms_p50": round(current_ms, 3),
        "current_vs_fastest": round(current_ms / fast_ms, 3) if fast_ms > 0 else 0.0,
        "text": text,
    }


def describe_settings(settings: dict[str, Any]) -> str:
    """``key=value`` pairs of the grid's settings, in the grid's order (``spinning`` as on / off).

    >>> describe_settings({"spinning": True, "intra_op_threads": 2, "inter_op_threads": 1})
    'intra_op_threads=2, spinning=on'
    """
    shown = [key for key in SETTINGS_GRID if key in settings]
    return ", ".join(
        f"{key}={('on' if settings[key] else 'off') if key == 'spinning' else settings[key]}" for key in shown
    )


def _key(settings: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(settings.get(key) for key in GRID_KEYS)
