"""The ledger on PostgreSQL: the library's postgres module for the log, psycopg for the read models.

A :class:`PostgresStore` has the interface of the SQLite :class:`~agentledger.infrastructure.store.SqliteStore`
(``ledger``, ``db``, ``write_transaction``, ``event_position(s)``), so the
projections, queries, reconciler and CLI run unchanged on either. The read-model
SQL is written once, in SQLite's ``?`` / ``:name`` placeholder style;
:class:`ReadModels` rewrites it to psycopg's ``%s`` / ``%(name)s`` and returns
rows that, like ``sqlite3.Row``, index by position and by column name.

Catch-ups serialise on a transaction-scoped advisory lock, the counterpart of
SQLite's ``BEGIN IMMEDIATE``: two processes never apply the same events twice.
A holder that stops mid-transaction (``SIGSTOP``, a hung host) would hold it
for every process on the server: the server ends such a transaction after
:data:`IDLE_IN_WRITE_SECONDS` of silence, and the holder's next statement
fails as a lost connection, retried as any other.
First use (schema, event tables, read-model migrations) runs under an
advisory lock held by a transaction open meanwhile, so twenty processes
starting at once agree, directly or through a transaction pooler.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from agentledger.application.errors import StoreError
from agentledger.infrastructure.config import PostgresLocation
from agentledger.infrastructure.store_faults import classify
from agentledger.infrastructure.store_ports import StorePorts

if TYPE_CHECKING:
    pass

#: Advisory lock keys (any two distinct 64-bit numbers, fixed for all versions).
_INIT_LOCK = 0x6167_6C65_6467_0001
_CATCH_UP_LOCK = 0x6167_6C65_6467_0002
CONNECT_TIMEOUT = 5
#: A read-model write transaction silent this long is ended by the server (its statements follow each other
#: within milliseconds; only a stopped or hung process is silent for seconds).
IDLE_IN_WRITE_SECONDS = 10


class PgRow(tuple):
    """A result row readable as ``row[0]`` and ``row["column"]``, like ``sqlite3.Row``."""

    _columns: dict[str, int] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._columns[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._columns)


def _row_factory(cursor: Any) -> Any:
    columns = {column.name: i for i, column in enumerate(cursor.description or ())}
    row_class = type("Row", (PgRow,), {"_columns": columns, "__slots__": ()})
    return lambda values: row_class(values)


_NAMED = re.compile(r"(?<!:):([a-z_][a-z0-9_]*)")


@lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """SQLite placeholders to psycopg's: ``?`` -> ``%s``, ``:now`` -> ``%(now)s``."""
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%").replace("?", "%s"))


