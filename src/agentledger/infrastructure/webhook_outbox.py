"""The webhook outbox port (``application/ports.py: WebhookOutbox``) as SQL on one store's read-model connection.

The tables are ``webhook_deliveries`` (keyed ``UNIQUE (endpoint, event_id,
hook_type)``, so a delivery offered twice is stored once) and
``webhook_positions`` (each endpoint's place in the log). What goes in them,
and when, is decided by ``application/webhooks.py``; this only reads and
writes them, each write in one transaction. The SQL is written once, in
SQLite's placeholder style: the PostgreSQL store rewrites it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentledger.application.ports import Attempt, NewDelivery, Queryable, Row, Store

#: The columns a listing shows: everything but the body.
COLUMNS = ("id, endpoint, event_id, hook_type, position, session_id, state, attempts, created_at, next_attempt_at,"
           " first_attempt_at, last_attempt_at, delivered_at, last_status, last_error")


class SqlWebhookOutbox:
    def __init__(self, store: Store) -> None:
        self.store = store

    # the enqueuer's side

    def positions(self, endpoints: Sequence[str]) -> dict[str, int]:
        return _positions(self.store.db, endpoints)

    def add_positions(self, starts: Mapping[str, int]) -> None:
        with self.store.write_transaction() as cursor:
            cursor.executemany(
                "INSERT INTO webhook_positions (endpoint, position) VALUES (?, ?) ON CONFLICT (endpoint) DO NOTHING",
                list(starts.items()),
            )

    def add_deliveries(self, deliveries: Sequence[NewDelivery], *, read_at: Mapping[str, int], upto: int) -> bool:
        """Checks the positions under the write lock: another enqueuer may have written this stretch meanwhile."""
        with self.store.write_transaction() as cursor:
            if _positions(cursor, list(read_at)) != dict(read_at):
                return False
            cursor.executemany(
                "INSERT INTO webhook_deliveries (endpoint, event_id, hook_type, position, session_id, payload, state,"
                " attempts, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)"
                " ON CONFLICT (endpoint, event_id, hook_type) DO NOTHING",
                [(*delivery, delivery.created_at) for delivery in deliveries],  # due as soon as it is written
            )
            cursor.executemany(
                "UPDATE webhook_positions SET position = ? WHERE endpoint = ? AND position < ?",
                [(upto, name, upto) for name in read_at],
            )
        return True

    # the workers' side

    def pending(self, endpoint: str, limit: int, due_at: float | None = None) -> list[Row]:
        if due_at is None:
            return self.store.db.execute(_PENDING + " ORDER BY d.id LIMIT :limit",
                                         {"endpoint": endpoint, "limit": limit}).fetchall()
        return self.store.db.execute(_PENDING + _DUE + " ORDER BY d.id LIMIT :limit",
                                     {"endpoint": endpoint, "limit": limit, "now": due_at}).fetchall()

    def mark_delivered(self, attempts: Sequence[Attempt]) -> None:
        if not attempts:
            return
        with self.store.write_transaction() as cursor:
            cursor.executemany(
                "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1,"
                " first_attempt_at = COALESCE(first_attempt_at, ?), last_attempt_at = ?, delivered_at = ?,"
                " last_status = ?, last_error = NULL, next_attempt_at = NULL WHERE id = ? AND state = 'pending'",
                [(a.started, a.started, a.ended, a.outcome.status, a.delivery_id) for a in attempts],
            )

    def mark_failed(self, attempt: Attempt, *, state: str, retry_at: float | None, error: str) -> None:
        with self.store.write_transaction() as cursor:
            cursor.execute(
                "UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1,"
                " first_attempt_at = COALESCE(first_attempt_at, ?), last_attempt_at = ?, next_attempt_at = ?,"
                " last_status = ?, last_error = ? WHERE id = ? AND state = 'pending'",
                (state, attempt.started, attempt.started, retry_at, attempt.outcome.status, error,
                 attempt.delivery_id),
            )

    # the CLI's side

    def deliveries(self, *, dead_only: bool, endpoint: str | None, limit: int) -> list[Row]:
        where, params = [], []
        if dead_only:
            where.append("state = 'dead'")
        if endpoint:
            where.append("endpoint = ?")
            params.append(endpoint)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return self.store.db.execute(f"SELECT {COLUMNS} FROM webhook_deliveries{clause} ORDER BY id DESC LIMIT ?",
                                     (*params, limit)).fetchall()

    def requeue(self, ids: Sequence[int] | None, *, now: float, check: Callable[[list[Row]], None]) -> list[Row]:
        """The rows as they were; ``check`` raising rolls the transaction back, so nothing is re-queued."""
        with self.store.write_transaction() as cursor:
            rows = _requeued(cursor, ids)
            check(rows)
            cursor.executemany(
                "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, first_attempt_at = NULL,"
                " next_attempt_at = ? WHERE id = ? AND state = 'dead'",
                [(now, r["id"]) for r in rows],
            )
        return rows


def _positions(db: Queryable, endpoints: Sequence[str]) -> dict[str, int]:
    marks = ", ".join("?" * len(endpoints))
    rows = db.execute(f"SELECT endpoint, position FROM webhook_positions WHERE endpoint IN ({marks})", endpoints)
    return {r[0]: r[1] for r in rows.fetchall()}


def _requeued(cursor: Queryable, ids: Sequence[int] | None) -> list[Row]:
    """The rows ``ids`` name, or every dead one, in id order."""
    if ids is None:
        return cursor.execute(f"SELECT {COLUMNS} FROM webhook_deliveries WHERE state = 'dead' ORDER BY id").fetchall()
    marks = ", ".join("?" * len(ids))
    return cursor.execute(f"SELECT {COLUMNS} FROM webhook_deliveries WHERE id IN ({marks}) ORDER BY id",
                          ids).fetchall()


_PENDING = (
    "SELECT d.id, d.session_id, d.event_id, d.hook_type, d.payload, d.attempts, d.first_attempt_at,"
    " d.next_attempt_at FROM webhook_deliveries d WHERE d.endpoint = :endpoint AND d.state = 'pending'"
)
#: Due now, and not behind an earlier delivery of the same session that is not: one session's backoff holds
#: back its own later deliveries only.
_DUE = (
    " AND COALESCE(d.next_attempt_at, 0) <= :now AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e"
    " WHERE e.endpoint = d.endpoint AND e.state = 'pending' AND e.session_id = d.session_id AND e.id < d.id"
    " AND COALESCE(e.next_attempt_at, 0) > :now)"
)
