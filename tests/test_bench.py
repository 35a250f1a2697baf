"""``streamvision bench`` on the real face model and the bundled clip (figures are not asserted)."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2

from streamvision.bench.models import SETTINGS_GRID
from streamvision.bench.report import markdown, ratios, thread_ms
from streamvision.bench.session import run_bench
from streamvision.config import faces_config


def test_bench_measures_every_part_in_one_run() -> None:
    config = faces_config().model_copy(update={"max_frames": 40})
    report = run_bench(config, repeat=1, runs=10, batch=4, live_fps=60, grid=False)

    (model,) = report["models"]
    assert model["model"] == "blazeface_short" and model["batch_1_ms"]["p50"] > 0
    for run in ("pipeline", "sequential"):
        assert report[run]["frames_out"] == 40
        assert set(report[run]["step_ms"]) == {"decode", "annotate", "encode"}
        assert set(report[run]["stage_ms"]) == {"face_detection"}
    r = report["ratios"]
    assert r["pipeline_vs_sequential"] == round(r["pipeline_fps"] / r["sequential_fps"], 3)
    assert r["slowest_step_bound_fps"] == round(1000 / max(thread_ms(report["sequential"]).values()), 2)
    live = report["live"]
    assert live["frames_out"] + live["dropped"] == 40
    assert sum(t["frames_out"] for t in live["timeline"]) == live["frames_out"]
    assert "| pipeline (threaded) |" in markdown(report)


def test_ratios_use_the_slowest_thread() -> None:
    def summary(fps: float, decode: float, stage: float, encode: float) -> dict:
        return {
            "fps_out": fps,
            "step_ms": {"decode": {"mean": decode}, "encode": {"mean": encode}},
            "stage_ms": {"faces": {"mean": stage}},
        }

    r = ratios(summary(150, 1, 4, 2), summary(100, 2, 5, 1))
    assert r["pipeline_vs_sequential"] == 1.5
    assert r["slowest_step_bound_fps"] == 200.0  # the stage thread: 5 ms per frame
    assert r["pipeline_vs_slowest_step_bound"] == 0.75


def test_bench_command_writes_json_markdown_and_chart(tmp_path: Path, sample_clip: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streamvision", "bench", "--source", str(sample_clip), "--repeat", "1",
         "--runs", "10", "--live-fps", "0", "--no-grid", "--json", str(tmp_path / "b.json"),
         "--chart", str(tmp_path / "b.png"), "--quiet"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "## Pipeline against the sequential loop" in result.stdout
    assert not [line for line in result.stderr.splitlines() if line.startswith("bench")]  # --quiet
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["ratios"]["pipeline_fps"] > 0 and "live" not in report
    chart = cv2.imread(str(tmp_path / "b.png"))
    assert chart is not None and chart.shape[0] > 200 and chart.std() > 10


def test_models_come_from_each_stages_manifest(tmp_path: Path, models) -> None:
    from streamvision.bench.session import stage_models
    from streamvision.config import parse_config

    folder = str(models.models_dir)
    config = parse_config(
        {
            "source": "clip.mp4",
            "stages": [
                {"type": "face_detection"},
                {"type": "classify", "model": "fer_emotion", "on": "face_detection", "models": folder},
                {"type": "classify", "model": "fer_emotion", "on": "face_detection", "name": "again",
                 "models": folder},
            ],
        }
    )  # fmt: skip
    found = stage_models(config)
    assert [name for _, name in found] == ["blazeface_short", "fer_emotion"]
    assert found[1][0].models_dir == models.models_dir


PROGRESS_LINE = re.compile(r"bench \[(\d+)/(\d+), \d+\.\d s\] (.+): (.+)")


def _section(markdown_text: str, title: str) -> list[str]:
    """The non-empty lines of the Markdown section whose heading starts with ``title``."""
    body = markdown_text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    return [line for line in body.splitlines()[1:] if line.strip()]


def test_bench_shows_progress_on_stderr_and_ends_the_grid_with_a_recommendation(
    tmp_path: Path, sample_clip: Path
) -> None:
    config = tmp_path / "faces.yaml"
    # 3 threads is none of the grid's thread counts: the grid then times the config's setting as a row of
    # its own, so the recommendation always has the current setting to compare with
    config.write_text(
        f"source: {sample_clip}\nstages: [{{type: face_detection}}]\nthreads: 3\nmax_frames: 30\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "streamvision", "bench", "--config", str(config), "--repeat", "1",
         "--runs", "10", "--batch", "1", "--live-fps", "0", "--json", str(tmp_path / "b.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    header, first = process.stderr.readline(), process.stderr.readline()
    still_running = process.poll() is None  # so the first line came as its measurement finished
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert still_running

    grid_rows = len(list(itertools.product(*SETTINGS_GRID.values()))) + 1  # + the config's own setting
    planned = 1 + 2 + grid_rows + (os.cpu_count() or 1)  # model, pipeline + loop, grid, thread budgets
    assert header.startswith(f"bench: {planned} measurements on ")
    lines = [line for line in [first, *stderr.splitlines()] if line.startswith("bench")]
    progress = [PROGRESS_LINE.fullmatch(line.rstrip("\n")) for line in lines]
    assert all(progress), lines
    assert [(int(m[1]), int(m[2])) for m in progress if m] == [(k, planned) for k in range(1, planned + 1)]
    assert not [line for line in stdout.splitlines() if line.startswith("bench")]

    report = json.loads((tmp_path / "b.json").read_text())
    grid = report["settings_grid"]
    (current,) = [row for row in grid if row.get("current")]
    assert len(grid) == grid_rows and current["settings"] == report["ort_settings"]
    assert current["settings"]["intra_op_threads"] == 3
    advice = report["settings_recommendation"]
    fastest = min(grid, key=lambda row: row["ms"]["p50"])
    fastest_ms, current_ms = fastest["ms"]["p50"], current["ms"]["p50"]
    assert (advice["fastest"], advice["fastest_ms_p50"]) == (fastest["settings"], round(fastest_ms, 3))
    assert (advice["current"], advice["current_ms_p50"]) == (current["settings"], round(current_ms, 3))
    fastest_text = f"graph_optimization={fastest['settings']['graph_optimization']}, "
    assert advice["text"].startswith(f"fastest: {fastest_text}")
    assert f"({fastest_ms:.2f} ms p50); the config's current setting " in advice["text"]
    assert f"{current_ms:.2f} ms p50" in advice["text"]

    # the Markdown's grid table ends with that line; its current row is marked
    grid_section = _section(stdout, "ONNX Runtime settings")
    assert grid_section[-1] == f"**Recommendation** (blazeface_short alone): {advice['text']}"
    assert sum(line.endswith("| current |") for line in grid_section) == 1
    budget = report["threads_recommendation"]
    assert budget["current_threads"] == 3
    assert budget["fastest_fps"] == max(row["fps"] for row in report["threads"])
    thread_section = _section(stdout, "Thread budget")
    assert thread_section[-1] == f"**Recommendation** (the whole pipeline): {budget['text']}"
