"""Annotated video as H.264 in mp4, encoded with PyAV's libx264 (plays in browsers) on a thread of its
own, apart from the thread that annotates the frames.

A run never leaves a broken file under the name it was asked to write: the video goes to
``NAME.partial.mp4`` next to it and is renamed to ``NAME.mp4`` only once finalized. The partial file
is a fragmented mp4 (a fragment per second of video), so a run killed outright (SIGKILL) leaves
``NAME.partial.mp4`` playable up to its last complete fragment, and a run whose writes fail (a full
disk) cuts it back to that fragment. Either way it keeps the partial name: only a finalized video
ever carries the final name.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import av
import av.error
import cv2
import numpy as np

from streamvision.errors import SinkError
from streamvision.frame import Frame

log = logging.getLogger(__name__)

DEFAULT_RATE = Fraction(25)

TIME_BASE = Fraction(1, 90_000)
"""Output timestamps' unit: MPEG's 90 kHz clock holds 24, 25, 30000/1001, 50 and 60 fps exactly."""

MAX_SIDE = 4096
"""The longest side encoded: hardware decoders stop at 4096."""
MAX_MACROBLOCKS = 36_864
"""H.264 level 5.2's largest frame (4096x2304): the most browsers and hardware decoders play."""

RESYNC_S = 1.0
"""A live source's timestamp that jumps this much further than the clock did is a discontinuity."""

FLUSH_OPTIONS = {"flush_packets": "1"}  # a finished fragment or cluster reaches the file at once
MP4_OPTIONS = {
    # fragmented: what was written survives a kill; delay_moov (unlike empty_moov) writes the moov
    # with the first fragment, so it can hold the edit list that makes the first frame start at 0
    "movflags": "+frag_keyframe+delay_moov+default_base_moof",
    "frag_duration": "1000000",  # microseconds: a kill loses at most about a second
    **FLUSH_OPTIONS,
}
"""For .mp4 and .mov; Matroska (.mkv) survives a kill as it is, cluster by cluster."""

X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
)  # fmt: skip
"""x264's speed presets, fastest first: each step down makes the same quality (``crf``) smaller, for
more encoding time per frame."""

ENCODER_QUEUE = 4
"""Frames handed to the encoder thread and not yet encoded, at most: enough to even out the frames
that take longer to encode (a keyframe) without holding many full-size pictures."""

AVCOL_SPC_SMPTE170M = 6
AVCOL_RANGE_MPEG = 1
"""FFmpeg's codes for the BT.601 YUV matrix and the 16-235 range: OpenCV's BGR to I420 conversion."""

T = TypeVar("T")


def partial_path(path: Path) -> Path:
    """Where the video for ``path`` is written until it is finalized: ``NAME.partial.SUFFIX``.

    Example:
        >>> partial_path(Path("runs/out.mp4")).as_posix()
        'runs/out.partial.mp4'
    """
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def encodable_size(width: int, height: int) -> tuple[int, int]:
    """The size a ``width`` x ``height`` picture is encoded at: its own, made even (4:2:0 chroma), or
    scaled down with its aspect ratio kept to fit :data:`MAX_SIDE` and H.264 level 5.2.

    Example:
        >>> encodable_size(641, 272), encodable_size(8000, 8000), encodable_size(7680, 4320)
        ((642, 272), (3072, 3072), (4096, 2304))
    """

    def fits(w: int, h: int) -> bool:
        return max(w, h) <= MAX_SIDE and math.ceil(w / 16) * math.ceil(h / 16) <= MAX_MACROBLOCKS

    even = (width + width % 2, height + height % 2)
    if fits(*even):
        return even
    scale = min(MAX_SIDE / max(width, height), math.sqrt(MAX_MACROBLOCKS * 256 / (width * height)))
    while True:
        size = (max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2))
        if fits(*size):
            return size
        scale *= 0.995


