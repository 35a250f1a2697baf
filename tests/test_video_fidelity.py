"""The annotated mp4 as a user gets it: never a broken file under its name, and the source's picture
and timing kept (rotation, variable frame rate, live gaps, size changes, oversized pictures)."""

from __future__ import annotations

import logging
import math
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import av.error
import cv2
import numpy as np
import pytest
import yaml

from streamvision.config import STREET_CLIP
from streamvision.frame import Frame
from streamvision.sinks.video import MAX_MACROBLOCKS, MAX_SIDE, VideoFileSink
from streamvision.sources.images import ImageSource
from streamvision.sources.video import VideoSource
from tests.conftest import CLI_ENV, count_frames, decode_all, run_cli, write_clip

STREET_FRAMES = 250  # bikes.mp4, 640x272 at 25 fps


def _config(tmp_path: Path, source: dict[str, object], **outputs: object) -> Path:
    """A pipeline YAML with no stages: the video goes straight from the source to the outputs."""
    path = tmp_path / "pipeline.yaml"
    outputs = {key: str(value) for key, value in outputs.items()}
    path.write_text(yaml.safe_dump({"source": source, "outputs": outputs}))
    return path


def _start_run(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "streamvision", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=CLI_ENV,
    )


def _wait_for(
    ready: Callable[[], bool], process: subprocess.Popen[str], what: str, timeout: float = 60
) -> None:
    """Polls ``ready()`` until true; fails when the process ended first or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"the run ended before {what}: {process.communicate()[1]}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)


def _has_lines(path: Path, count: int) -> Callable[[], bool]:
    return lambda: path.exists() and path.read_bytes().count(b"\n") >= count


def playable_frames(path: Path) -> int:
    """Frames a player shows from ``path``: it stops at the first packet that does not decode."""
    shown = 0
    with av.open(str(path)) as container:
        try:
            for packet in container.demux(video=0):
                shown += len(packet.decode())
        except av.error.FFmpegError:
            pass
    return shown


def frame_times(path: Path) -> list[float]:
    """Every frame's presentation time in seconds, decoding the whole file."""
    with av.open(str(path)) as container:
        return [float(frame.time) for frame in container.decode(video=0)]


# --- 1. interrupted and failed writes -------------------------------------------------------------


def test_a_killed_run_leaves_no_file_under_its_name_and_a_playable_partial(tmp_path: Path) -> None:
    output = tmp_path / "out.mp4"
    partial = tmp_path / "out.partial.mp4"
    config = _config(tmp_path, {"uri": str(STREET_CLIP), "realtime": True}, video=output)
    process = _start_run(config)
    try:
        # the partial file gets its first fragment after about a second of video
        _wait_for(lambda: partial.exists() and partial.stat().st_size > 0, process, "first fragment")
    finally:
        process.kill()
        process.communicate()
    assert not output.exists()
    assert 0 < playable_frames(partial) < STREET_FRAMES


