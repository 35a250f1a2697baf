"""Network streams against a real RTSP server on loopback (GStreamer's, see tests/rtsp_server.py).

The server is killed, restarted and frozen (SIGSTOP) under a running pipeline; nothing is simulated.
"""

from __future__ import annotations

import json
import selectors
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamvision.config import load_config, parse_config
from streamvision.errors import SourceError
from streamvision.pipeline import Pipeline
from tests.conftest import count_frames, run_cli

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")


def _server_missing() -> str | None:
    """Why the GStreamer RTSP server cannot run here, or None when it can."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found"
    probe = subprocess.run(
        [
            SYSTEM_PYTHON,
            "-c",
            "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return (
            f"{SYSTEM_PYTHON} cannot import gi's GstRtspServer ({last}); install gir1.2-gst-rtsp-server-1.0 "
            "python3-gi gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"
        )
    return None


SERVER_MISSING = _server_missing()
pytestmark = [pytest.mark.rtsp, pytest.mark.skipif(SERVER_MISSING is not None, reason=SERVER_MISSING or "")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RtspServer:
    """The loopback server process: start, kill, freeze and thaw it."""

    def __init__(
        self, clip: Path, port: int, credentials: str | None = None, tls: tuple[Path, Path] | None = None
    ) -> None:
        self.clip = clip
        self.port = port
        self.credentials = credentials
        self.tls = tls
        self.process: subprocess.Popen[str] | None = None

    def url(self, path: str = "/stream", userinfo: str | None = None) -> str:
        user = f"{userinfo}@" if userinfo else ""
        scheme = "rtsps" if self.tls else "rtsp"
        return f"{scheme}://{user}127.0.0.1:{self.port}{path}"

    def start(self, timeout: float = 20.0) -> None:
        command = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port), "--file", str(self.clip)]
        if self.credentials:
            command += ["--credentials", self.credentials]
        if self.tls:
            command += ["--tls", *map(str, self.tls)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line.startswith("ready"):
            self.stop()
            raise RuntimeError(f"RTSP server did not start within {timeout} s: {line!r}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None:
            return
        self.thaw()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def make_server(sample_clip: Path) -> Iterator[Callable[..., RtspServer]]:
    servers: list[RtspServer] = []

    def make(
        credentials: str | None = None, start: bool = True, tls: tuple[Path, Path] | None = None
    ) -> RtspServer:
        server = RtspServer(sample_clip, free_port(), credentials, tls)
        servers.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def rtsp_server(make_server: Callable[..., RtspServer]) -> RtspServer:
    return make_server()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Polls ``condition`` until it holds; returns the seconds it took. Fails after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - started


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def statuses(path: Path, kind: str) -> list[dict[str, Any]]:
    return [e for e in read_events(path) if e["type"] == "status" and e["event"] == kind]


class Running:
    """A pipeline running on a background thread, stopped and joined (bounded) on exit."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.pipeline = Pipeline(parse_config(config))
        self.summary: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="test-pipeline", daemon=True)

    def _run(self) -> None:
        try:
            self.summary = self.pipeline.run()
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> Running:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 15.0) -> None:
        self.pipeline.request_stop("test over")
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the pipeline did not stop"

    @property
    def frames(self) -> int:
        return self.pipeline.metrics.frames_out


def stream_config(url: str, tmp_path: Path, **source: Any) -> dict[str, Any]:
    return {
        "source": {"uri": url, **source},
        "stages": [{"type": "face_detection"}],
        "outputs": {"video": str(tmp_path / "out.mp4"), "events": str(tmp_path / "events.jsonl")},
    }


