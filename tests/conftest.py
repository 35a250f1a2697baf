"""Shared fixtures: the bundled clip, real photos from scikit-image, and clips made on the fly."""

from __future__ import annotations

import os

# Read once, when TensorFlow loads (test modules import it at collection): with oneDNN on, TensorFlow
# itself drifts, which parity checks against ONNX Runtime would blame on the conversion.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import importlib.util
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from streamvision.config import SAMPLE_CLIP
from streamvision.runtime.manifest import ModelRegistry

# Run by the system python3 with GStreamer's bindings, never imported here (doctests import modules).
collect_ignore = ["rtsp_server.py"]

EXTRA_TESTS = {
    "convert": (
        "tensorflow",
        ["test_convert.py", "test_bench_keras.py", "test_build_keras_zoo.py", "test_train.py"],
    ),
    "mediapipe": ("mediapipe", ["test_mediapipe.py"]),
    "cluster": ("ray", ["test_cluster_batch.py", "test_cluster_fleet.py"]),
}
"""Marker -> the package of its extra and the test modules that need it."""


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leaves out the modules of an extra that is not installed, without a skip line, unless the run
    asks for that extra's marker (``-m convert`` in its own virtualenv): there its absence fails."""
    for marker, (package, modules) in EXTRA_TESTS.items():
        if collection_path.name in modules:
            wanted = marker in (config.getoption("markexpr") or "")
            return None if wanted or importlib.util.find_spec(package) is not None else True
    return None


def decode_all(path: Path) -> list[np.ndarray]:
    """Every frame of a video as BGR arrays."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


CLI_ENV = {**os.environ, "COLUMNS": "120"}


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m streamvision ARGS`` as a user runs it, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "streamvision", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env=CLI_ENV,
    )


def count_frames(path: Path) -> int:
    """How many frames a video decodes to."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def write_clip(path: Path, frames: list[np.ndarray], rate: Fraction = Fraction(25)) -> Path:
    """Encodes BGR frames as an H.264 mp4."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="session")
def sample_clip() -> Path:
    return SAMPLE_CLIP


@pytest.fixture(scope="session")
def models() -> ModelRegistry:
    return ModelRegistry()


@pytest.fixture(scope="session")
def astronaut(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-image's astronaut photo (public domain) as a PNG."""
    from skimage import data

    path = tmp_path_factory.mktemp("images") / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory: pytest.TempPathFactory, sample_clip: Path) -> Path:
    """The sample clip ten times over (1,200 frames): long enough to interrupt a run."""
    frames = decode_all(sample_clip)
    return write_clip(tmp_path_factory.mktemp("clips") / "long.mp4", frames * 10, Fraction(30000, 1001))
