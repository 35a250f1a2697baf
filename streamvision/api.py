"""The Python API: stages and pipelines on images you supply, and a source's frames as an iterator.

Three entry points, all exported from :mod:`streamvision`:

- :func:`load_stage` runs one stage on single images: ``detect = load_stage("object_detection")``,
  then ``detections = detect(image)``.
- :class:`Processor` runs the stages of a pipeline config on frames you supply, in order, keeping
  the stages' state (tracks, zone counts) from one frame to the next.
- :func:`frames` opens a source as ``streamvision run`` does and yields its frames with the
  results of a config's stages.

Images are BGR ``uint8`` arrays of shape (H, W, 3), as OpenCV reads them (a grey (H, W) or BGRA
(H, W, 4) image is converted), or the path of an image file. Results are the types of
:mod:`streamvision.frame`: :class:`~streamvision.frame.Detections`, ``Labels``, ``Estimates``,
``Mask``, ``Poses``, ``ZoneCounts``.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeAlias

import cv2
import numpy as np

from streamvision.config import OutputConfig, PipelineConfig, load_config, parse_config, with_overrides
from streamvision.errors import ConfigError, SourceError
from streamvision.frame import Frame
from streamvision.pipeline import FILE_QUEUE_SIZE, JOIN_TIMEOUT_S, LIVE_QUEUE_SIZE, model_sessions
from streamvision.queues import FrameQueue, QueueClosed
from streamvision.runtime.manifest import ModelRegistry
from streamvision.runtime.session import ThreadBudget
from streamvision.sources import Source, open_source
from streamvision.sources.base import PendingImage, as_image
from streamvision.stages import Stage, StageConfig, StageContext, build_stage, stage_config_class

__all__ = [
    "ConfigLike",
    "FrameStream",
    "ImageLike",
    "Processor",
    "StageRunner",
    "frames",
    "load_stage",
]

ImageLike: TypeAlias = np.ndarray | str | os.PathLike[str]
"""A BGR uint8 image (H, W, 3), a grey (H, W) or BGRA (H, W, 4) one, or the path of an image file."""

StageLike: TypeAlias = StageConfig | Mapping[str, Any]
"""One stage: its validated config, or the mapping a YAML config has under ``stages:``."""

ConfigLike: TypeAlias = PipelineConfig | Mapping[str, Any] | str | os.PathLike[str] | Sequence[StageLike]
"""A pipeline: a validated config, a mapping as in the YAML, the path of a YAML file, or its stages."""

FrameLike: TypeAlias = ImageLike | tuple[ImageLike, float | None]
"""An image, or an image and its presentation time in seconds."""

PLACEHOLDER_SOURCE = "<frames>"
"""The source given to a config that names none when its stages run on frames you supply; it is never
opened."""


def as_bgr(image: ImageLike) -> np.ndarray:
    """The BGR uint8 (H, W, 3) array a stage takes, from an array or an image file.

    Grey (H, W) or (H, W, 1) and BGRA (H, W, 4) arrays are converted; a BGR array is returned as it
    is (made contiguous when it is a view such as ``rgb[..., ::-1]``).

    Raises:
        SourceError: the file is missing or is not an image OpenCV reads.
        TypeError: ``image`` is neither an array nor a path.
        ValueError: the array is not uint8, is empty, or has a shape that is not an image.

    Example:
        >>> as_bgr(np.zeros((2, 3), np.uint8)).shape
        (2, 3, 3)
    """
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        loaded = cv2.imread(path, cv2.IMREAD_COLOR)
        if loaded is None:
            raise SourceError(f"cannot read an image from {path}: missing, or not an image file")
        return loaded
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy image or a path, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image (0..255), got {image.dtype}")
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected an image of shape (H, W, 3), got {image.shape}")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if channels != 3:
        raise ValueError(f"expected an image of shape (H, W, 3), got {image.shape}")
    return np.ascontiguousarray(image)


def _stage_item(stage: object) -> dict[str, Any]:
    """A stage as the mapping ``parse_config`` validates."""
    if isinstance(stage, StageConfig):
        return {**stage.model_dump(), "type": stage.type}
    if isinstance(stage, Mapping):
        return dict(stage)
    raise TypeError(f"a stage is a StageConfig or a mapping, got {type(stage).__name__}")


def pipeline_config(config: ConfigLike, sources: Sequence[str] = ()) -> PipelineConfig:
    """Validates ``config`` in any of its forms (see :data:`ConfigLike`); ``sources`` stand in when it
    names none.

    Raises:
        ConfigError: the config is invalid, or its YAML file is missing or not YAML; neither it nor
            ``sources`` gives a source.
        TypeError: ``config`` is none of those forms.

    Example:
        >>> pipeline_config([{"type": "face_detection"}], sources=["sample:carphone"]).stages[0].model
        'blazeface_short'
    """
    if isinstance(config, PipelineConfig):
        return config
    if isinstance(config, (str, os.PathLike)):
        return load_config(Path(config), sources=sources)
    if isinstance(config, Mapping):
        return parse_config(dict(config), origin="config", sources=sources)
    if isinstance(config, Sequence):
        return parse_config({"stages": [_stage_item(s) for s in config]}, origin="stages", sources=sources)
    raise TypeError(
        f"a config is a PipelineConfig, a mapping, a YAML path or stages, got {type(config).__name__}"
    )


def _registry(registry: ModelRegistry | str | os.PathLike[str] | None) -> ModelRegistry:
    if registry is None:
        return ModelRegistry()
    if isinstance(registry, ModelRegistry):
        return registry
    return ModelRegistry(Path(registry))


class Processor:
    """The stages of a pipeline config, run on frames you supply.

    Each call is the next frame of one video: stages that keep state (``track``, ``zones``, a
    detector with ``every`` > 1) carry it from frame to frame. Use a new processor for another video.
    Only the config's ``stages`` and ``threads`` are used: its source is not opened and its outputs
    and event rules are not written (run a :class:`~streamvision.pipeline.Pipeline` or
    ``streamvision run`` for those). A processor is for one thread at a time.

    Args:
        config: a :class:`~streamvision.config.PipelineConfig`, a mapping as in the YAML (``source``
            may be left out), the path of a YAML config, or a list of stages.
        registry: where models are looked up: a :class:`ModelRegistry` or a folder holding a
            ``manifest.yaml``; the bundled models by default.
        threads: ONNX Runtime threads the models share; the config's ``threads``, else the core count,
            by default.
        source_id: put on every frame made from an image (:attr:`Frame.source_id`).
        live_source: the frames come from a camera or stream, in real time (MediaPipe stages then
            run in live mode).

    Raises:
        ConfigError: the config is invalid or its file cannot be read.
        ModelError: a model is unknown, missing, fails its checksum or cannot be loaded.
        TypeError: ``config`` is none of the forms above.
        ValueError: ``threads`` is below 1.

    Example:
        >>> import numpy as np
        >>> with Processor({"stages": [{"type": "face_detection"}]}, threads=1) as processor:
        ...     frame = processor(np.zeros((144, 176, 3), np.uint8))
        >>> frame.index, list(frame.results), len(frame.results["face_detection"])
        (0, ['face_detection'], 0)
    """

    def __init__(
        self,
        config: ConfigLike,
        *,
        registry: ModelRegistry | str | os.PathLike[str] | None = None,
        threads: int | None = None,
        source_id: str = "frames",
        live_source: bool = False,
    ) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.config = pipeline_config(config, sources=(PLACEHOLDER_SOURCE,))
        self.source_id = source_id
        budget = ThreadBudget(threads or self.config.threads, sessions=max(1, model_sessions(self.config)))
        context = StageContext(_registry(registry), budget, live_source=live_source)
        self.stages: list[Stage] = []
        try:
            for stage_config in self.config.stages:
                self.stages.append(build_stage(stage_config, context))
        except BaseException:
            self.close()
            raise
        self._next_index = 0

    def __call__(self, image: ImageLike, pts: float | None = None) -> Frame:
        """Runs the stages on the next frame: ``image`` with presentation time ``pts`` (seconds).

        Returns:
            the frame, with each stage's result in :attr:`Frame.results` under the stage's name
            (its ``name``, else its ``type``).

        Raises:
            SourceError, TypeError, ValueError: ``image`` is not an image (see :func:`as_bgr`).
            StreamvisionError: a stage failed.
        """
        frame = Frame(as_bgr(image), self.source_id, self._next_index, pts, time.monotonic())
        return self.process_frame(frame)

    def process(self, frames: Iterable[FrameLike]) -> Iterator[Frame]:
        """Runs the stages on each of ``frames`` in order, as you iterate.

        Args:
            frames: images, or (image, pts) pairs; a generator works, so a long video is never
                held in memory.

        Yields:
            one :class:`Frame` per image, in order, with the stages' results.

        Raises:
            SourceError, TypeError, ValueError: an item is not an image (see :func:`as_bgr`).
            StreamvisionError: a stage failed.
        """
        for item in frames:
            if isinstance(item, tuple):
                image, pts = item
                yield self(image, pts)
            else:
                yield self(item)

    def process_frame(self, frame: Frame) -> Frame:
        """Runs the stages on a :class:`Frame` you made; the next image gets the index after its index.

        Raises:
            StreamvisionError: a stage failed.
        """
        for stage in self.stages:
            frame = stage.process(frame)
        self._next_index = frame.index + 1
        return frame

    def close(self) -> None:
        """Releases what stages hold outside Python (MediaPipe graphs). Safe to call twice."""
        for stage in self.stages:
            close = getattr(stage, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> Processor:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


class StageRunner:
    """One stage, called on single images; made by :func:`load_stage`.

    Args:
        processor: a processor of exactly one stage.

    Raises:
        ValueError: ``processor`` does not run exactly one stage.
    """

    def __init__(self, processor: Processor) -> None:
        if len(processor.stages) != 1:
            raise ValueError(f"a StageRunner runs one stage, got {len(processor.stages)}")
        self.processor = processor
        self.config: StageConfig = processor.config.stages[0]
        self.name = self.config.result_key
        """The key of the stage's result on a frame."""

    def __call__(self, image: ImageLike) -> Any:
        """Runs the stage on ``image`` and returns its result: ``Detections`` for the detectors,
        ``Labels`` or ``Estimates`` for ``classify``, ``Mask`` for ``segment``, ``Poses`` for
        ``pose``; None when the stage skipped the image (a detector with ``every`` > 1).

        Raises:
            SourceError, TypeError, ValueError: ``image`` is not an image (see :func:`as_bgr`).
            StreamvisionError: the stage failed.
        """
        return self.frame(image).results.get(self.name)

    def frame(self, image: ImageLike, pts: float | None = None) -> Frame:
        """Runs the stage on ``image`` and returns the whole :class:`Frame` (image, index, results)."""
        return self.processor(image, pts)

    def close(self) -> None:
        """Releases what the stage holds outside Python (a MediaPipe graph). Safe to call twice."""
        self.processor.close()

    def __enter__(self) -> StageRunner:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def load_stage(
    stage: StageLike | str,
    /,
    *,
    registry: ModelRegistry | str | os.PathLike[str] | None = None,
    threads: int | None = None,
    **options: Any,
) -> StageRunner:
    """Loads one stage to call on single images, validated as in a YAML config.

    Args:
        stage: the stage's ``type`` (``object_detection``, ``face_detection``, ``classify``,
            ``segment``, ``pose``), a mapping as in the YAML, or a stage config.
        registry: where models are looked up: a :class:`ModelRegistry` or a folder holding a
            ``manifest.yaml``; the bundled models by default.
        threads: ONNX Runtime threads; the core count by default.
        **options: the stage's settings (``model="nanodet"``, ``score_threshold=0.5``...); they
            override those of ``stage``.

    Returns:
        a :class:`StageRunner`: call it on an image to get the stage's result.

    Raises:
        ConfigError: unknown stage type or setting, a bad value, or a stage that works on another
            stage's results (``track``, ``zones``, ``recognize``, anything with ``on``): run those
            in a :class:`Processor` after their detector.
        ModelError: the model is unknown, missing, fails its checksum or cannot be loaded.
        TypeError: ``stage`` is none of the forms above.
        ValueError: ``threads`` is below 1.

    Example:
        >>> import numpy as np
        >>> with load_stage("face_detection", model="blazeface_short", threads=1) as faces:
        ...     found = faces(np.zeros((144, 176, 3), np.uint8))
        >>> type(found).__name__, len(found)
        ('Detections', 0)
    """
    item = {"type": stage} if isinstance(stage, str) else _stage_item(stage)
    item.update(options)
    if "type" in item:
        # a stage with ``on`` (by default, for track, zones, recognize) reads an earlier stage's results
        try:
            config_class = stage_config_class(str(item["type"]))
        except ConfigError as exc:
            raise ConfigError(f"load_stage: {exc}") from None
        field = config_class.model_fields.get("on")
        on = item.get("on", None if field is None else field.default)
        if on is not None:
            raise ConfigError(
                f"load_stage: {item['type']} works on the results of {on!r}: run it in a "
                "streamvision.Processor after the stage that makes them"
            )
    config = parse_config({"stages": [item]}, origin="load_stage", sources=(PLACEHOLDER_SOURCE,))
    return StageRunner(Processor(config, registry=registry, threads=threads, source_id="image"))


