"""The INT8 workbench: ONNX Runtime's static quantizer driven from one calibration, and each candidate
measured on the calibration frames (box recall against the float model, output error per node group).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamvision.convert.agreement import agreement, spread, stage_detector
from streamvision.convert.int8_graph import fold_infinite_pads
from streamvision.errors import ConversionError
from streamvision.runtime.manifest import ModelSpec
from streamvision.runtime.preprocess import to_tensor
from streamvision.runtime.session import OnnxModel

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchSettings:
    """How candidates are judged on the calibration frames."""

    score_threshold: float
    iou: float
    threads: int


SENSITIVITY_FRAMES = 8
"""Calibration frames the sensitivity of each node group is measured on."""


@dataclass(frozen=True)
class SearchStep:
    """One model the search tried: what went back to float and how it did on the calibration frames."""

    kept_float: str
    float_nodes: int
    recall: float
    precision: float


def ort_quantization() -> Any:
    """``onnxruntime.quantization``, checked for the calibration cache the search relies on.

    Raises:
        ConversionError: it is missing or too old.
    """
    import onnxruntime
    from onnxruntime import quantization

    if "calibration_cache_path" not in inspect.signature(quantization.quantize_static).parameters:
        raise ConversionError(
            f"INT8 quantization needs an onnxruntime whose quantize_static takes calibration_cache_path "
            f"(1.32 does); this is onnxruntime {onnxruntime.__version__}"
        )
    return quantization


def prepare_graph(model: Path, folder: Path, naive: bool, quantization: Any) -> tuple[Path, Any, list[str]]:
    """The graph to quantize: ``-inf`` pads folded, then ONNX Runtime's quantization pre-processing
    (its graph optimisations fold the Pads into the Convs: 135 nodes -> 101 on NanoDet, whose INT8
    model then ran 2.2x faster than the float one instead of 1.9x). ``naive`` keeps the graph as is.

    Returns:
        the file to quantize, its graph and one note per change.

    Raises:
        ConversionError: the model cannot be read or pre-processed.
    """
    import onnx

    try:
        graph = onnx.load(str(model))
    except Exception as exc:  # onnx raises DecodeError and others for a file that is not a model
        raise ConversionError(f"cannot read {model} as an ONNX model: {exc}") from exc
    if naive:
        return model, graph, []
    notes = fold_infinite_pads(graph)
    folded, prepared = folder / "folded.onnx", folder / "prepared.onnx"
    onnx.save(graph, str(folded))
    before = len(graph.graph.node)
    try:
        with quiet_quantizer():
            # ONNX's own shape inference still runs; the symbolic pass would need sympy, not a dependency
            quantization.quant_pre_process(str(folded), str(prepared), skip_symbolic_shape=True)
    except Exception as exc:  # onnxruntime's optimiser raises its own untyped errors
        raise ConversionError(f"onnxruntime cannot pre-process {model} for quantization: {exc}") from exc
    graph = onnx.load(str(prepared))
    notes.append(f"pre-processed by onnxruntime: {before} nodes -> {len(graph.graph.node)}")
    return prepared, graph, notes


class Bench:
    """Quantizes candidates from one calibration and measures them on the calibration frames.

    Raises:
        ConversionError: the float model finds nothing on the calibration frames to agree on.
        ModelError: ONNX Runtime cannot load the float model.
    """

    def __init__(
        self,
        folder: Path,
        spec: ModelSpec,
        model: Path,
        images: list[np.ndarray],
        settings: BenchSettings,
        quantization: Any,
    ) -> None:
        self.folder = folder
        self.spec = spec
        self.settings = settings
        self.images = images
        self.tensors = [to_tensor([image], spec.input) for image in images]
        self._q = quantization
        self._cache = folder / "calibration.json"
        reference = stage_detector(model, spec, settings.score_threshold, settings.threads, folder / "ref")
        self.reference = [reference.detect(image) for image in images]
        session = OnnxModel(model, threads=settings.threads)
        self.reference_outputs = [session.run({spec.input.name: t}, list(spec.outputs)) for t in self.tensors]
        if not sum(len(d) for d in self.reference):
            raise ConversionError(
                f"the float model finds nothing scored >= {settings.score_threshold} on the calibration "
                "frames: there is nothing to agree on; calibrate on footage where it detects objects"
            )

    def calibrate(self, source: Path) -> list[str]:
        """Calibrates once (the ranges are cached for every later candidate); returns the tensors
        whose range is not finite."""
        self.quantize(source, self.folder / "calibrated.onnx", exclude=[])
        ranges = self._q.calibrate.load_tensors_data(self._cache)
        return [
            name
            for name, data in ranges.items()
            if not np.all(np.isfinite(np.asarray(data.range_value, dtype=np.float64)))
        ]

    def quantize(
        self, source: Path, target: Path, exclude: Sequence[str], only: Sequence[str] | None = None
    ) -> None:
        """QDQ-quantizes ``source`` into ``target``: the nodes in ``exclude`` stay float; with ``only``,
        only those nodes are quantized. The first call calibrates; later ones reuse its ranges.

        Raises:
            ConversionError: ONNX Runtime's quantizer fails on the graph.
        """
        q = self._q
        try:
            with quiet_quantizer():
                q.quantize_static(
                    str(source),
                    str(target),
                    _Frames(self.spec.input.name, self.tensors),
                    quant_format=q.QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=q.QuantType.QUInt8,
                    weight_type=q.QuantType.QInt8,
                    nodes_to_exclude=list(exclude),
                    nodes_to_quantize=list(only) if only else None,
                    calibrate_method=q.CalibrationMethod.MinMax,
                    calibration_cache_path=str(self._cache),
                )
        except Exception as exc:  # the quantizer raises untyped errors for graphs it cannot handle
            raise ConversionError(f"onnxruntime cannot quantize {source.name}: {exc}") from exc

    def step(self, source: Path, name: str, exclude: list[str]) -> SearchStep:
        """Quantizes all but ``exclude`` and measures the boxes on the calibration frames; ``name``
        labels the step (the group just put back in float)."""
        target = self.folder / "candidate.onnx"
        self.quantize(source, target, exclude)
        detector = stage_detector(
            target, self.spec, self.settings.score_threshold, self.settings.threads, self.folder / "c"
        )
        found = agreement(
            self.reference,
            [detector.detect(image) for image in self.images],
            self.settings.score_threshold,
            self.settings.iou,
        )
        return SearchStep(name, len(exclude), found.recall, found.precision)

    def sensitivity(self, source: Path, groups: dict[str, list[str]], say: Progress) -> dict[str, float]:
        """Relative squared error of the outputs with only each group in INT8, averaged over outputs."""
        say(f"  measuring the sensitivity of {len(groups)} node groups")
        errors: dict[str, float] = {}
        target = self.folder / "single.onnx"
        # a few frames rank the groups as well as all of them: the error is smooth, unlike box counts
        picks = spread(len(self.tensors), SENSITIVITY_FRAMES)
        tensors = [self.tensors[i] for i in picks]
        references = [self.reference_outputs[i] for i in picks]
        for name, nodes in groups.items():
            self.quantize(source, target, exclude=[], only=nodes)
            model = OnnxModel(target, threads=self.settings.threads)
            error = 0.0
            for tensor, reference in zip(tensors, references, strict=True):
                outputs = model.run({self.spec.input.name: tensor}, list(self.spec.outputs))
                error += sum(
                    float(np.sum((o - r) ** 2) / max(float(np.sum(r**2)), 1e-12))
                    for o, r in zip(outputs, reference, strict=True)
                )
            errors[name] = error / (len(tensors) * len(self.spec.outputs))
        return errors


class _Frames:
    """Feeds the calibration tensors to ONNX Runtime's calibrator (a ``CalibrationDataReader``)."""

    def __init__(self, input_name: str, tensors: list[np.ndarray]) -> None:
        self._feeds = iter([{input_name: t} for t in tensors])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


@contextlib.contextmanager
def quiet_quantizer() -> Iterator[None]:
    """Silences what the quantizer says on every call: its advice to pre-process (it logs on the root
    logger) and numpy's warnings about the infinite scales of a naive graph."""

    def from_elsewhere(record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname

    root = logging.getLogger()
    root.addFilter(from_elsewhere)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            yield
    finally:
        root.removeFilter(from_elsewhere)
