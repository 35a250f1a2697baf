"""``streamvision bench`` on the real face model and the bundled clip (figures are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2

from streamvision.bench.command import run_bench
from streamvision.bench.report import markdown, ratios, thread_ms
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
         "--chart", str(tmp_path / "b.png")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "## Pipeline against the sequential loop" in result.stdout
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["ratios"]["pipeline_fps"] > 0 and "live" not in report
    chart = cv2.imread(str(tmp_path / "b.png"))
    assert chart is not None and chart.shape[0] > 200 and chart.std() > 10


def test_models_come_from_each_stages_manifest(tmp_path: Path, models) -> None:
    from streamvision.bench.command import stage_models
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
