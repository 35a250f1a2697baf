"""Several sources in one run: one self-contained pipeline per source, side by side.

Each source gets its own pipeline (threads, queues, metrics, outputs), so a source that stalls or
dies never holds up the others. The pipelines share one model service (each model opened once, its
calls stacked across the sources where a stage asks for ``batch``) and one ONNX Runtime thread budget.
File outputs get
the source id in their name (``out.mp4`` -> ``out.door.mp4``), preview ports count up from the one
configured, and webhook spools get a folder per source.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from streamvision.config import OutputConfig, PipelineConfig, SourceConfig
from streamvision.errors import ConfigError, SourceError
from streamvision.events.config import MqttOutput, WebhookOutput
from streamvision.metrics import PipelineMetrics
from streamvision.paths import first_clash, run_paths
from streamvision.pipeline import Pipeline, ProgressCallback, model_sessions
from streamvision.runtime.manifest import ModelRegistry
from streamvision.runtime.service import ModelService
from streamvision.runtime.session import ThreadBudget
from streamvision.sources import default_source_id

log = logging.getLogger(__name__)


def _suffixed(path: Path, source_id: str) -> Path:
    return path.with_name(f"{path.stem}.{source_id}{path.suffix}")


def safe_id(source_id: str) -> str:
    """``source_id`` as a file name part: characters other than letters, digits, ``-_.`` become ``_``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in source_id)


def unique_ids(sources: list[SourceConfig]) -> list[str]:
    """Each source's id (its own, else one made from its URI), with ``-N`` added to repeats."""
    ids: list[str] = []
    for source in sources:
        sid = source.id or default_source_id(source.uri)
        ids.append(f"{sid}-{len(ids)}" if sid in ids else sid)
    return ids


def per_source(config: PipelineConfig) -> list[PipelineConfig]:
    """One single-source config per source of ``config``, with outputs that do not collide.

    Raises:
        ConfigError: several sources with a window (``show``), which needs the main thread; an output
            of one source names the file of a source.
    """
    if len(config.sources) == 1:
        return [config]
    if config.outputs.show:
        raise ConfigError("outputs.show: a window needs a single source")
    configs = []
    for index, (source, sid) in enumerate(zip(config.sources, unique_ids(config.sources), strict=True)):
        configs.append(
            config.model_copy(
                update={
                    "sources": [source.model_copy(update={"id": sid})],
                    "outputs": outputs_for(config, safe_id(sid), index),
                    "events": _events_for(config, safe_id(sid)),
                }
            )
        )
    # every source against every source's outputs (out.mp4 -> out.<id>.mp4), before any opens
    named = [pair for single in configs for pair in run_paths(single) if pair[0] == "source"]
    named += [
        (f"{key} of {single.source.id}", path) for single in configs for key, path in run_paths(single, False)
    ]
    problem = first_clash(named)
    if problem is not None:
        raise ConfigError(f"config: {problem}")
    return configs


def outputs_for(config: PipelineConfig, sid: str, index: int) -> OutputConfig:
    """``config``'s outputs for the source ``sid``, the ``index``-th of several: file names get the id,
    the preview page the port ``index`` places above the configured one."""
    outputs = config.outputs.with_files(lambda path: _suffixed(path, sid))
    if outputs.preview is not None and outputs.preview.port != 0:
        outputs = outputs.model_copy(
            update={"preview": outputs.preview.model_copy(update={"port": outputs.preview.port + index})}
        )
    return outputs


def _events_for(config: PipelineConfig, sid: str) -> Any:
    if config.events is None:
        return None
    outputs = [unshared(output, sid) for output in config.events.outputs]
    return config.events.model_copy(update={"outputs": outputs})


def unshared(output: Any, name: str) -> Any:
    """An event output that one run at a time may use, made its own for the run called ``name``: a
    webhook's spool folder gets a subfolder, an MQTT client id a suffix; other outputs as they are."""
    if isinstance(output, WebhookOutput):
        return output.model_copy(update={"spool": output.spool / name})
    if isinstance(output, MqttOutput) and output.client_id:
        return output.model_copy(update={"client_id": f"{output.client_id}-{name}"})
    return output


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
