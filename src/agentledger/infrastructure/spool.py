"""A supervisor's observed exit, kept on local disk until the log has it.

A supervisor writes the exit it saw here *before* it tries to append the
``Stopped``, and removes it once the append landed. If the store is away and
the supervisor dies before it comes back, the exit is not lost: the daemon of
the same host (each pass, before it judges anything) records every spooled
exit whose supervisor is gone, with the exit code the supervisor saw.

Files under ``$AGENTLEDGER_HOME/spool/`` (0600):

- ``<session id>.slot``: reserved by the supervisor when it starts, its
  blocks allocated then (``posix_fallocate``), so that writing an exit later
  needs no new space: a full disk cannot stop it. Until the exit, it may say
  that the supervisor is waiting on the store, and since when (``note``).
- ``<session id>.json``: a spooled exit. The slot is written in place,
  fsynced, and renamed to this name, so a reader never sees half of one.
  Without a slot (an older supervisor, a failed reservation) the exit is
  written to ``<session id>.tmp`` and renamed; a ``.tmp`` that could not be
  finished is removed, and stale ones are cleaned by :meth:`Spool.clean`.

JSON text is padded with spaces to the slot's size (JSON ignores them).
Heartbeats are never spooled: the next one after an outage says the same.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from agentledger.infrastructure.config import private_directory
from agentledger.infrastructure.json_records import read_json_object

#: The slot's size: an exit record is a few hundred bytes (the note is capped at 300 characters).
SLOT_BYTES = 8192
#: A ``.tmp`` older than this was left by a write that never finished.
STALE_TEMPORARY_SECONDS = 60.0


class Spool:
    def __init__(self, home: Path) -> None:
        self.directory = home / "spool"

    # -- the supervisor's side ---------------------------------------------------

    def reserve(self, session_id: str) -> None:
        """Allocate the session's slot now, while there is space (raises OSError when there is none)."""
        private_directory(self.directory)
        fd = os.open(self._slot(session_id), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, SLOT_BYTES)
            os.write(fd, b" " * SLOT_BYTES)  # an empty slot reads as blank, not as zeros
            os.fsync(fd)
        finally:
            os.close(fd)

    def note(self, session_id: str, state: dict[str, Any] | None) -> None:
        """Say in the slot what the supervisor is waiting for (None: nothing); best effort, never grows it."""
        with contextlib.suppress(OSError, ValueError):
            self._fill(self._slot(session_id), orjson.dumps(state) if state else b"")

    def put(self, session_id: str, record: dict[str, Any]) -> None:
        """Spool an exit durably: in the slot when there is one (no new space needed), else in a new file."""
        private_directory(self.directory)
        path = self.directory / f"{session_id}.json"
        data = orjson.dumps(record)
        slot = self._slot(session_id)
        if slot.exists() and len(data) <= SLOT_BYTES:
            self._fill(slot, data)
            os.replace(slot, path)
            return
        temporary = path.with_suffix(".tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, path)
        except OSError:
            temporary.unlink(missing_ok=True)  # never a 0-byte leftover
            raise

    def take(self, session_id: str) -> None:
        """The exit is in the log (or the session ended without one): drop its files."""
        for name in (f"{session_id}.json", f"{session_id}.slot"):
            (self.directory / name).unlink(missing_ok=True)

    # -- readers ---------------------------------------------------------------------

    def get(self, session_id: str) -> dict[str, Any] | None:
        """The session's spooled exit, if one is waiting (and readable)."""
        return read_json_object(self.directory / f"{session_id}.json")

    def pending(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every spooled exit, oldest first; an unreadable file is skipped (and left for a person)."""
        for path in self._files("*.json"):
            record = read_json_object(path)
            if record is not None:
                yield path.stem, record

    def waiting(self) -> dict[str, dict[str, Any]]:
        """What each supervisor still watching its session noted it waits for (the store, since when)."""
        notes = {}
        for path in self._files("*.slot"):
            state = read_json_object(path)
            if state:
                notes[path.stem] = state
        return notes

    def waiting_for(self, session_id: str) -> dict[str, Any] | None:
        return read_json_object(self._slot(session_id)) or None

    def clean(self, finished: Any = None, now: float | None = None) -> int:
        """Remove stale temporaries, and the slots of sessions ``finished(session_id)`` says are over."""
        now = time.time() if now is None else now
        removed = 0
        for path in self._files("*.tmp"):
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > STALE_TEMPORARY_SECONDS:
                    path.unlink()
                    removed += 1
        if finished is not None:
            for path in self._files("*.slot"):
                if finished(path.stem):
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    # -- plumbing ------------------------------------------------------------------

    def _slot(self, session_id: str) -> Path:
        return self.directory / f"{session_id}.slot"

    def _files(self, pattern: str) -> list[Path]:
        if not self.directory.is_dir():
            return []
        stamped = []
        for path in self.directory.glob(pattern):
            with contextlib.suppress(OSError):
                stamped.append((path.stat().st_mtime, path))
        return [path for _, path in sorted(stamped)]

    @staticmethod
    def _fill(slot: Path, data: bytes) -> None:
        """Write ``data`` over the slot's start, padded with spaces to its whole size, and fsync: no new blocks."""
        if len(data) > SLOT_BYTES:
            raise ValueError("record larger than the slot")
        fd = os.open(slot, os.O_WRONLY)
        try:
            os.pwrite(fd, data + b" " * (SLOT_BYTES - len(data)), 0)
            os.fsync(fd)
        finally:
            os.close(fd)


