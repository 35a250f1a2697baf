"""The ``cameras`` section of a bench report (:mod:`streamvision.bench.cameras`) as Markdown and a chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamvision import optional
from streamvision.bench.cameras import RECALL_CLASS, cameras_text
from streamvision.bench.report import table

LAYOUTS = {
    "config": "the config",
    "every_frame": "every frame, whole frame, sessions per camera",
}
"""Each measured layout's key in the section -> how the report names it."""


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def deciding_trial(layout: dict[str, Any]) -> dict[str, Any]:
    """The trial at the most cameras that kept up, or the smallest that did not when none did."""
    trials = layout["trials"]
    kept_up = [t for t in trials if t["keeps_up"]]
    if kept_up:
        return max(kept_up, key=lambda t: t["cameras"])
    return min(trials, key=lambda t: t["cameras"])


def cameras_markdown(section: dict[str, Any]) -> list[str]:
    """Markdown lines: the most cameras of each layout, then each deciding trial camera by camera."""
    clip, target = section["clip"], section["kept_target"]
    rows = []
    for key, name in LAYOUTS.items():
        layout = section[key]
        trial = deciding_trial(layout)
        per_camera = trial["per_camera"]
        rows.append(
            [
                name,
                layout["most_cameras"],
                f"{trial['cpu_per_camera']:.2f}",
                f"{min(row['kept'] for row in per_camera):.1%}",
                _share(_mean(row[f"recall_{RECALL_CLASS}"] for row in per_camera)),
                _share(_mean(row["recall"] for row in per_camera)),
                f"{_mean(row['detector_runs_per_s'] for row in per_camera) or 0:.1f}",
            ]
        )
    ratio = section["cameras_ratio"]
    lines = table(
        f"Real-time cameras on {section['cpus']} CPUs "
        f"({clip['frames']} frames at {clip['fps']:g} fps per camera)",
        ["layout", "most cameras", "CPU cores per camera", "lowest kept", f"{RECALL_CLASS} recall",
         "recall", "detector runs/s per camera"],
        rows,
        intro=f"A camera keeps up when it delivers at least {target:.0%} of its frames. Recall: the share "
        "of the boxes an every-frame, whole-frame run of the detector finds (score at or above the "
        "track stage's high_threshold) that the camera's tracked boxes match at IoU 0.5. Figures of "
        "the trial at the most cameras. "
        + ("" if ratio is None else f"Cameras per machine: {ratio:.2f}x the every-frame layout."),
    )  # fmt: skip
    for key, name in LAYOUTS.items():
        trial = deciding_trial(section[key])
        lines += table(
            f"{name}: {cameras_text(trial['cameras'])}, "
            f"{'all keep up' if trial['keeps_up'] else 'not all keep up'} "
            f"({trial['cpu_cores']:.2f} cores, {trial['sessions']} model sessions)",
            ["camera", "frames out", "kept", "late s", "detector runs/s", "latency ms p50 / p99",
             f"{RECALL_CLASS} recall", "recall"],
            [
                [row["camera"], row["frames_out"], f"{row['kept']:.1%}", row["late_s"],
                 row["detector_runs_per_s"], _latency(row["latency_ms"]),
                 _share(row[f"recall_{RECALL_CLASS}"]), _share(row["recall"])]
                for row in trial["per_camera"]
            ],
            intro="Trials: " + ", ".join(
                f"{t['cameras']} {'kept up' if t['keeps_up'] else 'fell behind'}"
                for t in section[key]["trials"]
            ),
        )  # fmt: skip
    return lines


def _latency(ms: dict[str, float | None]) -> str:
    return "-" if ms["p50"] is None or ms["p99"] is None else f"{ms['p50']:.0f} / {ms['p99']:.0f}"


def _mean(values: Any) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def cameras_chart(section: dict[str, Any], path: Path) -> None:
    """A PNG: the lowest share of frames kept at each camera count tried, one line per layout, with
    the target, and the most cameras of each layout.

    Raises:
        StreamvisionError: matplotlib is not installed (extra ``bench``).
    """
    optional.require("matplotlib", "the chart", "pip install 'streamvision[bench]'").use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key, name in LAYOUTS.items():
        trials = sorted(section[key]["trials"], key=lambda t: t["cameras"])
        left.plot(
            [t["cameras"] for t in trials],
            [100 * min(row["kept"] for row in t["per_camera"]) for t in trials],
            marker="o",
            label=name,
        )
    left.axhline(100 * section["kept_target"], color="#8d99ae", linestyle="--", label="target")
    left.set_xlabel("cameras at once")
    left.set_ylabel("lowest % of frames kept")
    left.legend(fontsize=8)
    left.set_title("frames kept by camera count")
    values = [section[key]["most_cameras"] for key in LAYOUTS]
    right.bar(["config", "every frame"], values, color=["#2a9d8f", "#e76f51"])
    for x, value in enumerate(values):
        right.text(x, value, str(value), ha="center", va="bottom")
    right.set_ylabel("most real-time cameras")
    right.set_title(f"on {section['cpus']} CPUs")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
