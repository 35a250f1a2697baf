"""What ``streamvision batch`` decides before Ray runs anything: the files, their folders and configs,
the fingerprint that resume compares. No Ray needed (the batch itself: tests/test_cluster_batch.py)."""

from __future__ import annotations

import json
import shutil
import socket
import sys
from pathlib import Path

import pytest

from streamvision.cluster import check_reachable, require_ray
from streamvision.cluster.batch import FRAMES, STAMP, BatchItem, done_before, find_videos, plan
from streamvision.cluster.fingerprint import config_sha256, fingerprint, model_sha256s
from streamvision.config import parse_config
from streamvision.errors import ClusterError, ConfigError
from streamvision.runtime.manifest import ModelRegistry, sha256_of

FACES = {"source": "x.mp4", "stages": [{"type": "face_detection", "score_threshold": 0.5}]}


def test_videos_are_found_by_suffix_and_an_empty_folder_is_an_error(tmp_path: Path) -> None:
    for name in ("b.mp4", "a.MKV", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in find_videos(tmp_path)] == ["a.MKV", "b.mp4"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no video in"):
        find_videos(empty)


def test_each_file_gets_its_own_folder_source_and_outputs(tmp_path: Path) -> None:
    videos = [tmp_path / "a.mp4", tmp_path / "a.mkv", tmp_path / "b.mp4"]
    config = parse_config({**FACES, "outputs": {"show": True, "preview": {"port": 9000}}})
    items = plan(videos, config, tmp_path / "out", threads=1)
    assert [i.out_dir.name for i in items] == ["a.mp4", "a.mkv", "b"]
    b = items[2].config
    assert b.source.uri == str(videos[2]) and b.source.id == "b"
    assert b.outputs.events == str(tmp_path / "out" / "b" / FRAMES)
    assert b.outputs.video == tmp_path / "out" / "b" / "annotated.mp4"
    assert not b.outputs.show and b.outputs.preview is None and b.threads == 1


def test_rule_event_files_and_spools_move_per_file(tmp_path: Path) -> None:
    config = parse_config(
        {
            **FACES,
            "events": {
                "rules": [{"type": "appear", "on": "face_detection"}],
                "outputs": [
                    {"type": "jsonl", "path": "rules.jsonl"},
                    {"type": "webhook", "url": "http://127.0.0.1:9/", "spool": str(tmp_path / "spool")},
                ],
            },
        }
    )
    (item,) = plan([tmp_path / "a.mp4"], config, tmp_path / "out", threads=1)
    assert item.config.events is not None
    jsonl, webhook = item.config.events.outputs
    assert jsonl.path == str(tmp_path / "out" / "a" / "rules.jsonl")  # type: ignore[union-attr]
    assert webhook.spool == tmp_path / "spool" / "a"  # type: ignore[union-attr]


def test_the_fingerprint_follows_stage_settings_and_model_files(tmp_path: Path) -> None:
    base = parse_config(FACES)
    assert config_sha256(base) == config_sha256(parse_config({**FACES, "source": "other.mp4"}))
    changed = parse_config({**FACES, "stages": [{"type": "face_detection", "score_threshold": 0.6}]})
    assert config_sha256(base) != config_sha256(changed)

    registry = ModelRegistry()
    assert model_sha256s(base) == {
        "face_detection:blazeface_short": sha256_of(registry.path("blazeface_short"))
    }
    mtcnn = parse_config({**FACES, "stages": [{"type": "face_detection", "model": "mtcnn"}]})
    assert len(model_sha256s(mtcnn)) == 3

    copy = tmp_path / "models"
    shutil.copytree(registry.models_dir, copy)
    objects = {**FACES, "stages": [{"type": "object_detection", "models": str(copy)}]}
    before = model_sha256s(parse_config(objects))
    path = copy / registry.get("nanodet").file
    path.write_bytes(path.read_bytes() + b"\0")  # a new model version under the same name
    assert model_sha256s(parse_config(objects)) != before


def test_a_file_is_done_only_with_the_same_fingerprint(tmp_path: Path) -> None:
    item = BatchItem(tmp_path / "a.mp4", tmp_path / "out", parse_config(FACES))
    stamp = fingerprint(item.config)
    assert done_before(item, stamp) is None
    item.out_dir.mkdir()
    result = {"file": "a.mp4", "status": "done", "frames": 3}
    (item.out_dir / STAMP).write_text(json.dumps({"fingerprint": stamp, "result": result}))
    assert done_before(item, stamp) == result
    assert done_before(item, {**stamp, "config_sha256": "0" * 64}) is None


def test_without_ray_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray imports
    with pytest.raises(ClusterError, match=r"streamvision\[cluster\]"):
        require_ray()


def test_an_unreachable_cluster_address_fails_at_once() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: refused
    with pytest.raises(ClusterError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"):
        check_reachable(f"127.0.0.1:{port}")
    with pytest.raises(ClusterError, match="expected HOST:PORT"):
        check_reachable("head-node")
    check_reachable("auto")  # left to Ray
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_reachable(f"127.0.0.1:{server.getsockname()[1]}")
