"""The library's PostgreSQL recorder, appending in three round trips and loading in one, on a connection it keeps.

An append is the library's transaction, statement for statement: ``SET LOCAL
lock_timeout``, ``LOCK TABLE … IN EXCLUSIVE MODE`` (so that notification ids
commit in the order they are issued and a follower never passes a gap),
``NOTIFY``, the ``INSERT … RETURNING notification_id``, ``COMMIT``. The library
sends them in psycopg's pipeline mode, through the pool (a liveness check per
checkout) and a composite-array parameter; that client-side machinery cost
about 390 µs of this process's CPU per append where the same statements sent
one by one on a plain connection cost 120 µs (issue 20,
``scripts/bench_postgres.py``). With many supervisors on one host, the
clients' CPU, not the server, is what limits appends.

Here the recorder keeps one of the pool's connections for itself, behind a
plain lock (a thread that finds it busy appends through the library's own path
on another pooled connection), and sends ``BEGIN`` with the three statements
that take no parameter as one simple query, then the ``INSERT`` with plain
parameters, then ``COMMIT``: three round trips instead of six. A uniqueness
violation (the compare-and-set's refusal) is raised by the ``INSERT`` and
turned into the library's ``IntegrityError`` as its datastore does; any other
error gives the connection back to the pool (which drops a broken one) and is
raised for the caller's retry. A load's ``select_events`` runs on the same
connection as one statement (the connection is in autocommit, so it is its
own transaction), without the pool's check. A snapshot due with the events is
inserted in their transaction, on that connection too. So a supervisor holds one
server connection, where a fleet's supervisors run the server out of
connections first (``docs/scaling.md``). Chosen with :class:`LedgerPostgresFactory`,
the ``PERSISTENCE_MODULE`` of ``postgres_store.ledger_env``, which also turns
prepared statements off behind a transaction pooler.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg
import psycopg.rows
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore, PostgresFactory

from agentledger.infrastructure.event_selects import select_events_sql


class PlainPostgresRecorder(PostgresApplicationRecorder):
    """``PostgresApplicationRecorder`` whose ``insert_events`` runs on a kept connection, in three round trips,
    and records snapshots in the events' transaction there (``Ledger.save``)."""

    records_snapshots = True

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        _open_filled(datastore.pool)
        super().__init__(datastore, events_table_name=events_table_name)
        self._held: Any = None  # (pool connection, its cursor), taken on first use
        self._held_lock = threading.Lock()
        schema, table = datastore.schema, self.events_table_name
        self._opening = (f"BEGIN; SET LOCAL lock_timeout = '{datastore.lock_timeout}s';"
                         f' LOCK TABLE "{schema}"."{table}" IN EXCLUSIVE MODE; NOTIFY "{self.channel_name}"')
        self._insert = (f'INSERT INTO "{schema}"."{table}" (originator_id, originator_version, topic, state)'
                        " VALUES (%s, %s, %s, %s) RETURNING notification_id")
        self._select_events = (f'SELECT originator_id, originator_version, topic, state FROM "{schema}"."{table}"'
                               " WHERE originator_id = %s")
        # The library names an application's tables NAME_events and NAME_snapshots (PostgresFactory).
        snapshots = f"{table.rsplit('_', 1)[0]}_snapshots"
        self._insert_snapshot = (f'INSERT INTO "{schema}"."{snapshots}" (originator_id, originator_version, topic,'
                                 " state) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING")

    def insert_events(self, stored_events: Sequence[StoredEvent], *, snapshots: Sequence[StoredEvent] = (),
                      **kwargs: Any) -> Sequence[int] | None:
        """Insert the events and ``snapshots`` in one transaction on the kept connection: a snapshot through the
        library's snapshot store would take a second connection from the pool, kept for ten idle minutes, every
        200 events of every supervisor. If another thread is appending on it, the events go through the
        library's path on a pooled connection, and the snapshots after them on the same."""
        if stored_events and self._held_lock.acquire(blocking=False):
            try:
                return self._insert_held(stored_events, snapshots)
            finally:
                self._held_lock.release()
        positions = super().insert_events(stored_events, **kwargs)
        if snapshots:
            self._insert_snapshots_pooled(snapshots)
        return positions

    def _insert_snapshots_pooled(self, snapshots: Sequence[StoredEvent]) -> None:
        """Snapshots just after their events were saved: one refused for a passing fault (the server out of
        reach, a lock timeout) is skipped, as ``Ledger._put_snapshots`` skips it, for a snapshot only speeds
        loads up and the save has landed; any other error is a bug, and raised."""
        try:
            with self.datastore.transaction(commit=True) as cursor:
                cursor.executemany(self._insert_snapshot, [_row(s) for s in snapshots])
        except (InterfaceError, OperationalError):
            pass

    def select_events(self, originator_id: UUID | str, *, gt: int | None = None, lte: int | None = None,
                      desc: bool = False, limit: int | None = None) -> Sequence[StoredEvent]:
        """A session's events (every load's fast-forward) in one statement on the kept connection, if free."""
        if not self._held_lock.acquire(blocking=False):
            return super().select_events(originator_id, gt=gt, lte=lte, desc=desc, limit=limit)
        try:
            connection, cursor = self._held or self._take()
            statement, params = select_events_sql(self._select_events, originator_id, gt=gt, lte=lte, desc=desc,
                                                  limit=limit, mark="%s")
            try:
                rows = cursor.execute(statement, params).fetchall()
            except BaseException:
                self._give_back()
                raise
        finally:
            self._held_lock.release()
        return [StoredEvent(originator_id=row[0], originator_version=row[1], topic=row[2], state=row[3])
                for row in rows]

    def _insert_held(self, stored_events: Sequence[StoredEvent], snapshots: Sequence[StoredEvent]) -> list[int]:
        connection, cursor = self._held or self._take()
        try:
            cursor.execute(self._opening)
            positions = []
            for event in stored_events:
                cursor.execute(self._insert, _row(event))
                positions.append(cursor.fetchone()[0])
            for snapshot in snapshots:
                cursor.execute(self._insert_snapshot, _row(snapshot))
            cursor.execute("COMMIT")
            return positions
        except psycopg.IntegrityError as error:
            cursor.execute("ROLLBACK")
            raise IntegrityError(str(error)) from error
        except BaseException:
            self._give_back()
            raise

    def _take(self) -> tuple[Any, Any]:
        """A connection of the pool's kept for appends and loads, and its cursor."""
        self.datastore.pool.open()  # the library opens it on first use; a no-op once open
        connection = self.datastore.pool.getconn()
        self._held = (connection, connection.cursor(row_factory=psycopg.rows.tuple_row))
        return self._held

    def release(self) -> None:
        """Give the kept connection back before the pool closes (``PostgresStore.close``)."""
        with self._held_lock:
            self._give_back()

    def _give_back(self) -> None:
        """Return the kept connection to the pool (which closes it if it is broken); the next append takes one."""
        if self._held is None:
            return
        connection, _ = self._held
        self._held = None
        try:
            if not connection.closed:
                connection.rollback()
        except psycopg.Error:
            pass  # broken: the pool discards it
        finally:
            self.datastore.pool.putconn(connection)


