"""Progress of a ``streamvision bench`` run: one line per finished measurement, on stderr.

A full bench takes a minute or more; the lines show that it runs and what it has measured so far,
while stdout keeps only the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

Progress = Callable[[str, str], None]
"""Called once per finished measurement with what was measured and its headline figure."""


def silent(what: str, result: str) -> None:
    """A :data:`Progress` that reports nothing."""


class ProgressLines:
    """A :data:`Progress` writing ``bench [k/N, 12.3 s] what: result`` lines to ``stream``.

    Args:
        total: the measurements planned (see :func:`planned_measurements`); the ``N`` of each line.
            None when it depends on what is measured (``bench --cameras`` bisects): lines read
            ``bench [k, 12.3 s]``.
        stream: where the lines go, flushed each time so a pipe sees them as they come.
    """

    def __init__(self, total: int | None, stream: TextIO) -> None:
        self.total = total
        self.done = 0
        self._stream = stream
        self._started = time.monotonic()

    def start(self, what: str) -> None:
        """The line before the first measurement, which can take seconds to load its models."""
        planned = "measurements" if self.total is None else f"{self.total} measurements"
        self._write(f"bench: {planned} on {what}")

    def __call__(self, what: str, result: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - self._started
        count = self.done if self.total is None else f"{self.done}/{self.total}"
        self._write(f"bench [{count}, {elapsed:.1f} s] {what}: {result}")

    def _write(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()


def planned_measurements(
    *,
    models: int,
    keras: int,
    compare: bool,
    repeat: int,
    live: bool,
    grid_settings: int,
    thread_counts: int,
) -> int:
    """How many measurements :func:`streamvision.cli.bench.run_bench` reports, in its order.

    ``grid_settings`` and ``thread_counts`` are 0 when the grid does not run.

    >>> planned_measurements(models=1, keras=0, compare=False, repeat=3, live=True, grid_settings=24,
    ...                      thread_counts=2)
    38
    """
    backends = 2 * 2 * repeat if compare else 0  # each backend, threaded and sequential, per repeat
    return models + keras + backends + 2 * repeat + int(live) + grid_settings + thread_counts * repeat
