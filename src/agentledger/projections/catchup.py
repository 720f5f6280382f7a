"""Keeping the read models level with the log.

``catch_up`` reads the notifications after the tracked position and applies
them with the new position in one write transaction. It is what makes every
read "see its own writes": each query command calls it first. ``rebuild``
empties the read models and replays the whole log the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from agentledger.application.log import Applied, LogEntry, read_log
from agentledger.application.retry import retry_while_locked
from agentledger.infrastructure.store_faults import StoreFault, classify

if TYPE_CHECKING:
    from agentledger.application.ports import Cursor, Queryable, Store

#: The read models' row in ``projection_tracking``: how far into the log they are.
PROJECTION_NAME = "sessions"

READ_MODEL_TABLES = ("sessions", "fuses", "hosts", "locks", "session_documents")


def tracked_position(db: Queryable) -> int:
    row = db.execute(
        "SELECT position FROM projection_tracking WHERE name = ?", (PROJECTION_NAME,)
    ).fetchone()
    return row[0] if row else 0


#: Log entries after which held-back heartbeats are written even mid-catch-up: a long stretch of heartbeats
#: (a rebuild, a catch-up after hours) keeps writing, so its transaction is never silent for long (PostgreSQL
#: ends a read-model write silent for ``postgres_store.IDLE_IN_WRITE_SECONDS``), and holds bounded memory.
FLUSH_EVERY = 5000


def catch_up(store: Store) -> Applied:
    """Apply every event not yet projected."""
    head = store.log_head()
    if head <= tracked_position(store.db):
        return Applied(0, [])

    def apply() -> Applied:
        with store.write_transaction() as cursor:
            return _apply_from(store, cursor, tracked_position(cursor))

    return retry_while_locked(apply, classify)


def catch_up_if_writable(store: Store) -> tuple[Applied | None, StoreFault | None]:
    """:func:`catch_up`, unless the store refuses writes (full, read-only): then the read models stay as far
    as they got, still readable, and the fault says why (None, fault). Any other error is raised."""
    try:
        return catch_up(store), None
    except Exception as error:
        fault = classify(error)
        if fault not in (StoreFault.FULL, StoreFault.READ_ONLY):
            raise
        try:
            store.db.rollback()
        except Exception:  # noqa: BLE001 - nothing was open
            pass
        return None, fault


def rebuild(store: Store) -> Applied:
    """Drop the read models' rows and replay the whole log into them, atomically."""

    def replay() -> Applied:
        with store.write_transaction() as cursor:
            for table in READ_MODEL_TABLES:
                cursor.execute(f"DELETE FROM {table}")
            cursor.execute("DELETE FROM projection_tracking WHERE name = ?", (PROJECTION_NAME,))
            return _apply_from(store, cursor, 0)

    return retry_while_locked(replay, classify)


def project(cursor: Cursor, entries: Iterable[LogEntry]) -> Applied:
    """Apply ``entries`` to the read-model tables behind ``cursor``; unreadable ones are skipped.

    An event this version cannot read is skipped rather than stopping every
    command that catches up; ``agentledger verify`` reports it, and a rebuild
    by a version that can read it applies it.
    """
    return _project(cursor, entries)[0]


def _project(cursor: Cursor, entries: Iterable[LogEntry]) -> tuple[Applied, int | None]:
    """:func:`project`, and the position of the last entry (None if there was none).

    The projection (and with it the domain and ``eventsourcing``) is imported
    here, when there is something to apply: a read command on read models that
    are level with the log never loads it (``tests/test_startup.py``).
    """
    from agentledger.projections.sessions import SessionsProjection

    projection = SessionsProjection(cursor)
    defer = projection.defer
    applied, skipped = 0, []
    last = None
    for read, entry in enumerate(entries, 1):
        event, last = entry.event, entry.position
        if event is None:
            skipped.append(entry)
        else:
            assert last is not None, "the log is read with positions"
            defer(event, last)  # heartbeats are written, coalesced, by flush()
            applied += 1
        if read % FLUSH_EVERY == 0:
            projection.flush()
    projection.settle()
    return Applied(applied, skipped), last


def _apply_from(store: Store, cursor: Cursor, position: int) -> Applied:
    result, last = _project(cursor, read_log(store.ledger, after=position))
    if last is not None and last != position:
        cursor.execute(
            "INSERT INTO projection_tracking (name, position) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            (PROJECTION_NAME, last),
        )
    return result
