"""The model manifest (``models/manifest.yaml``): what each model is and how to feed it."""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError

from streamvision.bundled import bundled_dir
from streamvision.errors import ModelError
from streamvision.strict import StrictModel

MANIFEST_NAME = "manifest.yaml"


class InputSpec(StrictModel):
    """How an image becomes the model's input tensor: ``(pixel - mean) / std`` after letterboxing."""

    name: str
    size: tuple[int, int] = Field(description="width, height")
    layout: Literal["NHWC", "NCHW"]
    color: Literal["RGB", "BGR", "GRAY"]
    dtype: Literal["float32", "uint8", "int32"] = "float32"
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    variable_size: bool = Field(
        default=False, description="the model takes any size; ``size`` is the smallest useful one"
    )


class SourceSpec(StrictModel):
    """Where the original weights come from (a registry package, never a hub)."""

    registry: str
    package: str
    version: str
    file: str
    sha256: str


class ModelSpec(StrictModel):
    """One manifest entry."""

    file: str
    sha256: str
    task: str
    decoder: str
    input: InputSpec
    outputs: tuple[str, ...]
    labels: tuple[str, ...]
    license: str
    source: SourceSpec
    conversion: dict[str, object] = Field(default_factory=dict)


class _Manifest(StrictModel):
    models: dict[str, ModelSpec]


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_models_dir() -> Path:
    """The models folder: packaged beside the code in a wheel, the repo's ``models/`` otherwise."""
    return bundled_dir("models")


class ModelRegistry:
    """Looks models up by name in a manifest folder.

    Args:
        models_dir: folder holding ``manifest.yaml`` and the model files.

    Raises:
        ModelError: the manifest is missing or invalid.
    """

    def __init__(self, models_dir: Path | None = None) -> None:
        self.models_dir = models_dir or default_models_dir()
        self._manifest_path = self.models_dir / MANIFEST_NAME

    @cached_property
    def _models(self) -> dict[str, ModelSpec]:
        try:
            raw = yaml.safe_load(self._manifest_path.read_text())
        except OSError as exc:
            raise ModelError(f"cannot read the model manifest {self._manifest_path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ModelError(f"{self._manifest_path} is not valid YAML: {exc}") from exc
        try:
            return _Manifest.model_validate(raw).models
        except ValidationError as exc:
            raise ModelError(f"{self._manifest_path} is invalid: {exc}") from exc

    def names(self) -> list[str]:
        """Every model name in the manifest, sorted."""
        return sorted(self._models)

    def get(self, name: str) -> ModelSpec:
        """Returns the entry for ``name``.

        Raises:
            ModelError: no such model; the message lists the known names.
        """
        try:
            return self._models[name]
        except KeyError:
            raise ModelError(f"unknown model {name!r}; known: {', '.join(self.names())}") from None

    def path(self, name: str) -> Path:
        """The model file of ``name``.

        Raises:
            ModelError: unknown model, or its file is missing.
        """
        path = self.models_dir / self.get(name).file
        if not path.is_file():
            raise ModelError(f"model file for {name!r} is missing: {path}")
        return path

    def verify(self, name: str) -> Path:
        """Checks the file's sha256 against the manifest and returns its path.

        Raises:
            ModelError: unknown model, missing file or checksum mismatch.
        """
        path = self.path(name)
        expected = self.get(name).sha256
        actual = sha256_of(path)
        if actual != expected:
            raise ModelError(f"{path} fails its checksum: sha256 {actual}, manifest says {expected}")
        return path
