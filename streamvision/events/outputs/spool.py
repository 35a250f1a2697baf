"""A durable FIFO on disk: one file per record in a folder, named by a sequence number.

Records survive a restart of the process: a new :class:`Spool` on the same folder continues where the
last one stopped. Each file appears atomically (written aside, then renamed), so a crash leaves either
the whole record or none of it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections import deque
from pathlib import Path
from typing import Any

from streamvision.errors import SinkError

log = logging.getLogger(__name__)

SUFFIX = ".json"


class Spool:
    """Pending records, oldest first, at most ``max_items`` (beyond it the oldest are dropped, counted).

    Thread-safe: one thread may :meth:`put` while another :meth:`peek`\\s and :meth:`remove`\\s.

    Raises:
        SinkError: the folder cannot be created, another run holds it, or a record cannot be written.

    Example:
        >>> import tempfile
        >>> spool = Spool(Path(tempfile.mkdtemp()), max_items=10)
        >>> spool.put({"id": "a"}); spool.put({"id": "b"})
        >>> seq, body = spool.peek(); json.loads(body)["id"], len(spool)
        ('a', 2)
        >>> spool.remove(seq); spool.close(); len(Spool(spool.folder, 10))
        1
    """

    def __init__(self, folder: Path, max_items: int) -> None:
        self.folder = folder
        self.max_items = max_items
        self.dropped = 0
        self._lock = threading.Lock()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._lock_file = (folder / ".lock").open("w")  # held until close()
        except OSError as exc:
            raise SinkError(f"cannot use spool folder {folder}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            raise SinkError(f"spool folder {folder} is in use by another run") from None
        try:
            for leftover in folder.glob("*.tmp"):
                leftover.unlink()
            found = sorted(int(p.stem) for p in folder.glob(f"*{SUFFIX}") if p.stem.isdigit())
        except OSError as exc:
            raise SinkError(f"cannot use spool folder {folder}: {exc.strerror or exc}") from None
        self._pending: deque[int] = deque(found)
        self._next = (found[-1] + 1) if found else 0
        self.peak = len(found)
        if found:
            log.warning("spool %s: %d undelivered events from an earlier run", folder, len(found))

    def _path(self, seq: int) -> Path:
        return self.folder / f"{seq:012d}{SUFFIX}"

    def put(self, record: dict[str, Any]) -> None:
        """Appends ``record`` (JSON-ready); the oldest record goes when the spool is full.

        Raises:
            SinkError: the file cannot be written.
        """
        body = json.dumps(record, separators=(",", ":")).encode()
        with self._lock:
            seq = self._next
            self._next += 1
            path = self._path(seq)
            aside = path.with_suffix(".tmp")
            try:
                aside.write_bytes(body)
                os.replace(aside, path)
            except OSError as exc:
                raise SinkError(f"cannot write to spool {self.folder}: {exc.strerror or exc}") from exc
            self._pending.append(seq)
            while len(self._pending) > self.max_items:
                self._path(self._pending.popleft()).unlink(missing_ok=True)
                self.dropped += 1
            self.peak = max(self.peak, len(self._pending))

    def peek(self) -> tuple[int, bytes] | None:
        """The oldest record as (sequence number, JSON bytes); None when empty. A record whose file
        vanished or cannot be read is skipped (and logged)."""
        while True:
            with self._lock:
                if not self._pending:
                    return None
                seq = self._pending[0]
            try:
                return seq, self._path(seq).read_bytes()
            except OSError as exc:
                log.error("spool %s: record %d unreadable, skipped: %s", self.folder, seq, exc)
                self.remove(seq)

    def remove(self, seq: int) -> None:
        """Forgets record ``seq`` (delivered) and deletes its file."""
        with self._lock:
            if self._pending and self._pending[0] == seq:
                self._pending.popleft()
            elif seq in self._pending:
                self._pending.remove(seq)
            self._path(seq).unlink(missing_ok=True)

    def set_aside(self, seq: int, folder: str = "rejected") -> None:
        """Moves record ``seq`` into a subfolder (a receiver refused it for good) and forgets it."""
        target = self.folder / folder
        with self._lock:
            try:
                target.mkdir(exist_ok=True)
                os.replace(self._path(seq), target / self._path(seq).name)
            except OSError as exc:
                log.error("spool %s: cannot set record %d aside: %s", self.folder, seq, exc)
        self.remove(seq)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def close(self) -> None:
        """Lets another run use the folder. Safe to call twice."""
        self._lock_file.close()