def test_playback_writes_annotated_output_and_events(rtsp_server: RtspServer, tmp_path: Path) -> None:
    (tmp_path / "faces.yaml").write_text(yaml.safe_dump(stream_config(rtsp_server.url(), tmp_path)))
    result = run_cli(
        "run",
        "--config",
        "faces.yaml",
        "--max-frames",
        "150",
        "--output",
        "out.mp4",
        "--events",
        "events.jsonl",
        "--report",
        "report.json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    # a live source keeps the newest 2 frames: most of the ~1 s burst FFmpeg buffers while probing is
    # dropped (and counted); from there the stream plays in real time, 5 s here at 30 fps
    assert report["frames_in"] == 150 and report["frames_out"] + report["dropped"] == 150
    assert report["frames_out"] >= 90 and report["reconnects"] == 0
    assert report["source"] == f"127.0.0.1:{rtsp_server.port}/stream"
    assert count_frames(tmp_path / "out.mp4") == report["frames_out"]
    events = read_events(tmp_path / "events.jsonl")
    frames = [e for e in events if e["type"] == "frame"]
    indices = [e["frame"] for e in frames]
    assert len(frames) == report["frames_out"] and indices == sorted(set(indices))
    # the served clip has a face in nearly every frame: the stream decodes to real pictures
    assert sum(1 for e in frames if e["results"]["face_detection"]) >= 0.9 * len(frames)
    assert events[0]["type"] == "status" and events[0]["event"] == "source_online"


def test_the_shipped_rtsp_config_runs_against_a_real_server(rtsp_server: RtspServer, tmp_path: Path) -> None:
    shipped = load_config(Path(__file__).resolve().parents[1] / "configs" / "rtsp_faces.yaml")
    outputs = {"video": tmp_path / "out.mp4", "events": str(tmp_path / "events.jsonl"), "report": None}
    config = shipped.model_copy(
        update={
            "source": shipped.source.model_copy(update={"uri": rtsp_server.url(), "queue_size": 64}),
            "outputs": shipped.outputs.model_copy(update=outputs),
            "max_frames": 30,
        }
    )
    summary = Pipeline(config).run()
    assert summary["source"] == "front-door" and summary["frames_out"] == 30
    assert count_frames(tmp_path / "out.mp4") == 30


def test_udp_transport_plays(rtsp_server: RtspServer, tmp_path: Path) -> None:
    config = stream_config(rtsp_server.url(), tmp_path, transport="udp", queue_size=64)
    summary = Pipeline(parse_config({**config, "max_frames": 45})).run()
    assert summary["frames_in"] == summary["frames_out"] == 45 and summary["reconnects"] == 0
    frames = [e for e in read_events(tmp_path / "events.jsonl") if e["type"] == "frame"]
    assert sum(1 for e in frames if e["results"]["face_detection"]) >= 40


def test_rtsps_plays(make_server: Callable[..., RtspServer], tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    self_signed = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
    subprocess.run(
        ["openssl", *self_signed, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    server = make_server(tls=(cert, key))
    config = stream_config(server.url(), tmp_path, queue_size=64)
    summary = Pipeline(parse_config({**config, "max_frames": 30})).run()
    assert summary["frames_in"] == summary["frames_out"] == 30 and summary["reconnects"] == 0


def test_server_killed_and_restarted_the_pipeline_reconnects(rtsp_server: RtspServer, tmp_path: Path) -> None:
    config = stream_config(
        rtsp_server.url(), tmp_path, open_timeout=3, stall_timeout=3, reconnect={"initial": 0.2, "max": 1}
    )
    events = tmp_path / "events.jsonl"
    with Running(config) as run:
        wait_for(lambda: run.frames >= 30, 20, "the first 30 frames")
        rtsp_server.kill()
        wait_for(lambda: bool(statuses(events, "source_offline")), 10, "a source_offline event")
        time.sleep(1.0)  # a second of outage: retries fail with "connection refused" meanwhile
        before = run.frames
        rtsp_server.start()
        restarted = time.monotonic()
        online = wait_for(lambda: bool(statuses(events, "source_online")[1:]), 20, "source_online")
        flowing = wait_for(lambda: run.frames >= before + 1, 20, "frames after the restart")
        flowing += online
        wait_for(lambda: run.frames >= before + 30, 20, "30 frames after the restart")
        print(f"\nreconnect: online {online:.2f} s, frames flowing {flowing:.2f} s after the server restart")
        assert time.monotonic() - restarted < 20
    assert run.error is None, run.error
    assert run.summary is not None
    offline = statuses(events, "source_offline")
    back = statuses(events, "source_online")
    assert len(offline) == 1 and len(back) == 2, read_events(events)
    assert back[0]["reason"] == "connected" and back[1]["reason"] == "reconnected"
    assert back[1]["reconnects"] == 1 and back[1]["offline_s"] >= 1.0
    assert run.summary["reconnects"] == 1 and run.summary["offline_s"] >= 1.0
    assert count_frames(tmp_path / "out.mp4") == run.summary["frames_out"]


def test_a_frozen_server_is_detected_within_the_stall_timeout(
    rtsp_server: RtspServer, tmp_path: Path
) -> None:
    stall_timeout = 2.0
    config = stream_config(
        rtsp_server.url(),
        tmp_path,
        open_timeout=2,
        stall_timeout=stall_timeout,
        reconnect={"initial": 0.2, "max": 1},
    )
    events = tmp_path / "events.jsonl"
    with Running(config) as run:
        wait_for(lambda: run.frames >= 30, 20, "the first 30 frames")
        rtsp_server.freeze()
        took = wait_for(lambda: bool(statuses(events, "source_offline")), 3 * stall_timeout, "source_offline")
        print(f"\nstall detected {took:.2f} s after SIGSTOP (stall_timeout {stall_timeout} s)")
        # a frozen server sends nothing: the watchdog must fire within the timeout (plus delivery slack)
        assert took <= stall_timeout + 1.5
        assert "no data" in statuses(events, "source_offline")[0]["reason"]
        before = run.frames
        rtsp_server.thaw()
        wait_for(lambda: run.frames >= before + 15, 30, "frames after the server thawed")
    assert run.error is None, run.error
    assert [e["reason"] for e in statuses(events, "source_online")] == ["connected", "reconnected"]


@pytest.mark.parametrize("fault", ["closed-port", "wrong-path"])
def test_unreachable_stream_with_retries_off_is_a_clear_error(
    rtsp_server: RtspServer, tmp_path: Path, fault: str
) -> None:
    url = rtsp_server.url("/nothing") if fault == "wrong-path" else f"rtsp://127.0.0.1:{free_port()}/stream"
    config = parse_config(stream_config(url, tmp_path, reconnect={"max_retries": 0}))
    started = time.monotonic()
    with pytest.raises(SourceError) as failure:
        Pipeline(config)
    assert time.monotonic() - started < 10  # refused / 404 at once, no waiting for the open timeout
    message = str(failure.value)
    assert message.startswith(f"cannot open stream {url}: ")
    assert ("404" in message) if fault == "wrong-path" else ("refused" in message.lower()), message


def test_a_server_that_never_answers_fails_within_the_open_timeout(
    rtsp_server: RtspServer, tmp_path: Path
) -> None:
    rtsp_server.freeze()  # the kernel still accepts the connection; nothing answers DESCRIBE
    config = parse_config(
        stream_config(rtsp_server.url(), tmp_path, open_timeout=1, reconnect={"max_retries": 0})
    )
    started = time.monotonic()
    with pytest.raises(SourceError, match="no answer within 1 s"):
        Pipeline(config)
    took = time.monotonic() - started
    assert 0.9 <= took <= 4.0, took


def test_unreachable_stream_with_retries_reports_status_then_gives_up(
    rtsp_server: RtspServer, tmp_path: Path
) -> None:
    config = stream_config(
        rtsp_server.url("/nothing"), tmp_path, reconnect={"initial": 0.1, "max": 0.2, "max_retries": 3}
    )
    pipeline = Pipeline(parse_config(config))
    with pytest.raises(SourceError, match=r"offline after 3 retries: .*404"):
        pipeline.run()
    offline = statuses(tmp_path / "events.jsonl", "source_offline")
    assert len(offline) == 1 and "404" in offline[0]["reason"]
    assert pipeline.metrics.offline_s > 0.2 and pipeline.metrics.frames_out == 0


def test_a_stream_that_comes_up_late_is_picked_up(
    make_server: Callable[..., RtspServer], tmp_path: Path
) -> None:
    server = make_server(start=False)
    events = tmp_path / "events.jsonl"
    config = stream_config(server.url(), tmp_path, reconnect={"initial": 0.2, "max": 0.5})
    with Running(config) as run:
        wait_for(lambda: bool(statuses(events, "source_offline")), 10, "source_offline")
        server.start()
        wait_for(lambda: run.frames >= 10, 20, "frames once the server is up")
    assert run.error is None, run.error
    assert [e["event"] for e in read_events(events) if e["type"] == "status"] == [
        "source_offline",
        "source_online",
    ]


def test_credentials_never_leak(make_server: Callable[..., RtspServer], tmp_path: Path) -> None:
    secret = "s3cr3t-Pa55"
    server = make_server(credentials=f"viewer:{secret}")
    good = server.url(userinfo=f"viewer:{secret}")
    (tmp_path / "ok.yaml").write_text(
        json.dumps(
            {
                "source": {"uri": good, "reconnect": {"initial": 0.2, "max": 0.5}},
                "stages": [{"type": "face_detection"}],
                "outputs": {"events": "events.jsonl", "report": "report.json", "video": "out.mp4"},
                "max_frames": 20,
            }
        )
    )
    # --debug logs everything streamvision logs; the authenticated stream plays
    ok = run_cli("--debug", "run", "--config", "ok.yaml", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "report.json").read_text())["frames_in"] == 20

    wrong = server.url(userinfo=f"viewer:{secret}-wrong")
    (tmp_path / "bad.yaml").write_text(
        json.dumps({"source": {"uri": wrong, "reconnect": {"max_retries": 0}}, "outputs": {"video": "b.mp4"}})
    )
    bad = run_cli("run", "--config", "bad.yaml", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: cannot open stream rtsp://***@127.0.0.1:"), bad.stderr
    assert "401" in bad.stderr

    # offline warnings while the server is down, then a give-up error
    (tmp_path / "gone.yaml").write_text(
        json.dumps(
            {
                "source": {"uri": good, "reconnect": {"initial": 0.1, "max": 0.2, "max_retries": 2}},
                "outputs": {"events": "gone.jsonl", "report": "gone.json"},
            }
        )
    )
    server.kill()
    gone = run_cli("run", "--config", "gone.yaml", cwd=tmp_path)
    assert gone.returncode == 2 and "offline after 2 retries" in gone.stderr, gone.stderr

    written = "".join(path.read_text() for path in tmp_path.iterdir() if path.suffix in {".jsonl", ".json"})
    for text in (ok.stdout, ok.stderr, bad.stdout, bad.stderr, gone.stdout, gone.stderr, written):
        assert secret not in text and "viewer:" not in text
    assert "rtsp://***@" in gone.stderr + bad.stderr
