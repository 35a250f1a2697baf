"""What a batch result depends on: the validated config and the exact model files its stages use.

A file processed before with the same fingerprint is skipped on the next run (resume). The source and
the outputs are left out of the config hash: the batch sets them per file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from streamvision.config import PipelineConfig
from streamvision.errors import ConfigError
from streamvision.runtime.manifest import ModelRegistry, sha256_of

MTCNN = "mtcnn"
MTCNN_NETS = ("mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet")


def config_sha256(config: PipelineConfig) -> str:
    """sha256 of the config as validated (defaults filled in), without its sources and outputs."""
    dumped = config.model_dump(mode="json", exclude={"sources", "outputs", "stages"})
    # each stage by its own class: dumped through the list's base type, only ``type`` and ``name`` remain
    dumped["stages"] = [stage.model_dump(mode="json") for stage in config.stages]
    return hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()


def model_sha256s(config: PipelineConfig, packaged: ModelRegistry | None = None) -> dict[str, str]:
    """sha256 of each file the stages load, keyed ``<stage>:<model or field>``.

    Covers each stage's ``model`` from its manifest (the stage's ``models:`` folder or the packaged
    one; the three nets for ``mtcnn``), the descriptor model of a recognition gallery, and every file
    a stage setting names (gallery, tflite, background picture).

    Raises:
        ModelError: a model is unknown or its file is missing.
        ConfigError: a file a stage names cannot be read.
    """
    packaged = packaged or ModelRegistry()
    found: dict[str, str] = {}
    for stage in config.stages:
        key = stage.result_key
        folder = getattr(stage, "models", None)
        registry = ModelRegistry(folder) if isinstance(folder, Path) else packaged
        name = getattr(stage, "model", None)
        if isinstance(name, str):
            for model in MTCNN_NETS if name == MTCNN else (name,):
                found[f"{key}:{model}"] = sha256_of(registry.path(model))
        for field, value in _path_fields(stage):
            if value.is_dir():
                continue
            try:
                found[f"{key}:{field}"] = sha256_of(value)
            except OSError as exc:
                raise ConfigError(
                    f"stages {key}: cannot read {field} {value}: {exc.strerror or exc}"
                ) from None
        gallery = getattr(stage, "gallery", None)
        if isinstance(gallery, Path):
            found[f"{key}:gallery_model"] = _gallery_model_sha256(gallery, packaged)
    return found


def _path_fields(stage: BaseModel) -> list[tuple[str, Path]]:
    return [
        (field, value)
        for field in type(stage).model_fields
        if isinstance(value := getattr(stage, field), Path)
    ]


def _gallery_model_sha256(gallery: Path, registry: ModelRegistry) -> str:
    from streamvision.stages.faces.gallery import Gallery

    return sha256_of(registry.path(Gallery.load(gallery).model))


def fingerprint(config: PipelineConfig) -> dict[str, Any]:
    """The config hash and the model hashes together, as stored beside each file's outputs.

    Raises:
        ModelError, ConfigError: as :func:`model_sha256s`.
    """
    return {"config_sha256": config_sha256(config), "models": model_sha256s(config)}
