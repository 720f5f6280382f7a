"""Opening the store: the event log (eventsourcing) and the read models beside it.

The embedded default is one SQLite file holding the library's event tables and
our Alembic-managed read-model tables. Opening it the first time creates the
directory (0700) and file (0600), the event tables and the read-model schema,
under a file lock so that twenty processes starting at once agree.

Read models are read and written with the standard ``sqlite3`` module rather
than SQLAlchemy: importing SQLAlchemy costs ~120 ms and ~28 MB, more than half
the start-up budget of ``agentledger list``. SQLAlchemy and Alembic own the
schema (``agentledger db upgrade``), and are imported only when it must change.
"""

from __future__ import annotations

import fcntl
import functools
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentledger.application.errors import StoreError
from agentledger.infrastructure.config import DB_FILE_NAME, PostgresLocation, StoreLocation, home_dir
from agentledger.infrastructure.schema import SCHEMA_HEAD, common_ledger_env, refuse_unknown_schema
from agentledger.infrastructure.store_faults import classify
from agentledger.infrastructure.store_ports import StorePorts

if TYPE_CHECKING:
    from agentledger.application import ports

BUSY_TIMEOUT_SECONDS = 30.0
PEEK_TIMEOUT_SECONDS = 1.0  # a peek waits this long at most for a writer's lock, then gives up


class SqliteStore(StorePorts):
    """An open store: ``ledger`` appends and loads events, ``db`` reads and writes read models."""

    def __init__(self, location: StoreLocation) -> None:
        self.location = location
        self._ledger: Any = None
        self.db = _connect(location.path)

    @property
    def ledger(self) -> Any:
        """The eventsourcing application, constructed on first use (it costs ~40 ms to import)."""
        if self._ledger is None:
            from agentledger.application.ledger import Ledger

            self._ledger = Ledger(env=ledger_env(self.location.path, create_tables=False), classify_fault=classify)
        return self._ledger

    #: The library's table of stored events (tests and benchmarks look into it), and its log position.
    events_table = "stored_events"
    position_column = "rowid"

    def hold_lock(self, name: str) -> bool:
        """Always True: one daemon per SQLite store (its daemon lock), so it alone delivers."""
        return True

    def log_head(self) -> int:
        """The last log position, read on the read-model connection (no need to build the ledger)."""
        return self.db.execute(f"SELECT max(rowid) FROM {self.events_table}").fetchone()[0] or 0

    @staticmethod
    def clock() -> float:
        """The store's clock: the host's, as the kernel keeps it (a process's skewed clock does not change it)."""
        from agentledger.infrastructure.host import kernel_clock

        return kernel_clock()

    def event_positions(self, session_id_hex: str, after_version: int = 0) -> dict[int, int]:
        """Log position (notification id) of each of a session's events (after ``after_version``), by version."""
        rows = self.db.execute(
            "SELECT originator_version, rowid FROM stored_events WHERE originator_id = ? AND originator_version > ?",
            (session_id_hex, after_version),
        )
        return dict(rows.fetchall())

    def event_position(self, session_id_hex: str, version: int) -> int | None:
        """Log position of one of a session's events."""
        row = self.db.execute(
            "SELECT rowid FROM stored_events WHERE originator_id = ? AND originator_version = ?",
            (session_id_hex, version),
        ).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
        self.db.close()

    @contextmanager
    def read_transaction(self) -> Iterator[sqlite3.Cursor]:
        """Reads that all see one state of the read models (a WAL snapshot), whoever writes meanwhile."""
        cursor = self.db.cursor()
        cursor.execute("BEGIN")
        try:
            yield cursor
        finally:
            self.db.rollback()

    @contextmanager
    def write_transaction(self) -> Iterator[sqlite3.Cursor]:
        """A read-model transaction holding SQLite's write lock from its first statement.

        ``BEGIN IMMEDIATE`` avoids the deadlock of two deferred transactions that
        both read, then both try to write.
        """
        cursor = self.db.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield cursor
        except BaseException:
            self.db.rollback()
            raise
        else:
            self.db.commit()


