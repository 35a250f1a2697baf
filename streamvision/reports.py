"""Summaries and reports written as JSON files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streamvision.errors import SinkError


def write_json(path: Path, data: Any) -> None:
    """Writes ``data`` as indented JSON with a final newline, making the folder if needed.

    Raises:
        SinkError: the file cannot be written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        raise SinkError(f"cannot write {path}: {exc.strerror or exc}") from None
