"""Face descriptors and the gallery of enrolled people that face recognition matches against."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from streamvision.decoders.faceres import normalize
from streamvision.errors import ConfigError, ModelError
from streamvision.runtime.crop import crop, crop_boxes
from streamvision.runtime.manifest import ModelRegistry
from streamvision.runtime.preprocess import to_tensor
from streamvision.runtime.session import OnnxModel

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Gallery:
    """Enrolled people: one unit-length descriptor per enrolled photo, with the person's name.

    Attributes:
        names: (M,) str person of each row.
        descriptors: (M, D) float32 unit-length descriptors.
        sources: (M,) str the photo each row came from.
        model: the descriptor model's name in the manifest (a gallery only matches its own model).
        crop_scale: how much the detector's box was grown before describing.

    Raises:
        ValueError: the arrays disagree in length.
    """

    names: np.ndarray
    descriptors: np.ndarray
    sources: np.ndarray
    model: str
    crop_scale: float

    def __post_init__(self) -> None:
        m = len(self.names)
        if self.descriptors.ndim != 2 or len(self.descriptors) != m or self.sources.shape != (m,):
            raise ValueError(
                f"gallery arrays disagree: names {self.names.shape}, descriptors {self.descriptors.shape}, "
                f"sources {self.sources.shape}"
            )

    @property
    def people(self) -> list[str]:
        """The enrolled names, sorted, each once."""
        return sorted(set(self.names.tolist()))

    def save(self, path: Path) -> None:
        """Writes the gallery as a .npz file (no pickled objects).

        Raises:
            ConfigError: the file cannot be written.
        """
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as fh:
                np.savez(
                    fh,
                    version=np.int32(FORMAT_VERSION),
                    names=self.names.astype(str),
                    descriptors=self.descriptors.astype(np.float32),
                    sources=self.sources.astype(str),
                    model=np.str_(self.model),
                    crop_scale=np.float32(self.crop_scale),
                )
        except OSError as exc:
            raise ConfigError(f"cannot write gallery {path}: {exc.strerror or exc}") from None

    @classmethod
    def load(cls, path: Path) -> Gallery:
        """Reads a gallery written by :meth:`save` (``streamvision faces enroll``).

        Raises:
            ConfigError: the file is missing, not a gallery, or of another format version.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                version = int(data["version"])
                if version != FORMAT_VERSION:
                    raise ConfigError(
                        f"gallery {path} has format {version}; this version reads {FORMAT_VERSION}"
                    )
                return cls(
                    names=data["names"].astype(str),
                    descriptors=normalize(data["descriptors"].astype(np.float32)),
                    sources=data["sources"].astype(str),
                    model=str(data["model"]),
                    crop_scale=float(data["crop_scale"]),
                )
        except OSError as exc:
            raise ConfigError(f"cannot read gallery {path}: {exc.strerror or exc}") from None
        except (KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise ConfigError(
                f"{path} is not a face gallery ({exc}): build one with streamvision faces enroll"
            ) from None


class FaceDescriber:
    """Turns face boxes in a picture into unit-length descriptors with a ``faceres`` model.

    Each box is squared, grown by ``crop_scale`` (1.4: forehead, chin and ears in, as the model was
    trained), clipped to the picture and stretched to the model input; all faces of a picture go to
    the model as one batch.

    Args:
        registry: where the model is looked up.
        model: its manifest name.
        threads: intra-op threads for its session.
        crop_scale: growth of each box.

    Raises:
        ModelError: the model is unknown, missing, or has no ``descriptor`` output.
    """

    def __init__(self, registry: ModelRegistry, model: str, threads: int, crop_scale: float = 1.4) -> None:
        spec = registry.get(model)
        if spec.decoder != "faceres" or "descriptor" not in spec.outputs:
            raise ModelError(f"model {model!r} (decoder {spec.decoder!r}) is not a faceres descriptor model")
        self.model_name = model
        self.crop_scale = crop_scale
        self._spec = spec
        self._model = OnnxModel(registry.verify(model), threads=threads)

    def describe(self, image: np.ndarray, xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Descriptors of the faces in ``image`` (BGR) at (N, 4) boxes in its pixels.

        Returns:
            (K, D) float32 unit-length descriptors and (K,) int indices of the boxes they describe
            (a box wholly outside the picture has none).
        """
        height, width = image.shape[:2]
        windows = crop_boxes(xyxy, (width, height), self.crop_scale, square=True)
        usable = np.flatnonzero((windows[:, 2] > windows[:, 0]) & (windows[:, 3] > windows[:, 1]))
        if len(usable) == 0:
            return np.zeros((0, 0), np.float32), usable
        size = self._spec.input.size
        crops = [cv2.resize(crop(image, windows[i]), size, interpolation=cv2.INTER_AREA) for i in usable]
        (descriptors,) = self._model.run(
            {self._spec.input.name: to_tensor(crops, self._spec.input)}, ["descriptor"]
        )
        return normalize(descriptors.reshape(len(usable), -1)), usable