@dataclass(frozen=True, slots=True)
class _Captured:
    image: np.ndarray | PendingImage
    index: int
    pts: float | None
    capture_time: float


class _Capture:
    """Reads a source on a thread of its own into a queue, as a pipeline's capture thread does.

    It holds no reference to its :class:`FrameStream`, so a stream dropped unfinished is garbage
    collected and stops its capture.
    """

    def __init__(self, source: Source, stop: threading.Event, queue_size: int, limit: int | None) -> None:
        self.source = source
        self.stop = stop
        self.limit = limit
        self.queue: FrameQueue[_Captured] = FrameQueue(queue_size, keep_newest=source.live)
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="sv-api-capture", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        index = 0
        try:
            while not self.stop.is_set() and (self.limit is None or index < self.limit):
                item = self.source.read()
                if item is None:
                    break
                image, pts = item
                if not self.queue.put(_Captured(image, index, pts, time.monotonic()), self.stop):
                    break
                index += 1
        except BaseException as exc:
            self.error = exc
        finally:
            self.queue.close()
            self.source.close()  # here, on the thread that reads it: a read may be under way

    def shutdown(self) -> None:
        """Stops reading and waits up to ``JOIN_TIMEOUT_S`` for the thread; closes the source."""
        self.stop.set()
        self.queue.close()
        if self.thread is None:
            self.source.close()
        else:
            self.thread.join(JOIN_TIMEOUT_S)


