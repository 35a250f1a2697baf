"""Bench results as ratios, a Markdown report and a PNG chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamvision import optional


def thread_ms(summary: dict[str, Any]) -> dict[str, float]:
    """Mean ms per frame of each pipeline thread's work: capture (decode), stages, deliver (draw+write)."""
    steps = {name: ms["mean"] or 0.0 for name, ms in summary["step_ms"].items()}
    stages = sum(ms["mean"] or 0.0 for ms in summary["stage_ms"].values())
    return {
        "capture": steps.get("decode", 0.0),
        "stages": stages,
        "deliver": sum(value for name, value in steps.items() if name != "decode"),
    }


def ratios(pipeline: dict[str, Any], sequential: dict[str, Any]) -> dict[str, float]:
    """Pipeline FPS against the sequential loop, and against 1 / (slowest thread's work per frame).

    The thread times come from the sequential loop, where each step ran without competition.
    """
    slowest = max(thread_ms(sequential).values())
    bound = 1000.0 / slowest if slowest > 0 else 0.0
    return {
        "pipeline_fps": pipeline["fps_out"],
        "sequential_fps": sequential["fps_out"],
        "pipeline_vs_sequential": round(pipeline["fps_out"] / sequential["fps_out"], 3),
        "slowest_step_bound_fps": round(bound, 2),
        "pipeline_vs_slowest_step_bound": round(pipeline["fps_out"] / bound, 3) if bound else 0.0,
    }


def threads_recommendation(rows: list[dict[str, Any]], current: int) -> dict[str, Any]:
    """The thread budget with the highest pipeline FPS against ``current`` (the config's ``threads``,
    or the core count it defaults to), with the line that says so.

    >>> rows = [{"threads": 1, "fps": 324.0}, {"threads": 2, "fps": 282.0}]
    >>> threads_recommendation(rows, 2)["text"]
    "fastest: threads: 1 (324.0 FPS); the config's current setting is threads: 2 (282.0 FPS, 0.87x)"
    >>> threads_recommendation(rows, 4)["text"].split("; ")[1]
    "the config's current setting is threads: 4 (not measured: more than the cores)"
    """
    fastest = max(rows, key=lambda row: row["fps"])
    measured = next((row for row in rows if row["threads"] == current), None)
    text = f"fastest: threads: {fastest['threads']} ({fastest['fps']:.1f} FPS); "
    if measured is fastest:
        text += f"the config's current setting is this one (threads: {current})"
    elif measured is None:
        text += f"the config's current setting is threads: {current} (not measured: more than the cores)"
    else:
        share = measured["fps"] / fastest["fps"] if fastest["fps"] > 0 else 0.0
        text += (
            f"the config's current setting is threads: {current} ({measured['fps']:.1f} FPS, {share:.2f}x)"
        )
    return {
        "fastest_threads": fastest["threads"],
        "fastest_fps": fastest["fps"],
        "current_threads": current,
        "current_fps": None if measured is None else measured["fps"],
        "text": text,
    }


def _ms(ms: dict[str, Any]) -> str:
    return "-" if ms.get("p50") is None else f"{ms['p50']:.2f} / {ms['p95']:.2f}"


def table(title: str, headers: list[str], rows: list[list[Any]], intro: str = "") -> list[str]:
    """A Markdown section: a ``##`` title, an optional paragraph, then the table."""
    lines = ["", f"## {title}", ""]
    if intro:
        lines += [intro, ""]
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("|" + "---|" * len(headers))
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _batched_key(row: dict[str, Any]) -> str | None:
    return next((k for k in row if k.startswith("batch_") and k.endswith("_ms") and k != "batch_1_ms"), None)


