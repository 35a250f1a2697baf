"""The conversion pipeline: pick the frontend for a source, convert, check, verify, serialise."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamvision.convert import _deps, checks
from streamvision.convert.defaults import DEFAULT_TOLERANCE
from streamvision.convert.frontend import Converted
from streamvision.convert.parity import (
    ImageRange,
    ParityReport,
    check_parity,
    image_input,
    onnx_runner,
    random_inputs,
)
from streamvision.errors import ConversionError

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
SUPPORTED = "a Keras model (.keras, .h5), a SavedModel folder, a .tflite file or a TF.js model.json"


@dataclass(frozen=True)
class ConvertOptions:
    """How to convert and verify.

    Attributes:
        opset: ONNX opset to target.
        nchw: make the ONNX model take channels-first images (4-D inputs are transposed).
        verify: run the source and the ONNX model on the same inputs and compare.
        tolerance: largest absolute difference accepted by the parity check.
        image: a photo to add to the seeded random inputs (single image inputs only).
        image_range: how the photo's pixels are scaled for a float input.
        samples: how many seeded random input sets to compare.
        outputs: the ONNX outputs in this order (default: as converted).
    """

    opset: int = DEFAULT_OPSET
    nchw: bool = False
    verify: bool = True
    tolerance: float = DEFAULT_TOLERANCE
    image: Path | None = None
    image_range: ImageRange = "-1..1"
    samples: int = 3
    outputs: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ConversionResult:
    """A finished conversion: the serialised ONNX model and what was measured."""

    onnx_bytes: bytes
    kind: str
    runtime: str
    input_names: list[str]
    output_names: list[str]
    parity: ParityReport | None
    notes: list[str] = field(default_factory=list)


def source_kind(src: Path) -> str:
    """``keras``, ``saved_model``, ``tflite`` or ``tfjs``, from the path.

    Raises:
        ConversionError: the path is missing or of no supported kind.
    """
    if src.is_dir():
        if (src / "saved_model.pb").is_file():
            return "saved_model"
        raise ConversionError(f"{src} is a folder without saved_model.pb; expected {SUPPORTED}")
    if not src.is_file():
        raise ConversionError(f"no such model file: {src}")
    suffix = src.suffix.lower()
    if suffix in KERAS_SUFFIXES:
        return "keras"
    if suffix == ".tflite":
        return "tflite"
    if suffix == ".json":
        return "tfjs"
    raise ConversionError(f"cannot convert {src.name}: expected {SUPPORTED}")


def convert_source(src: Path, options: ConvertOptions) -> Converted:
    """Runs the right frontend on ``src`` (without checks or verification).

    Raises:
        ConversionError: unsupported or unreadable source, missing extra, or tf2onnx fails.
    """
    kind = source_kind(src)
    if kind == "keras":
        from streamvision.convert.keras import convert_keras_model, load_keras

        return convert_keras_model(load_keras(src), options.opset, options.nchw)
    if kind == "saved_model":
        from streamvision.convert.keras import convert_saved_model

        return convert_saved_model(src, options.opset, options.nchw)
    if kind == "tflite":
        from streamvision.convert.tflite import convert_tflite

        return convert_tflite(src, options.opset, options.nchw)
    from streamvision.convert.tfjs import convert_tfjs

    return convert_tfjs(src, options.opset, options.nchw)


def finish(
    converted: Converted,
    options: ConvertOptions,
    extra_samples: Sequence[list[np.ndarray]] = (),
) -> ConversionResult:
    """Checks the graph, makes it deterministic, verifies parity and serialises it.

    Args:
        converted: a frontend's output.
        options: as for :func:`convert_file`.
        extra_samples: input sets to compare besides the random ones (channels-last).

    Raises:
        ConversionError: unconverted ops, an invalid graph, ONNX Runtime rejects it or parity fails.
    """
    model = converted.model
    checks.check_converted(model)
    checks.canonical_names(model)
    if options.outputs is not None:
        checks.order_outputs(model, options.outputs)
    data = model.SerializeToString()
    ort_run, output_names = onnx_runner(data)
    parity = None
    if options.verify:
        samples = list(random_inputs(converted.inputs, options.samples))
        if options.image is not None:
            if len(converted.inputs) != 1:
                raise ConversionError("--image needs a model with exactly one input")
            samples.append([image_input(options.image, converted.inputs[0], options.image_range)])
        samples.extend(extra_samples)
        parity = check_parity(
            converted.reference, ort_run, output_names, samples, options.tolerance, options.nchw
        )
    return ConversionResult(
        onnx_bytes=data,
        kind=converted.kind,
        runtime=converted.runtime,
        input_names=[i.name for i in model.graph.input],
        output_names=output_names,
        parity=parity,
        notes=list(converted.notes),
    )


def convert_file(src: Path, out: Path, options: ConvertOptions | None = None) -> ConversionResult:
    """Converts ``src`` to ONNX at ``out``; the file is written only once every check passes.

    Raises:
        ConversionError: as :func:`convert_source` and :func:`finish`, or ``out`` cannot be written.

    Example:
        >>> result = convert_file(Path("emotion_model.hdf5"), Path("emotion.onnx"))  # doctest: +SKIP
        >>> result.parity.max_abs < 1e-4  # doctest: +SKIP
        True
    """
    options = options or ConvertOptions()
    if options.verify and options.image is not None and not options.image.is_file():
        raise ConversionError(f"no such image: {options.image}")  # before a conversion that takes minutes
    _deps.onnx()
    result = finish(convert_source(src, options), options)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(result.onnx_bytes)
    except OSError as exc:
        raise ConversionError(f"cannot write {out}: {exc.strerror or exc}") from None
    log.info("wrote %s (%d bytes)", out, len(result.onnx_bytes))
    return result
