"""Pipeline config: YAML in, a fully validated :class:`PipelineConfig` out, or one ConfigError."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from streamvision.errors import ConfigError
from streamvision.events.config import EventsConfig, JsonLinesOutput
from streamvision.paths import same_path_problem
from streamvision.samples import sample_path
from streamvision.stages import StageConfig, stage_config_class
from streamvision.stages.zones import ZonesConfig
from streamvision.strict import StrictModel

SAMPLE_CLIP = sample_path("carphone")
STREET_CLIP = sample_path("bikes")
DEFAULT_OUTPUT = Path("streamvision-output.mp4")
OUTPUT_VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov")
"""Containers the annotated H.264 video can be written in."""
X264Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
]
"""x264's speed presets, fastest first (as :data:`streamvision.sinks.video.X264_PRESETS`)."""


class ReconnectConfig(StrictModel):
    """How a network source retries after it goes offline: exponential backoff with jitter."""

    initial: float = Field(0.5, gt=0, le=3600)
    """Seconds before the first retry; each failed retry doubles the wait."""
    max: float = Field(30.0, gt=0, le=3600)
    """The longest wait between two retries, in seconds."""
    jitter: float = Field(0.2, ge=0, le=1)
    """Each wait is shortened by a random fraction up to this, so many cameras do not retry in step."""
    max_retries: int | None = Field(None, ge=0)
    """Retries before giving up with an error; None retries forever, 0 never retries."""

    @model_validator(mode="after")
    def _ordered(self) -> ReconnectConfig:
        if self.max < self.initial:
            raise ValueError(f"max ({self.max}) must be >= initial ({self.initial})")
        return self