def _keras_row(row: dict[str, Any]) -> list[Any]:
    parity = row["parity_max_abs"]
    return [
        row["model"],
        "x".join(map(str, row["input"])),
        _ms(row["keras_ms"]),
        _ms(row["onnxruntime_ms"]),
        f"{row['ratio']:.1f}",
        "-" if parity is None else f"{parity:.2g}",
    ]


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables: the pipeline's measurements, or with ``bench --cameras`` the
    cameras section."""
    machine = report["machine"]
    lines = [
        f"# streamvision bench: {report['source']}",
        "",
        f"{machine['cpus']} CPUs, {machine['platform']}, onnxruntime {machine['onnxruntime']}; "
        f"session settings {report['ort_settings']}",
    ]
    if "cameras" in report:
        from streamvision.bench.cameras_report import cameras_markdown

        lines += cameras_markdown(report["cameras"])
    else:
        lines += _pipeline_sections(report)
    return "\n".join(lines) + "\n"


def _pipeline_sections(report: dict[str, Any]) -> list[str]:
    """Markdown lines of the models, pipeline, loop, live, grid, comparison and thread measurements."""
    lines: list[str] = []
    model_rows = []
    for row in report["models"]:
        batched = _batched_key(row)
        per_image = row.get(f"{batched}_per_image", "-") if batched else "-"
        batch_n = _ms(row[batched]) if batched else "-"
        model_rows.append([row["model"], row["task"], _ms(row["batch_1_ms"]), batch_n, per_image])
    lines += table(
        "Models (ONNX Runtime, ms p50 / p95)",
        ["model", "task", "batch 1", "batch N", "ms per image at batch N"],
        model_rows,
    )
    r = report["ratios"]
    lines += table(
        f"Pipeline against the sequential loop (same models, same H.264 output; the loop with "
        f"{report.get('sequential_threads')} ONNX Runtime threads)",
        ["run", "FPS", "pipeline FPS / this"],
        [
            ["pipeline (threaded)", f"{r['pipeline_fps']:.1f}", "1.00"],
            ["sequential read -> infer -> draw -> write", f"{r['sequential_fps']:.1f}",
             f"{r['pipeline_vs_sequential']:.2f}"],
            ["bound: 1 / slowest thread's work per frame", f"{r['slowest_step_bound_fps']:.1f}",
             f"{r['pipeline_vs_slowest_step_bound']:.2f}"],
        ],
    )  # fmt: skip
    pipeline, sequential = report["pipeline"], report["sequential"]
    lines += table(
        "Time per frame by step (ms p50 / p95)",
        ["step", "pipeline", "sequential"],
        [
            [name, _ms(pipeline[kind].get(name, {})), _ms(sequential[kind][name])]
            for kind in ("step_ms", "stage_ms")
            for name in sequential[kind]
        ],
    )
    if report.get("keras"):
        lines += table(
            "Keras against ONNX Runtime (batch 1, ms p50 / p95)",
            ["model", "input", "keras", "onnxruntime", "keras / onnxruntime", "parity max abs"],
            [_keras_row(row) for row in report["keras"]],
        )
    if report.get("live"):
        live = report["live"]
        lat = live["latency_ms"]
        lines += table(
            f"Live source at {live['live_fps']:g} fps",
            ["second", "frames out", "dropped so far", "latency p50 ms"],
            [
                [t["second"], t["frames_out"], t["dropped_total"], t["latency_p50_ms"]]
                for t in live["timeline"]
            ],
            intro=f"{live['frames_out']} frames out, {live['dropped']} dropped; "
            f"latency p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms",
        )
    if report.get("settings_grid"):
        lines += table(
            "ONNX Runtime settings (first model, batch 1, ms p50 / p95, fastest first)",
            ["graph optimisation", "intra-op threads", "execution mode", "spinning", "ms", "config"],
            [
                [
                    s["graph_optimization"],
                    s["intra_op_threads"],
                    s["execution_mode"],
                    s["spinning"],
                    _ms(row["ms"]),
                    "current" if row.get("current") else "",
                ]
                for row in report["settings_grid"]
                for s in [row["settings"]]
            ],
        )
        recommended = report.get("settings_recommendation")
        if recommended:
            lines += ["", f"**Recommendation** ({recommended['model']} alone): {recommended['text']}"]
    if report.get("compare"):
        lines += compare_table(report["compare"])
    if report.get("threads"):
        lines += table(
            "Thread budget (pipeline FPS by ONNX Runtime threads in total)",
            ["threads", "FPS"],
            [[row["threads"], f"{row['fps']:.1f}"] for row in report["threads"]],
        )
        budget = report.get("threads_recommendation")
        if budget:
            lines += ["", f"**Recommendation** (the whole pipeline): {budget['text']}"]
    return lines


def compare_table(compare: dict[str, Any]) -> list[str]:
    """Markdown lines for ``bench --compare``: each face backend's FPS and ms per frame, and the ratios."""
    peer, r = compare["peer"], compare["ratios"]
    versions = ", ".join(f"{name} {version}" for name, version in compare["versions"].items())
    rows = [
        [
            run["backend"],
            f"{run['pipeline_fps']:.1f}",
            f"{run['pipeline_ms_per_frame']:.2f}",
            f"{run['sequential_fps']:.1f}",
            f"{run['sequential_ms_per_frame']:.2f}",
            _ms(run["face_ms"]),
            run["detections"],
        ]
        for run in compare["runs"]
    ]
    rows.append(
        [f"onnxruntime / {peer}", f"{r['pipeline_fps']:.2f}x", "", f"{r['sequential_fps']:.2f}x", "",
         f"p50: {peer} / onnxruntime {r['face_ms_p50']:.2f}x", ""]
    )  # fmt: skip
    return table(
        f"Face detection: onnxruntime against {peer} (same clip, same H.264 output)",
        ["backend", "pipeline FPS", "ms per frame", "sequential FPS", "ms per frame",
         "face stage ms p50 / p95", "faces found"],
        rows,
        intro=f"{versions}; medians of alternating runs; the face stage's time from the sequential loop",
    )  # fmt: skip


def chart(report: dict[str, Any], path: Path) -> None:
    """A PNG: FPS of each run, and the per-step time of the pipeline and of the sequential loop; with
    ``bench --cameras``, frames kept by camera count (:func:`.cameras_report.cameras_chart`).

    Raises:
        StreamvisionError: matplotlib is not installed (extra ``bench``).
    """
    if "cameras" in report:
        from streamvision.bench.cameras_report import cameras_chart

        cameras_chart(report["cameras"], path)
        return
    optional.require("matplotlib", "the chart", "pip install 'streamvision[bench]'").use("Agg")
    import matplotlib.pyplot as plt

    r = report["ratios"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = ["pipeline", "sequential", "slowest-step bound"]
    values = [r["pipeline_fps"], r["sequential_fps"], r["slowest_step_bound_fps"]]
    left.bar(names, values, color=["#2a9d8f", "#e76f51", "#8d99ae"])
    for x, value in enumerate(values):
        left.text(x, value, f"{value:.0f}", ha="center", va="bottom")
    left.set_ylabel("frames per second")
    left.set_title(f"FPS on {Path(report['source']).name}")
    runs = {"pipeline": report["pipeline"], "sequential": report["sequential"]}
    bottoms = [0.0, 0.0]
    steps = [(kind, name) for kind in ("step_ms", "stage_ms") for name in report["sequential"][kind]]
    for kind, name in steps:
        heights = [float(run[kind].get(name, {}).get("mean") or 0.0) for run in runs.values()]
        right.bar(list(runs), heights, bottom=bottoms, label=name)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    right.set_ylabel("ms per frame (mean; pipeline steps overlap in time)")
    right.set_title("time per frame by step")
    right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
