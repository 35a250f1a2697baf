"""HTTP streams from real servers on loopback: MJPEG (multipart JPEG) and HLS, including a stall."""

from __future__ import annotations

import functools
import http.server
import json
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest

from streamvision.config import parse_config
from streamvision.errors import SourceError
from streamvision.pipeline import Pipeline
from tests.conftest import decode_all

BOUNDARY = b"frame"


class MjpegServer:
    """Serves the sample clip as ``multipart/x-mixed-replace`` JPEGs at 30 fps on /mjpg, and files
    from ``root``. With ``stall_after`` set, the first connection goes silent after that many frames
    (until the server stops); with ``garbage_after``, it sends random bytes as JPEGs from then on.
    Later connections stream normally. With ``broken``, every connection sends five random-byte
    JPEGs and hangs up."""

    def __init__(
        self,
        frames: list[np.ndarray],
        root: Path,
        stall_after: int | None = None,
        garbage_after: int | None = None,
        broken: bool = False,
    ) -> None:
        self.jpegs = [cv2.imencode(".jpg", frame)[1].tobytes() for frame in frames]
        self.garbage = [np.random.default_rng(i).bytes(len(j)) for i, j in enumerate(self.jpegs)]
        self.stall_after = stall_after
        self.garbage_after = garbage_after
        self.broken = broken
        self.connections = 0
        self.stalled_at: float | None = None  # wall clock of the last frame before the stall
        self.stopping = threading.Event()
        handler = functools.partial(_Handler, self, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="mjpeg-server", daemon=True)

    def url(self, path: str = "/mjpg") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> MjpegServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