class SourceConfig(StrictModel):
    """Where frames come from: a camera index, file, image folder / glob, or stream URL."""

    uri: str
    id: str | None = None
    queue_size: int | None = Field(None, ge=1, le=1024)
    """Frames buffered between capture and the stages; by default 8 for files and 2 for live sources,
    whose latency grows with every frame waiting."""
    realtime: bool = False
    """Play a file at its own frame rate as a live source (frames are dropped when processing lags)."""
    realtime_fps: float | None = Field(None, gt=0, le=1000)
    """Play a file as a live source at this frame rate instead of its own (implies ``realtime``)."""
    transport: Literal["tcp", "udp"] = "tcp"
    """RTSP transport (network streams)."""
    open_timeout: float = Field(10.0, gt=0, le=600)
    """Seconds to connect and read a stream's headers before the attempt fails (network streams)."""
    stall_timeout: float = Field(10.0, gt=0, le=600)
    """A stream that delivers no frame for this many seconds is offline and reconnected."""
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig)
    max_size: int | None = Field(None, ge=16, le=16384)
    """Scale every frame down, as it is decoded, so that its longer side is at most this many pixels
    (aspect ratio kept, sides even): stages, drawing and encoding then all work on the smaller
    picture. For when no output needs full size: the video is written at this size, and every pixel
    coordinate (boxes, events, zones not given as ``relative``) is in the scaled frame."""

    @field_validator("uri", mode="before")
    @classmethod
    def _camera_index(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class PreviewConfig(StrictModel):
    """A live preview page over HTTP (MJPEG stream, figures, Prometheus ``/metrics``)."""

    host: str = "127.0.0.1"
    """Address to bind; the default keeps it on this machine."""
    port: int = Field(8080, ge=0, le=65535)
    """0 picks a free port."""
    token: str | None = None
    """When set, every request needs ``?token=...`` or ``Authorization: Bearer ...``."""
    max_fps: float = Field(15.0, gt=0, le=120)
    """JPEG frames per second at most."""
    quality: int = Field(80, ge=10, le=100)


class OutputConfig(StrictModel):
    """Where results go."""

    video: Path | None = None
    """Annotated H.264 video: an .mp4 (or .mkv, .mov) file."""
    video_preset: X264Preset = "veryfast"
    """x264's speed preset for ``video``: a faster one spends less time per frame on a larger file."""
    video_crf: int = Field(23, ge=0, le=51)
    """x264's quality for ``video``: 0 is lossless, 51 the worst; each 6 down about doubles the file."""
    show: bool = False
    """A window; q or Esc stops the run."""
    events: str | None = None
    """JSON lines, one object per frame: a path, or ``-`` for stdout."""
    report: Path | None = None
    """The run summary as JSON."""
    preview: PreviewConfig | None = None
    """A live preview page over HTTP."""
    fps_overlay: bool = False
    """Draw the output FPS on the annotated picture, and so into the video, snapshots and clips too.
    Off by default: the window's title and the preview page show it without touching the picture."""

    @field_validator("video")
    @classmethod
    def _video_container(cls, value: Path | None) -> Path | None:
        if value is not None and value.suffix.lower() not in OUTPUT_VIDEO_SUFFIXES:
            raise ValueError(
                f"{str(value)!r} is not a video file name: end it in {', '.join(OUTPUT_VIDEO_SUFFIXES)}"
            )
        return value

    def with_files(self, change: Callable[[Path], Path]) -> OutputConfig:
        """A copy with ``change`` applied to each file path: video, per-frame events (not stdout), report."""
        events = self.events
        return self.model_copy(
            update={
                "video": None if self.video is None else change(self.video),
                "report": None if self.report is None else change(self.report),
                "events": events if events in (None, "-") else str(change(Path(str(events)))),
            }
        )


class PipelineConfig(StrictModel):
    """A pipeline: its source(s), its stages in order, its outputs.

    With several sources, each runs as a pipeline of its own with the same stages and outputs
    (see :mod:`streamvision.multi`). ``source`` is shorthand for a list of one.
    """

    sources: list[SourceConfig] = Field(min_length=1)
    stages: list[StageConfig] = Field(default_factory=list)
    outputs: OutputConfig = Field(default_factory=OutputConfig)
    max_frames: int | None = Field(None, ge=1)
    threads: int | None = Field(None, ge=1, description="ONNX Runtime threads shared by all models")
    events: EventsConfig | None = None
    """Rules that turn results into events, and the outputs those go to."""

    @model_validator(mode="before")
    @classmethod
    def _source_shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and "source" in data:
            if "sources" in data:
                raise ValueError("give either source or sources, not both")
            data = dict(data)
            data["sources"] = [data.pop("source")]
        return data

    @field_validator("events")
    @classmethod
    def _zones_of_stages(cls, events: EventsConfig | None, info: ValidationInfo) -> EventsConfig | None:
        """Rules may name the zones and lines of a zones stage: defined once, counted and watched alike."""
        if events is None:
            return None
        stages = info.data.get("stages", ())
        zones = [stage for stage in stages if isinstance(stage, ZonesConfig)]
        return events.sharing(
            (region, stage.relative) for stage in zones for region in stage.zones + stage.lines
        )

    @property
    def source(self) -> SourceConfig:
        """The first (for a single-source pipeline, the only) source."""
        return self.sources[0]

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> PipelineConfig:
        """As pydantic's, with ``source`` in ``update`` standing for a list of one, as in the YAML."""
        if update is not None and "source" in update:
            update = {**{k: v for k, v in update.items() if k != "source"}, "sources": [update["source"]]}
        return super().model_copy(update=update, deep=deep)

    @model_validator(mode="after")
    def _unique_source_ids(self) -> PipelineConfig:
        ids = [source.id for source in self.sources if source.id is not None]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"source ids must be unique: {', '.join(duplicates)}")
        return self

    @model_validator(mode="after")
    def _skipped_frames_are_carried(self) -> PipelineConfig:
        problem = _uncarried_skip(self.stages)
        if problem is not None:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _one_writer_per_stream(self) -> PipelineConfig:
        streams = [
            o.path for o in (self.events.outputs if self.events else ()) if isinstance(o, JsonLinesOutput)
        ]
        if self.outputs.events is not None:
            streams.append(self.outputs.events)
        for stream in set(streams):
            if streams.count(stream) > 1:
                raise ValueError(
                    f"{stream!r} is written by two outputs; rule events also go to outputs.events"
                )
        return self

    @model_validator(mode="after")
    def _no_file_twice(self) -> PipelineConfig:
        # with several sources each output gets the source's id in its name: per_source checks those
        problem = same_path_problem(self, with_sources=len(self.sources) == 1)
        if problem is not None:
            raise ValueError(problem)
        return self


def _uncarried_skip(stages: Sequence[StageConfig]) -> str | None:
    """What is wrong when a stage that needs detections on every frame reads those of a detector
    that skips frames (``every`` > 1, ``detect_fps``) with no ``track`` stage between them to carry
    the boxes over the skipped frames; None when nothing is.

    Such a stage says so with a true ``needs_detections_every_frame`` class attribute and names the
    detections in ``on``; a detector names the setting that makes it skip in ``skipping``.
    """
    for i, stage in enumerate(stages):
        on = getattr(stage, "on", None)
        if on is None or not getattr(stage, "needs_detections_every_frame", False):
            continue
        producer = next((j for j in range(i - 1, -1, -1) if stages[j].result_key == on), None)
        if producer is None:
            continue  # an unknown ``on`` is _check_references' error
        skipping = getattr(stages[producer], "skipping", None)
        carried = any(s.type == "track" and getattr(s, "on", None) == on for s in stages[producer + 1 : i])
        if skipping is not None and not carried:
            return (
                f"stages.{i} ({stage.result_key}): {skipping} of stages.{producer} ({on}) needs a "
                f"track stage on {on!r} before this stage; the detector leaves the frames it skips "
                f"without detections, and {stage.type} needs them on every frame (or detect on every frame)"
            )
    return None


