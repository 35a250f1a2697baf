"""``streamvision batch`` on a real Ray cluster: a head started with ``ray start --head`` and a second
node joined as its own ``ray start`` process (tests/ray_nodes.py).

One cluster serves the whole module (Ray starts slowly on two cores); each test runs the command as a
user does, as its own process connecting with ``--address``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streamvision.cluster.batch import FRAMES, STAMP, find_videos, plan
from streamvision.config import PipelineConfig, parse_config
from streamvision.pipeline import Pipeline
from tests.conftest import decode_all, write_clip

# isort: off
from tests.ray_nodes import (  # before Ray: it sets the environment Ray reads
    LOOPBACK,
    network_namespaces_available,
    remove_two_nodes,
    start_head,
    start_two_nodes,
    stop_all,
)
import ray  # noqa: F401 - the cluster extra: a missing one fails here

# isort: on

pytestmark = pytest.mark.cluster

CLIPS = 3
CLIP_FRAMES = 30
CONFIG = {
    "source": "placeholder.mp4",
    "stages": [{"type": "face_detection", "model": "blazeface_short", "score_threshold": 0.5}],
}


@dataclass(frozen=True)
class Cluster:
    address: str
    env: dict[str, str]
    nodes: set[str]
    """The addresses of its nodes."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A head and a second node (tests/ray_nodes.py), two CPUs each; a head on loopback alone where
    this process may not make network namespaces. Stopped (``ray stop --force``) after."""
    temp_dir = tmp_path_factory.mktemp("ray")
    if not network_namespaces_available():
        try:
            yield Cluster(start_head(2, temp_dir), dict(os.environ), {LOOPBACK})
        finally:
            stop_all()
        return
    nodes = start_two_nodes(2, temp_dir)
    try:
        yield Cluster(nodes.address, nodes.env, {nodes.head_ip, nodes.node_ip})
    finally:
        remove_two_nodes(nodes)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, sample_clip: Path) -> Path:
    """A folder of three short clips cut from the sample clip."""
    folder = tmp_path_factory.mktemp("clips")
    frames = decode_all(sample_clip)
    for i in range(CLIPS):
        write_clip(folder / f"clip{i}.mp4", frames[i * CLIP_FRAMES : (i + 1) * CLIP_FRAMES])
    return folder


def batch(folder: Path, config: Path, out: Path, cluster: Cluster) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamvision", "batch", str(folder), "-c", str(config), "-o", str(out),
         "--address", cluster.address],
        capture_output=True, text=True, timeout=300, env={**cluster.env, "COLUMNS": "150"},
    )  # fmt: skip


def write_config(path: Path, threshold: float = 0.5) -> Path:
    stage = {**CONFIG["stages"][0], "score_threshold": threshold}  # type: ignore[index]
    path.write_text(json.dumps({**CONFIG, "stages": [stage]}))  # JSON is YAML
    return path


def frame_lines(path: Path) -> list[dict[str, object]]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in records if r["type"] == "frame"]


def report_rows(out: Path) -> list[dict[str, Any]]:
    return list(json.loads((out / "batch-report.json").read_text())["files"])


def statuses(out: Path) -> dict[str, str]:
    return {Path(r["file"]).name: r["status"] for r in report_rows(out)}


def single_process(config: PipelineConfig, clips: Path, out: Path) -> dict[str, list[dict[str, object]]]:
    """Each clip through a plain Pipeline in this process, with the configs the batch builds."""
    found = {}
    for item in plan(find_videos(clips), config, out, threads=1):
        Pipeline(item.config.model_copy(update={"outputs": item.config.outputs.model_copy(
            update={"video": None, "report": None})})).run()  # fmt: skip
        found[item.video.name] = frame_lines(item.out_dir / FRAMES)
    return found


def test_batch_gives_the_single_process_detections_and_resumes(
    cluster: Cluster, clips: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "faces.yaml")
    out = tmp_path / "out"
    first = batch(clips, config, out, cluster)
    assert first.returncode == 0, first.stderr
    assert statuses(out) == {f"clip{i}.mp4": "done" for i in range(CLIPS)}
    assert {row["node"] for row in report_rows(out)} == cluster.nodes  # spread over every node
    assert "clip0.mp4" in first.stdout and "3 done, 0 skipped, 0 failed" in first.stdout
    expected = single_process(parse_config(CONFIG), clips, tmp_path / "single")
    for i in range(CLIPS):
        got = frame_lines(out / f"clip{i}" / FRAMES)
        assert len(got) == CLIP_FRAMES
        assert got == expected[f"clip{i}.mp4"]
        assert any(line["results"]["face_detection"] for line in got)  # the clip shows a face
        assert (out / f"clip{i}" / "annotated.mp4").stat().st_size > 0
        assert json.loads((out / f"clip{i}" / "report.json").read_text())["frames_out"] == CLIP_FRAMES

    stamps = {p: p.stat().st_mtime_ns for p in out.glob(f"*/{STAMP}")}
    second = batch(clips, config, out, cluster)
    assert second.returncode == 0, second.stderr
    assert set(statuses(out).values()) == {"skipped"}
    assert {p: p.stat().st_mtime_ns for p in out.glob(f"*/{STAMP}")} == stamps


def test_a_changed_config_reprocesses_every_file(cluster: Cluster, clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert batch(clips, write_config(tmp_path / "a.yaml", 0.5), out, cluster).returncode == 0
    changed = batch(clips, write_config(tmp_path / "b.yaml", 0.9), out, cluster)
    assert changed.returncode == 0, changed.stderr
    assert set(statuses(out).values()) == {"done"}
    stamp = json.loads((out / "clip0" / STAMP).read_text())
    assert stamp["fingerprint"]["models"]  # the model hashes are part of what is compared


def test_a_corrupt_file_is_reported_and_the_others_finish(
    cluster: Cluster, clips: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(clips, folder)
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4000)
    out = tmp_path / "out"
    result = batch(folder, write_config(tmp_path / "faces.yaml"), out, cluster)
    assert result.returncode == 2
    assert statuses(out) == {"broken.mp4": "failed", **{f"clip{i}.mp4": "done" for i in range(CLIPS)}}
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.mp4" in errors[0], result.stderr