class _Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, server: MjpegServer, *args: Any, **kwargs: Any) -> None:
        self.stream = server
        super().__init__(*args, **kwargs)

    def log_message(self, *_args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path != "/mjpg":
            super().do_GET()
            return
        self.stream.connections += 1
        first = self.stream.connections == 1
        stall = self.stream.stall_after if first else None
        garbage = 0 if self.stream.broken else self.stream.garbage_after if first else None
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
        self.end_headers()
        index = 0
        try:
            while not self.stream.stopping.is_set():
                bad = garbage is not None and index >= garbage
                jpeg = (self.stream.garbage if bad else self.stream.jpegs)[index % len(self.stream.jpegs)]
                head = b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % (
                    BOUNDARY,
                    len(jpeg),
                )
                self.wfile.write(head + jpeg + b"\r\n")
                index += 1
                if self.stream.broken and index == 5:
                    return
                if stall is not None and index == stall:
                    self.wfile.flush()
                    self.stream.stalled_at = time.time()
                    self.stream.stopping.wait(60)
                time.sleep(1 / 30)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture(scope="module")
def frames(sample_clip: Path) -> list[np.ndarray]:
    return decode_all(sample_clip)


@pytest.fixture(scope="module")
def hls_folder(tmp_path_factory: pytest.TempPathFactory, frames: list[np.ndarray]) -> Path:
    """The sample clip as an HLS playlist with one-second segments."""
    folder = tmp_path_factory.mktemp("hls")
    with av.open(str(folder / "index.m3u8"), "w", format="hls", options={"hls_time": "1"}) as out:
        stream = out.add_stream("libx264", rate=Fraction(30))
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for image in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        out.mux(stream.encode(None))
    return folder


@pytest.fixture
def server(frames: list[np.ndarray], hls_folder: Path) -> Iterator[MjpegServer]:
    with MjpegServer(frames, hls_folder) as running:
        yield running


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def config(url: str, tmp_path: Path, **source: Any) -> dict[str, Any]:
    return {
        "source": {"uri": url, **source},
        "stages": [{"type": "face_detection"}],
        "outputs": {"events": str(tmp_path / "events.jsonl")},
    }


@pytest.mark.parametrize("path", ["/mjpg", "/index.m3u8"], ids=["mjpeg", "hls"])
def test_http_streams_play(server: MjpegServer, tmp_path: Path, path: str) -> None:
    # HLS from files arrives faster than real time; a queue that holds it all keeps every frame
    pipeline = Pipeline(parse_config({**config(server.url(path), tmp_path, queue_size=64), "max_frames": 45}))
    summary = pipeline.run()
    assert summary["frames_in"] == summary["frames_out"] == 45
    frames = [e for e in read_events(tmp_path / "events.jsonl") if e["type"] == "frame"]
    assert sum(1 for e in frames if e["results"]["face_detection"]) >= len(frames) - 5


def test_a_finished_hls_playlist_ends_the_run_instead_of_reconnecting(
    server: MjpegServer, tmp_path: Path
) -> None:
    # the playlist ends with #EXT-X-ENDLIST: after its 120 frames the stream is over, not offline
    playlist = config(server.url("/index.m3u8"), tmp_path, queue_size=256)
    pipeline = Pipeline(parse_config({**playlist, "max_frames": 400}))  # a replayed playlist stops here
    summary = pipeline.run()
    assert summary["frames_in"] == summary["frames_out"] == 120
    status = [e["event"] for e in read_events(tmp_path / "events.jsonl") if e["type"] == "status"]
    assert status == ["source_online"] and summary["reconnects"] == 0


def test_a_silent_mjpeg_stream_is_detected_and_reopened(
    frames: list[np.ndarray], hls_folder: Path, tmp_path: Path
) -> None:
    stall_timeout = 2.0
    events = tmp_path / "events.jsonl"
    with MjpegServer(frames, hls_folder, stall_after=30) as server:
        pipeline = Pipeline(
            parse_config(
                {
                    **config(server.url(), tmp_path, stall_timeout=stall_timeout, reconnect={"initial": 0.2}),
                    "max_frames": 60,
                }
            )
        )
        started = time.monotonic()
        summary = pipeline.run()
        assert time.monotonic() - started < 30
        last_frame_sent = server.stalled_at
    statuses = [e for e in read_events(events) if e["type"] == "status"]
    assert [e["event"] for e in statuses] == ["source_online", "source_offline", "source_online"]
    assert "no data" in statuses[1]["reason"]
    assert summary["frames_in"] == 60 and summary["reconnects"] == 1
    # silent after frame 30: offline once the stall timeout has passed since the last frame the server
    # sent, not before and not much later (both wall clock, as in the events). Timed from the server:
    # the live queue may drop any frame, so no output frame number marks the stall.
    assert last_frame_sent is not None
    detected = statuses[1]["time"] - last_frame_sent
    assert stall_timeout - 0.3 <= detected <= stall_timeout + 1.5, detected


def test_a_stream_of_garbage_counts_errors_and_is_reopened(
    frames: list[np.ndarray], hls_folder: Path, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    with MjpegServer(frames, hls_folder, garbage_after=30) as server:
        source = {"stall_timeout": 2.0, "reconnect": {"initial": 0.2}}
        pipeline = Pipeline(parse_config({**config(server.url(), tmp_path, **source), "max_frames": 60}))
        summary = pipeline.run()
    statuses = [e for e in read_events(events) if e["type"] == "status"]
    assert [e["event"] for e in statuses] == ["source_online", "source_offline", "source_online"]
    # data keeps coming but none of it decodes: a stall all the same
    assert "no frame for 2 s" in statuses[1]["reason"]
    assert summary["frames_in"] == 60 and summary["source_errors"] >= 20


def test_a_source_that_opens_but_never_delivers_runs_out_of_retries(
    frames: list[np.ndarray], hls_folder: Path, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    with MjpegServer(frames, hls_folder, broken=True) as server:
        source = {"reconnect": {"initial": 0.1, "max": 0.4, "max_retries": 3}}
        pipeline = Pipeline(parse_config(config(server.url(), tmp_path, **source)))
        started = time.monotonic()
        with pytest.raises(SourceError, match="offline after 3 retries"):
            pipeline.run()
        assert time.monotonic() - started < 20
    # each retry connects and goes offline again without a frame: the retries still run out
    kinds = [e["event"] for e in read_events(events) if e["type"] == "status"]
    assert kinds == ["source_online", "source_offline"] * 4 and server.connections == 4
    assert pipeline.metrics.frames_out == 0 and pipeline.metrics.source_errors > 0