def default_config(video: bool = True) -> PipelineConfig:
    """The embedded default of ``streamvision run``: objects tracked on the bundled street clip, with a
    counting line down the middle, into an annotated mp4 (as configs/objects.yaml; without ``video``,
    no mp4)."""
    return parse_config(
        {
            "source": {"uri": "sample:bikes"},
            "stages": [
                {"type": "object_detection", "model": "nanodet", "score_threshold": 0.2,
                 "classes": ["person", "bicycle", "car", "motorcycle", "bus", "truck"]},
                {"type": "track", "on": "object_detection", "high_threshold": 0.4},
                {"type": "zones", "on": "object_detection", "relative": True,
                 "lines": [{"name": "middle", "start": [0.5, 0.0], "end": [0.5, 1.0]}]},
            ],
            "outputs": {"video": str(DEFAULT_OUTPUT) if video else None},
        },
        origin="default config",
    )  # fmt: skip


LIGHT_PIPELINE_THREADS = 1
"""A model that takes a millisecond or two leaves the cores to decoding and encoding: on 2 cores the
face pipeline ran at 324 FPS with 1 intra-op thread against 282 FPS with 2 (``streamvision bench``)."""


def faces_config() -> PipelineConfig:
    """Face detection over the bundled face clip into an annotated mp4: the pipeline ``streamvision
    bench`` measures by default."""
    return PipelineConfig(
        sources=[SourceConfig(uri=str(SAMPLE_CLIP), id="sample")],
        stages=[stage_config_class("face_detection")(type="face_detection")],
        outputs=OutputConfig(video=DEFAULT_OUTPUT),
        threads=LIGHT_PIPELINE_THREADS,
    )