def letterbox(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` scaled to fit ``width`` x ``height`` with its aspect ratio kept, centred on black."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    fitted_w, fitted_h = min(width, max(1, round(w * scale))), min(height, max(1, round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    fitted = cv2.resize(image, (fitted_w, fitted_h), interpolation=interpolation)
    top, left = (height - fitted_h) // 2, (width - fitted_w) // 2
    bottom, right = height - fitted_h - top, width - fitted_w - left
    return cv2.copyMakeBorder(fitted, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(0, 0, 0))


class _Timeline:
    """Turns each frame's timestamp into a strictly increasing output timestamp, in :data:`TIME_BASE`.

    Frames keep their source's timing relative to the first frame: a variable frame rate stays
    variable, and frames a live pipeline dropped leave a gap instead of shortening the video. Where
    the source's timestamps break (missing, going back, as after a stream reconnects, or for a live
    source leaping ahead of the clock), the timeline goes on from the last frame: by the time that
    passed between the frames' captures for a live source, by one nominal frame for a file.
    """

    def __init__(self, rate: Fraction, live: bool) -> None:
        self._frame_s = 1 / float(rate)
        self._live = live
        self._offset: float | None = None  # output time = pts - offset
        self._last: float | None = None
        self._last_capture = 0.0
        self._last_tick = -1

    def tick(self, pts: float | None, capture_time: float) -> int:
        elapsed = capture_time - self._last_capture
        if self._last is None:
            t = 0.0
        else:
            t = float("nan") if pts is None or self._offset is None else pts - self._offset
            if not t > self._last or (self._live and t - self._last > elapsed + RESYNC_S):
                t = self._last + (elapsed if self._live and elapsed > 0 else self._frame_s)
        if pts is not None:
            self._offset = pts - t
        self._last, self._last_capture = t, capture_time
        self._last_tick = max(round(t / TIME_BASE), self._last_tick + 1)
        return self._last_tick


class _Job(Generic[T]):
    def __init__(self, call: Callable[[], T], then: Callable[[], object] | None = None) -> None:
        self.call = call
        self.then = then
        self.result: T | None = None
        self.error: BaseException | None = None
        self.finished = False
        self.done = threading.Lock()
        self.done.acquire()

    def run(self) -> None:
        try:
            self.result = self.call()
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished = True
            self.done.release()
            if self.then is not None:
                self.then()


class _EncoderThread:
    """The thread a sink converts, encodes and muxes on, in the order the frames were handed over.

    :meth:`submit` hands a frame's work over and returns; it blocks while ``depth`` frames wait.
    :meth:`call` runs a call there and waits for its end even when a KeyboardInterrupt (a second
    Ctrl-C) arrives meanwhile; it is raised after. Python runs signal handlers on the main thread
    only, between any two steps of Python code (FFmpeg calls back into Python to log, even while it
    writes the trailer): a KeyboardInterrupt there would leave packets unwritten or the file
    unfinished. Nothing interrupts this thread.
    """

    def __init__(self, depth: int) -> None:
        self._jobs: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._slots = threading.BoundedSemaphore(depth)
        # a daemon: a sink that is never closed must not keep the process alive
        self._thread = threading.Thread(target=self._serve, name="sv-video-encoder", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            job.run()

    def submit(self, call: Callable[[], None]) -> None:
        """Queues ``call`` (which must catch what it raises) after those queued before, and returns.

        Raises:
            KeyboardInterrupt: one arrived while waiting for room; ``call`` was not queued.
        """
        self._slots.acquire()
        self._jobs.put(_Job(call, self._slots.release))

    def call(self, call: Callable[[], T]) -> T:
        """Returns what ``call`` returns once the calls queued before it ran, or raises what it raised.

        Raises:
            KeyboardInterrupt: one arrived while ``call`` waited or ran (``call`` finished first; an
                error it raised is logged).
        """
        job = _Job(call)
        interrupted = False
        self._jobs.put(job)
        while True:
            try:
                while not job.finished:
                    job.done.acquire()
                break
            except KeyboardInterrupt:
                interrupted = True
        if interrupted:
            if job.error is not None:
                log.error("%s", job.error)
            raise KeyboardInterrupt
        if job.error is not None:
            raise job.error
        return cast(T, job.result)

    def stop(self) -> None:
        """Ends the thread once the calls queued before have run."""
        self._jobs.put(None)


class VideoFileSink:
    """Writes annotated frames with their source's timestamps.

    The file is opened on the first frame (its size is known then); see the module for how it is
    written under ``NAME.partial.mp4`` and renamed once finalized (a partial file left by an
    interrupted run is kept: this run then writes ``NAME.partial-2.mp4`` and so on).

    The first frame sets the video's size: odd widths or heights are padded by one pixel, since H.264
    with 4:2:0 chroma needs even sizes, and a picture larger than H.264 level 5.2 allows is scaled
    down (aspect ratio kept; one WARNING). A later frame of another size is letterboxed into it:
    scaled to fit with its aspect ratio kept, on black (one WARNING).

    Timing follows the frames' ``pts`` relative to the first frame (a variable frame rate stays
    variable; dropped frames leave gaps); see :class:`_Timeline` for broken timestamps.

    Frames are converted to YUV, encoded and written on an encoder thread of the sink's own, in the
    order :meth:`write` got them; :meth:`write` hands the picture over and returns (the caller must
    not change it after). It blocks while :data:`ENCODER_QUEUE` frames wait, for a live source too:
    an encoder that falls behind then holds the pipeline back, and a live source drops the surplus
    before anything is spent on it (its input queue keeps the newest frames, unconverted, and counts
    the drops; the video shows the gaps), rather than after every stage ran on frames the video
    would lose.

    Args:
        path: the .mp4 (or .mov, .mkv) to write; its folder is created.
        rate: the nominal frames per second, exact (e.g. 30000/1001): the encoder's rate-control hint,
            and the spacing of frames without a timestamp; 25 when the source gives none.
        crf: x264 quality, 0 (lossless) to 51: each 6 down about doubles the file.
        live: the frames come from a live source: where its timestamps break (a stream reconnected),
            the time between the frames' captures fills in.
        preset: x264's speed preset, one of :data:`X264_PRESETS`.

    Raises:
        ValueError: ``crf`` or ``preset`` is not one x264 takes.
        SinkError: the file cannot be created, encoding or writing fails (the message names the
            partial file that holds what was written), or the finished file cannot be renamed.
    """

    step_name = "encode"
    """Its write time is the hand-over to the encoder thread, waiting while that is behind."""
    needs_annotation = True

    def __init__(
        self,
        path: Path,
        rate: Fraction | None = None,
        crf: int = 23,
        *,
        live: bool = False,
        preset: str = "veryfast",
    ) -> None:
        if preset not in X264_PRESETS:
            raise ValueError(f"unknown x264 preset {preset!r}; valid: {', '.join(X264_PRESETS)}")
        if not 0 <= crf <= 51:
            raise ValueError(f"crf must be 0 to 51, got {crf}")
        self.path = path
        self.rate = rate or DEFAULT_RATE
        self.crf = crf
        self.preset = preset
        self.frames_written = 0
        self.partial_path: Path | None = None
        """Where the video is being written; None before the first frame."""
        self.finalized = False
        self._container: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None
        self._timeline = _Timeline(self.rate, live)
        self._encoder: _EncoderThread | None = None
        self._failed = False
        self._error: BaseException | None = None  # the encoder thread's, until write or close raises it
        self._whole_size = 0
        self._first_size = (0, 0)
        self._scaled_size = (0, 0)
        self._encoded_size = (0, 0)
        self._warned_size = False

    def _open(self, width: int, height: int) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.partial_path = self._claim_partial()
            options = FLUSH_OPTIONS if self.path.suffix.lower() == ".mkv" else MP4_OPTIONS
            container = av.open(str(self.partial_path), mode="w", options=options)
        except (OSError, av.error.FFmpegError) as exc:
            if self.partial_path is not None:
                self.partial_path.unlink(missing_ok=True)  # empty: this run created it
            raise SinkError(f"cannot create {self.path}: {getattr(exc, 'strerror', None) or exc}") from exc
        stream = container.add_stream("libx264", rate=self.rate)
        encoded = encodable_size(width, height)
        stream.width, stream.height = encoded
        stream.pix_fmt = "yuv420p"
        stream.time_base = TIME_BASE
        stream.codec_context.time_base = TIME_BASE
        # tagged with what _yuv420p converts with, so players convert back alike
        stream.codec_context.colorspace = AVCOL_SPC_SMPTE170M
        stream.codec_context.color_range = AVCOL_RANGE_MPEG
        stream.options = {"crf": str(self.crf), "preset": self.preset}
        self._first_size, self._encoded_size = (width, height), encoded
        if encoded == (width + width % 2, height + height % 2):
            self._scaled_size = (width, height)
        else:
            self._scaled_size = encoded
            log.warning(
                "%s: %dx%d frames are larger than H.264 plays everywhere; encoding them at %dx%d",
                self.path,
                width,
                height,
                *encoded,
            )
        self._container, self._stream = container, stream
        self._encoder = _EncoderThread(ENCODER_QUEUE)

    def _claim_partial(self) -> Path:
        """Creates the partial file, never over one left by an interrupted run (the user's data).

        Raises:
            OSError: the file cannot be created.
        """
        base = partial_path(self.path)
        candidate, n = base, 1
        while True:
            try:
                with candidate.open("xb"):
                    pass
            except FileExistsError:
                n += 1
                candidate = base.with_name(f"{self.path.stem}.partial-{n}{self.path.suffix}")
                continue
            if n > 1:
                log.warning("%s exists (an interrupted run's?); writing %s instead", base, candidate)
            return candidate

    def write(self, frame: Frame, annotated: np.ndarray | None) -> None:
        """Hands one frame to the encoder thread (``annotated``, or the frame's image without it).

        Raises:
            SinkError: the file cannot be created, or encoding or writing an earlier frame failed.
        """
        image = frame.image if annotated is None else annotated
        if self._container is None:
            self._open(image.shape[1], image.shape[0])
        self._raise_failure()
        pts = self._timeline.tick(frame.pts, frame.capture_time)
        assert self._encoder is not None
        self._encoder.submit(lambda: self._encode_image(image, pts))

    def _raise_failure(self) -> None:
        """Raises the encoder thread's error once; then, while the sink lives, that it failed.

        Raises:
            SinkError: encoding or writing failed (or any error the encoder thread met).
        """
        error, self._error = self._error, None
        if error is not None:
            raise error
        if self._failed:
            raise SinkError(f"{self.path} failed earlier; what was written is in {self.partial_path}")

    def _encode_image(self, image: np.ndarray, pts: int) -> None:
        """On the encoder thread: fits, converts and encodes one picture; an error is kept for the
        caller's next :meth:`write` or :meth:`close`, and the frames after it are skipped."""
        if self._failed:
            return
        try:
            video_frame = _yuv420p(self._fit(image))
            video_frame.pts = pts
            video_frame.time_base = TIME_BASE
            self._encode(video_frame)
        except BaseException as exc:
            self._failed = True
            self._error = exc

    def _fit(self, image: np.ndarray) -> np.ndarray:
        """``image`` as the encoder takes it: the size of the video, made even."""
        height, width = image.shape[:2]
        if (width, height) != self._first_size:
            if not self._warned_size:
                self._warned_size = True
                log.warning(
                    "%s: the frame size changed from %dx%d to %dx%d; letterboxing into the first size",
                    self.path,
                    *self._first_size,
                    width,
                    height,
                )
            return letterbox(image, *self._encoded_size)
        if self._scaled_size != self._first_size:
            return cv2.resize(image, self._scaled_size, interpolation=cv2.INTER_AREA)
        if width % 2 or height % 2:
            return cv2.copyMakeBorder(image, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE)
        return image

    def _encode(self, video_frame: av.VideoFrame | None) -> None:
        if self._stream is None or self._container is None or self.partial_path is None:
            return
        try:
            for packet in self._stream.encode(video_frame):
                self._container.mux(packet)
            if video_frame is not None:
                self.frames_written += 1
            # the muxer writes whole fragments, flushed at once: the file ends after one now
            self._whole_size = self.partial_path.stat().st_size
        except (OSError, av.error.FFmpegError) as exc:
            self._failed = True
            raise SinkError(self._failure("writing", exc)) from exc

    def _failure(self, doing: str, exc: Exception) -> str:
        kept = f"what was written is in {self.partial_path}" if self._whole_size else "nothing was kept"
        return f"{doing} {self.path} failed: {getattr(exc, 'strerror', None) or exc}; {kept}"

    def _finish(self, container: av.container.OutputContainer) -> None:
        """Flushes the encoder, finalizes the partial file and renames it to :attr:`path`. After a
        failure, the partial file is cut back to its last whole fragment (removed when it has none).

        Raises:
            SinkError: flushing, finalizing or renaming failed.
        """
        assert self.partial_path is not None
        error: SinkError | None = None
        try:
            if not self._failed:
                self._encode(None)
        except SinkError as exc:
            error = exc
        finally:
            self._container = self._stream = None
            try:
                container.close()
            except (OSError, av.error.FFmpegError) as exc:
                if not self._failed:
                    self._failed = True
                    error = SinkError(self._failure("finishing", exc))
        if self._failed:
            self._trim()
            if error is not None:
                raise error
            return
        try:
            # on disk before it replaces an earlier file of that name
            with self.partial_path.open("rb") as written:
                os.fsync(written.fileno())
            os.replace(self.partial_path, self.path)
        except OSError as exc:
            raise SinkError(
                f"cannot rename {self.partial_path} to {self.path}: {exc.strerror or exc}"
            ) from exc
        self.finalized = True
        log.info("wrote %d frames to %s", self.frames_written, self.path)

    @property
    def written(self) -> Path | None:
        """The file that holds the video: :attr:`path` once finalized, the partial file while it is
        written or after a failure, None when nothing was kept."""
        if self.finalized:
            return self.path
        if self.partial_path is not None and self.partial_path.exists():
            return self.partial_path
        return None

    def _trim(self) -> None:
        """Cuts a failed partial file back to what plays: a fragment cut short stops decoders."""
        assert self.partial_path is not None
        try:
            if self._whole_size:
                os.truncate(self.partial_path, self._whole_size)
            else:
                self.partial_path.unlink()
        except OSError as exc:
            log.warning("cannot trim %s: %s", self.partial_path, exc.strerror or exc)

    def close(self) -> None:
        """Encodes the frames handed over, flushes the encoder, finalizes the mp4 and gives it its
        name. Safe to call twice.

        It finishes even when a KeyboardInterrupt arrives meanwhile, and raises it after.

        Raises:
            SinkError: encoding the last frames, finalizing or renaming failed (the partial file is
                kept).
        """
        container, encoder = self._container, self._encoder
        if container is None or encoder is None:
            return
        try:
            encoder.call(lambda: self._finish(container))
        finally:
            encoder.stop()
            self._encoder = None
        error, self._error = self._error, None  # the last frames' failure, which no write raised
        if error is not None:
            raise error


def _yuv420p(image: np.ndarray) -> av.VideoFrame:
    """A BGR picture with even sides as the yuv420p frame x264 takes, converted by OpenCV (BT.601,
    16-235): a third to a quarter of the time swscale's conversion from bgr24 took at 640x272 and
    1280x720 inside PyAV's encode, 0.6x at 176x144 (measured)."""
    planes: np.ndarray = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)
    return av.VideoFrame.from_ndarray(planes, format="yuv420p")
