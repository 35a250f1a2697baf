"""The files and folders a run reads and writes, and the check that no two of them are the same."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import TYPE_CHECKING

from streamvision import samples
from streamvision.events.config import ClipOutput, JsonLinesOutput, SnapshotOutput, WebhookOutput

if TYPE_CHECKING:
    from streamvision.config import PipelineConfig

STDOUT = "-"


def local_source_path(uri: str) -> Path | None:
    """The file or folder a source URI reads, or None for a camera, a stream URL or a glob pattern.

    Raises:
        SourceError: ``uri`` names a bundled sample that does not exist.
    """
    from streamvision.sources import is_stream_url

    if uri.isdigit() or is_stream_url(uri):
        return None
    path = samples.resolve(uri)
    return None if glob.has_magic(path) and not Path(path).exists() else Path(path)


def run_paths(config: PipelineConfig, with_sources: bool = True) -> list[tuple[str, Path]]:
    """What each part of ``config`` reads or writes on disk, as (config key, path) pairs: the sources'
    files (with ``with_sources``), the outputs' files and the event outputs' files and folders."""
    named: list[tuple[str, Path | str | None]] = []
    if with_sources:
        for index, source in enumerate(config.sources):
            key = "source" if len(config.sources) == 1 else f"sources.{index}"
            named.append((key, local_source_path(source.uri)))
    outputs = config.outputs
    named += [
        ("outputs.video", outputs.video),
        ("outputs.events", outputs.events),
        ("outputs.report", outputs.report),
    ]
    for index, output in enumerate(config.events.outputs if config.events else ()):
        key = f"events.outputs.{index} ({output.type})"
        if isinstance(output, JsonLinesOutput):
            named.append((key, output.path))
        elif isinstance(output, (SnapshotOutput, ClipOutput)):
            named.append((key, output.dir))
        elif isinstance(output, WebhookOutput):
            named.append((key, output.spool))
    return [(key, Path(path)) for key, path in named if path is not None and path != STDOUT]


def same_path_problem(config: PipelineConfig, with_sources: bool = True) -> str | None:
    """What is wrong when two parts of ``config`` name the same file or folder (an output written over
    the input, two outputs into one file), or None when none do."""
    return first_clash(run_paths(config, with_sources))


def first_clash(named: list[tuple[str, Path]]) -> str | None:
    """What is wrong when two of the (config key, path) pairs name the same file or folder, or None.
    Paths are compared as they resolve: relative or absolute, through symbolic links, and hard links of
    existing files."""
    seen: list[tuple[str, Path]] = []
    for key, path in named:
        for other_key, other in seen:
            if _is_source(key) and _is_source(other_key):
                continue  # two sources may read one file
            if _same(path, other):
                return f"{other_key} and {key} name the same file {str(path)!r}: give each its own"
        seen.append((key, path))
    return None


def _is_source(key: str) -> bool:
    return key.startswith(("source", "sources."))


def _same(a: Path, b: Path) -> bool:
    if a.expanduser().resolve() == b.expanduser().resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False
