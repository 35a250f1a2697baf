"""Several sources in one run: one self-contained pipeline per source, side by side.

Each source gets its own pipeline (threads, queues, metrics, outputs; its config from
:func:`streamvision.fanout.per_source`), so a source that stalls or dies never holds up the others.
The pipelines share one model service (each model opened once, its calls stacked across the sources
where a stage asks for ``batch``) and one ONNX Runtime thread budget.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from streamvision.config import PipelineConfig, SourceConfig
from streamvision.errors import SourceError
from streamvision.fanout import per_source
from streamvision.metrics import PipelineMetrics
from streamvision.pipeline import Pipeline, ProgressCallback, model_sessions
from streamvision.runtime.manifest import ModelRegistry
from streamvision.runtime.service import ModelService
from streamvision.runtime.session import ThreadBudget
from streamvision.sources import default_source_id

log = logging.getLogger(__name__)


class MultiPipeline:
    """Runs one :class:`Pipeline` per source on threads of its own.

    A source that cannot be opened (a missing file, an unreachable camera) is recorded in
    :attr:`errors` and reported by :meth:`run` with an empty summary; the others run.

    Args:
        config: a config with one or more sources.
        models: where models are looked up.
        share_models: open each model once for every source (:attr:`service`); False gives each
            source's pipeline sessions of its own (the layout before the model service, kept to
            compare against). The threads per session are the same either way.

    Raises:
        SourceError: no source could be opened.
        ConfigError, ModelError, SinkError: as :class:`Pipeline`; every pipeline opened so far is
            closed again first.
    """

    def __init__(
        self, config: PipelineConfig, models: ModelRegistry | None = None, share_models: bool = True
    ) -> None:
        configs = per_source(config)
        # The same threads per session either way: shared, each session has a caller per source.
        if share_models:
            budget = ThreadBudget(config.threads, max(1, model_sessions(config)), callers=len(configs))
        else:
            budget = ThreadBudget(config.threads, max(1, sum(model_sessions(c) for c in configs)))
        registry = models or ModelRegistry()
        self.service = ModelService()
        """The models every source's stages run, when ``share_models``; its stats count the sessions."""
        self.pipelines: list[Pipeline] = []
        self.errors: dict[str, BaseException] = {}
        """Source id -> the error that stopped it (or kept it from opening)."""
        self._unopened: dict[int, dict[str, Any]] = {}  # source index -> its summary
        self._indices: list[int] = []  # each pipeline's source index
        try:
            for index, single in enumerate(configs):
                service = self.service if share_models else None
                try:
                    self.pipelines.append(Pipeline(single, registry, budget, service=service))
                except SourceError as exc:
                    self._unopened[index] = self._not_opened(single, exc)
                    continue
                self._indices.append(index)
        except BaseException:
            for pipeline in self.pipelines:
                pipeline.close()
            raise
        if not self.pipelines:
            raise next(iter(self.errors.values()))

    def _not_opened(self, config: PipelineConfig, exc: SourceError) -> dict[str, Any]:
        """Records ``exc`` for the source of ``config`` and returns the summary :meth:`run` reports."""
        sid = config.source.id or default_source_id(config.source.uri)
        self.errors[sid] = exc
        log.error("source %s cannot be opened: %s", sid, exc)
        return {
            "source": sid,
            "stages": [stage.result_key for stage in config.stages],
            "output": None,
            "events": None,
            "model_threads": 0,
            **PipelineMetrics().summary(),
            "error": str(exc),
        }

    def request_stop(self, reason: str = "stopped") -> None:
        for pipeline in self.pipelines:
            pipeline.request_stop(reason)

    def run(self, progress: ProgressCallback | None = None) -> list[dict[str, Any]]:
        """Runs every pipeline to its end and returns their summaries in source order (a source that
        could not be opened with an empty one).

        A pipeline that fails is logged and recorded in :attr:`errors` (by source id); the others
        go on. Call from the main thread.
        """
        summaries: dict[int, dict[str, Any]] = dict(self._unopened)

        def run_one(index: int, pipeline: Pipeline) -> None:
            sid = pipeline.source.source_id
            try:
                summaries[index] = pipeline.run(progress)
            except BaseException as exc:
                self.errors[sid] = exc
                log.error("source %s stopped: %s", sid, exc)
                summaries[index] = {**pipeline.summary(), "error": str(exc)}
            finally:
                self.service.leave(sid)  # batches of the other sources stop waiting for this one

        threads = [
            threading.Thread(target=run_one, args=(i, p), name=f"sv-pipeline-{i}", daemon=True)
            for i, p in zip(self._indices, self.pipelines, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)  # short joins keep the main thread responsive to signals
        return [summaries[i] for i in sorted(summaries)]

    @property
    def sources(self) -> list[SourceConfig]:
        return [p.config.source for p in self.pipelines]
