"""The daemon's files: its lock (one daemon per store), pid file, log and status.

```
<store>.daemon.lock                   flock held for the daemon's life; names the holder
$AGENTLEDGER_HOME/daemon.pid          the running daemon's pid
$AGENTLEDGER_HOME/daemon.log          its log, when started with ``daemon start``
$AGENTLEDGER_HOME/daemon.status.json  rewritten after every pass; read by ``daemon status``
```

The lock sits beside the store file, so two daemons cannot serve one store
even from different homes. The kernel drops a flock when its holder dies, so
a daemon killed with SIGKILL never blocks the next start.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from agentledger.application.errors import LedgerError
from agentledger.domain.liveness import ProcessIdentity
from agentledger.infrastructure.config import PostgresLocation, StoreLocation


class DaemonAlreadyRunning(LedgerError):
    def __init__(self, holder: dict[str, Any] | None, lock_path: Path) -> None:
        who = f"pid {holder['pid']}" if holder else "its holder is unknown"
        super().__init__(
            f"a daemon is already running for this store ({who}, lock {lock_path}); "
            "'agentledger daemon stop' stops it"
        )
        self.holder = holder


@dataclass(frozen=True)
class DaemonFiles:
    home: Path
    lock_path: Path

    @classmethod
    def locate(cls, location: StoreLocation | PostgresLocation, home: Path) -> DaemonFiles:
        """One daemon per host and store: a SQLite store's lock sits beside its file; a server's, in the home.

        Creates the home (0700) if a server store means nothing else has yet.
        """
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        if location.kind == "postgresql":
            digest = hashlib.sha256(location.url.encode()).hexdigest()[:16]
            return cls(home=home, lock_path=home / f"daemon-{digest}.lock")
        return cls(home=home, lock_path=location.path.with_name(location.path.name + ".daemon.lock"))

    @property
    def pid_path(self) -> Path:
        return self.home / "daemon.pid"

    @property
    def log_path(self) -> Path:
        return self.home / "daemon.log"

    @property
    def status_path(self) -> Path:
        return self.home / "daemon.status.json"

    def acquire(self, holder: dict[str, Any]) -> DaemonLock:
        """Take the store's daemon lock and record ``holder`` in it, or raise DaemonAlreadyRunning."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DaemonAlreadyRunning(self.recorded_holder(), self.lock_path) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, orjson.dumps(holder), 0)
        _write_atomically(self.pid_path, f"{holder['pid']}\n".encode())
        return DaemonLock(fd, self)

    def recorded_holder(self) -> dict[str, Any] | None:
        """Who last held the lock (it may have died since: see ``holder_identity``)."""
        try:
            return orjson.loads(self.lock_path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None

    def write_status(self, status: dict[str, Any]) -> None:
        _write_atomically(self.status_path, orjson.dumps(status, option=orjson.OPT_INDENT_2))

    def read_status(self) -> dict[str, Any] | None:
        try:
            return orjson.loads(self.status_path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None


def holder_identity(holder: dict[str, Any]) -> ProcessIdentity:
    return ProcessIdentity(
        pid=holder["pid"],
        start_time=holder["start_time"],
        boot_time=holder["boot_time"],
        host=holder["host"],
        boot_id=holder["boot_id"],
    )


class DaemonLock:
    def __init__(self, fd: int, files: DaemonFiles) -> None:
        self._fd = fd
        self._files = files

    def release(self) -> None:
        """Remove the pid file and drop the lock (the lock file stays: removing it would race)."""
        try:
            self._files.pid_path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(temporary, path)