def _row(event: StoredEvent) -> tuple[Any, int, str, bytes]:
    return event.originator_id, event.originator_version, event.topic, event.state


def _open_filled(pool: Any) -> None:
    """Open the library's pool and wait for its connection (``POSTGRES_POOL_SIZE``, one).

    The library's constructor makes its first request (for its type adapters)
    right after opening the pool without waiting, and a request that finds the
    pool still below its size makes it open another connection: every process
    then kept two, the second idle for ten minutes before the pool closed it,
    where a supervisor needs one (``tests/test_server_connections.py``). Later
    opens are no-ops.
    """
    try:
        pool.open(wait=True, timeout=pool.timeout)
    except psycopg.OperationalError as error:  # PoolTimeout: unreachable, as the library reports it
        raise OperationalError(str(error)) from error


#: The ledger setting (``postgres_store.ledger_env``) saying the server is reached through a transaction pooler.
POOLER = "POSTGRES_POOLER"


class LedgerPostgresFactory(PostgresFactory):
    """The library's PostgreSQL factory with :class:`PlainPostgresRecorder`; behind a transaction pooler
    (``POSTGRES_POOLER=transaction``) its pool's connections prepare nothing.

    The library prepares its statements (``prepare=True``), and psycopg prepares any statement run five
    times: a prepared statement lives in one server session, which a transaction pooler hands to another
    client after each transaction ("prepared statement "_pg3_0" already exists", or does not exist).
    """

    application_recorder_class = PlainPostgresRecorder

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        if self.env.get(POOLER) == "transaction":  # the pool opens no connection before its recorder is made
            kwargs = self.datastore.pool.kwargs
            assert isinstance(kwargs, dict)  # the library's datastore gives its pool a dict
            self.datastore.pool.kwargs = {**kwargs, "prepare_threshold": None}
