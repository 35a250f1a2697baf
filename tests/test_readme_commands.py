"""Every ``streamvision ...`` command in the README and in the configs' ``Run:`` comments runs as written.

Commands run in a fresh folder that holds what a user's folder would: ``configs/`` and, for the
placeholders the README uses for the user's own media, a short clip (``my-video.mp4``,
``your-video.mp4``), a few images (``shots/``) and a photo of a person (``people/``). Commands that
need a camera, a display, the network or an extra installed in another virtualenv are listed in
``NOT_RUN_HERE`` with the reason; that list must only name commands the README still has.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from tests.conftest import CLI_ENV, count_frames, decode_all, write_clip

ROOT = Path(__file__).resolve().parents[1]

NOT_RUN_HERE = {
    "streamvision run --source 0 --show": "a webcam and a display",
    "streamvision run -c configs/background_blur.yaml": "a webcam and a display",
    "streamvision run -c configs/faces_emotion.yaml": "a webcam and a display",
    "streamvision run --config runs/digits/pipeline.yaml --events -": "a model trained by the train extra",
    "streamvision run --config runs/digits/pipeline.yaml --source 0 --show": "a webcam and a display",
    "streamvision cluster run --config configs/fleet.yaml": "the cluster extra (make test-cluster)",
    "streamvision batch recordings/ --config configs/objects.yaml -o results/": "the cluster extra",
    "streamvision convert emotion_model.hdf5 -o emotion.onnx --image face.png": "the convert extra",
    "streamvision train mnist-5k -o runs/digits --epochs 15": "the train extra (make test-convert)",
    "streamvision train photos/ -o runs/pets -m mobilenet --size 96 --epochs 20": "the train extra",
    "streamvision bench --compare mediapipe --no-grid --live-fps 0 --repeat 9": "the mediapipe extra",
    "streamvision run -c configs/cameras.yaml --source rtsp://cam1/stream --source rtsp://cam2/stream": (
        "network cameras"
    ),
    "streamvision bench --cameras 8 -c configs/cameras.yaml": (
        "minutes of real-time trials (tests/test_bench_cameras.py runs a short one)"
    ),
}


def documented_commands() -> list[str]:
    """The ``streamvision`` command lines of the README's code blocks and the configs' comments,
    without their trailing comments."""
    lines: list[str] = []
    in_block = False
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            in_block = not in_block
        elif in_block and line.startswith("streamvision "):
            lines.append(line)
    for config in sorted((ROOT / "configs").glob("*.yaml")):
        for line in config.read_text().splitlines():
            found = re.match(r"#\s*(?:Run:)?\s*(streamvision (?:run|bench) .*)", line)
            if found:
                lines.append(found.group(1))
    return list(dict.fromkeys(shlex.join(shlex.split(line, comments=True)) for line in lines))


COMMANDS = documented_commands()


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory: pytest.TempPathFactory, sample_clip: Path, astronaut: Path) -> Path:
    folder = tmp_path_factory.mktemp("user")
    (folder / "configs").symlink_to(ROOT / "configs")
    frames = decode_all(sample_clip)[:30]
    for name in ("my-video.mp4", "your-video.mp4"):
        write_clip(folder / name, frames)
    (folder / "shots").mkdir()
    for index, frame in enumerate(frames[:5]):
        cv2.imwrite(str(folder / "shots" / f"{index}.jpg"), frame)
    (folder / "people").mkdir()
    shutil.copy(astronaut, folder / "people" / "eileen.png")
    return folder


def test_the_list_of_commands_not_run_here_is_current() -> None:
    assert COMMANDS, "no commands found in the README"
    stale = set(NOT_RUN_HERE) - set(COMMANDS)
    assert not stale, f"no longer in the README or configs: {stale}"


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in NOT_RUN_HERE])
def test_a_documented_command_runs_as_written(command: str, user_folder: Path) -> None:
    args = shlex.split(command)
    done = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=user_folder,
        capture_output=True,
        text=True,
        timeout=300,
        env=CLI_ENV,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    for flag in ("-o", "--output", "--report", "--json", "--chart", "--events"):
        if flag in args:
            path = args[args.index(flag) + 1]
            if path == "-":
                first = json.loads(done.stdout.splitlines()[0])
                assert first["type"] == "frame"
            else:
                assert (user_folder / path).stat().st_size > 0, path
                if path.endswith(".mp4"):
                    assert count_frames(user_folder / path) > 0