@pytest.fixture(scope="module")
def long_street_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The street clip four times over (1,000 frames, 40 s): a run of it can be interrupted."""
    frames = decode_all(STREET_CLIP)
    return write_clip(tmp_path_factory.mktemp("clips") / "street4.mp4", frames * 4)


@pytest.mark.slow
def test_a_second_ctrl_c_never_leaves_an_unplayable_file_under_its_name(
    tmp_path: Path, long_street_clip: Path
) -> None:
    finalized = 0
    for attempt in range(8):
        folder = tmp_path / f"try{attempt}"
        folder.mkdir()
        output, partial, events = folder / "out.mp4", folder / "out.partial.mp4", folder / "events.jsonl"
        config = _config(folder, {"uri": str(long_street_clip)}, video=output, events=events)
        process = _start_run(config)
        try:
            # 60 frames (2.4 s): the partial file has a fragment (a second each, the encoder lagging
            # up to about 20 frames behind)
            _wait_for(_has_lines(events, 60), process, "60 frames")
            time.sleep(0.05 * attempt)  # the second signal lands at a different step each time
            process.send_signal(signal.SIGINT)
            time.sleep(0.05)
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode != 0, stderr
        if output.exists():
            assert len(decode_all(output)) > 0, f"try {attempt}: {stderr}"  # every packet decodes
            assert not partial.exists()
            finalized += 1
        else:  # the second signal came before the pipeline reached the sink's close
            assert playable_frames(partial) > 0, f"try {attempt}: {stderr}"
    assert finalized > 0


def test_a_full_disk_keeps_a_playable_partial_and_says_where(tmp_path: Path) -> None:
    output, partial = tmp_path / "out.mp4", tmp_path / "out.partial.mp4"
    config = _config(tmp_path, {"uri": str(STREET_CLIP)}, video=output)
    # files of this process may not grow past 150 kB (a third of the video): writes fail as on a full
    # disk (EFBIG instead of ENOSPC); SIGXFSZ, ignored, would kill it otherwise
    full_disk = (
        "import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000)); "
        "sys.argv = ['streamvision', 'run', '--config', sys.argv[1]]; "
        "runpy.run_module('streamvision', run_name='__main__')"
    )
    result = subprocess.run(
        [sys.executable, "-c", full_disk, str(config)],
        capture_output=True,
        text=True,
        env=CLI_ENV,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1 and str(partial) in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not output.exists()
    assert 0 < count_frames(partial) < STREET_FRAMES  # cut back to whole fragments: all of it decodes


def test_earlier_files_are_untouched_until_the_new_video_is_finalized(tmp_path: Path) -> None:
    output = tmp_path / "out.mp4"
    earlier_partial = tmp_path / "out.partial.mp4"  # left by a killed run: the user's data
    output.write_bytes(b"an earlier run's video")
    earlier_partial.write_bytes(b"a killed run's video")
    source = VideoSource(str(STREET_CLIP), "bikes")
    sink = VideoFileSink(output, source.rate)
    index = 0
    while index < 60 and (item := source.read()) is not None:
        image, pts = item
        sink.write(Frame(np.asarray(image), "bikes", index, pts, 0.0), None)
        index += 1
    source.close()
    assert output.read_bytes() == b"an earlier run's video"
    assert sink.partial_path == tmp_path / "out.partial-2.mp4" and sink.partial_path.stat().st_size > 0
    sink.close()
    assert count_frames(output) == 60
    assert earlier_partial.read_bytes() == b"a killed run's video"
    assert not (tmp_path / "out.partial-2.mp4").exists()


# --- 2a. rotation ---------------------------------------------------------------------------------


def _set_display_matrix(path: Path, matrix: tuple[int, ...]) -> None:
    """Writes the video track's display matrix (tkhd, ISO 14496-12) in place, as a phone does."""
    data = bytearray(path.read_bytes())
    tkhd = data.index(b"tkhd", data.index(b"moov"))
    version = data[tkhd + 4]
    # version, flags; times, track id, reserved, duration; reserved, layer, group, volume, reserved
    offset = tkhd + 4 + 4 + (32 if version == 1 else 20) + 16
    data[offset : offset + 36] = struct.pack(">9i", *matrix)
    path.write_bytes(bytes(data))


def _portrait_scene() -> np.ndarray:
    """A 96x160 (w x h) picture that looks different turned any way: a bright block at its bottom left
    on a left-to-right gradient."""
    scene = np.repeat(np.linspace(0, 160, 96, dtype=np.uint8)[None, :, None], 160, axis=0)
    scene = np.repeat(scene, 3, axis=2)
    scene[120:, :30] = 255
    return scene


_STORED_AS = {  # how a camera turned by a ``rotate`` tag's angle stores what is upright
    90: cv2.ROTATE_90_COUNTERCLOCKWISE,
    180: cv2.ROTATE_180,
    270: cv2.ROTATE_90_CLOCKWISE,
}


def _rotated_clip(path: Path, upright: np.ndarray, tag: int = 90) -> Path:
    """What a camera turned by ``tag`` degrees records: frames the sensor's way up and a display matrix
    that turns them ``tag`` degrees clockwise to show them (FFmpeg's ``rotate`` tag; a phone held
    upright writes 90)."""
    stored = cv2.rotate(upright, _STORED_AS[tag])
    write_clip(path, [stored] * 10)
    height, width = stored.shape[:2]
    one, w = 1 << 16, 1 << 30  # 16.16 and 2.30 fixed point
    a, b, c, d, tx, ty = {
        90: (0, one, -one, 0, height * one, 0),
        180: (-one, 0, 0, -one, width * one, height * one),
        270: (0, -one, one, 0, 0, width * one),
    }[tag]
    _set_display_matrix(path, (a, b, 0, c, d, 0, tx, ty, w))
    return path


@pytest.mark.parametrize("tag", [90, 180, 270])
@pytest.mark.parametrize("deferred", [False, True])
def test_a_rotated_video_is_read_upright(tmp_path: Path, tag: int, deferred: bool) -> None:
    upright = _portrait_scene()
    clip = _rotated_clip(tmp_path / "rotated.mp4", upright, tag)
    source = VideoSource(str(clip), "phone", defer_conversion=deferred)
    item = source.read()
    source.close()
    assert item is not None
    image = item[0] if isinstance(item[0], np.ndarray) else item[0]()
    assert image.shape == upright.shape
    assert np.abs(image.astype(int) - upright).mean() < 8


