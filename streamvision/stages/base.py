"""The stage protocol, the base of every stage's config, and the name registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from streamvision.frame import Frame
from streamvision.runtime.manifest import ModelRegistry
from streamvision.runtime.session import OnnxModel, ThreadBudget


class StageConfig(BaseModel):
    """Settings every stage shares; each stage subclasses it with its own typed fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    name: str | None = None
    """Key of the stage's results on each frame; defaults to ``type``."""

    model_sessions: ClassVar[int] = 0
    """How many ONNX Runtime sessions the stage opens (for the thread budget)."""

    @property
    def result_key(self) -> str:
        return self.name or self.type


@dataclass(frozen=True)
class StageContext:
    """What a stage may use while it is built: the model registry, the thread budget, the source kind."""

    models: ModelRegistry
    budget: ThreadBudget
    live_source: bool = False
    """The frames come from a live source (camera, stream, file played in real time), not a file."""

    def load_model(self, name: str) -> OnnxModel:
        """Verifies ``name`` against the manifest and opens it with this pipeline's thread share.

        Raises:
            ModelError: unknown model, missing file, checksum mismatch or unloadable graph.
        """
        return OnnxModel(self.models.verify(name), threads=self.budget.take())


class Stage(Protocol):
    """Runs on every frame and returns it with its result attached."""

    name: str

    def process(self, frame: Frame) -> Frame: ...


# Each factory takes its own config subclass, so the registry cannot name the argument types.
StageFactory = Callable[..., Stage]
