"""One config per source: a config with several sources fans out into single-source configs whose
outputs do not collide. File outputs get the source id in their name (``out.mp4`` ->
``out.door.mp4``), preview ports count up from the one configured, webhook spools get a folder per
source and MQTT client ids a suffix. Used by ``run`` with several sources and by the cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamvision.config import OutputConfig, PipelineConfig, SourceConfig
from streamvision.errors import ConfigError
from streamvision.events.config import MqttOutput, WebhookOutput
from streamvision.paths import first_clash, run_paths
from streamvision.sources import default_source_id


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
