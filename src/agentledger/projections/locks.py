"""The ``locks`` read model: one row per claim on a directory (``DirectoryLock.Taken``), and how it ended.

Whether a lock is held is a rule (``domain/locks.py: lock_held``) over the
directory's current claim and its holder session's status, and a session
stops by its own ``Stopped``, not by an event of the lock. So the rows keep
only the lock's facts, and the queries join ``sessions`` for the holder's
status at the moment they are asked: a lock whose holder stopped reads free
the instant the ``Stopped`` is projected, with nothing to update here.

Its handlers are an extension of the sessions projection (``extension.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentledger.domain.locks import DirectoryLock
from agentledger.domain.vocabulary import SessionStatus
from agentledger.projections.extension import Projecting

if TYPE_CHECKING:
    from agentledger.application.ports import Queryable


def taken(projection: Projecting, event: DirectoryLock.Taken, position: int) -> None:
    """A claim: the directory's current one ends here, and this one begins."""
    lock = event.originator_id.hex
    at = event.timestamp.timestamp()
    projection.cursor.execute(
        "UPDATE locks SET superseded_at = ?, superseded_by = ?, superseded_forced = ?"
        " WHERE lock_id = ? AND superseded_at IS NULL",
        (at, event.holder_session, int(event.forced), lock),
    )
    taker = event.taker or {}
    projection.cursor.execute(
        "INSERT INTO locks (lock_id, version, directory, holder_session, manual, forced, displaced, taken_at,"
        " taken_by, reason, taker_pid, taker_start_time, taker_boot_time, taker_host, taker_boot_id, position)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (lock, event.originator_version, event.directory, event.holder_session, int(event.manual),
         int(event.forced), event.displaced, at, event.by, event.reason, taker.get("pid"),
         taker.get("start_time"), taker.get("boot_time"), taker.get("host"), taker.get("boot_id"), position),
    )


def released(projection: Projecting, event: DirectoryLock.Released, position: int) -> None:
    projection.cursor.execute(
        "UPDATE locks SET released_at = ?, released_by = ?, release_reason = ? WHERE lock_id = ? AND version = ?",
        (event.timestamp.timestamp(), event.by, event.reason, event.originator_id.hex, event.taken_version),
    )


HANDLERS: dict[type, Callable[[Any, Any, int], None]] = {DirectoryLock.Taken: taken, DirectoryLock.Released: released}

#: Each claim with its holder's session row (null columns: not recorded yet, or a manual lock).
_LOCKS = (
    "SELECT l.*, s.name AS holder_name, s.adapter AS holder_adapter, s.started_at AS holder_started_at,"
    " s.stopped_at AS holder_stopped_at, s.status AS holder_recorded_status, s.fuse_state, s.fuse_expires_at,"
    " s.status, h.daemon_last_seen + {beats} * h.heartbeat_every AS host_silent_from,"
    " a.session_id AS holder_archived"
    " FROM locks l LEFT JOIN sessions s ON s.id = l.holder_session LEFT JOIN hosts h ON h.host_name = s.host"
    " LEFT JOIN archived_sessions a ON a.session_id = l.holder_session"
)


def current_locks(db: Queryable, now: float) -> list[dict[str, Any]]:
    """Every directory's current claim, newest first, with its holder's status now (None: not recorded)."""
    return _rows(db, f"{_query()} WHERE l.superseded_at IS NULL ORDER BY l.taken_at DESC", (), now)


def claims_of_session(db: Queryable, session_id: str, now: float) -> list[dict[str, Any]]:
    """The claims ``session_id`` made or was displaced from, oldest first."""
    return _rows(db, f"{_query()} WHERE l.holder_session = ? OR l.displaced = ? ORDER BY l.taken_at, l.version",
                 (session_id, session_id), now)


def _query() -> str:
    from agentledger.projections.queries import SILENT_AFTER_BEATS

    return _LOCKS.format(beats=SILENT_AFTER_BEATS)


def _rows(db: Queryable, sql: str, params: tuple[Any, ...], now: float) -> list[dict[str, Any]]:
    out = []
    for row in db.execute(sql, params).fetchall():
        record = {key: row[key] for key in _COLUMNS}
        record["manual"], record["forced"] = bool(row["manual"]), bool(row["forced"])
        record["superseded_forced"] = bool(row["superseded_forced"]) if row["superseded_forced"] is not None else None
        record["holder_status"] = _holder_status(row, now)
        out.append(record)
    return out


def _holder_status(row: Any, now: float) -> str | None:
    """The holder's status now; an archived holder (``db archive``) is stopped; None: not recorded (yet)."""
    from agentledger.projections.queries import current_status

    if row["holder_recorded_status"] is not None:
        return current_status(row, now)
    return SessionStatus.STOPPED.value if row["holder_archived"] is not None else None


_COLUMNS = ("lock_id", "version", "directory", "holder_session", "displaced", "taken_at", "taken_by", "reason",
            "taker_pid", "taker_start_time", "taker_boot_time", "taker_host", "taker_boot_id", "released_at",
            "released_by", "release_reason", "superseded_at", "superseded_by", "position", "holder_name",
            "holder_adapter", "holder_started_at", "holder_stopped_at")