def parse_config(raw: Any, origin: str = "config", sources: Sequence[str] = ()) -> PipelineConfig:
    """Validates a config mapping (as loaded from YAML).

    A bare string or number as ``source`` (or as an item of ``sources``) is shorthand for
    ``{uri: ...}``. ``sources`` (the command line's) stand in when ``raw`` names no source, so a
    stages-only config can be shared.

    Raises:
        ConfigError: naming the first bad key and what is wrong with it; neither ``raw`` nor
            ``sources`` gives a source.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping at the top level, got {type(raw).__name__}")
    raw = dict(raw)
    if "source" not in raw and "sources" not in raw:
        if not sources:
            raise ConfigError(
                f"{origin}: source: Field required; give one in the config or on the command line"
            )
        raw["sources"] = list(sources)
    if isinstance(raw.get("source"), (str, int)):
        raw["source"] = {"uri": raw["source"]}
    if isinstance(raw.get("sources"), list):
        raw["sources"] = [{"uri": item} if isinstance(item, (str, int)) else item for item in raw["sources"]]
    stages_raw = raw.pop("stages", [])
    if not isinstance(stages_raw, list):
        raise ConfigError(f"{origin}: stages: expected a list of stages")
    stages = [_parse_stage(item, f"stages.{i}", origin) for i, item in enumerate(stages_raw)]
    _check_references(stages, origin)
    try:
        return PipelineConfig.model_validate({**raw, "stages": stages})
    except ValidationError as exc:
        message = _describe(exc, origin)
        if "source" in raw:  # name the key as the user wrote it, not the list it becomes
            message = message.replace(f"{origin}: sources.0", f"{origin}: source", 1)
        raise ConfigError(message) from None


def _parse_stage(item: Any, where: str, origin: str) -> StageConfig:
    if not isinstance(item, dict) or "type" not in item:
        raise ConfigError(f"{origin}: {where}: each stage needs a 'type'")
    try:
        config_class = stage_config_class(str(item["type"]))
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {where}.type: {exc}") from None
    try:
        return config_class.model_validate(item)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin, prefix=where)) from None


def _check_references(stages: list[StageConfig], origin: str) -> None:
    """A stage's ``on`` (the detections it works on) must name the results of an earlier stage.

    Raises:
        ConfigError: naming the stage and the result keys available before it.
    """
    earlier: list[str] = []
    for i, stage in enumerate(stages):
        on = getattr(stage, "on", None)
        if isinstance(on, str) and on not in earlier:
            valid = ", ".join(earlier) or "none"
            raise ConfigError(f"{origin}: stages.{i}.on: no earlier stage named {on!r} (earlier: {valid})")
        earlier.append(stage.result_key)


def _describe(exc: ValidationError, origin: str, prefix: str = "") -> str:
    error = exc.errors()[0]
    location = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
    more = exc.error_count() - 1
    tail = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    # a whole-config check (a model validator) has no location: its message names the keys itself
    where = f"{location}: " if location else ""
    return f"{origin}: {where}{_message(error)}{tail}"


def _message(error: ErrorDetails) -> str:
    """What is wrong, in the words of the check that failed."""
    if error["type"] == "extra_forbidden":
        return "unknown key"
    raised = error.get("ctx", {}).get("error")
    if error["type"] == "value_error" and raised is not None:
        return str(raised)  # the validator's own text, without pydantic's "Value error, " prefix
    return error["msg"]


class _ConfigLoader(yaml.SafeLoader):
    """Safe YAML with YAML 1.2 booleans: only true / false.

    PyYAML follows YAML 1.1, where on / off / yes / no are booleans too, so a stage's ``on:`` key
    would arrive as the key True.
    """


_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def read_yaml(path: Path) -> Any:
    """The YAML document in ``path`` (YAML 1.2 booleans), not validated.

    Raises:
        ConfigError: the file is missing or is not YAML.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    try:
        return yaml.load(text, Loader=_ConfigLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None


def load_config(path: Path, sources: Sequence[str] = ()) -> PipelineConfig:
    """Reads and validates a YAML pipeline config; ``sources`` stand in when it names none.

    Raises:
        ConfigError: the file is missing, is not YAML, or fails validation; neither the file nor
            ``sources`` gives a source.
    """
    return parse_config(read_yaml(path), origin=str(path), sources=sources)


def with_overrides(config: PipelineConfig, **overrides: Any) -> PipelineConfig:
    """Returns ``config`` with command-line values applied (None means: keep the file's value).

    Keys: source (one URI or a list; each keeps the settings of the config's first source but its id),
    output, show (False turns a config's window off), events, report, preview (a port), max_frames,
    and the detector settings of ``DETECTOR_OPTIONS`` (model, score_threshold, classes, decoder). The
    result is validated as the same values in the file would be.

    Raises:
        ConfigError: a value is invalid, or the config with it is (one line that names the key).
    """
    output_updates = {
        key: value
        for key, value in {
            "video": overrides.get("output"),
            "show": overrides.get("show"),
            "events": overrides.get("events"),
            "report": overrides.get("report"),
            "preview": None if overrides.get("preview") is None else {"port": overrides["preview"]},
        }.items()
        if value is not None
    }
    # Changed parts go in as plain data, so they are validated; the rest keep their validated objects.
    merged: dict[str, Any] = {name: getattr(config, name) for name in PipelineConfig.model_fields}
    merged["outputs"] = {**config.outputs.model_dump(), **output_updates}
    if overrides.get("source"):
        uris = overrides["source"]
        # the config's source settings (transport, timeouts, reconnect, realtime...) stay; the id is
        # made from the new URI
        template = config.sources[0].model_dump()
        merged["sources"] = [
            {**template, "uri": str(uri), "id": None} for uri in ([uris] if isinstance(uris, str) else uris)
        ]
    if overrides.get("max_frames") is not None:
        merged["max_frames"] = overrides["max_frames"]
    detector = {key: overrides[key] for key in DETECTOR_OPTIONS if overrides.get(key) is not None}
    if detector:
        merged["stages"] = _with_detector_options(config.stages, detector)
    try:
        return PipelineConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, "command line")) from None


DETECTOR_OPTIONS = {
    "model": ("--model", ("object_detection", "face_detection")),
    "score_threshold": ("--confidence", ("object_detection", "face_detection")),
    "classes": ("--classes", ("object_detection",)),
    "decoder": ("--decoder", ("object_detection",)),
}
"""Detector setting -> its command-line option and the stage types it applies to."""


def _with_detector_options(stages: list[StageConfig], values: dict[str, Any]) -> list[StageConfig]:
    """The stages with each given detector setting (``DETECTOR_OPTIONS``) applied to every stage of
    the types it applies to.

    Raises:
        ConfigError: no stage takes a setting, or a value is invalid for it (naming the option).
    """
    for key, value in values.items():
        option, types = DETECTOR_OPTIONS[key]
        if not any(stage.type in types for stage in stages):
            raise ConfigError(f"{option}: the pipeline has no {' or '.join(types)} stage")
        try:
            stages = [
                type(stage).model_validate({**stage.model_dump(), key: value})
                if stage.type in types
                else stage
                for stage in stages
            ]
        except ValidationError as exc:
            raise ConfigError(f"{option}: {_message(exc.errors()[0])}") from None
    return stages
