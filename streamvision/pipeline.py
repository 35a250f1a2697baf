"""Wires a source, stages and sinks from one config, and runs them on three threads.

capture thread:  source.read() -> bounded input queue (keep-newest for live sources, else lossless)
stage thread:    input queue -> each stage in order -> bounded output queue
calling thread:  output queue -> annotate -> sinks; it also owns the window and signal handling

A pipeline holds no global state: everything it needs comes from its config and its registry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from streamvision.config import PipelineConfig
from streamvision.errors import ConfigError, StreamvisionError
from streamvision.frame import Detections, Frame
from streamvision.metrics import PipelineMetrics
from streamvision.paths import same_path_problem
from streamvision.queues import FrameQueue, QueueClosed, QueueTimeout
from streamvision.render.annotate import Annotator
from streamvision.runtime.manifest import ModelRegistry
from streamvision.runtime.service import ModelService
from streamvision.runtime.session import ThreadBudget
from streamvision.sinks.base import Sink, StatusSink
from streamvision.sources import Source, open_source
from streamvision.sources.base import PendingImage, as_image
from streamvision.stages import Stage, StageContext, build_stage
from streamvision.stages.objects import DetectionCounters
from streamvision.status import SourceStatus

if TYPE_CHECKING:
    from streamvision.events.sink import EventsSink
    from streamvision.events.worker import EventChannel
    from streamvision.sinks.video import VideoFileSink

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 1.5
"""Seconds a stopping run waits, for all its threads together, for the frame a stage is working on."""
STOP_DRAIN_S = 1.0
"""Seconds event outputs get, together, to deliver their backlog when a run is stopped before its end
(a signal, the window, an error); at the end of a source each drains for its own ``drain_timeout``."""
FILE_QUEUE_SIZE = 8
LIVE_QUEUE_SIZE = 2  # measured: a slow stage on a 30 fps source, latency p50 154 ms with 2, 351 ms with 8
POLL_S = 0.1

ProgressCallback = Callable[["Pipeline"], None]


@dataclass(frozen=True, slots=True)
class _Captured:
    """A frame as the capture thread queues it: a live source's image may still be unconverted, so
    the frames the queue drops are never converted to BGR."""

    image: np.ndarray | PendingImage
    source_id: str
    index: int
    pts: float | None
    capture_time: float

    def frame(self, max_size: int | None = None) -> Frame:
        image = as_image(self.image, max_size)
        return Frame(image, self.source_id, self.index, self.pts, self.capture_time)


def model_sessions(config: PipelineConfig) -> int:
    """How many ONNX Runtime sessions the stages of ``config`` open. Stages that name the same model
    (in the same manifest) share one session (:class:`~streamvision.runtime.service.ModelService`), and
    so do the pipelines of every source of ``config``: the count is the same for one source or many."""
    sessions: dict[tuple[object, ...], int] = {}
    for stage in config.stages:
        model = getattr(stage, "model", None) or stage.model_dump_json(exclude={"name"})
        sessions[(getattr(stage, "models", None), model)] = stage.model_sessions
    return sum(sessions.values())


class Pipeline:
    """A runnable pipeline. Construction opens the source, loads the models and prepares sinks.

    Args:
        config: a validated pipeline config with one source (see :mod:`streamvision.multi` for several).
        models: where models are looked up; the packaged manifest by default.
        budget: ONNX Runtime threads shared with other pipelines of the process; its own by default.
        service: where the stages open their models, shared with other pipelines of the process (each
            model opened once for all of them); its own by default.
        forward_events: channels that get every event of the ``events`` rules and source status
            changes besides the configured outputs (a cluster actor passes them to its driver).

    Raises:
        ConfigError: two of its files or folders are the same (an output over the input).
        SourceError, ModelError, SinkError: the source, a model or an output cannot be opened.
    """

    def __init__(
        self,
        config: PipelineConfig,
        models: ModelRegistry | None = None,
        budget: ThreadBudget | None = None,
        forward_events: tuple[EventChannel, ...] = (),
        service: ModelService | None = None,
    ) -> None:
        if len(config.sources) != 1:
            raise ConfigError(
                f"a Pipeline runs one source, got {len(config.sources)}: use streamvision.multi"
            )
        problem = same_path_problem(config)  # configs made in code skip validation: checked before opening
        if problem is not None:
            raise ConfigError(f"config: {problem}")
        self.config = config
        self.metrics = PipelineMetrics()
        self._stop = threading.Event()
        self.stop_reason: str | None = None
        self._errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self._status: deque[SourceStatus] = deque()  # from the capture thread to the calling thread
        with ExitStack() as on_failure:
            self.source: Source = open_source(
                config.source.uri,
                config.source.id,
                config.source.realtime,
                config.source.realtime_fps,
                network=config.source,
                on_status=self._status.append,
                stop=self._stop,
            )
            on_failure.callback(self.source.close)
            if budget is None:
                budget = ThreadBudget(config.threads, sessions=max(1, model_sessions(config)))
            self.threads_per_model = budget.per_session  # summary() reads it: the preview starts soon
            context = StageContext(
                models or ModelRegistry(),
                budget,
                live_source=self.source.live,
                service=service or ModelService(),
                client=self.source.source_id,
            )
            self.stages: list[Stage] = []
            on_failure.callback(self.close_stages)
            for stage_config in config.stages:
                self.stages.append(build_stage(stage_config, context))
            self.sinks: list[Sink] = []
            self.events_sink: EventsSink | None = None
            self._video: VideoFileSink | None = None
            on_failure.callback(self._close_sinks)
            self._make_sinks(forward_events)
            on_failure.pop_all()
        queue_size = config.source.queue_size or (LIVE_QUEUE_SIZE if self.source.live else FILE_QUEUE_SIZE)
        self._input: FrameQueue[_Captured] = FrameQueue(queue_size, keep_newest=self.source.live)
        self._output: FrameQueue[Frame] = FrameQueue(queue_size, keep_newest=False)
        annotated = any(s.needs_annotation for s in self.sinks)
        self._annotator = Annotator(show_fps=config.outputs.fps_overlay) if annotated else None

    def _make_sinks(self, forward_events: tuple[EventChannel, ...]) -> None:
        """Opens the outputs into :attr:`sinks` one by one, so a failure leaves the opened ones there
        to be closed."""
        outputs = self.config.outputs
        sinks = self.sinks
        if outputs.video is not None:
            from streamvision.sinks.video import VideoFileSink

            self._video = VideoFileSink(
                outputs.video,
                self.source.rate,
                outputs.video_crf,
                live=self.source.live,
                preset=outputs.video_preset,
            )
            sinks.append(self._video)
        if outputs.events is not None:
            from streamvision.sinks.events import JsonLinesSink

            sinks.append(
                JsonLinesSink(outputs.events, on_reader_gone=lambda: self.request_stop("reader gone"))
            )
        if outputs.preview is not None:  # before the rules: it lists their events (write_event)
            from streamvision.sinks.preview import PreviewSink, snapshot_dirs

            preview = outputs.preview
            sinks.append(
                PreviewSink(
                    preview.host,
                    preview.port,
                    preview.token,
                    self.summary,
                    preview.max_fps,
                    preview.quality,
                    snapshot_dirs=snapshot_dirs(self.config.events),
                )
            )
        if self.config.events is not None:
            from streamvision.events.sink import EventLineSink, EventsSink

            inline = tuple(sink for sink in sinks if isinstance(sink, EventLineSink))
            self.events_sink = EventsSink(
                self.config.events,
                self.source.source_id,
                not self.source.live,
                self.source.rate,
                inline,
                forward_events,
            )
            sinks.append(self.events_sink)
        if outputs.show:
            from streamvision.sinks.window import WindowSink

            sinks.append(
                WindowSink(on_quit=lambda: self.request_stop("window closed"), fps=self.metrics.fps_out)
            )

    @property
    def total_frames(self) -> int | None:
        """Frames the run will process, when known in advance."""
        total = self.source.total_frames
        if self.config.max_frames is not None:
            return min(total, self.config.max_frames) if total is not None else self.config.max_frames
        return total

    @property
    def dropped(self) -> int:
        """Frames a live source delivered that processing had no time for."""
        return self._input.dropped

    def request_stop(self, reason: str = "stopped") -> None:
        """Asks every thread to finish: capture stops, queued results are still written."""
        if not self._stop.is_set():
            self.stop_reason = reason
            self._stop.set()

    def run(self, progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Processes the source to its end (or until stopped) and returns the summary.

        Call from the main thread: sinks such as the window need it.

        Raises:
            StreamvisionError: a source, stage or sink failed; outputs are finalized first.
        """
        self.metrics = PipelineMetrics()
        self._threads = [
            # a source that fails still has its frames read so far processed and written
            threading.Thread(target=self._guard(self._capture, stop=False), name="sv-capture", daemon=True),
            threading.Thread(target=self._guard(self._process), name="sv-stages", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        try:
            self._deliver(progress)
        finally:
            interrupted = self._stop.is_set()  # a signal, the window, an error: not the end of the source
            self.request_stop("finished")
            # A second Ctrl-C while waiting must not keep the outputs from being finalized: it is
            # raised once they are.
            aborted: KeyboardInterrupt | None = None
            try:
                joined_by = time.monotonic() + JOIN_TIMEOUT_S
                for thread in self._threads:
                    thread.join(max(0.0, joined_by - time.monotonic()))
                self._deliver_status()
            except KeyboardInterrupt as exc:
                aborted = exc
            aborted = self._close_sinks(time.monotonic() + STOP_DRAIN_S if interrupted else None) or aborted
            self.close_stages()
            self.metrics.finish(dropped=self._input.dropped, source_errors=self.source.errors)
            if aborted is not None:
                raise aborted
        if self._errors:
            raise self._errors[0]
        return self.summary()

    def summary(self) -> dict[str, Any]:
        """The run's figures plus what ran where."""
        outputs = self.config.outputs
        return {
            "source": self.source.source_id,
            "stages": [stage.name for stage in self.stages],
            "output": None
            if self._video is None or self._video.written is None
            else str(self._video.written),
            "events": outputs.events,
            "model_threads": self.threads_per_model,
            **self.metrics.summary(),
            "detectors": {
                stage.name: counters.as_dict()
                for stage in self.stages
                if isinstance(counters := getattr(stage, "counters", None), DetectionCounters)
            },
            **(self.events_sink.stats() if self.events_sink is not None else {}),
        }

    def _guard(self, target: Callable[[], None], stop: bool = True) -> Callable[[], None]:
        """``target`` with its error recorded for :meth:`run` to raise, and the run stopped (or, without
        ``stop``, left to finish what is queued)."""

        def run() -> None:
            try:
                target()
            except BaseException as exc:
                self._errors.append(exc)
                if stop:
                    self.request_stop("error")
                if not isinstance(exc, StreamvisionError):
                    log.exception("%s failed", threading.current_thread().name)

        return run

    def _capture(self) -> None:
        limit = self.config.max_frames
        index = 0
        try:
            while not self._stop.is_set() and (limit is None or index < limit):
                started = time.monotonic()
                item = self.source.read()
                if item is None:
                    break
                image, pts = item
                if not self.source.live:  # a file's frames are all kept: converted here, beside the stages
                    image = as_image(image, self.config.source.max_size)
                self.metrics.step_time("decode", time.monotonic() - started)
                captured = _Captured(image, self.source.source_id, index, pts, time.monotonic())
                self.metrics.frame_in()
                queued = self._input.put(captured, self._stop)
                # read here, on the thread that reads the source: a reconnecting source swaps its
                # connection (and so its error count) during read()
                self.metrics.capture_counts(self._input.dropped, self.source.errors)
                if not queued:
                    break
                index += 1
        finally:
            self._input.close()
            self.source.close()

    def _process(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    frame = self._input.get(POLL_S).frame(self.config.source.max_size)
                except QueueTimeout:
                    continue
                except QueueClosed:
                    break
                for stage in self.stages:
                    started = time.monotonic()
                    frame = stage.process(frame)
                    self.metrics.stage_time(stage.name, time.monotonic() - started)
                if not self._output.put(frame, self._stop):
                    break
        finally:
            self._output.close()

    def _deliver(self, progress: ProgressCallback | None) -> None:
        while True:
            self._deliver_status()
            try:
                frame = self._output.get(POLL_S)
            except QueueTimeout:
                if self._errors and self._stop.is_set():
                    return
                continue
            except QueueClosed:
                return
            annotated = None
            if self._annotator is not None:
                started = time.monotonic()
                annotated = self._annotator.annotate(frame, self.metrics.fps_out())
                self.metrics.step_time("annotate", time.monotonic() - started)
            for sink in self.sinks:
                started = time.monotonic()
                sink.write(frame, annotated)
                self.metrics.step_time(sink.step_name, time.monotonic() - started)
            found = sum(len(r) for r in frame.results.values() if isinstance(r, Detections))
            self.metrics.frame_out(frame.capture_time, found)
            if progress is not None:
                progress(self)

    def _deliver_status(self) -> None:
        """Hands the source's status changes to the metrics and the sinks that record them."""
        while self._status:
            status = self._status.popleft()
            self.metrics.source_status(status.kind == "source_online", status.at, status.reconnects)
            for sink in self.sinks:
                if isinstance(sink, StatusSink):
                    sink.write_status(status)

    def close_stages(self) -> None:
        """Releases what stages hold outside Python (MediaPipe graphs); a stage may have no close().

        :meth:`run` does it at its end; call it after using :attr:`stages` without :meth:`run`.
        """
        for stage in self.stages:
            close = getattr(stage, "close", None)
            if close is not None:
                close()

    def close(self) -> None:
        """Releases the source, the stages and the outputs of a pipeline that will not :meth:`run`."""
        self._close_sinks()
        self.close_stages()
        self.source.close()

    def _close_sinks(self, deadline: float | None = None) -> KeyboardInterrupt | None:
        """Closes every output, each even when one before it failed or a Ctrl-C came; event outputs
        deliver their backlog until ``deadline`` (a ``time.monotonic()`` value), or each for its own
        drain time when it is None. Returns the first KeyboardInterrupt, for the caller to raise once
        all is closed."""
        aborted: KeyboardInterrupt | None = None
        for sink in self.sinks:
            try:
                if sink is self.events_sink:
                    self.events_sink.close(deadline)
                else:
                    sink.close()
            except KeyboardInterrupt as exc:
                aborted = aborted or exc
            except Exception as exc:
                log.error("closing %s failed: %s", type(sink).__name__, exc)
                self._errors.append(exc)
        return aborted
