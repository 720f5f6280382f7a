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
An insert runs between ``BEGIN`` and ``COMMIT`` sent as prepared statements,
with the rollback and the translation of ``sqlite3`` errors of the library's
``SQLiteTransaction`` (an ``IntegrityError`` is still the compare-and-set's
refusal); a select is one statement, atomic without a ``BEGIN``/``ROLLBACK``
around it. The pool closes
the held connection with the others.

The pool's connections keep SQLite's prepared statements as ``sqlite3`` does
by default (:data:`STATEMENT_CACHE`): the library opens them with a cache of
one, so SQLite compiled the insert anew for every append. Both are chosen
with :class:`LeanSQLiteFactory`, the ``PERSISTENCE_MODULE`` of
``store.ledger_env``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.persistence import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.sqlite import (
    SQLITE3_DEFAULT_LOCK_TIMEOUT,
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteDatastore,
    SQLiteFactory,
)

from agentledger.infrastructure.event_selects import select_events_sql

T = TypeVar("T")


#: The library's table of snapshots beside ``stored_events`` (its aggregate recorder for the "snapshots" purpose).
SNAPSHOTS_TABLE = "stored_snapshots"

#: Prepared statements each connection keeps: ``sqlite3``'s default. The library asks for
#: ``cached_statements=True``, a cache of one, where the ``BEGIN`` before each insert evicts the insert;
#: compiling it again was about a tenth of a ``save``'s instructions and a fifth of a ``change``'s
#: (``docs/BENCHMARKS.md``, issue 20).
STATEMENT_CACHE = 128


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
    """A write between ``BEGIN`` and ``COMMIT``, rolled back on any error, ``sqlite3``'s errors raised as the
    library's (what its ``SQLiteTransaction`` does, whose extra cursor wrapper and ``Connection.commit``, which
    prepares its ``COMMIT`` anew each time, cost ~8,000 instructions an append); a read of one statement on its
    own (SQLite runs a lone statement in a transaction of its own, and ``store_faults`` reads ``sqlite3``'s errors).
    """
    db = connection._sqlite_conn  # noqa: SLF001 - the library keeps its sqlite3 connection there
    if not commit:
        return work(db)
    try:
        cursor = db.cursor()
        try:
            cursor.execute("BEGIN")
            result = work(cursor)
            cursor.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.rollback()
            raise
        finally:
            cursor.close()
    except sqlite3.Error as error:
        raise _as_library_error(error) from error
    return result


#: ``sqlite3``'s errors and the library's they are raised as, subclasses first (``SQLiteTransaction``'s order).
_LIBRARY_ERRORS: tuple[tuple[type[sqlite3.Error], type[PersistenceError]], ...] = (
    (sqlite3.InterfaceError, InterfaceError), (sqlite3.DataError, DataError),
    (sqlite3.OperationalError, OperationalError), (sqlite3.IntegrityError, IntegrityError),
    (sqlite3.InternalError, InternalError), (sqlite3.ProgrammingError, ProgrammingError),
    (sqlite3.NotSupportedError, NotSupportedError), (sqlite3.DatabaseError, DatabaseError),
)


def _as_library_error(error: sqlite3.Error) -> PersistenceError:
    """The library's exception for ``error``: an ``IntegrityError`` is the compare-and-set's refusal."""
    kind = next((ours for theirs, ours in _LIBRARY_ERRORS if isinstance(error, theirs)), PersistenceError)
    return kind(error)


def _row(event: StoredEvent) -> tuple[str, int, str, bytes]:
    return _hex(event.originator_id), event.originator_version, event.topic, event.state


def _hex(originator_id: UUID | str) -> str:
    return originator_id.hex if isinstance(originator_id, UUID) else originator_id


class StatementCachingPool(SQLiteConnectionPool):
    """The library's pool, whose connections keep :data:`STATEMENT_CACHE` prepared statements."""

    def _create_connection(self) -> SQLiteConnection:
        """The library's connection (auto-commit, its lock timeout, WAL, ``sqlite3.Row``) with a statement cache."""
        try:
            db = sqlite3.connect(database=self.db_name, uri=True, check_same_thread=False, isolation_level=None,
                                 cached_statements=STATEMENT_CACHE,
                                 timeout=self.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT)
        except (sqlite3.Error, TypeError) as error:
            raise InterfaceError(error) from error
        if not self.is_sqlite_memory_mode and not self.is_journal_mode_wal:  # a file keeps its journal mode
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                db.execute("PRAGMA journal_mode=WAL")
                self.journal_mode_was_changed_to_wal = True
            self.is_journal_mode_wal = True
        db.row_factory = sqlite3.Row
        return SQLiteConnection(sqlite_conn=db, max_age=self.max_age)


class LeanSQLiteFactory(SQLiteFactory):
    """The library's SQLite factory with :class:`LeanSQLiteRecorder` and a :class:`StatementCachingPool`."""

    application_recorder_class = LeanSQLiteRecorder

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        library_pool = self.datastore.pool  # built by the library's datastore, no connection opened yet
        self.datastore.pool = StatementCachingPool(
            db_name=library_pool.db_name, lock_timeout=library_pool.lock_timeout, pool_size=library_pool.pool_size,
            max_overflow=library_pool.max_overflow, pool_timeout=library_pool.pool_timeout,
            max_age=library_pool.max_age, pre_ping=library_pool.pre_ping)
        library_pool.close()
