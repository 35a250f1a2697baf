"""The stage protocol, the base of every stage's config, and the name registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from streamvision.frame import Frame
from streamvision.runtime.manifest import ModelRegistry
from streamvision.runtime.service import ModelService
from streamvision.runtime.session import OnnxModel, ThreadBudget


class StageConfig(BaseModel):
    """Settings every stage shares; each stage subclasses it with its own typed fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    name: str | None = None
    """Key of the stage's results on each frame; defaults to ``type``."""

    batch: int | None = Field(None, ge=1, le=64)
    """Most rows one run of the stage's model stacks from the calls of every source of the run (a call
    may bring several: the crops of one frame). Unset or 1: each call runs alone; stacking saved no
    CPU for the shipped classifiers on 2 cores (:mod:`streamvision.runtime.service`). A model whose
    graph fixes its batch size (NanoDet, BlazeFace) cannot batch: asking for more than 1 is an error."""

    model_sessions: ClassVar[int] = 0
    """How many ONNX Runtime sessions the stage opens (for the thread budget)."""

    @model_validator(mode="after")
    def _batch_needs_a_model(self) -> StageConfig:
        if self.batch is not None and self.model_sessions == 0:
            raise ValueError(f"batch: a {self.type} stage runs no model")
        return self

    @property
    def result_key(self) -> str:
        return self.name or self.type


@dataclass(frozen=True)
class StageContext:
    """What a stage may use while it is built: the model registry, the thread budget, the source kind
    and the run's model service."""

    models: ModelRegistry
    budget: ThreadBudget
    live_source: bool = False
    """The frames come from a live source (camera, stream, file played in real time), not a file."""
    service: ModelService = field(default_factory=ModelService)
    """Where models are opened: one per pipeline by default, one per run for several sources."""
    client: str = ""
    """Who the stage's model calls come from (the pipeline's source id), for the service's batches."""

    def load_model(
        self, name: str, registry: ModelRegistry | None = None, batch: int | None = None
    ) -> OnnxModel:
        """Verifies ``name`` against the manifest (``registry``, else :attr:`models`) and returns its
        session from the run's service: opened now with one share of the thread budget, or shared with
        the stages (of any source) that opened it before.

        Args:
            name: a model name from the manifest.
            registry: another manifest that holds ``name``.
            batch: the stage's ``batch`` setting (see :class:`StageConfig`).

        Raises:
            ModelError: unknown model, missing file, checksum mismatch or unloadable graph; ``batch``
                above 1 on a model whose graph fixes its batch size.
        """
        path = (registry or self.models).verify(name)
        return self.service.open(path, self.budget.take, client=self.client, batch=batch, name=name)


class Stage(Protocol):
    """Runs on every frame and returns it with its result attached."""

    name: str

    def process(self, frame: Frame) -> Frame: ...


# Each factory takes its own config subclass, so the registry cannot name the argument types.
StageFactory = Callable[..., Stage]