def _open_postgres(location: PostgresLocation) -> ports.Store:
    """A server that answers nobody is said at once, as a refused SQLite file would be (every command, and a
    launch before anything runs, in one line: ``docs/operations.md``, "When the server is away"); a connection
    ended under the opening (a restarted server, a terminated backend) is retried, as every append is."""
    from agentledger.application.errors import StoreFault
    from agentledger.application.retry import retry_while_locked
    from agentledger.infrastructure.postgres_store import ServerUnreachable, open_postgres_store

    try:
        return open_postgres_store(location)
    except ServerUnreachable as error:
        raise StoreError(f"the PostgreSQL ledger is unreachable: {error}") from error
    except Exception as error:
        if classify(error) is not StoreFault.UNAVAILABLE:
            raise
    return retry_while_locked(lambda: open_postgres_store(location), classify)


def ledger_env(db_path: Path, *, create_tables: bool) -> dict[str, str]:
    """The eventsourcing settings for the embedded SQLite store."""
    return {
        **common_ledger_env(create_tables),
        "PERSISTENCE_MODULE": "agentledger.infrastructure.sqlite_recorder:LeanSQLiteFactory",
        "SQLITE_DBNAME": sqlite_uri(db_path),
        "SQLITE_LOCK_TIMEOUT": str(int(BUSY_TIMEOUT_SECONDS)),
    }


def open_store(location: StoreLocation | PostgresLocation, *, check_identity: bool = True) -> ports.Store:
    """Open the store, creating or upgrading it first if it is new or older than this code.

    A store this home used before must still be that store (``store_identity.py``):
    an emptied, deleted or replaced one is refused unless ``check_identity`` is
    off (``db init --force``).
    """
    from agentledger.infrastructure import store_identity
    from agentledger.infrastructure.config import home_dir

    home = home_dir()
    if location.kind == "postgresql":
        store: ports.Store = _open_postgres(location)
    else:
        try:
            if not is_ready(location.path):
                if check_identity:
                    store_identity.refuse_missing(home, location)
                refuse_unknown_schema(schema_revision(location.path), location.path)
                initialise(location)
            store = SqliteStore(location)
        except sqlite3.DatabaseError as error:
            raise StoreError(_describe(location, error)) from None
    if check_identity:
        try:
            store_identity.check(store, location, home)
        except BaseException:
            store.close()
            raise
    from agentledger.application import clock

    clock.use_reference(store.clock)  # from now on this process judges time by the store's clock
    return store


class ReadModelPeek:
    """The read models as they stand, and whether the log has gone on past them (see :func:`peek_read_models`)."""

    def __init__(self, db: Any, events_table: str, position_column: str) -> None:
        self.db = db
        self._head_sql = f"SELECT max({position_column}) FROM {events_table}"

    def behind(self) -> bool:
        """Does the log hold events the read models have not applied yet (nobody caught up since)?"""
        head = self.db.execute(self._head_sql).fetchone()[0] or 0
        tracked = self.db.execute("SELECT max(position) FROM projection_tracking").fetchone()[0] or 0
        return bool(head > tracked)


