"""Folders shipped with streamvision: in a wheel beside the code (``_models``, ``_configs``), in a
checkout at the repository's top level (``models/``, ``configs/``)."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def bundled_dir(name: str) -> Path:
    """The shipped folder ``name`` (``models`` or ``configs``): the wheel's ``_<name>`` when installed,
    the checkout's ``<name>/`` otherwise."""
    packaged = PACKAGE / f"_{name}"
    return packaged if packaged.is_dir() else PACKAGE.parent / name
