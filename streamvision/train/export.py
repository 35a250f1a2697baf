"""Export: the .keras file, the ONNX model through ``streamvision convert`` with its parity check,
and a manifest entry (labels, input spec) that a ``classify`` stage runs by name."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from streamvision.errors import ConversionError, ModelError, TrainingError
from streamvision.runtime.manifest import MANIFEST_NAME, InputSpec, ModelRegistry, sha256_of
from streamvision.train.data import DataOrigin

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Exported:
    """The exported files and the conversion's figures."""

    keras_file: Path
    onnx_file: Path
    sha256: str
    parity_max_abs: float
    parity_samples: int
    ms_keras: float
    ms_onnx: float
    opset: int


def check_name(name: str) -> str:
    """A model name usable as a manifest key and a file name.

    Raises:
        TrainingError: it has characters other than letters, digits, ``_``, ``.`` and ``-``.
    """
    if not NAME_PATTERN.match(name):
        raise TrainingError(f"model name {name!r}: use letters, digits, '_', '.' and '-' only")
    return name


def export_onnx(model: Any, out_dir: Path, name: str, samples: np.ndarray, opset: int = 17) -> Exported:
    """Saves ``model`` as ``NAME.keras``, converts that file to ``NAME.onnx`` and checks parity.

    Parity compares Keras and ONNX Runtime on seeded random inputs plus ``samples`` (real,
    normalised images); it must stay within :data:`PARITY_TOLERANCE`.

    Raises:
        TrainingError: the model cannot be saved or converted, or parity fails.
    """
    from streamvision.convert import ConvertOptions, convert_source, finish

    keras_file = out_dir / f"{name}.keras"
    onnx_file = out_dir / f"{name}.onnx"
    try:
        model.save(str(keras_file))
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot save {keras_file}: {exc}") from exc
    options = ConvertOptions(opset=opset, tolerance=PARITY_TOLERANCE)
    try:
        result = finish(convert_source(keras_file, options), options, extra_samples=[[samples]])
    except ConversionError as exc:
        raise TrainingError(f"exporting {keras_file} to ONNX failed: {exc}") from exc
    if result.parity is None:  # verify is on in the options above
        raise TrainingError("the conversion ran without its parity check")
    _write_atomic(onnx_file, result.onnx_bytes)
    return Exported(
        keras_file=keras_file,
        onnx_file=onnx_file,
        sha256=sha256_of(onnx_file),
        parity_max_abs=result.parity.max_abs,
        parity_samples=result.parity.samples,
        ms_keras=result.parity.ms_source,
        ms_onnx=result.parity.ms_onnx,
        opset=opset,
    )


def manifest_entry(
    exported: Exported,
    spec: InputSpec,
    classes: tuple[str, ...],
    origin: DataOrigin,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The ``models/manifest.yaml`` entry for an exported classifier (decoder ``softmax``)."""
    from importlib.metadata import version

    return {
        "file": exported.onnx_file.name,
        "sha256": exported.sha256,
        "task": "classification",
        "decoder": "softmax",
        "input": {
            "name": spec.name,
            "size": list(spec.size),
            "layout": spec.layout,
            "color": spec.color,
            "dtype": spec.dtype,
            "mean": list(spec.mean),
            "std": list(spec.std),
        },
        "outputs": ["probabilities"],
        "labels": list(classes),
        "license": origin.license,
        "source": {
            "registry": origin.registry,
            "package": origin.package,
            "version": origin.version,
            "file": origin.file,
            "sha256": origin.sha256,
        },
        "conversion": {
            "tool": f"streamvision train, tf2onnx {version('tf2onnx')}",
            "opset": exported.opset,
            "parity_max_abs": float(f"{exported.parity_max_abs:.3g}"),
            "ms_per_inference": {
                "keras": round(exported.ms_keras, 3),
                "onnxruntime": round(exported.ms_onnx, 3),
            },
            **extra,
        },
    }


def write_entry(models_dir: Path, name: str, entry: dict[str, Any], model_file: Path | None = None) -> Path:
    """Adds (or replaces) ``name`` in ``models_dir/manifest.yaml``, creating it when missing.

    Other entries keep their exact text: the new entry is appended, or replaces the block of the
    same name. ``model_file``, when given, is copied into ``models_dir`` first. The result is
    loaded back and the model's checksum verified.

    Raises:
        TrainingError: the folder or manifest cannot be written, or the result fails validation.
    """
    manifest = models_dir / MANIFEST_NAME
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        if model_file is not None and model_file.resolve() != (models_dir / entry["file"]).resolve():
            shutil.copyfile(model_file, models_dir / entry["file"])
        text = manifest.read_text() if manifest.is_file() else "models:\n"
    except OSError as exc:
        raise TrainingError(f"cannot write the model into {models_dir}: {exc.strerror or exc}") from None
    block = yaml.safe_dump({name: entry}, sort_keys=False, default_flow_style=None, width=100)
    block = "".join(f"  {line}\n" for line in block.splitlines())
    text = _replace_block(text, name, block)
    _write_atomic(manifest, text.encode())
    try:
        ModelRegistry(models_dir).verify(name)
    except ModelError as exc:
        raise TrainingError(f"the manifest written to {manifest} does not validate: {exc}") from exc
    return manifest


def _replace_block(text: str, name: str, block: str) -> str:
    """``text`` with the top-level model ``name`` (indented two spaces) replaced by ``block``."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == f"  {name}:"), None)
    if start is None:
        if text and not text.endswith("\n"):
            text += "\n"
        return text + block
    end = start + 1
    while end < len(lines) and (lines[end].startswith("   ") or not lines[end].strip()):
        end += 1
    return "".join(lines[:start]) + block + "".join(lines[end:])


def _write_atomic(path: Path, data: bytes) -> None:
    """Writes through a temporary file in the same folder, so readers never see half a file.

    Raises:
        TrainingError: the folder is not writable.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        # mkstemp makes the file 0600: give it the mode any new file of this user gets
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as exc:
        raise TrainingError(f"cannot write {path}: {exc.strerror or exc}") from None