@contextmanager
def peek_read_models(location: StoreLocation | PostgresLocation) -> Iterator[ReadModelPeek]:
    """The read models opened only to read, as they stand: for a caller that must be quick and leave no trace.

    Unlike :func:`open_store`, a missing store stays missing (no directory, file
    or schema is made, nothing is migrated or caught up, no identity checked):
    shell completion peeks here on every TAB, and a TAB must not create a ledger.
    """
    if location.kind == "postgresql":
        from agentledger.infrastructure.postgres_store import PostgresStore, ReadModels, events_table

        models = ReadModels(location)
        try:
            yield ReadModelPeek(models, events_table(location), PostgresStore.position_column)
        finally:
            models.close()
        return
    db = sqlite3.connect(f"{location.path.absolute().as_uri()}?mode=ro", uri=True, timeout=PEEK_TIMEOUT_SECONDS,
                         check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
    try:
        yield ReadModelPeek(db, SqliteStore.events_table, SqliteStore.position_column)
    finally:
        db.close()


def foreign_tables(location: StoreLocation | PostgresLocation) -> list[str]:
    """The tables of an SQLite file that holds tables but no ledger's (someone else's database), sorted; none for
    a ledger of any age, an empty or missing file, or a PostgreSQL schema (the copy's own checks see to those).
    Read without creating anything. Raises ``sqlite3.DatabaseError`` for a file that is not SQLite."""
    if location.kind != "sqlite" or not location.path.exists() or not location.path.stat().st_size:
        return []
    db = sqlite3.connect(f"{location.path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()
    return [] if tables & {SqliteStore.events_table, "alembic_version", "ledger_identity"} else sorted(tables)


def is_ready(path: Path) -> bool:
    """Does the file hold the event tables and the read-model schema this code expects?"""
    return schema_revision(path, also_require="stored_events") == SCHEMA_HEAD


def store_schema_revision(location: StoreLocation | PostgresLocation) -> str | None:
    """The read-model schema revision of either kind of store (None if it has none yet)."""
    if location.kind == "postgresql":
        from agentledger.infrastructure.postgres_store import schema_revision as postgres_revision

        return postgres_revision(location)
    try:
        return schema_revision(location.path)
    except sqlite3.DatabaseError as error:
        raise StoreError(_describe(location, error)) from None


def initialise_store(location: StoreLocation | PostgresLocation) -> None:
    where = location.url if location.kind == "postgresql" else location.path
    refuse_unknown_schema(store_schema_revision(location), where)
    if location.kind == "postgresql":
        from agentledger.infrastructure.postgres_store import initialise as initialise_postgres

        initialise_postgres(location)
    else:
        try:
            initialise(location)
        except sqlite3.DatabaseError as error:
            raise StoreError(_describe(location, error)) from None


def schema_revision(path: Path, also_require: str | None = None) -> str | None:
    """The read-model schema revision recorded in the file, or None if it has none yet.

    With ``also_require``, None as well when that table is missing.
    """
    if not path.exists():
        return None
    db = sqlite3.connect(sqlite_uri(path, "mode=ro"), uri=True, timeout=BUSY_TIMEOUT_SECONDS)
    try:
        wanted = {"alembic_version", also_require or "alembic_version"}
        found_tables = {
            name for (name,) in db.execute(
                f"SELECT name FROM sqlite_master WHERE type='table' AND name IN ({','.join('?' * len(wanted))})",
                tuple(wanted),
            )
        }
        if found_tables != wanted:
            return None
        found = db.execute("SELECT version_num FROM alembic_version").fetchone()
        return found[0] if found else None
    finally:
        db.close()


def initialise(location: StoreLocation) -> None:
    """Create the private directory and file, the event tables, and migrate the read models.

    Only the home's own store gets its directory made: a store named
    elsewhere (``AGENTLEDGER_DB``, ``db``) in a directory that does not exist
    is a mistyped path far more often than a wish, and an empty ledger made
    there would list nothing and say nothing.
    """
    path = location.path
    if not path.parent.is_dir() and path != home_dir() / DB_FILE_NAME:
        raise StoreError(f"the store {location.url} is in a directory that does not exist ({path.parent}): "
                         "create it first, or fix the store's URL")
    _make_private_dir(path.parent)
    with _exclusive_lock(path.with_name(path.name + ".lock")):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        from agentledger.application.ledger import Ledger

        Ledger(env=ledger_env(path, create_tables=True)).close()
        from agentledger.infrastructure.schema import upgrade_to_head

        upgrade_to_head(location)


def sqlite_uri(path: Path, *query: str) -> str:
    """The store file as an SQLite URI; on a read-only file system, ``immutable=1`` besides.

    SQLite cannot read a WAL-mode database where it may not create the ``-shm``
    file beside it, unless told the file cannot change: so a read-only copy of a
    home (a backup, an evidence snapshot) answers ``list``, ``events`` and
    ``verify``, while every write is refused as the read-only store it is.
    """
    query += ("immutable=1",) if _read_only_file_system(path.parent) else ()
    return f"{path.absolute().as_uri()}{'?' + '&'.join(query) if query else ''}"


def _read_only_file_system(directory: Path) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return False


#: How much of the file a read-model connection may read by memory map rather than a ``read`` call per page:
#: ``list --all --json`` over 100,000 sessions reads 100 MB of kept documents at a third of the CPU (issue 20).
#: SQLite's own cap (2 GB less 64 KB): a mapping covers only the first so many bytes of the file, and the
#: newest tables of a large store lie at its end. Only reads are mapped (SQLite writes with ``write`` still);
#: pages are mapped as touched and are the kernel's page cache, shared and evictable (counted in RSS, not
#: private memory), so a supervisor, which reads a few, maps a few.
MMAP_BYTES = 2**31


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(
        sqlite_uri(path), uri=True, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
    )
    db.row_factory = sqlite3.Row
    db.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
    return db


def _make_private_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)


@contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _describe(location: StoreLocation, error: Exception) -> str:
    text = str(error)
    if "not a database" in text or "malformed" in text:
        return f"the store {location.path} is not a readable SQLite database ({text}); restore it from a backup"
    if "unable to open" in text:
        return f"cannot open the store {location.path} ({text})"
    if location.path.is_dir():  # SQLite says only "disk I/O error"
        return f"the store {location.path} is a directory, not an SQLite database file; move it aside"
    return f"store {location.path}: {text}"


# -- reading stored events: refuse one whose fields are not what its class declares --------------


CheckedMapper: type  # made on first use, by __getattr__


def __getattr__(name: str) -> Any:
    """``CheckedMapper`` is made on first use: it subclasses the library's Mapper, slow to import."""
    if name == "CheckedMapper":
        global CheckedMapper
        CheckedMapper = _checked_mapper_class()
        return CheckedMapper
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _checked_mapper_class() -> type:
    from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent
    from eventsourcing.utils import get_topic

    class CheckedMapper(Mapper):
        """The library's mapper, but a stored event whose JSON decodes to missing or mistyped fields
        (a damaged or hand-edited row) is a decoding error, like bytes that are not JSON: the log's
        readers skip and report it (``application/log.py``), and a command on its session fails with
        one line, instead of a half-built event failing later in a projection or the aggregate.

        Its ``to_stored_event`` is the library's, building the same ``StoredEvent`` without its frozen
        dataclass ``__init__`` (an ``object.__setattr__`` per field) and the copy of the state through
        ``dict()``: 2.2 -> 1.4 µs, on every append (issue 20).
        """

        def to_stored_event(self, domain_event: Any) -> Any:
            if self.compressor is not None or self.cipher is not None:
                return super().to_stored_event(domain_event)
            state = vars(domain_event).copy()
            originator_id = state.pop("originator_id")
            originator_version = state.pop("originator_version")
            kind = type(domain_event)
            class_version = getattr(kind, "class_version", 1)
            if class_version > 1:
                state["class_version"] = class_version
            stored = object.__new__(StoredEvent)
            fields = stored.__dict__  # a frozen dataclass's fields, set as its __init__ would
            fields["originator_id"] = originator_id
            fields["originator_version"] = originator_version
            fields["topic"] = get_topic(kind)
            fields["state"] = self.transcoder.encode(state)
            return stored

        def to_domain_event(self, stored_event: Any) -> Any:
            event = super().to_domain_event(stored_event)
            problem = field_problem(event)
            if problem is not None:
                raise MapperDeserialisationError(
                    f"stored event with topic {stored_event.topic!r}, originator_id '{stored_event.originator_id}' "
                    f"and originator_version {stored_event.originator_version}: {problem}")
            return event

    return CheckedMapper


_ABSENT = object()


def field_problem(event: Any) -> str | None:
    """What is wrong with a decoded event's fields (None: each is there, of its declared type)."""
    kind: Any = type(event)  # hashable, for the cache
    for name, required, accepted in _declared_fields(kind):
        value = getattr(event, name, _ABSENT)
        if value is _ABSENT:
            if required:
                return f"field {name!r} is missing"
        elif accepted is not None and not isinstance(value, accepted):
            return f"field {name!r} is {value!r:.60}, not {' or '.join(t.__name__ for t in accepted)}"
    return None


@functools.lru_cache(maxsize=None)
def _declared_fields(cls: type) -> tuple[tuple[str, bool, tuple[type, ...] | None], ...]:
    """(name, required, accepted types or None for anything) of each field of an event class."""
    import dataclasses
    import typing

    if not dataclasses.is_dataclass(cls):
        return ()
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve: check nothing rather than refuse everything
        return ()
    return tuple(
        (f.name, f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
         _accepted(hints.get(f.name, Any)))
        for f in dataclasses.fields(cls)
    )


def _accepted(hint: Any) -> tuple[type, ...] | None:
    import types
    import typing

    if hint is float:
        return (float, int)  # JSON writes 30.0 as 30
    if hint is None or hint is type(None):
        return (type(None),)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        accepted: list[type] = []
        for arg in typing.get_args(hint):
            more = _accepted(arg)
            if more is None:
                return None
            accepted += more
        return tuple(accepted)
    if origin is not None:
        return (origin,) if isinstance(origin, type) else None  # list[str] -> list; ClassVar, Literal: anything
    return (hint,) if isinstance(hint, type) else None  # Any, a TypeVar: anything
