"""Building a face gallery from a folder of named photos (``streamvision faces enroll``)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from streamvision.errors import ConfigError
from streamvision.frame import Detections, Frame
from streamvision.runtime.manifest import ModelRegistry
from streamvision.runtime.session import ThreadBudget
from streamvision.stages import StageContext, build_stage
from streamvision.stages.faces import FaceDetectionConfig
from streamvision.stages.faces.gallery import FaceDescriber, Gallery

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
_NUMBERED = re.compile(r"[ _-]+\d+$")


@dataclass(frozen=True)
class Enrollment:
    """What :func:`enroll` did: the gallery, and the photos it left out with the reason."""

    gallery: Gallery
    skipped: tuple[tuple[Path, str], ...]


def person_photos(folder: Path) -> list[tuple[str, Path]]:
    """(name, photo) pairs: each subfolder is a person (every image in it); an image directly in
    ``folder`` is the person its file name says, without a trailing number (``ann_2.jpg``: ann).

    Raises:
        ConfigError: ``folder`` is not a folder or holds no images.
    """
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder of photos")
    pairs = []
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            pairs += [(path.name, p) for p in sorted(path.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            pairs.append((_NUMBERED.sub("", path.stem) or path.stem, path))
    if not pairs:
        raise ConfigError(f"no photos in {folder} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return pairs


def enroll(
    folder: Path,
    registry: ModelRegistry | None = None,
    detector: str = "blazeface_short",
    model: str = "faceres",
    crop_scale: float = 1.4,
    threads: int | None = None,
) -> Enrollment:
    """Describes the largest face of every photo in ``folder`` (see :func:`person_photos`).

    Args:
        folder: the photos.
        registry: where the models are; the bundled manifest by default.
        detector: the face detection model (``mtcnn`` too).
        model: the descriptor model.
        crop_scale: growth of each face box before describing (the recognize stage uses the same).
        threads: ONNX Runtime threads; the core count by default.

    Raises:
        ConfigError: no photos, or no face in any of them.
        ModelError: a model is unknown, missing or of the wrong kind.
    """
    registry = registry or ModelRegistry()
    budget = ThreadBudget(threads, sessions=2)
    faces = build_stage(FaceDetectionConfig(model=detector), StageContext(registry, budget))
    describer = FaceDescriber(registry, model, budget.take(), crop_scale)
    names, descriptors, sources, skipped = [], [], [], []
    for name, path in person_photos(folder):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            skipped.append((path, "not an image OpenCV can read"))
            continue
        found = faces.process(Frame(image, "enroll", 0, None, 0.0)).results[faces.name]
        if not isinstance(found, Detections) or len(found) == 0:
            skipped.append((path, "no face found"))
            continue
        areas = (found.xyxy[:, 2] - found.xyxy[:, 0]) * (found.xyxy[:, 3] - found.xyxy[:, 1])
        largest = found.xyxy[int(np.argmax(areas))][None]
        descriptor, _ = describer.describe(image, largest)
        names.append(name)
        descriptors.append(descriptor[0])
        sources.append(str(path))
    for path, why in skipped:
        log.warning("skipped %s: %s", path, why)
    if not names:
        raise ConfigError(f"no face found in any photo of {folder}")
    gallery = Gallery(
        names=np.asarray(names),
        descriptors=np.stack(descriptors).astype(np.float32),
        sources=np.asarray(sources),
        model=model,
        crop_scale=crop_scale,
    )
    return Enrollment(gallery, tuple(skipped))