class ReadModelCursor:
    """The part of a DB-API cursor the projections and queries use, over psycopg."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> ReadModelCursor:
        self._cursor.execute(to_pyformat(sql), params or None)
        return self

    def executemany(self, sql: str, rows: Sequence[Any]) -> ReadModelCursor:
        rows = list(rows)
        if rows:
            self._cursor.executemany(to_pyformat(sql), rows)
        return self

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount


class ReadModels:
    """The read-model connection: autocommit outside :meth:`PostgresStore.write_transaction`.

    A connection the server dropped is replaced on next use, so that a retried
    catch-up or query gets a working one.
    """

    def __init__(self, location: PostgresLocation) -> None:
        self.location = location
        self._connection = connect(location)

    @property
    def connection(self) -> Any:
        if self._connection.closed or self._connection.broken:
            self._connection.close()
            self._connection = connect(self.location)
        return self._connection

    def cursor(self) -> ReadModelCursor:
        return ReadModelCursor(self.connection.cursor(row_factory=_row_factory))

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> ReadModelCursor:
        return self.cursor().execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Any]) -> ReadModelCursor:
        return self.cursor().executemany(sql, rows)

    def rollback(self) -> None:
        self.connection.rollback()

    def close(self) -> None:
        self._connection.close()


class PostgresStore(StorePorts):
    """An open PostgreSQL ledger: ``ledger`` appends and loads events, ``db`` reads and writes read models."""

    def __init__(self, location: PostgresLocation) -> None:
        self.location = location
        self._ledger: Any = None
        self.db = ReadModels(location)
        self._locks_on: Any = None  # the connection that holds the locks of hold_lock, with
        self._lock_function = "pg_try_advisory_lock"  # the function that takes them there (lock_for_life)

    @property
    def ledger(self) -> Any:
        if self._ledger is None:
            from agentledger.application.ledger import Ledger

            self._ledger = Ledger(env=ledger_env(self.location, create_tables=False), classify_fault=classify)
        return self._ledger

    @property
    def events_table(self) -> str:
        return events_table(self.location)

    position_column = "notification_id"

    def hold_lock(self, name: str) -> bool:
        """An advisory lock for the life of this store (one holder per ledger), True while this store holds it.

        The key is the lock's name within this ledger's schema, so two ledgers on one server each have their
        holder. The locks are held on a connection of their own for its life (:func:`lock_for_life`: by its
        session, or through a transaction pooler by a transaction left open). The server releases them when
        the connection ends, so a dead holder hands over; each call asks again (a lock already held is held
        again), so a lost connection is seen and replaced.
        """
        key = int.from_bytes(hashlib.blake2b(f"{self.location.schema}:{name}".encode(), digest_size=8).digest(),
                             "big", signed=True)
        if self._locks_on is None or self._locks_on.closed or self._locks_on.broken:
            if self._locks_on is not None:
                self._locks_on.close()
            self._locks_on = connect(self.location)
            self._lock_function = lock_for_life(self._locks_on, pooled=self.location.pooled)
        try:
            return bool(self._locks_on.execute(f"SELECT {self._lock_function}(%s)", (key,)).fetchone()[0])
        except Exception:
            self._locks_on.close()  # whatever it held is gone with it; the next call starts a new one
            raise

    def log_head(self) -> int:
        """The last log position, read on the read-model connection (no need to build the ledger)."""
        return self.db.execute(f"SELECT max(notification_id) FROM {self.events_table}").fetchone()[0] or 0

    def clock(self) -> float:
        """The store's clock: the server's ``clock_timestamp()``, half the round trip later (epoch seconds).

        On a connection of its own (read rarely: ``application/clock.py`` resyncs every few minutes), so
        that no thread's transaction on the read-model connection is touched.
        """
        connection = connect(self.location)
        try:
            asked = time.monotonic()
            (value,) = connection.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()
            return float(value) + (time.monotonic() - asked) / 2
        finally:
            connection.close()

    def event_positions(self, session_id_hex: str, after_version: int = 0) -> dict[int, int]:
        rows = self.db.execute(
            f"SELECT originator_version, notification_id FROM {self.events_table}"
            " WHERE originator_id = ? AND originator_version > ?",
            (session_id_hex, after_version),
        )
        return dict(rows.fetchall())

    def event_position(self, session_id_hex: str, version: int) -> int | None:
        row = self.db.execute(
            f"SELECT notification_id FROM {self.events_table} WHERE originator_id = ? AND originator_version = ?",
            (session_id_hex, version),
        ).fetchone()
        return row[0] if row else None

    @contextmanager
    def read_transaction(self) -> Iterator[ReadModelCursor]:
        """Reads that all see one snapshot of the read models, whoever writes meanwhile."""
        with self.db.connection.transaction():
            cursor = self.db.cursor()
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            yield cursor

    @contextmanager
    def write_transaction(self) -> Iterator[ReadModelCursor]:
        """A read-model transaction that holds the catch-up lock until it ends (or until it has been silent for
        :data:`IDLE_IN_WRITE_SECONDS`)."""
        with locked_transaction(self.db.connection, _CATCH_UP_LOCK, pooled=self.location.pooled):
            cursor = self.db.cursor()
            cursor.execute(f"SET LOCAL idle_in_transaction_session_timeout = '{IDLE_IN_WRITE_SECONDS}s'")
            yield cursor

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.recorder.release()  # the connection it keeps for appends (postgres_recorder.py)
            self._ledger.close()
        if self._locks_on is not None:
            self._locks_on.close()
        self.db.close()


def events_table(location: PostgresLocation) -> str:
    """The library's table of stored events, in the ledger's schema."""
    return f"{location.schema}.agentledger_events"


class ServerUnreachable(StoreError):
    """No connection to the ledger could be made at all: refused, unanswered within ``CONNECT_TIMEOUT`` (a
    pooler whose server is away holds the login until then), or the login refused."""


def connect(location: PostgresLocation) -> Any:
    """A psycopg connection in autocommit mode, searching the ledger's schema first (or, through a transaction
    pooler, preparing nothing: ``PostgresLocation.connection_options``)."""
    import psycopg

    try:
        return psycopg.connect(
            host=location.host, port=location.port, dbname=location.dbname, user=location.user,
            password=location.password, connect_timeout=CONNECT_TIMEOUT, autocommit=True,
            **location.connection_options(),
        )
    except psycopg.OperationalError as error:
        raise ServerUnreachable(f"cannot reach the PostgreSQL ledger {location.url}: {_first_line(error)}") from None


def ledger_env(location: PostgresLocation, *, create_tables: bool) -> dict[str, str]:
    """The eventsourcing settings for a PostgreSQL ledger."""
    from agentledger.infrastructure.schema import common_ledger_env

    env = {
        **common_ledger_env(create_tables),
        "PERSISTENCE_MODULE": "agentledger.infrastructure.postgres_recorder:LedgerPostgresFactory",
        "POSTGRES_DBNAME": location.dbname,
        "POSTGRES_HOST": location.host,
        "POSTGRES_PORT": str(location.port),
        "POSTGRES_USER": location.user,
        "POSTGRES_PASSWORD": location.password or "",
        "POSTGRES_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
        "POSTGRES_PRE_PING": "y",  # a connection lost while idle is replaced, not failed on
        # one connection kept (a supervisor appends one event every few seconds; the server's connections,
        # not its appends, are what a fleet of supervisors runs out of first: docs/scaling.md), up to six
        # while a daemon's threads append at once
        "POSTGRES_POOL_SIZE": "1",
        "POSTGRES_MAX_OVERFLOW": "5",
    }
    if location.schema != "public":
        env["POSTGRES_SCHEMA"] = location.schema
    if location.pooled:
        from agentledger.infrastructure.postgres_recorder import POOLER

        env[POOLER] = "transaction"  # read by the factory: no prepared statements
    return env


def open_postgres_store(location: PostgresLocation) -> PostgresStore:
    """Open the ledger, creating or upgrading it first if it is new or older than this code.

    The revision is read on the store's own read-model connection: a connection of its own for it was one
    more connection set up and torn down per command (a round trip or more, and TLS, to a remote server).
    """
    from agentledger.infrastructure.schema import SCHEMA_HEAD

    store = PostgresStore(location)
    try:
        revision = schema_revision(location, store.db.connection)
        if revision != SCHEMA_HEAD:
            from agentledger.infrastructure.schema import refuse_unknown_schema

            refuse_unknown_schema(revision, location.url)
            initialise(location)
    except BaseException:
        store.close()
        raise
    return store


def schema_revision(location: PostgresLocation, connection: Any = None) -> str | None:
    """The read-model schema revision recorded in the ledger's schema (None without the event tables), read on
    ``connection`` if given, else on one opened for it."""
    if connection is None:
        connection = connect(location)
        try:
            return schema_revision(location, connection)
        finally:
            connection.close()
    tables = {name for (name,) in connection.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
        " AND table_name IN ('alembic_version', 'agentledger_events')", (location.schema,))}
    if tables != {"alembic_version", "agentledger_events"}:
        return None
    row = connection.execute(f"SELECT version_num FROM {location.schema}.alembic_version").fetchone()
    return row[0] if row else None


def initialise(location: PostgresLocation) -> None:
    """Create the schema, the event tables, and migrate the read models, under the init lock."""
    from agentledger.application.ledger import Ledger
    from agentledger.infrastructure.schema import upgrade_to_head

    connection = connect(location)
    try:
        # Held by a transaction open meanwhile, not by the session: through a transaction pooler a session lock
        # would stay with the server connection the pooler lent, and every later start would wait on it.
        with locked_transaction(connection, _INIT_LOCK, pooled=location.pooled):
            schema_maker = connect(location)  # the schema must be there, committed, for the connections below
            try:
                schema_maker.execute(f"CREATE SCHEMA IF NOT EXISTS {location.schema}")
            finally:
                schema_maker.close()
            Ledger(env=ledger_env(location, create_tables=True)).close()
            upgrade_to_head(location)
    finally:
        connection.close()


def lock_for_life(connection: Any, *, pooled: bool) -> str:
    """The function that takes an advisory lock on ``connection`` for as long as the connection lives.

    Directly, ``pg_try_advisory_lock``: a session lock, released when the session ends. Through a transaction
    pooler a session lock would stay with the server connection the pooler lent, which it lends on to others,
    lock and all, and keeps after this client is gone; so there ``connection`` is left in a transaction, and
    the lock is ``pg_try_advisory_xact_lock``, held until the transaction ends with the connection. That
    transaction runs nothing but the locks, so it holds no snapshot and keeps no row from vacuum; a server-wide
    ``idle_in_transaction_session_timeout`` would end it, so it is off for this transaction only.
    """
    if not pooled:
        return "pg_try_advisory_lock"
    connection.execute("BEGIN")
    connection.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
    return "pg_try_advisory_xact_lock"


#: Through a pooler, the longest pause between two tries at a taken lock.
LOCK_POLL_SECONDS = 0.05


@contextmanager
def locked_transaction(connection: Any, key: int, *, pooled: bool) -> Iterator[None]:
    """A transaction on ``connection`` that holds the advisory lock ``key`` until it ends.

    Directly, it waits on the server for the lock. Through a transaction pooler a waiting transaction would
    keep one of the pool's few server connections, and a holder that needs a second one meanwhile (the
    catch-up reads the log on the ledger's connection; the first start creates tables on others) would wait
    for ever once the waiters have them all; so there the lock is tried, and between tries the transaction
    ends and gives its server connection back.
    """
    pause = 0.002
    while True:
        with connection.transaction():
            if not pooled:
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
                yield
                return
            if connection.execute("SELECT pg_try_advisory_xact_lock(%s)", (key,)).fetchone()[0]:
                yield
                return
        time.sleep(pause)
        pause = min(pause * 2, LOCK_POLL_SECONDS)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
