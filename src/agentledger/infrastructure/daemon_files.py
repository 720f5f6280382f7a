"""The daemon's files: its lock (one daemon per store and host), pid file, log and status.

```
<store's real path>.daemon.lock       flock held for the daemon's life; names the holder (SQLite)
$AGENTLEDGER_HOME/daemon-<hash>.lock  the same for a PostgreSQL store (holder, for this home's commands)
$AGENTLEDGER_HOME/daemon.pid          the running daemon's pid
$AGENTLEDGER_HOME/daemon.log          its log, when started with ``daemon start``
$AGENTLEDGER_HOME/daemon.status.json  rewritten after every pass; read by ``daemon status``
```

One daemon per store and host, however the store's URL is spelled and from
whichever home: a SQLite store's lock sits beside the file's *real* path
(symlinks and relative spellings resolved), and a PostgreSQL store's daemon
also holds a claim in the server itself for the ledger and its host: an
advisory lock on a connection it keeps open for its life
(:class:`ServerLock`), or through a transaction pooler a lease renewed at
every host heartbeat (:class:`ServerLease`), which keeps no server
connection. With or without a password, ``127.0.0.1`` or ``localhost``,
from another home, a second daemon is refused with one line naming the
holder, and ``daemon status``/``stop`` from any home find it
(:func:`server_holder`). (Each host runs its own: a reconciler only judges its own
host's PIDs.) The kernel drops a flock, and the server an advisory lock,
when the holder dies, and the next daemon of the host takes a lease whose
holder's process is gone, so a daemon killed with SIGKILL never blocks the
next start (but for a lease from before a reboot, which runs out).
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
from agentledger.infrastructure.json_records import json_object, read_json_object

#: Through a pooler, how long a daemon's claim lasts unless renewed (the daemon renews it at every host heartbeat).
DEFAULT_LEASE_SECONDS = 60.0


class DaemonAlreadyRunning(LedgerError):
    def __init__(self, holder: dict[str, Any] | None, where: Path | str) -> None:
        if holder:
            who = f"pid {holder['pid']}" + (f" on {holder['host']}" if holder.get("host") else "") + (
                f", since {holder['started_at']}" if holder.get("started_at") else "")
        else:
            who = "its holder is unknown"
        super().__init__(
            f"a daemon is already running for this store ({who}; {where}); "
            "'agentledger daemon stop' stops it (from the home it was started with)"
        )
        self.holder = holder


@dataclass(frozen=True)
class DaemonFiles:
    home: Path
    lock_path: Path
    location: StoreLocation | PostgresLocation | None = None

    @classmethod
    def locate(cls, location: StoreLocation | PostgresLocation, home: Path) -> DaemonFiles:
        """One daemon per host and store: a SQLite store's lock sits beside its file; a server's, in the home.

        Creates the home (0700) if a server store means nothing else has yet.
        """
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        if location.kind == "postgresql":
            digest = hashlib.sha256(location.url.encode()).hexdigest()[:16]
            return cls(home=home, lock_path=home / f"daemon-{digest}.lock", location=location)
        real = Path(os.path.realpath(location.path))
        return cls(home=home, lock_path=real.with_name(real.name + ".daemon.lock"), location=location)

    @property
    def pid_path(self) -> Path:
        return self.home / "daemon.pid"

    @property
    def log_path(self) -> Path:
        return self.home / "daemon.log"

    @property
    def status_path(self) -> Path:
        return self.home / "daemon.status.json"

    def acquire(self, holder: dict[str, Any], *, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> DaemonLock:
        """Take the store's daemon lock and record ``holder`` in it, or raise DaemonAlreadyRunning.

        ``lease_seconds``: through a transaction pooler, how long the claim in the server lasts unless renewed
        (:class:`ServerLease`; the daemon renews it with every host heartbeat).
        """
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DaemonAlreadyRunning(self.recorded_holder(), f"lock {self.lock_path}") from None
        server = None
        if isinstance(self.location, PostgresLocation):
            try:
                server = (ServerLease(self.location, holder, lease_seconds) if self.location.pooled
                          else ServerLock(self.location, holder))
            except BaseException:
                os.close(fd)
                raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, orjson.dumps(holder), 0)
        _write_atomically(self.pid_path, f"{holder['pid']}\n".encode())
        return DaemonLock(fd, self, server)

    def recorded_holder(self) -> dict[str, Any] | None:
        """Who last held the lock (it may have died since: see ``holder_identity``)."""
        return read_json_object(self.lock_path)

    def write_status(self, status: dict[str, Any]) -> None:
        _write_atomically(self.status_path, orjson.dumps(status, option=orjson.OPT_INDENT_2))

    def read_status(self) -> dict[str, Any] | None:
        return read_json_object(self.status_path)


def holder_identity(holder: dict[str, Any]) -> ProcessIdentity:
    return ProcessIdentity(
        pid=holder["pid"],
        start_time=holder["start_time"],
        boot_time=holder["boot_time"],
        host=holder["host"],
        boot_id=holder["boot_id"],
    )


def alive(holder: dict[str, Any] | None, host: str) -> bool:
    """Whether the process a holder record names runs now on ``host`` (the same process: start time checked)."""
    from agentledger.infrastructure.processes import probe

    if holder is None or holder.get("host") != host or "start_time" not in holder:
        return False
    return probe(holder_identity(holder)).alive


class DaemonLock:
    def __init__(self, fd: int, files: DaemonFiles, server: ServerLock | ServerLease | None = None) -> None:
        self._fd = fd
        self._files = files
        self.server = server

    def still_held(self) -> bool:
        """Whether this daemon still holds its store (a server lock goes with its connection; a lease is renewed)."""
        return self.server is None or self.server.still_held()

    def release(self) -> None:
        """Remove the pid file and drop the locks (the lock file stays: removing it would race)."""
        try:
            self._files.pid_path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            if self.server is not None:
                self.server.release()


class ServerLock:
    """The daemon's claim on a PostgreSQL ledger for its host, held in the server: an advisory lock.

    Keyed by (a constant for agentledger's daemons, a hash of the ledger's
    schema and the host name), taken on a connection of its own that stays
    open for the daemon's life (``postgres_store.lock_for_life``: a session
    lock, or through a transaction pooler one held by a transaction left
    open); the connection's ``application_name`` names the holder, which a
    refused daemon reads from ``pg_stat_activity``.
    """

    CLASS_ID = 0x416C4400  # "AlD": agentledger daemons, apart from anyone else's advisory locks

    def __init__(self, location: PostgresLocation, holder: dict[str, Any]) -> None:
        self.location = location
        self.host = holder["host"]
        self.key = _server_key(location, self.host)
        # the holder, for whoever is refused or asks from another home (63 characters at most: the host is the key's)
        self.name = f"{_NAME_PREFIX} pid={holder['pid']} start={holder['start_time']:.2f}"
        self.connection = _connect(location, self.name)
        if not self._take():
            other = _holder_in(self.connection, self.key, self.host)
            self.connection.close()
            raise DaemonAlreadyRunning(other, f"advisory lock ({self.CLASS_ID}, {self.key}) in the server")

    def _take(self) -> bool:
        from agentledger.infrastructure.postgres_store import lock_for_life

        take = lock_for_life(self.connection, pooled=self.location.pooled)
        return bool(self.connection.execute(f"SELECT {take}(%s, %s)", (self.CLASS_ID, self.key)).fetchone()[0])

    def still_held(self) -> bool:
        """True while the connection (and so the lock) lives; after a lost connection, whether it was taken back."""
        try:
            self.connection.execute("SELECT 1")
            return True
        except Exception:  # the connection went away, and the lock with it: try to take it back
            pass
        try:
            self.connection.close()
            self.connection = _connect(self.location, self.name)
            return self._take()
        except Exception:
            return True  # the server is away: nobody else can take it from there either; try again later

    def release(self) -> None:
        try:
            self.connection.close()  # the server drops the lock with the session (or its transaction)
        except Exception:
            pass


class ServerLease:
    """The daemon's claim on a PostgreSQL ledger for its host through a transaction pooler: a lease.

    An advisory lock there would be held by a transaction left open, which keeps one of the pool's few server
    connections for the daemon's life: a pool of 2 + one per host. The lease (``infrastructure/leases.py``)
    keeps none. It is named by the host, holds the daemon's record (its lock file's), and lasts
    ``seconds`` unless renewed, which :meth:`still_held` does at every host heartbeat. A daemon killed without
    giving it back holds it until then, except against the next daemon of the same host and boot: that one
    sees the holder's process is gone (PID and start time, as the lock file's holder is judged) and takes
    the lease at once. After a reboot, or from another machine of the same name, it waits for the lease to
    run out: a process of another boot cannot be looked at.
    """

    def __init__(self, location: PostgresLocation, holder: dict[str, Any], seconds: float) -> None:
        from agentledger.infrastructure.leases import holder_text

        self.location, self.seconds = location, seconds
        self.name = _lease_name(holder["host"])
        self.holder = holder_text(holder)
        self.connection = _connect(location, f"{_NAME_PREFIX} pid={holder['pid']}")
        try:
            found = self._take()
        except BaseException:
            self.connection.close()
            raise
        if found is not None:
            self.connection.close()
            raise DaemonAlreadyRunning(found, f"lease {self.name!r} in the server")

    def _take(self) -> dict[str, Any] | None:
        """Take the lease (from a dead holder of this boot too): None, or the live holder that keeps it."""
        from agentledger.infrastructure import leases

        if leases.take(self.connection, self.name, self.holder, self.seconds):
            return None
        found = leases.current_holder(self.connection, self.name)
        record = json_object(found)
        if found is None or (record is not None and _gone_from_this_boot(record)):
            if leases.take(self.connection, self.name, self.holder, self.seconds, dead=found):
                return None
            record = json_object(leases.current_holder(self.connection, self.name))
        return record or {"pid": "?", "host": self.name.split(":", 1)[1]}

    def still_held(self) -> bool:
        """Renew the lease: False once another daemon holds it (this one's ran out while it could not renew)."""
        from agentledger.infrastructure import leases

        try:
            return leases.take(self.connection, self.name, self.holder, self.seconds)
        except Exception:  # the connection went away: renew on a new one
            pass
        try:
            self.connection.close()
            self.connection = _connect(self.location, f"{_NAME_PREFIX}-lease")
            return leases.take(self.connection, self.name, self.holder, self.seconds)
        except Exception:
            return True  # the server is away: the lease runs until it can be renewed; try again later

    def release(self) -> None:
        from agentledger.infrastructure import leases

        try:
            leases.give_back(self.connection, self.name, self.holder)
        except Exception:  # the server is away: the lease runs out by itself
            pass
        try:
            self.connection.close()
        except Exception:
            pass


def _lease_name(host: str) -> str:
    return f"daemon:{host}"


def _gone_from_this_boot(record: dict[str, Any]) -> bool:
    """Is the process a holder record names, on this host and boot, gone (its PID free or another process's)?
    (:func:`alive`, as a lock file's holder is judged; a record it cannot read is not judged gone.)"""
    from agentledger.infrastructure.host import boot_id, host_name

    here = host_name()
    if record.get("host") != here or record.get("boot_id") != boot_id() or "start_time" not in record:
        return False
    try:
        return not alive(record, here)
    except (KeyError, TypeError, ValueError):
        return False


_NAME_PREFIX = "agentledger-daemon"


def server_holder(location: PostgresLocation, host: str) -> dict[str, Any] | None:
    """The daemon that holds ``location``'s server lock for ``host``, however it spelled the URL, from any home.

    What another home's ``daemon status`` and ``daemon stop`` find when their
    own lock file names nobody. Connection errors propagate (the server may be away).
    """
    connection = _connect(location, f"{_NAME_PREFIX}-query")
    if location.pooled:
        from agentledger.infrastructure.leases import current_holder

        try:
            return json_object(current_holder(connection, _lease_name(host)))
        finally:
            connection.close()
    try:
        return _holder_in(connection, _server_key(location, host), host)
    finally:
        connection.close()


def _holder_in(connection: Any, key: int, host: str) -> dict[str, Any] | None:
    """The holder of advisory lock ``key``, as a lock file records one (this host's boot: the key is per host)."""
    from datetime import datetime, timezone

    import psutil

    from agentledger.infrastructure.host import boot_id

    row = connection.execute(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = %s AND l.objsubid = 2 AND l.granted",
        (ServerLock.CLASS_ID, key & 0xFFFFFFFF)).fetchone()
    if row is None:
        return None
    fields = dict(part.split("=", 1) for part in str(row[0]).split()[1:] if "=" in part)
    try:
        pid, start_time = int(fields["pid"]), float(fields["start"])
    except (KeyError, ValueError):  # an older daemon's name: enough to say who, not to signal it
        return {"pid": fields.get("pid", "?"), "host": host, "started_at": fields.get("since")}
    return {"pid": pid, "start_time": start_time, "boot_time": psutil.boot_time(), "host": host,
            "boot_id": boot_id(), "started_at": datetime.fromtimestamp(start_time, timezone.utc).isoformat()}


def _server_key(location: PostgresLocation, host: str) -> int:
    return _int32(f"{location.schema}/{host}")


def _connect(location: PostgresLocation, application_name: str) -> Any:
    import psycopg

    return psycopg.connect(host=location.host, port=location.port, user=location.user, password=location.password,
                           dbname=location.dbname, autocommit=True, connect_timeout=10,
                           application_name=application_name[:63], **location.connection_options())


def _int32(text: str) -> int:
    """A stable signed 32-bit key for ``text``."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big", signed=True)


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(temporary, path)
