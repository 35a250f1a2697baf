"""``streamvision batch``: a folder of videos processed in parallel, one Ray task per file.

Each task runs an unchanged :class:`~streamvision.pipeline.Pipeline` on one file, with its outputs in
``OUT_DIR/<file stem>/``: the annotated video, the per-frame JSON lines, the run report and a stamp
(``batch.json``) holding the fingerprint (config and model hashes) it was made with. A later batch
with the same fingerprint skips that file (resume); any change to the config or a model file
reprocesses it.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamvision.config import OutputConfig, PipelineConfig, SourceConfig
from streamvision.errors import ConfigError, describe
from streamvision.events.config import ClipOutput, JsonLinesOutput, SnapshotOutput
from streamvision.fanout import unshared
from streamvision.reports import write_json
from streamvision.sources import VIDEO_SUFFIXES

log = logging.getLogger(__name__)

STAMP = "batch.json"
FRAMES = "frames.jsonl"
REPORT = "report.json"
VIDEO = "annotated.mp4"

ResultCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class BatchItem:
    """One file of a batch: the video, its output folder and the config its pipeline runs."""

    video: Path
    out_dir: Path
    config: PipelineConfig


def find_videos(folder: Path) -> list[Path]:
    """The video files directly in ``folder`` (by suffix), sorted by name.

    Raises:
        ConfigError: ``folder`` is not a folder or holds no video.
    """
    if not folder.is_dir():
        raise ConfigError(f"batch: {folder} is not a folder")
    videos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise ConfigError(f"batch: no video in {folder} (looked for {', '.join(sorted(VIDEO_SUFFIXES))})")
    return videos


def plan(videos: list[Path], config: PipelineConfig, out_dir: Path, threads: int) -> list[BatchItem]:
    """A config per video: the file as its only source, outputs in ``out_dir/<stem>/``.

    Files that share a stem (``a.mp4``, ``a.mkv``) get folders named after the whole file name. The
    config's window and preview page are left out; rule-event files, snapshot and clip folders move
    into the file's folder, webhook spools get a folder per file. ``threads`` is the ONNX Runtime
    thread budget of each pipeline unless the config sets one.
    """
    stems = [v.stem for v in videos]
    items = []
    for video in videos:
        name = video.stem if stems.count(video.stem) == 1 else video.name
        folder = out_dir / name
        single = config.model_copy(
            update={
                "sources": [SourceConfig(uri=str(video), id=name)],
                "outputs": OutputConfig(
                    video=folder / VIDEO, events=str(folder / FRAMES), report=folder / REPORT
                ),
                "events": _events_for(config, folder, name),
                "threads": config.threads or threads,
            }
        )
        items.append(BatchItem(video, folder, single))
    return items


def _events_for(config: PipelineConfig, folder: Path, name: str) -> Any:
    if config.events is None:
        return None
    outputs: list[Any] = []
    for output in config.events.outputs:
        if isinstance(output, JsonLinesOutput) and output.path != "-":
            target = folder / Path(output.path).name
            if target.name == FRAMES:
                target = folder / f"rule-{FRAMES}"
            output = output.model_copy(update={"path": str(target)})
        elif isinstance(output, (SnapshotOutput, ClipOutput)):
            output = output.model_copy(update={"dir": folder / output.dir.name})
        else:
            output = unshared(output, name)
        outputs.append(output)
    return config.events.model_copy(update={"outputs": outputs})


def done_before(item: BatchItem, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The stored result when ``item`` was processed to its end with ``fingerprint``, else None."""
    try:
        stamp = json.loads((item.out_dir / STAMP).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict) or stamp.get("fingerprint") != fingerprint:
        return None
    result = stamp.get("result")
    return result if isinstance(result, dict) and result.get("status") == "done" else None


def process_file(item: BatchItem, fingerprint: dict[str, Any]) -> dict[str, Any]:
    """Runs the pipeline of one file and stamps its folder; runs inside a Ray task.

    Never raises for a bad file: a failure comes back as ``status: failed`` with the error, so the
    batch goes on. Outputs of an earlier run in the folder are replaced.
    """
    from streamvision.pipeline import Pipeline

    started = time.monotonic()
    if (item.out_dir / STAMP).is_file():
        shutil.rmtree(item.out_dir)  # only folders this command made carry a stamp
    item.out_dir.mkdir(parents=True, exist_ok=True)
    try:
        summary = Pipeline(item.config).run()
    except Exception as exc:  # a task reports its failure as data: one bad file must not stop the batch
        error = describe(exc)
        log.info("%s failed: %s", item.video, error)
        return _result(item, "failed", time.monotonic() - started, error=error, node=_node_ip())
    result = _result(item, "done", time.monotonic() - started, summary, node=_node_ip())
    report = item.config.outputs.report
    if report is not None:
        write_json(report, summary)
    stamp = {"fingerprint": fingerprint, "result": result}
    write_json(item.out_dir / STAMP, stamp)
    return result


def _result(
    item: BatchItem,
    status: str,
    wall_s: float,
    summary: dict[str, Any] | None = None,
    error: str | None = None,
    node: str | None = None,
) -> dict[str, Any]:
    summary = summary or {}
    return {
        "file": str(item.video),
        "out_dir": str(item.out_dir),
        "node": node,
        "status": status,
        "frames": summary.get("frames_out"),
        "fps": summary.get("fps_out"),
        "detections": summary.get("detections"),
        "wall_s": round(wall_s, 3),
        "error": error,
    }


def _node_ip() -> str | None:
    """The address of the Ray node this runs on; None outside Ray."""
    try:
        import ray
    except ImportError:
        return None
    return str(ray.util.get_node_ip_address()) if ray.is_initialized() else None


def run_batch(
    items: list[BatchItem],
    fingerprint: dict[str, Any],
    ray: Any,
    cpus_per_task: float = 1.0,
    on_result: ResultCallback | None = None,
) -> list[dict[str, Any]]:
    """Processes ``items`` as Ray tasks on the connected cluster and returns a result per item, in order.

    The tasks are spread over the nodes (Ray's SPREAD strategy); each result names its node.

    Items done before with ``fingerprint`` come back as ``skipped`` without a task. A task that dies
    with its worker or node is retried once by Ray, then reported as ``failed``. ``on_result`` is
    called as each result arrives (skipped ones first).

    Raises:
        KeyboardInterrupt: pending tasks are cancelled first.
    """
    results: dict[int, dict[str, Any]] = {}
    for index, item in enumerate(items):
        before = done_before(item, fingerprint)
        if before is not None:
            results[index] = {**before, "status": "skipped"}
            if on_result is not None:
                on_result(results[index])
    task = ray.remote(num_cpus=cpus_per_task, max_retries=1, scheduling_strategy="SPREAD")(process_file)
    pending = {task.remote(item, fingerprint): i for i, item in enumerate(items) if i not in results}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(ready[0])
            try:
                results[index] = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                results[index] = _result(items[index], "failed", 0.0, error=describe(exc))
            if on_result is not None:
                on_result(results[index])
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    return [results[i] for i in range(len(items))]
