"""Packages that only some features need, imported when those features run."""

from __future__ import annotations

import importlib
from types import ModuleType

from streamvision.errors import StreamvisionError


def require(
    module: str, needed_for: str, install: str, error: type[StreamvisionError] = StreamvisionError
) -> ModuleType:
    """Imports ``module`` for a feature that needs it.

    Args:
        module: the module to import (``tensorflow``, ``ray``, ``mediapipe.tasks.python.vision``).
        needed_for: what needs it, as the message says it ("model conversion", "the track stage").
        install: how to get it (``pip install 'streamvision[convert]'``).
        error: the error to raise, so that each command reports it as its own.

    Raises:
        StreamvisionError: (of type ``error``) the module cannot be imported; one line that names it
            and how to install it.

    Example:
        >>> require("json", "the report", "nothing").__name__
        'json'
        >>> require("no_such", "the demo", "pip install it")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        streamvision.errors.StreamvisionError: the demo needs 'no_such', which is not ...: pip install it
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise error(f"{needed_for} needs {module!r}, which is not installed ({exc}): {install}") from None