def test_a_phone_portrait_video_is_written_upright(tmp_path: Path) -> None:
    upright = _portrait_scene()
    clip = _rotated_clip(tmp_path / "portrait.mp4", upright)
    output = tmp_path / "out.mp4"
    result = run_cli("run", "--config", str(_config(tmp_path, {"uri": str(clip)}, video=output)))
    assert result.returncode == 0, result.stderr
    frames = decode_all(output)
    assert len(frames) == 10 and frames[-1].shape == upright.shape
    # the block is at the bottom left, away from the frame rate drawn at the top left
    assert frames[-1][120:, :30].mean() > 200 and frames[-1][120:, 60:].mean() < 200


# --- 2b. variable frame rate ----------------------------------------------------------------------


def _vfr_clip(path: Path, gaps_ms: list[int]) -> Path:
    """An H.264 mp4 whose frames are ``gaps_ms`` apart (in milliseconds), each frame a new shade."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        pts = 0
        for i, gap in enumerate([0, *gaps_ms]):
            pts += gap
            frame = av.VideoFrame.from_ndarray(np.full((96, 160, 3), i * 7 % 256, np.uint8), format="bgr24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def test_a_variable_frame_rate_keeps_its_timestamps(tmp_path: Path) -> None:
    gaps = [40, 40, 120, 40, 200, 33, 67, 500, 40, 40, 17, 83, 40, 1000, 40, 40] * 2
    clip = _vfr_clip(tmp_path / "vfr.mp4", gaps)
    source_times = frame_times(clip)
    assert len(source_times) == len(gaps) + 1
    output = tmp_path / "out.mp4"
    result = run_cli("run", "--config", str(_config(tmp_path, {"uri": str(clip)}, video=output)))
    assert result.returncode == 0, result.stderr
    written = frame_times(output)
    assert len(written) == len(source_times)
    start = source_times[0]
    assert max(abs(w - (s - start)) for w, s in zip(written, source_times, strict=True)) < 0.002


# --- 2d. live sources: dropped frames and reconnects ----------------------------------------------


def _street_frames() -> list[Frame]:
    """The street clip as a live source delivers it: captured in real time, one frame per 1/25 s."""
    source = VideoSource(str(STREET_CLIP), "camera")
    frames: list[Frame] = []
    while (item := source.read()) is not None:
        image, pts = item
        assert pts is not None
        frames.append(Frame(np.asarray(image), "camera", len(frames), pts, 1000.0 + pts))
    source.close()
    return frames


def _times(frames: list[Frame]) -> list[float]:
    return [frame.pts or 0.0 for frame in frames]


@pytest.mark.parametrize("live", [False, True])
def test_frames_a_live_pipeline_dropped_leave_a_gap(tmp_path: Path, live: bool) -> None:
    frames = _street_frames()
    kept = [frame for frame in frames if frame.index % 3 != 1 and not 100 <= frame.index < 150]
    sink = VideoFileSink(tmp_path / "out.mp4", Fraction(25), live=live)
    for frame in kept:
        sink.write(frame, None)
    sink.close()
    written = frame_times(tmp_path / "out.mp4")
    assert len(written) == len(kept)
    assert written == pytest.approx(_times(kept), abs=0.002)
    assert written[-1] == pytest.approx((STREET_FRAMES - 1) / 25, abs=0.002)


def test_a_reconnected_stream_goes_on_after_the_outage(tmp_path: Path) -> None:
    frames = _street_frames()[:50]  # 2 s; the stream's clock starts again at 0 after reconnecting
    outage = 5.0
    second = [Frame(f.image, f.source_id, 50 + f.index, f.pts, f.capture_time + 2.0 + outage) for f in frames]
    sink = VideoFileSink(tmp_path / "out.mp4", Fraction(25), live=True)
    for frame in [*frames, *second]:
        sink.write(frame, None)
    sink.close()
    written = frame_times(tmp_path / "out.mp4")
    assert len(written) == 100 and written == sorted(written)
    assert written[:50] == pytest.approx(_times(frames), abs=0.002)
    assert written[50] - written[49] == pytest.approx(outage + 0.04, abs=0.01)
    steps = np.diff(written[50:])
    assert np.allclose(steps, 0.04, atol=0.002)


def test_a_file_whose_timestamps_go_back_keeps_playing_forward(tmp_path: Path) -> None:
    frames = _street_frames()[:20]
    frames = [*frames, *(Frame(f.image, f.source_id, 20 + f.index, f.pts, 0.0) for f in frames)]
    sink = VideoFileSink(tmp_path / "out.mp4", Fraction(25))
    for frame in frames:
        sink.write(frame, None)
    sink.close()
    written = frame_times(tmp_path / "out.mp4")
    assert np.allclose(np.diff(written), 0.04, atol=0.002)


# --- 2c. size changes -----------------------------------------------------------------------------


def _white(width: int, height: int) -> np.ndarray:
    return np.full((height, width, 3), 255, np.uint8)


def _assert_letterboxed(image: np.ndarray) -> None:
    """A 120x240 white picture in a 320x240 video: black bars of 100 pixels left and right (checked
    below the frame rate drawn at the top left)."""
    assert image.shape == (240, 320, 3)
    below = image[40:]
    assert below[:, :90].mean() < 30 and below[:, 230:].mean() < 30
    assert below[:, 110:210].mean() > 220


def test_images_of_another_size_are_letterboxed_into_the_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), _white(320, 240))
    cv2.imwrite(str(folder / "b.png"), _white(120, 240))
    cv2.imwrite(str(folder / "c.png"), _white(120, 240))
    source = ImageSource(str(folder), "shots")
    sink = VideoFileSink(tmp_path / "out.mp4", source.rate)
    with caplog.at_level(logging.WARNING, logger="streamvision.sinks.video"):
        while (item := source.read()) is not None:
            image, pts = item
            sink.write(Frame(image, "shots", 0, pts, 0.0), None)
        sink.close()
    first, second, third = decode_all(tmp_path / "out.mp4")
    assert first.shape == (240, 320, 3) and first.mean() > 240
    _assert_letterboxed(second)
    _assert_letterboxed(third)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "320x240 to 120x240" in warnings[0]


def test_a_video_whose_size_changes_midway_is_letterboxed(tmp_path: Path) -> None:
    clip = tmp_path / "sizes.ts"  # MPEG-TS carries the new size in-band, as a broadcast does
    with av.open(str(clip), mode="w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for _ in range(10):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(_white(320, 240), format="bgr24")))
        container.mux(stream.encode(None))
        narrow = av.CodecContext.create("libx264", "w")
        narrow.width, narrow.height, narrow.pix_fmt = 120, 240, "yuv420p"
        narrow.time_base, narrow.framerate = stream.codec_context.time_base, Fraction(25)
        for i in range(10, 20):
            frame = av.VideoFrame.from_ndarray(_white(120, 240), format="bgr24")
            frame.pts = i
            for packet in narrow.encode(frame):
                packet.stream = stream
                container.mux(packet)
        for packet in narrow.encode(None):
            packet.stream = stream
            container.mux(packet)
    output = tmp_path / "out.mp4"
    result = run_cli("run", "--config", str(_config(tmp_path, {"uri": str(clip)}, video=output)))
    assert result.returncode == 0, result.stderr
    assert "letterboxing" in result.stderr
    frames = decode_all(output)
    assert len(frames) == 20
    assert frames[5][40:].mean() > 220
    _assert_letterboxed(frames[15])


# --- 2e. pictures larger than H.264 plays everywhere ----------------------------------------------


def test_an_8000_pixel_square_image_is_scaled_to_what_h264_plays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    image = np.zeros((8000, 8000, 3), np.uint8)
    image[:4000, :4000] = 255  # the top left quarter is white
    cv2.imwrite(str(folder / "scan.jpg"), image)
    source = ImageSource(str(folder), "scans")
    output = tmp_path / "out.mp4"
    sink = VideoFileSink(output, source.rate)
    with caplog.at_level(logging.WARNING, logger="streamvision.sinks.video"):
        item = source.read()
        assert item is not None
        sink.write(Frame(item[0], "scans", 0, item[1], 0.0), None)
        sink.close()
    (frame,) = decode_all(output)
    height, width = frame.shape[:2]
    assert width == height <= MAX_SIDE
    assert math.ceil(width / 16) * math.ceil(height / 16) <= MAX_MACROBLOCKS
    assert frame[: height // 2 - 8, : width // 2 - 8].mean() > 240 and frame[height // 2 + 8 :].mean() < 15
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "8000x8000" in warnings[0], warnings


def test_the_sink_writes_nothing_before_the_first_frame(tmp_path: Path) -> None:
    sink = VideoFileSink(tmp_path / "out.mp4")
    sink.close()
    assert os.listdir(tmp_path) == []
