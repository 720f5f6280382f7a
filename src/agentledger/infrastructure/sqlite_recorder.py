"""The library's SQLite recorder, with its two hot statements sent straight on a pooled connection.

Every command appends through ``insert_events`` and loads through
``select_events``. The library wraps each in four nested generator context
managers (datastore transaction, connection, connection transaction, cursor)
around the pool, whose every checkout takes a condition and two locks; on a
tmpfs store, where SQLite itself costs about 14 µs an append, that wrapping
cost about as much again (issue 20).

Here the recorder keeps one connection of the pool's for itself, behind a
plain lock. A thread that finds it busy (another thread is appending) takes a
connection from the pool as before, so nobody waits on anybody's disk sync.
An insert runs in the library's own ``SQLiteTransaction``, which keeps its
rollback and its translation of ``sqlite3`` errors (an ``IntegrityError`` is
still the compare-and-set's refusal); a select is one statement, atomic
without a ``BEGIN``/``ROLLBACK`` around it. The pool closes
the held connection with the others. Chosen by ``APPLICATION_RECORDER_TOPIC``
in ``store.ledger_env``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteConnection, SQLiteDatastore, SQLiteTransaction

from agentledger.infrastructure.event_selects import select_events_sql

T = TypeVar("T")


#: The library's table of snapshots beside ``stored_events`` (its aggregate recorder for the "snapshots" purpose).
SNAPSHOTS_TABLE = "stored_snapshots"


class LeanSQLiteRecorder(SQLiteApplicationRecorder):
    """``SQLiteApplicationRecorder`` with a lean ``insert_events`` and ``select_events`` (same SQL, same results),
    which also records snapshots in the events' transaction (``Ledger.save``)."""

    records_snapshots = True

    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name)
        self._held: SQLiteConnection | None = None
        self._held_lock = threading.Lock()

    def insert_events(self, stored_events: Sequence[StoredEvent], *, snapshots: Sequence[StoredEvent] = (),
                      **kwargs: Any) -> Sequence[int] | None:
        """Insert the events (a taken version is the compare-and-set's ``IntegrityError``) and ``snapshots``
        (one already there at that version is the same state, and is kept), in one transaction."""
        def insert(cursor: Any) -> list[int]:
            positions = []
            for event in stored_events:
                cursor.execute(self.insert_events_statement, _row(event))
                positions.append(cursor.lastrowid)
            if snapshots:
                cursor.executemany(f"INSERT OR IGNORE INTO {SNAPSHOTS_TABLE} VALUES (?,?,?,?)", map(_row, snapshots))
            return positions

        return self._in_transaction(insert, commit=True)

    def select_events(self, originator_id: UUID | str, *, gt: int | None = None, lte: int | None = None,
                      desc: bool = False, limit: int | None = None) -> Sequence[StoredEvent]:
        statement, params = select_events_sql(self.select_events_statement.rstrip(), _hex(originator_id), gt=gt,
                                              lte=lte, desc=desc, limit=limit, mark="?")
        rows = self._in_transaction(lambda db: db.execute(statement, params).fetchall(), commit=False)
        convert = self.convert_originator_id
        return [StoredEvent(originator_id=convert(row[0]), originator_version=row[1], topic=row[2], state=row[3])
                for row in rows]

    def _in_transaction(self, work: Callable[[Any], T], *, commit: bool) -> T:
        """``work(cursor)`` in one transaction, on the held connection if it is free, else on one from the pool."""
        if self._held_lock.acquire(blocking=False):
            try:
                if self._held is None:
                    self._held = self.datastore.pool.get_connection()
                return _run(self._held, work, commit)
            finally:
                self._held_lock.release()
        pool = self.datastore.pool
        connection = pool.get_connection(is_writer=commit)
        try:
            return _run(connection, work, commit)
        finally:
            pool.put_connection(connection)


def _run(connection: SQLiteConnection, work: Callable[[Any], T], commit: bool) -> T:
    """A write in the library's transaction (rollback, errors translated); a read of one statement on its own
    (SQLite runs a lone statement in a transaction of its own, and ``store_faults`` reads ``sqlite3``'s errors)."""
    if not commit:
        return work(connection._sqlite_conn)  # noqa: SLF001 - the library keeps its sqlite3 connection there
    with SQLiteTransaction(connection, commit=commit) as cursor:
        try:
            return work(cursor.sqlite_cursor)
        finally:
            cursor.sqlite_cursor.close()


def _row(event: StoredEvent) -> tuple[str, int, str, bytes]:
    return _hex(event.originator_id), event.originator_version, event.topic, event.state


def _hex(originator_id: UUID | str) -> str:
    return originator_id.hex if isinstance(originator_id, UUID) else originator_id
