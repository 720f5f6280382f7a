"""Keeping the read models level with the log.

``catch_up`` reads the notifications after the tracked position and applies
them with the new position in one write transaction. It is what makes every
read "see its own writes": each query command calls it first. ``rebuild``
empties the read models and replays the whole log the same way.
"""

from __future__ import annotations

import sqlite3

from agentledger.application.retry import retry_while_locked
from agentledger.infrastructure.store import Store
from agentledger.projections.sessions import PROJECTION_NAME, SessionsProjection

PAGE_SIZE = 1000
READ_MODEL_TABLES = ("sessions", "fuses")


def tracked_position(db: sqlite3.Connection | sqlite3.Cursor) -> int:
    row = db.execute(
        "SELECT position FROM projection_tracking WHERE name = ?", (PROJECTION_NAME,)
    ).fetchone()
    return row[0] if row else 0


def catch_up(store: Store) -> int:
    """Apply every event not yet projected; return how many were applied."""
    head = store.ledger.recorder.max_notification_id() or 0
    if head <= tracked_position(store.db):
        return 0

    def apply() -> int:
        with store.write_transaction() as cursor:
            return _apply_from(store, cursor, tracked_position(cursor))

    return retry_while_locked(apply)


def rebuild(store: Store) -> int:
    """Drop the read models' rows and replay the whole log into them, atomically."""

    def replay() -> int:
        with store.write_transaction() as cursor:
            for table in READ_MODEL_TABLES:
                cursor.execute(f"DELETE FROM {table}")
            cursor.execute("DELETE FROM projection_tracking WHERE name = ?", (PROJECTION_NAME,))
            return _apply_from(store, cursor, 0)

    return retry_while_locked(replay)


def _apply_from(store: Store, cursor: sqlite3.Cursor, position: int) -> int:
    ledger = store.ledger
    projection = SessionsProjection(cursor)
    applied = 0
    start = position
    while True:
        page = ledger.recorder.select_notifications(
            start=position, limit=PAGE_SIZE, inclusive_of_start=False
        )
        for notification in page:
            projection.process(ledger.mapper.to_domain_event(notification), notification.id)
            position = notification.id
        applied += len(page)
        if len(page) < PAGE_SIZE:
            break
    if position != start:
        cursor.execute(
            "INSERT INTO projection_tracking (name, position) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            (PROJECTION_NAME, position),
        )
    return applied
