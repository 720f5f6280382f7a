"""The retention port (``application/ports.py: Retention``): archived sessions out of the live store, and back.

Written once for both backends, in SQLite's placeholder style, on the store's
read-model connection (which sees the library's event and snapshot tables:
the same file, or the same database and schema). :meth:`SqlRetention.remove`
is one write transaction: SQLite's write lock (``BEGIN IMMEDIATE``), or
PostgreSQL's catch-up lock, so no catch-up runs between the rows and the log.

The log's last event is never removed: SQLite numbers a new event one past
the highest position left, so removing the last one would hand its position
to the next event, which read models already past it would never apply.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from agentledger.application.errors import StreamsChanged

if TYPE_CHECKING:
    from agentledger.application.ports import ArchivedRecord, Cursor, Row, Store

#: Ids per ``IN (...)`` list (SQLite allows 32,766 parameters; PostgreSQL 65,535).
_CHUNK = 500


class SqlRetention:
    def __init__(self, store: Store) -> None:
        self.store = store

    def stopped_before(self, cutoff: float) -> list[Row]:
        return self.store.db.execute(
            "SELECT id, name, stopped_at FROM sessions WHERE status = 'stopped' AND stopped_at < ?"
            " ORDER BY stopped_at, id", (cutoff,)).fetchall()

    def last_event_owner(self) -> str | None:
        return _last_event_owner(self.store.db, self.store)

    def stream_lengths(self, ids: Sequence[str]) -> dict[str, int]:
        return _stream_lengths(self.store.db, self.store, ids)

    def check_writable(self) -> None:
        """A write that changes nothing, in a write transaction: a read-only store (a read-only file or mount, a
        read-only server) raises its own error here, before ``db archive`` writes a file it could not use.
        ``BEGIN IMMEDIATE`` alone succeeds on a read-only SQLite file; a ``DELETE`` matching no row does not."""
        with self.store.write_transaction() as cursor:
            cursor.execute("DELETE FROM archived_sessions WHERE 1 = 0")

    def remove(self, records: Sequence[ArchivedRecord], lengths: Mapping[str, int]) -> None:
        store = self.store
        snapshots = _snapshots_table(store)
        with store.write_transaction() as cursor:
            _refuse_changed(cursor, store, lengths)
            streams = list(lengths)
            for chunk in _chunks(streams):
                marks = ",".join("?" * len(chunk))
                cursor.execute(_delete_events(store, marks), chunk)
                if snapshots is not None:
                    cursor.execute(f"DELETE FROM {snapshots} WHERE originator_id IN ({marks})", chunk)
            sessions = [record.session_id for record in records]
            for chunk in _chunks(sessions):
                marks = ",".join("?" * len(chunk))
                cursor.execute(f"DELETE FROM fuses WHERE session_id IN ({marks})", chunk)
                cursor.execute(f"DELETE FROM session_documents WHERE session_id IN ({marks})", chunk)
                cursor.execute(f"DELETE FROM sessions WHERE id IN ({marks})", chunk)
            cursor.executemany(
                "INSERT INTO archived_sessions (session_id, name, archive_path, archived_at, stopped_at, events,"
                " checksum) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (session_id) DO UPDATE SET"
                " archive_path = excluded.archive_path, archived_at = excluded.archived_at, events = excluded.events,"
                " checksum = excluded.checksum", [tuple(record) for record in records])

    def forget(self, session_ids: Sequence[str]) -> None:
        with self.store.write_transaction() as cursor:
            for chunk in _chunks(list(session_ids)):
                cursor.execute(f"DELETE FROM archived_sessions WHERE session_id IN ({','.join('?' * len(chunk))})",
                               chunk)

    def archived(self) -> list[Row]:
        return self.store.db.execute(
            "SELECT session_id, name, archive_path, archived_at, stopped_at, events, checksum FROM archived_sessions"
            " ORDER BY archived_at DESC, stopped_at DESC, session_id").fetchall()


def _refuse_changed(cursor: Cursor, store: Store, lengths: Mapping[str, int]) -> None:
    """Inside the removal's transaction: the streams are still as archived, and none holds the log's last event."""
    now = _stream_lengths(cursor, store, list(lengths))
    changed = sorted(stream for stream, length in lengths.items() if now.get(stream, 0) != length)
    if changed:
        raise StreamsChanged(f"{len(changed)} archived stream(s) changed while the archive was written (e.g. "
                             f"{changed[0][:12]}): nothing was removed; run the archive again")
    owner = _last_event_owner(cursor, store)
    if owner is not None and owner in lengths:
        raise StreamsChanged(f"stream {owner[:12]} holds the log's last event, which is never removed: nothing was "
                             "removed; run the archive again")


def _delete_events(store: Store, marks: str) -> str:
    """The streams' events: on SQLite in table (rowid) order, so that each page of the table is rewritten once.

    Deleting by ``originator_id`` walks the primary-key index, in stream order,
    which is random in the table (sessions interleave in the log): SQLite's
    default 2 MB page cache holds a few hundred pages, so each table page was
    spilled to the WAL and read back again and again: about twice as slow over
    900,000 events (``docs/BENCHMARKS.md``, "Archiving stopped sessions").
    PostgreSQL, which has no rowid, deletes through its index as it likes.
    """
    where = f"originator_id IN ({marks})"
    table = store.events_table
    if not _on_sqlite(store):
        return f"DELETE FROM {table} WHERE {where}"
    return f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {where} ORDER BY rowid)"


def _last_event_owner(db: Any, store: Store) -> str | None:
    row = db.execute(
        f"SELECT originator_id FROM {store.events_table} WHERE {store.position_column} ="
        f" (SELECT max({store.position_column}) FROM {store.events_table})").fetchone()
    return None if row is None else _hex(row[0])


def _stream_lengths(db: Any, store: Store, ids: Sequence[str]) -> dict[str, int]:
    """The last version of each stream of ``ids`` that has events.

    On SQLite each stream's ``max`` is a subquery of its own, one seek to the end of the stream in the
    primary-key index; grouped (as on PostgreSQL, whose typed ``uuid`` column the text of a ``VALUES`` list
    would not match) SQLite reads every entry of every stream: a quarter of a second of ``db archive``'s
    check before its removal, over 900,000 events, where the seeks take a twelfth of that.
    """
    table = store.events_table
    found: dict[str, int] = {}
    for chunk in _chunks(list(ids)):
        if _on_sqlite(store):
            rows = db.execute(f"SELECT v.column1, (SELECT max(originator_version) FROM {table} WHERE originator_id ="
                              f" v.column1) FROM (VALUES {','.join(['(?)'] * len(chunk))}) AS v", chunk)
        else:
            rows = db.execute(f"SELECT originator_id, max(originator_version) FROM {table}"
                              f" WHERE originator_id IN ({','.join('?' * len(chunk))}) GROUP BY originator_id", chunk)
        found.update((_hex(stream), int(version)) for stream, version in rows.fetchall() if version is not None)
    return found


def _on_sqlite(store: Store) -> bool:
    """Is the store SQLite (the event table has a ``rowid``, its ``originator_id`` is text), where some statements
    differ?"""
    return store.location.kind == "sqlite"


def _snapshots_table(store: Store) -> str | None:
    """The library's snapshot table, in the schema of its event table (None: the ledger keeps no snapshots)."""
    snapshots = store.ledger.snapshots
    if snapshots is None:
        return None
    name: str = getattr(snapshots.recorder, "events_table_name")  # noqa: B009 - the library's, not in its interface
    schema, dot, _ = store.events_table.rpartition(".")
    return f"{schema}.{name}" if dot else name


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def _hex(originator_id: Any) -> str:
    """An originator id as 32 hex digits: SQLite stores text (``UUID.hex``), PostgreSQL a ``uuid``."""
    return originator_id.hex if hasattr(originator_id, "hex") and not isinstance(originator_id, str) else (
        str(originator_id).replace("-", ""))
