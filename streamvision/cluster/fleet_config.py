"""The fleet file of ``streamvision cluster run``: many sources, each with a pipeline, and how Ray runs them.

.. code-block:: yaml

    cluster:
      cpus_per_source: 1      # Ray CPUs each source's actor reserves (and its ONNX Runtime threads)
      max_restarts: 3         # restarts after a lost node or a failed pipeline, then it is reported
    pipeline: configs/objects.yaml   # shared by every source without its own (a path or a mapping)
    sources:
      - rtsp://cam1.local/stream
      - uri: rtsp://cam2.local/stream
        id: door
        pipeline: configs/faces.yaml
        cpus: 2

A pipeline's own ``source`` is replaced by the fleet's. Pipeline files are read from the fleet file's
folder; source files and outputs from the working folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from streamvision.config import PipelineConfig, SourceConfig, parse_config, read_yaml
from streamvision.errors import ConfigError
from streamvision.events.config import ClipOutput, SnapshotOutput
from streamvision.fanout import outputs_for, safe_id, unique_ids, unshared
from streamvision.samples import is_sample
from streamvision.sources import is_stream_url
from streamvision.strict import StrictModel

FRAME_OUTPUTS = (SnapshotOutput, ClipOutput)
"""Event outputs that need the frames and stay with the pipeline; the driver writes the others."""


class ClusterSettings(StrictModel):
    """``cluster``: how the fleet's actors are placed and restarted."""

    cpus_per_source: float = Field(1.0, gt=0, le=256)
    """CPUs Ray reserves for each source's actor; also its ONNX Runtime threads unless the pipeline
    sets ``threads``."""
    max_restarts: int = Field(3, ge=0, le=1000)
    """Restarts of a source's actor, after its node is lost or its pipeline fails, before it is
    reported as failed."""
    placement: Literal["spread", "pack"] = "spread"
    """``spread`` places the actors over as many nodes as possible (Ray's SPREAD strategy); ``pack``
    leaves placement to Ray's default scheduler."""
    poll_interval: float = Field(0.5, gt=0, le=60)
    """Seconds between two collections of events and figures from the actors."""
    stop_timeout: float = Field(30.0, gt=0, le=600)
    """Seconds the actors get to finalize their outputs after Ctrl-C (a clip output may need up to
    its own drain time, 30 s)."""


@dataclass(frozen=True)
class FleetMember:
    """One source of the fleet: its id, the single-source config its actor runs, its CPU budget, and
    the event outputs the driver writes for it."""

    source_id: str
    config: PipelineConfig
    cpus: float
    forwarded_outputs: tuple[Any, ...]


@dataclass(frozen=True)
class Fleet:
    settings: ClusterSettings
    members: tuple[FleetMember, ...]


def load_fleet(path: Path) -> Fleet:
    """Reads and validates a fleet file.

    Raises:
        ConfigError: the file is missing or not YAML, a pipeline is missing or invalid, a source has
            no pipeline, or a pipeline opens a window.
    """
    raw = read_yaml(path)
    origin = str(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping at the top level")
    unknown = sorted(set(raw) - {"cluster", "pipeline", "sources"})
    if unknown:
        raise ConfigError(f"{origin}: {unknown[0]}: unknown key (expected cluster, pipeline, sources)")
    try:
        settings = ClusterSettings.model_validate(raw.get("cluster") or {})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise ConfigError(f"{origin}: cluster.{where}: {error['msg']}") from None
    entries = raw.get("sources")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{origin}: sources: expected a list of one or more sources")
    base = path.parent
    shared = None if raw.get("pipeline") is None else _pipeline_mapping(raw["pipeline"], base, origin)
    planned: list[tuple[SourceConfig, PipelineConfig, float]] = []
    for i, entry in enumerate(entries):
        where = f"{origin}: sources.{i}"
        entry = {"uri": entry} if isinstance(entry, (str, int)) else entry
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a URI or a mapping")
        entry = dict(entry)
        own = entry.pop("pipeline", None)
        cpus = entry.pop("cpus", settings.cpus_per_source)
        pipeline = _pipeline_mapping(own, base, origin) if own is not None else shared
        if pipeline is None:
            raise ConfigError(f"{where}: no pipeline: give it one, or a shared one at the top level")
        if not isinstance(cpus, (int, float)) or cpus <= 0:
            raise ConfigError(f"{where}.cpus: expected a number above 0")
        config = parse_config({**pipeline, "source": entry}, origin=f"{where}")
        if config.outputs.show:
            raise ConfigError(f"{where}: outputs.show: a window cannot open on a cluster node")
        planned.append((config.source, config, float(cpus)))
    ids = unique_ids([source for source, _, _ in planned])
    members = tuple(
        _member(source, config, cpus, sid, index)
        for index, ((source, config, cpus), sid) in enumerate(zip(planned, ids, strict=True))
    )
    return Fleet(settings, members)


def _pipeline_mapping(value: Any, base: Path, origin: str) -> dict[str, Any]:
    """A pipeline given inline or as a YAML file, without its source(s).

    Raises:
        ConfigError: not a mapping or a path, or the file cannot be read.
    """
    if isinstance(value, str):
        path = Path(value) if Path(value).is_absolute() else base / value
        value = read_yaml(path)
        origin = str(path)
    if not isinstance(value, dict):
        raise ConfigError(f"{origin}: pipeline: expected a mapping or the path of a pipeline YAML")
    return {key: item for key, item in value.items() if key not in ("source", "sources")}


def _member(source: SourceConfig, config: PipelineConfig, cpus: float, sid: str, index: int) -> FleetMember:
    """The actor's config: its source with the fleet's id and a file path made absolute (actors may run
    in another working folder; a bundled sample resolves on its node), outputs named after the source,
    and only the event outputs that need frames; the driver writes the others."""
    uri = source.uri
    if not is_stream_url(uri) and not uri.isdigit() and not is_sample(uri):
        uri = str(Path(uri).resolve())
    name = safe_id(sid)
    update: dict[str, Any] = {
        "sources": [source.model_copy(update={"id": sid, "uri": uri})],
        "outputs": outputs_for(config, name, index).with_files(Path.resolve),
        "threads": config.threads or max(1, int(cpus)),
    }
    forwarded: tuple[Any, ...] = ()
    if config.events is not None:
        outputs = config.events.outputs
        kept = tuple(
            o.model_copy(update={"dir": o.dir.resolve()}) for o in outputs if isinstance(o, FRAME_OUTPUTS)
        )
        forwarded = tuple(unshared(o, name) for o in outputs if not isinstance(o, FRAME_OUTPUTS))
        update["events"] = config.events.model_copy(update={"outputs": kept})
    return FleetMember(sid, config.model_copy(update=update), cpus, forwarded)
