"""Parity and speed: the source model and its ONNX conversion on the same inputs.

A *runner* takes the inputs as a list (in the model's input order) and returns the outputs keyed
by the ONNX output names, so the source runtime and ONNX Runtime are interchangeable.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from streamvision.convert.defaults import DEFAULT_TOLERANCE
from streamvision.errors import ConversionError

Runner = Callable[[list[np.ndarray]], dict[str, np.ndarray]]
ImageRange = Literal["-1..1", "0..1", "0..255"]

UNKNOWN_DIM = 64
"""Size given to a dimension the model leaves open (other than the batch) in generated inputs."""


@dataclass(frozen=True)
class TensorSpec:
    """A model input as the source declares it; ``None`` marks a dimension left open."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def concrete_shape(self) -> tuple[int, ...]:
        """The shape with the batch set to 1 and other open dimensions to :data:`UNKNOWN_DIM`."""
        return tuple(
            d if d is not None and d > 0 else (1 if i == 0 else UNKNOWN_DIM) for i, d in enumerate(self.shape)
        )


@dataclass(frozen=True)
class ParityReport:
    """What :func:`check_parity` measured."""

    max_abs: float
    per_output: dict[str, float]
    samples: int
    ms_source: float
    ms_onnx: float
    tolerance: float


def random_inputs(specs: Sequence[TensorSpec], count: int = 3, seed: int = 0) -> list[list[np.ndarray]]:
    """``count`` seeded input sets: floats uniform in [-1, 1], integers uniform in [0, 255]."""
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(count):
        arrays = []
        for spec in specs:
            dtype = np.dtype(spec.dtype)
            shape = spec.concrete_shape()
            if np.issubdtype(dtype, np.floating):
                arrays.append(rng.uniform(-1, 1, shape).astype(dtype))
            elif dtype == np.bool_:
                arrays.append(rng.integers(0, 2, shape).astype(dtype))
            else:
                arrays.append(rng.integers(0, 256, shape).astype(dtype))
        sets.append(arrays)
    return sets


def image_input(path: Path, spec: TensorSpec, value_range: ImageRange = "-1..1") -> np.ndarray:
    """A photo as an NHWC input for ``spec``: letterboxed, RGB (or grey for one channel), scaled.

    Float inputs get ``value_range``; integer inputs get the raw 0..255 pixels.

    Raises:
        ConversionError: the file is not a readable image, or ``spec`` is not an NHWC image input
            with 1 or 3 channels.
    """
    import cv2

    from streamvision.runtime.preprocess import letterbox

    shape = spec.concrete_shape()
    if len(shape) != 4 or shape[3] not in (1, 3):
        raise ConversionError(
            f"--image needs an NHWC image input with 1 or 3 channels; {spec.name} is {shape}"
        )
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ConversionError(f"cannot read the image {path}")
    boxed, _ = letterbox(image, (shape[2], shape[1]))
    if shape[3] == 1:
        pixels = cv2.cvtColor(boxed, cv2.COLOR_BGR2GRAY)[..., None]
    else:
        pixels = cv2.cvtColor(boxed, cv2.COLOR_BGR2RGB)
    x = pixels[None].astype(np.float32)
    if not np.issubdtype(np.dtype(spec.dtype), np.floating):
        return x.astype(spec.dtype)  # integer inputs take raw pixels, whatever the range says
    if value_range == "-1..1":
        x = x / np.float32(127.5) - np.float32(1)
    elif value_range == "0..1":
        x = x / np.float32(255)
    return x.astype(spec.dtype)


def to_nchw(arrays: Sequence[np.ndarray], nchw: bool) -> list[np.ndarray]:
    """NHWC -> NCHW for every 4-D array when ``nchw`` is set (inputs of a ``--nchw`` conversion)."""
    if not nchw:
        return list(arrays)
    return [np.ascontiguousarray(a.transpose(0, 3, 1, 2)) if a.ndim == 4 else a for a in arrays]


def onnx_runner(model_bytes: bytes, threads: int = 2) -> tuple[Runner, list[str]]:
    """An ONNX Runtime CPU session on ``model_bytes``; returns the runner and the output names.

    Raises:
        ConversionError: ONNX Runtime rejects the graph.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises untyped errors for graphs it rejects
        raise ConversionError(f"ONNX Runtime rejects the converted model: {exc}") from exc
    input_names = [i.name for i in session.get_inputs()]
    output_names = [o.name for o in session.get_outputs()]

    def run(inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        outputs = session.run(output_names, dict(zip(input_names, inputs, strict=True)))
        return dict(zip(output_names, outputs, strict=True))

    return run, output_names


def median_ms(run: Runner, inputs: list[np.ndarray], runs: int = 50, budget_s: float = 5.0) -> float:
    """Median wall time of one call in ms: 3 warm-up calls, then up to ``runs`` timed ones.

    Stops early once ``budget_s`` is spent (slow source runtimes), after at least 5 timed calls.
    """
    for _ in range(3):
        run(inputs)
    times: list[float] = []
    deadline = time.monotonic() + budget_s
    while len(times) < runs and (len(times) < 5 or time.monotonic() < deadline):
        start = time.perf_counter()
        run(inputs)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def check_parity(
    source: Runner,
    onnx: Runner,
    output_names: Sequence[str],
    samples: Sequence[list[np.ndarray]],
    tolerance: float = DEFAULT_TOLERANCE,
    nchw: bool = False,
) -> ParityReport:
    """Runs both models on every sample, compares the named outputs and times one sample on each.

    Raises:
        ConversionError: the source lacks an output, an output differs in shape, or the largest
            absolute difference exceeds ``tolerance`` (the message gives it and the output).
    """
    if not samples:
        raise ConversionError("parity check without inputs: give random samples or an image")
    per_output = dict.fromkeys(output_names, 0.0)
    for sample in samples:
        want = source(list(sample))
        got = onnx(to_nchw(sample, nchw))
        for name in output_names:
            if name not in want:
                raise ConversionError(f"the source has no output {name!r}; it has {sorted(want)}")
            w, g = want[name], got[name]
            if np.shape(w) != np.shape(g):
                raise ConversionError(f"output {name}: source shape {np.shape(w)}, ONNX shape {np.shape(g)}")
            if w.size:
                diff = np.abs(np.asarray(w, np.float64) - np.asarray(g, np.float64))
                worst = float("inf") if np.isnan(diff).any() else float(diff.max())
                per_output[name] = max(per_output[name], worst)
    max_abs = max(per_output.values(), default=0.0)
    if not max_abs <= tolerance:
        worst_output = max(per_output, key=lambda k: per_output[k])
        raise ConversionError(
            f"parity check failed: max abs difference {max_abs:.3g} (output {worst_output}) "
            f"> tolerance {tolerance:g}"
        )
    first = list(samples[0])
    return ParityReport(
        max_abs=max_abs,
        per_output=per_output,
        samples=len(samples),
        ms_source=median_ms(source, first),
        ms_onnx=median_ms(onnx, to_nchw(first, nchw)),
        tolerance=tolerance,
    )