class FrameStream:
    """A source's frames with the results of a config's stages, as an iterator; made by :func:`frames`.

    The source is read on a thread of its own while the stages run on the frames read before, as in
    ``streamvision run``. A file loses no frame; a live source (camera, stream) keeps the newest
    frames when the stages are slower than it, and counts the frames it drops (:attr:`dropped`).

    Iterating to the end closes the stream; a stream left before its end is closed by
    :meth:`close`, by a ``with`` block, or when it is garbage collected.
    """

    def __init__(
        self,
        source: Source,
        processor: Processor,
        queue_size: int,
        limit: int | None,
        stop: threading.Event | None = None,
    ) -> None:
        self.source = source
        self.processor = processor
        self._capture = _Capture(source, stop or threading.Event(), queue_size, limit)
        self._closer = weakref.finalize(self, self._capture.shutdown)
        self._done = False

    @property
    def dropped(self) -> int:
        """Frames of a live source that the stages had no time for."""
        return self._capture.queue.dropped

    def __iter__(self) -> FrameStream:
        return self

    def __next__(self) -> Frame:
        """The next frame with its results.

        Raises:
            SourceError: the source failed.
            StreamvisionError: a stage failed.
        """
        if self._done:
            raise StopIteration
        if self._capture.thread is None:
            self._capture.start()
        try:
            captured = self._capture.queue.get()
        except QueueClosed:
            error = self._capture.error
            self.close()
            if error is not None:
                raise error from None
            raise StopIteration from None
        frame = Frame(
            as_image(captured.image),
            self.source.source_id,
            captured.index,
            captured.pts,
            captured.capture_time,
        )
        try:
            return self.processor.process_frame(frame)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stops reading, closes the source and releases the stages. Safe to call twice."""
        self._done = True
        self._closer()
        self.processor.close()

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def frames(
    source: str | int | os.PathLike[str] | None = None,
    config: ConfigLike | None = None,
    *,
    max_frames: int | None = None,
    registry: ModelRegistry | str | os.PathLike[str] | None = None,
    threads: int | None = None,
) -> FrameStream:
    """Opens a source as ``streamvision run`` does and returns its frames with the results of the
    config's stages, as an iterator.

    Only the config's source settings, ``stages``, ``max_frames`` and ``threads`` are used: its
    outputs and event rules are not written (``streamvision run`` or a
    :class:`~streamvision.pipeline.Pipeline` write them).

    Args:
        source: a camera index, a video file, an image folder, glob or file, a stream URL or a
            bundled clip (``sample:bikes``, ``sample:carphone``); the config's source by default.
            The config's other source settings (transport, timeouts, reconnect, realtime) stay.
        config: the pipeline (see :class:`Processor`); no stages by default: decoded frames only.
        max_frames: stop after this many frames; the config's ``max_frames`` by default.
        registry: where models are looked up (see :class:`Processor`).
        threads: ONNX Runtime threads the models share (see :class:`Processor`).

    Raises:
        ConfigError: the config is invalid, or neither it nor ``source`` gives one source.
        ModelError: a model is unknown, missing, fails its checksum or cannot be loaded.
        SourceError: the source cannot be opened; while iterating, when it fails.
        ValueError: ``max_frames`` or ``threads`` is below 1.

    Example:
        >>> stages = [{"type": "face_detection"}]
        >>> with frames("sample:carphone", stages, max_frames=3, threads=1) as stream:
        ...     found = [(frame.index, len(frame.results["face_detection"])) for frame in stream]
        >>> found
        [(0, 1), (1, 1), (2, 1)]
    """
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    uri = None if source is None else os.fspath(source) if isinstance(source, os.PathLike) else str(source)
    if uri is None and config is None:
        raise ConfigError("frames: give a source, or a config that names one")
    resolved = pipeline_config(config if config is not None else {}, sources=() if uri is None else (uri,))
    # Outputs are not written here, so they must not stop a source that an output file would clash with.
    resolved = resolved.model_copy(update={"outputs": OutputConfig(), "events": None})
    if uri is not None:
        resolved = with_overrides(resolved, source=uri)
    elif len(resolved.sources) != 1:
        raise ConfigError(f"frames reads one source, the config has {len(resolved.sources)}: pass source")
    settings = resolved.source
    stop = threading.Event()  # also ends a stream source's wait to reconnect when the stream is closed
    opened = open_source(
        settings.uri, settings.id, settings.realtime, settings.realtime_fps, network=settings, stop=stop
    )
    try:
        processor = Processor(resolved, registry=registry, threads=threads, live_source=opened.live)
    except BaseException:
        opened.close()
        raise
    queue_size = settings.queue_size or (LIVE_QUEUE_SIZE if opened.live else FILE_QUEUE_SIZE)
    limit = max_frames if max_frames is not None else resolved.max_frames
    return FrameStream(opened, processor, queue_size, limit, stop)
