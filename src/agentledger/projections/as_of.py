"""The read models as they stood at a past moment, rebuilt in a scratch database.

``list --as-of`` and ``status --as-of`` answer from the log, never from the
live read models: the events up to the moment are replayed into an in-memory
copy of the read-model schema, and the queries run there with "now" set to
the moment, so that fuse liveness (running or unwatched) is judged as it was
then. The live read models are not read or touched.

A moment is an ISO time (``2026-11-25T21:30:00Z``; without a zone, local
time), a time relative to now (``-15m``), or a log position (``@1234``: the
log up to and including that event, "now" being that event's time).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, NamedTuple

from agentledger.application.errors import UsageError
from agentledger.application.log import LogEntry, read_log
from agentledger.domain.durations import InvalidDuration, parse_duration
from agentledger.projections.catchup import Applied, project

if TYPE_CHECKING:
    from agentledger.application.ports import Queryable, Store

#: The read-model tables a scratch database copies (with their indexes) from the live one.
_TABLES = ("sessions", "fuses", "hosts", "locks", "session_documents", "projection_tracking", "archived_sessions")


class Moment(NamedTuple):
    """A point in the log's history: a time, a position, or both once resolved."""

    at: datetime | None = None
    position: int | None = None

    def describe(self) -> str:
        if self.position is not None and self.at is not None:
            return f"position {self.position} ({self.at.isoformat()})"
        if self.position is not None:
            return f"position {self.position}"
        assert self.at is not None
        return self.at.isoformat()


def parse_moment(text: str, now: datetime) -> Moment:
    """``@POSITION``, ``-DURATION`` (before ``now``) or an ISO 8601 time."""
    cleaned = text.strip()
    if cleaned.startswith("@"):
        digits = cleaned[1:]
        if not (digits.isascii() and digits.isdigit()):
            raise UsageError(f"invalid --as-of {text!r}: @ takes a log position, a whole number >= 0")
        return Moment(position=min(int(digits), 2**63 - 1))  # past any log: "past the end" once the log is read
    if cleaned.startswith("-"):
        try:
            return Moment(at=now.astimezone(timezone.utc) - timedelta(seconds=parse_duration(cleaned[1:])))
        except (InvalidDuration, OverflowError):  # OverflowError: before the year 1
            raise UsageError(f"invalid --as-of {text!r}: after '-' give a duration such as 15m or 2h") from None
    try:
        at = datetime.fromisoformat(cleaned.replace("z", "Z").replace("Z", "+00:00"))
        if at.tzinfo is None:
            at = at.astimezone()  # a time without a zone is the user's local time
        return Moment(at=at.astimezone(timezone.utc))
    except (ValueError, OverflowError):  # OverflowError: in UTC, outside the years 1 to 9999
        raise UsageError(
            f"invalid --as-of {text!r} (use an ISO time like 2026-11-25T21:30:00Z, -15m, or @POSITION)"
        ) from None


class Scratch(NamedTuple):
    db: Queryable  # the read models as of the moment
    now: float  # the moment, as the epoch seconds the queries compare fuses against
    moment: Moment  # resolved: both its time and the last position it includes
    applied: Applied


def read_models_as_of(store: Store, moment: Moment) -> Scratch:
    """Replay the log up to ``moment`` into a scratch in-memory copy of the read models."""
    _check_reachable(store, moment)
    db = _scratch(store)
    last = _Last()
    entries = last.track(_until(read_log(store.ledger, upto=moment.position), moment.at))
    with db:
        applied = project(db.cursor(), entries)
    at = moment.at or last.timestamp or datetime.now(timezone.utc)
    return Scratch(db, at.timestamp(), Moment(at=at, position=last.position or 0), applied)


def _check_reachable(store: Store, moment: Moment) -> None:
    """Refuse a moment the log has not reached: an answer for it would be today's state passed off as then."""
    if moment.at is not None and moment.at > datetime.now(timezone.utc):
        raise UsageError(f"--as-of {moment.at.isoformat()} is in the future; the log can only say what was")
    if moment.position is not None:
        head = store.ledger.recorder.max_notification_id() or 0
        if moment.position > head:
            raise UsageError(f"--as-of @{moment.position} is past the end of the log (its last position is {head})")


def _scratch(store: Store) -> sqlite3.Connection:
    """An empty in-memory copy of the read-model schema, with the archived sessions as they stand.

    From a SQLite store, its own table definitions (no Alembic import: fast);
    from a server, the migrations run on an in-memory SQLite database.
    ``archived_sessions`` is not replayed (the archived events left the log):
    its rows are copied, so a past view naming an archived session says where
    it went.
    """
    if not isinstance(store.db, sqlite3.Connection):
        from agentledger.infrastructure.schema import scratch_read_models

        db = scratch_read_models()
    else:
        db = sqlite3.connect(":memory:")
        db.row_factory = sqlite3.Row
        for (sql,) in store.db.execute(
            f"SELECT sql FROM sqlite_master WHERE tbl_name IN ({', '.join('?' * len(_TABLES))}) AND sql IS NOT NULL"
            " ORDER BY type = 'index'",
            _TABLES,
        ):
            db.execute(sql)
    archived = [tuple(row) for row in store.db.execute("SELECT * FROM archived_sessions").fetchall()]
    if archived:
        db.executemany(f"INSERT INTO archived_sessions VALUES ({', '.join('?' * len(archived[0]))})", archived)
    return db


def _until(entries: Iterable[LogEntry], at: datetime | None) -> Iterator[LogEntry]:
    """Events recorded at or before ``at`` (all of them without a time).

    Filtered by time, not cut at the first later one: two writers can commit in
    the other order than they took their timestamps.
    """
    for entry in entries:
        if at is None or entry.timestamp is None or entry.timestamp <= at:
            yield entry


class _Last:
    """Remembers the last entry that went through, for the resolved moment."""

    def __init__(self) -> None:
        self.position: int | None = None
        self.timestamp: datetime | None = None

    def track(self, entries: Iterable[LogEntry]) -> Iterator[LogEntry]:
        for entry in entries:
            self.position = entry.position
            if entry.timestamp is not None:
                self.timestamp = entry.timestamp
            yield entry
