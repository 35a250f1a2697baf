"""The base of every settings model: unknown keys are errors, and a loaded setting never changes."""

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A pydantic model that forbids unknown keys (a typo is a config error that names it) and is
    frozen (settings are shared between threads and pipelines)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
