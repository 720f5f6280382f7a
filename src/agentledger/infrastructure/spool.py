"""A supervisor's observed exit, kept on local disk until the log has it.

A supervisor writes the exit it saw here *before* it tries to append the
``Stopped``, and removes it once the append landed. If the store is away and
the supervisor dies before it comes back, the exit is not lost: the daemon of
the same host (each pass, before it judges anything) records every spooled
exit whose supervisor is gone, with the exit code the supervisor saw.

One file per session, ``$AGENTLEDGER_HOME/spool/<session id>.json`` (0600,
written to a temporary name and renamed, so a reader never sees half of one).
Heartbeats are never spooled: the next one after an outage says the same.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from agentledger.infrastructure.config import private_directory


class Spool:
    def __init__(self, home: Path) -> None:
        self.directory = home / "spool"

    def put(self, session_id: str, record: dict[str, Any]) -> None:
        private_directory(self.directory)
        path = self.directory / f"{session_id}.json"
        temporary = path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, orjson.dumps(record))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)

    def get(self, session_id: str) -> dict[str, Any] | None:
        """The session's spooled exit, if one is waiting (and readable)."""
        try:
            return orjson.loads((self.directory / f"{session_id}.json").read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None

    def take(self, session_id: str) -> None:
        try:
            (self.directory / f"{session_id}.json").unlink()
        except FileNotFoundError:
            pass

    def pending(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every spooled record, oldest first; an unreadable file is skipped (and left for a person)."""
        if not self.directory.is_dir():
            return
        paths = sorted(self.directory.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for path in paths:
            try:
                yield path.stem, orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue
