"""The command line as a user runs it: real processes, real files, exit codes and messages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import pytest

from streamvision.config import STREET_CLIP
from tests.conftest import CLI_ENV, count_frames, decode_all, run_cli

ROOT = Path(__file__).resolve().parents[1]
ENV = CLI_ENV


def test_default_run_writes_a_playable_annotated_mp4_and_a_summary(tmp_path: Path) -> None:
    result = run_cli("run", "--report", "report.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "streamvision run" in result.stdout and "fps" in result.stdout
    output = tmp_path / "streamvision-output.mp4"
    with av.open(str(output)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    assert count_frames(output) == 250  # the bundled street clip, objects tracked
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["source"] == "bikes" and report["frames_out"] == 250 and report["fps_out"] > 0
    assert set(report["stage_ms"]) == {"object_detection", "track", "zones"}
    assert report["detections"] > 250


def test_events_to_stdout_keep_stdout_clean(tmp_path: Path, sample_clip: Path) -> None:
    result = run_cli(
        "run",
        "--source",
        str(sample_clip),
        "--events",
        "-",
        "--max-frames",
        "4",
        "--output",
        str(tmp_path / "o.mp4"),
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["frame"] for e in events] == [0, 1, 2, 3]
    assert "streamvision run" in result.stderr


def test_the_default_run_asked_for_events_only_writes_no_video(tmp_path: Path) -> None:
    result = run_cli("run", "--events", "-", "--max-frames", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["source"] for line in result.stdout.splitlines()] == ["bikes"] * 3
    assert list(tmp_path.iterdir()) == []


def test_bundled_samples_are_named_as_sources(tmp_path: Path) -> None:
    result = run_cli("run", "-s", "sample:carphone", "--events", "-", "--max-frames", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["source"] for line in result.stdout.splitlines()] == ["carphone"] * 2
    wrong = run_cli("run", "-s", "sample:nope", cwd=tmp_path)
    assert wrong.returncode == 2
    assert wrong.stderr.strip() == (
        "error: no bundled sample sample:nope: the samples are sample:bikes, sample:carphone, "
        "sample:pedestrians"
    )


def test_a_glob_source_is_named_after_its_folder(tmp_path: Path, sample_clip: Path) -> None:
    shots = tmp_path / "shots"
    shots.mkdir()
    for index, image in enumerate(decode_all(sample_clip)[:2]):
        cv2.imwrite(str(shots / f"{index}.jpg"), image)
    result = run_cli("run", "-s", str(shots / "*.jpg"), "--events", "-", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["source"] for line in result.stdout.splitlines()] == ["shots"] * 2


def _truncated_mp4(tmp_path: Path, sample_clip: Path) -> Path:
    data = sample_clip.read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 3])
    return path


@pytest.mark.parametrize(
    ("make_source", "message"),
    [
        (lambda tmp, clip: tmp / "missing.mp4", "no such video file"),
        (lambda tmp, clip: (tmp / "empty.mp4").write_bytes(b"") or tmp / "empty.mp4", "video file is empty"),
        (
            lambda tmp, clip: (tmp / "noise.mp4").write_bytes(os.urandom(50_000)) or tmp / "noise.mp4",
            "cannot open",
        ),
        (_truncated_mp4, "truncated.mp4"),
        (lambda tmp, clip: (tmp / "empty_dir").mkdir() or tmp / "empty_dir", "no images found"),
        (lambda tmp, clip: tmp / "shots" / "*.png", "no images found"),
    ],
    ids=["missing", "empty", "random-bytes", "truncated", "empty-folder", "glob-no-match"],
)
def test_bad_sources_give_one_line_and_exit_2(
    tmp_path: Path, sample_clip: Path, make_source, message
) -> None:
    result = run_cli(
        "run", "--source", str(make_source(tmp_path, sample_clip)), "--output", str(tmp_path / "out.mp4")
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("source: clip.mp4\nstages:\n  - type: face_detection\n    threshold: 0.5\n")
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {config}: stages.0.threshold: unknown key"


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run_cli("--debug", "run", "--source", str(tmp_path / "missing.mp4"))
    assert result.returncode != 0 and "Traceback" in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_finalizes_outputs_within_two_seconds(tmp_path: Path, long_clip: Path, signum: int) -> None:
    output, events = tmp_path / "out.mp4", tmp_path / "events.jsonl"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamvision",
            "run",
            "--source",
            str(long_clip),
            "--output",
            str(output),
            "--events",
            str(events),
            "--report",
            str(tmp_path / "report.json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    deadline = time.monotonic() + 60
    while (not events.exists() or events.stat().st_size == 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signum)
    sent = time.monotonic()
    _, stderr = process.communicate(timeout=30)
    took = time.monotonic() - sent
    assert process.returncode == 128 + signum, stderr
    # within about two seconds on an idle machine (see the README); the bound leaves room for load
    assert took < 10.0, f"exited {took:.2f} s after the signal"
    assert "Traceback" not in stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert 0 < report["frames_out"] < 1200
    assert report["stopped_by"] == signal.Signals(signum).name
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(lines) == report["frames_out"]
    assert count_frames(output) == report["frames_out"]


def test_show_without_a_display_is_a_clear_error(sample_clip: Path) -> None:
    env = {k: v for k, v in ENV.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run(
        [sys.executable, "-m", "streamvision", "run", "--source", str(sample_clip), "--show",
         "--max-frames", "3"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "error: --show needs a display (DISPLAY is not set); write a video with --output instead"
    )


def _one_error_line(result: subprocess.CompletedProcess[str], text: str = "") -> str:
    """Asserts exit 2, no traceback, and one ``error:`` line on stderr, the last, holding ``text``."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == lines[-1:] and text in errors[0], result.stderr
    return errors[0]


def test_every_without_a_track_stage_is_refused_before_the_run(tmp_path: Path, sample_clip: Path) -> None:
    config = tmp_path / "skips.yaml"
    config.write_text(
        f"source: {sample_clip}\n"
        "stages:\n"
        "  - {type: object_detection, every: 3}\n"
        "  - {type: pose, on: object_detection}\n"
    )
    line = _one_error_line(run_cli("run", "--config", str(config), "-o", str(tmp_path / "o.mp4")))
    assert line.startswith(
        f"error: {config}: stages.1 (pose): every: 3 of stages.0 (object_detection) needs a track stage"
    )
    assert not (tmp_path / "o.mp4").exists()


def test_a_command_line_value_is_validated_as_in_the_file(tmp_path: Path, sample_clip: Path) -> None:
    config = tmp_path / "rules.yaml"
    config.write_text(
        f"source: {sample_clip}\n"
        "events:\n"
        "  rules: [{type: appear}]\n"
        "  outputs: [{type: jsonl, path: run.jsonl}]\n"
    )
    line = _one_error_line(run_cli("run", "-c", str(config), "--events", "run.jsonl", cwd=tmp_path))
    assert line == (
        "error: command line: 'run.jsonl' is written by two outputs; rule events also go to outputs.events"
    )


def test_a_shared_stages_only_config_runs_on_the_command_line_source(
    tmp_path: Path, sample_clip: Path
) -> None:
    """The config opens a window; --no-show turns it off, so no display is needed."""
    config = tmp_path / "stages.yaml"
    config.write_text("stages:\n  - type: face_detection\noutputs:\n  show: true\n")
    env = {k: v for k, v in ENV.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    args = ["run", "-c", str(config), "--max-frames", "3", "--report", "r.json", "-o", "o.mp4"]
    result = subprocess.run(
        [sys.executable, "-m", "streamvision", *args, "--source", str(sample_clip), "--no-show"],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["frames_out"] == 3
    line = _one_error_line(run_cli(*args, "--no-show", cwd=tmp_path))
    assert line == f"error: {config}: source: Field required; give one in the config or on the command line"


def test_run_help_names_the_embedded_default() -> None:
    result = run_cli("run", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.replace("│", " ").split())
    assert "objects tracked on the bundled street clip" in text and "faces" not in text
    assert "--no-show" in text


def test_an_output_over_the_input_is_refused_and_the_input_kept(tmp_path: Path, sample_clip: Path) -> None:
    clip = tmp_path / "a.mp4"
    clip.write_bytes(sample_clip.read_bytes())
    for args in (["-o", "a.mp4"], ["--events", "a.mp4"], ["--report", "./a.mp4"]):
        result = run_cli("run", "-s", "a.mp4", *args, cwd=tmp_path)
        assert result.returncode == 2 and "name the same file" in result.stderr, result.stderr
    result = run_cli("run", "-s", "a.mp4", "-o", "x.mp4", "--events", "x.mp4", cwd=tmp_path)
    assert result.returncode == 2 and "outputs.video and outputs.events" in result.stderr
    assert clip.read_bytes() == sample_clip.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]


def test_a_decoder_that_does_not_fit_the_model_is_one_line(tmp_path: Path) -> None:
    result = run_cli("run", "--decoder", "yolov8", "--max-frames", "2", cwd=tmp_path)
    _one_error_line(result, "model 'nanodet' does not fit decoder 'yolov8'")


@pytest.mark.parametrize("name", ["x.txt", "x.gif", "x"])
def test_an_output_that_is_no_video_file_name_is_refused_before_anything_loads(
    tmp_path: Path, name: str
) -> None:
    _one_error_line(run_cli("run", "-o", name, cwd=tmp_path), "is not a video file name")
    assert list(tmp_path.iterdir()) == []


def test_events_piped_into_a_reader_that_stops_end_the_run_cleanly(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "streamvision", "run", "--events", "-", "-o", "out.mp4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CLI_ENV, cwd=tmp_path,
    )  # fmt: skip
    assert process.stdout is not None and json.loads(process.stdout.readline())["frame"] == 0
    process.stdout.close()  # as `| head -1` does
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr and "error" not in stderr
    assert 0 < count_frames(tmp_path / "out.mp4") < 250


def test_a_closed_or_full_stdout_is_one_line(tmp_path: Path) -> None:
    closed = subprocess.run(
        [sys.executable, "-m", "streamvision", "run", "--events", "-", "--max-frames", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=CLI_ENV, cwd=tmp_path,
        preexec_fn=lambda: os.close(1),
    )  # fmt: skip
    _one_error_line(closed, "stdout is closed")
    with open("/dev/full", "w") as full:
        for args in (["--events", "-"], ["-o", "out.mp4"]):
            result = subprocess.run(
                [sys.executable, "-m", "streamvision", "run", "--max-frames", "2", *args],
                stdout=full, stderr=subprocess.PIPE, text=True, env=CLI_ENV, cwd=tmp_path,
            )  # fmt: skip
            _one_error_line(result, "No space left on device")


def test_the_report_is_written_when_a_run_fails(tmp_path: Path) -> None:
    result = run_cli("run", "--events", "/dev/full", "--report", "report.json", "-o", "out.mp4", cwd=tmp_path)
    _one_error_line(result, "No space left on device")
    report = json.loads((tmp_path / "report.json").read_text())
    assert "No space left on device" in report["error"] and report["source"] == "bikes"
    assert count_frames(tmp_path / "out.mp4") >= 0  # finalized: it opens and decodes


def test_version_prints_the_package_version() -> None:
    from streamvision import __version__

    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"streamvision {__version__}"


def test_quiet_prints_nothing_and_still_writes(tmp_path: Path) -> None:
    result = run_cli("run", "-q", "--max-frames", "3", "-o", "out.mp4", "--report", "r.json", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""
    assert (
        count_frames(tmp_path / "out.mp4") == 3
        and json.loads((tmp_path / "r.json").read_text())["frames_out"] == 3
    )


def test_detector_model_confidence_and_classes_from_the_command_line(tmp_path: Path) -> None:
    result = run_cli(
        "run", "--model", "centernet", "--confidence", "0.25", "--classes", "person, car",
        "--max-frames", "30", "--events", "-", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    boxes = [
        box for line in result.stdout.splitlines() for box in json.loads(line)["results"]["object_detection"]
    ]
    assert boxes and {box["label"] for box in boxes} <= {"person", "car"}
    assert min(box["score"] for box in boxes) >= 0.25
    faces = str(ROOT / "configs" / "faces.yaml")
    wrong = run_cli(
        "run", "--classes", "person", "-c", faces, "-s", "sample:carphone", "--no-show", cwd=tmp_path
    )
    _one_error_line(wrong, "--classes: the pipeline has no object_detection stage")


def test_ready_configs_are_listed_printed_and_copied(tmp_path: Path) -> None:
    listed = run_cli("configs", "list")
    assert listed.returncode == 0 and "objects" in listed.stdout and "rtsp_surveillance" in listed.stdout
    shown = run_cli("configs", "show", "objects")
    assert shown.stdout == (ROOT / "configs" / "objects.yaml").read_text()
    copied = run_cli("configs", "copy", "objects", cwd=tmp_path)
    assert copied.returncode == 0 and (tmp_path / "objects.yaml").read_text() == shown.stdout
    _one_error_line(run_cli("configs", "copy", "objects", cwd=tmp_path), "exists")
    ran = run_cli("run", "-c", "objects.yaml", "--max-frames", "2", "-o", "o.mp4", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    _one_error_line(run_cli("configs", "show", "nope"), "no ready config 'nope'")


def test_a_folder_of_videos_as_a_source_gets_a_hint(tmp_path: Path, sample_clip: Path) -> None:
    (tmp_path / "clip.mp4").write_bytes(sample_clip.read_bytes())
    _one_error_line(run_cli("run", "-s", str(tmp_path)), "holds 1 video file(s) and no images")


def test_a_truncated_video_processes_what_it_has_then_fails(tmp_path: Path, sample_clip: Path) -> None:
    frames = decode_all(STREET_CLIP)
    whole = tmp_path / "whole.mp4"
    with av.open(str(whole), "w", options={"movflags": "faststart"}) as out:  # the index first, as streamed
        stream = out.add_stream("libx264", rate=25)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for image in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        out.mux(stream.encode(None))
    data = whole.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 7 // 10])
    result = run_cli("run", "-s", "cut.mp4", "-o", "out.mp4", "--report", "r.json", cwd=tmp_path)
    line = _one_error_line(result, "the file is truncated or damaged")
    read = int(line.split("ended after ")[1].split()[0])
    report = json.loads((tmp_path / "r.json").read_text())
    assert 0 < read < len(frames) and report["frames_out"] == read == count_frames(tmp_path / "out.mp4")


def test_images_that_cannot_be_read_are_skipped_and_none_at_all_is_an_error(
    tmp_path: Path, sample_clip: Path
) -> None:
    shots = tmp_path / "shots"
    shots.mkdir()
    image = decode_all(sample_clip)[0]
    cv2.imwrite(str(shots / "0.jpg"), image)
    jpeg = (shots / "0.jpg").read_bytes()
    (shots / "1.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # cut off: OpenCV would fill it with grey
    (shots / "2.png").write_bytes(os.urandom(2000))
    result = run_cli("run", "-s", "shots", "--events", "-", "--report", "r.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["frame"] for line in result.stdout.splitlines()] == [0]
    assert json.loads((tmp_path / "r.json").read_text())["source_errors"] == 2
    (shots / "0.jpg").unlink()
    result = run_cli("run", "-s", "shots", "-o", "out.mp4", "--report", "r.json", cwd=tmp_path)
    _one_error_line(result, "none of the 2 images at shots could be read")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["output"] is None and not (tmp_path / "out.mp4").exists()
