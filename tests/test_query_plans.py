"""The read models' hot queries use their indexes (SQLite's ``EXPLAIN QUERY PLAN``), whatever the number of sessions.

The SQL is caught as the query functions send it (``set_trace_callback``), so
the plan checked is the plan of the query that runs, not of a copy of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from agentledger.projections import queries

pytestmark = pytest.mark.sqlite_only


def _plans(store: Any, ask: Callable[[Any], Any]) -> list[str]:
    sent: list[str] = []
    store.db.set_trace_callback(sent.append)
    try:
        ask(store.db)
    finally:
        store.db.set_trace_callback(None)
    selects = [sql for sql in sent if sql.lstrip().upper().startswith("SELECT")]
    assert selects, sent
    return [" / ".join(row[-1] for row in store.db.execute("EXPLAIN QUERY PLAN " + sql)) for sql in selects]


def _sent(store: Any, ask: Callable[[Any], Any]) -> list[str]:
    """The statements ``ask`` sends on PostgreSQL, as written (parameters still named)."""
    sent: list[str] = []

    class Recording:
        def execute(self, sql: str, params: Any = ()) -> Any:
            sent.append(sql)
            return store.db.execute(sql, params)

    ask(Recording())
    return sent


@pytest.mark.parametrize("ask, index", [
    (lambda db: queries.list_sessions(db, include_stopped=False, status=None, now=0.0), "sessions_live_started"),
    (lambda db: queries.list_sessions(db, include_stopped=True, status="running", now=0.0), "sessions_live_started"),
    (lambda db: queries.list_sessions(db, include_stopped=True, status="stopping", now=0.0), "sessions_live_started"),
    (lambda db: queries.list_sessions(db, include_stopped=True, status="stopped", now=0.0), "sessions_status_started"),
    (lambda db: queries.count_sessions(db, include_stopped=False, status=None, now=0.0), "sessions_status_started"),
    (lambda db: queries.not_stopped_on_host(db, "h"), "sessions_host_status (host=? AND status=?)"),
    (lambda db: queries.tracked_processes(db, "h"), "sessions_host_status (host=? AND status=?)"),
    (lambda db: queries.open_on_host(db, "h"), "sessions_host_status (host=? AND status=?)"),
], ids=["list", "list-running", "list-stopping", "list-stopped", "count", "reconcile-facts", "tracked", "open-on-host"])
def test_the_sessions_not_stopped_are_found_through_an_index(store, ask, index) -> None:
    for plan in _plans(store, ask):
        assert not re.search(r"SCAN (s|sessions)( |$)(?!USING)", plan), plan  # a walk of an index, not the table
        assert index in plan, plan


@pytest.mark.parametrize("status", [None, "running", "unwatched", "stopping", "host-silent"])
def test_the_sessions_not_stopped_come_newest_first_from_their_index_unsorted(store, status) -> None:
    """Revision 0015: one walk of the partial index, never a sort of every session not stopped, on a store
    never analysed (its statistics are the migration's)."""
    for plan in _plans(store, lambda db: queries.list_sessions(db, include_stopped=False, status=status, now=0.0,
                                                               limit=50)):
        assert "sessions_live_started" in plan and "TEMP B-TREE" not in plan, plan


def test_the_partial_index_condition_is_the_queries_not_stopped(store) -> None:
    """SQLite uses a partial index only for a query containing its condition as written."""
    (sql,) = store.db.execute("SELECT sql FROM sqlite_master WHERE name = 'sessions_live_started'").fetchone()
    assert sql.endswith(f"WHERE {queries.NOT_STOPPED}"), sql


def test_the_newest_page_of_all_sessions_reads_the_start_index(store) -> None:
    (plan,) = _plans(store, lambda db: queries.list_sessions(db, include_stopped=True, status=None, now=0.0, limit=10))
    assert "sessions_started" in plan and "TEMP B-TREE" not in plan, plan


@pytest.mark.postgres_only
def test_a_heartbeats_fuse_update_reads_its_session_alone_on_an_unanalysed_table(store) -> None:
    """PostgreSQL, before its statistics exist, once joined the key with an index on ``state`` matching every
    live fuse (migration 0014): each heartbeat caught up then read them all."""
    from agentledger.projections.sessions import _EXTEND_FUSES

    store.db.execute("INSERT INTO fuses (session_id, set_version, set_at, set_by, ttl, expires_at, extensions,"
                     " state) SELECT md5(CAST(i AS text)), 1, 0, 'bench', 30, 1, 0, 'set' FROM generate_series(1, 20000) i")
    with store.write_transaction() as cursor:
        plan = "\n".join(row[0] for row in cursor.execute("EXPLAIN " + _EXTEND_FUSES, (2.0, 1, "abc")).fetchall())
    assert "fuses_pkey" in plan and "BitmapAnd" not in plan and "fuses_state" not in plan, plan
    assert "Seq Scan" not in plan, plan


@pytest.mark.postgres_only
def test_the_newest_sessions_not_stopped_walk_their_index_on_postgresql(store) -> None:
    """20,000 sessions, 2,000 of them not stopped: ``list -n 50`` reads the partial index in order (revision 0015)
    rather than sorting every session not stopped. (Before its first analysis PostgreSQL guesses a few dozen rows
    in the index and sorts them; its autovacuum analyses a table that grew.)"""
    store.db.execute(
        "INSERT INTO sessions (id, adapter, status, argv, cwd, host, boot_id, labels, started_at, fuse_state,"
        " heartbeat_count, version, position) SELECT md5(CAST(i AS text)), 'command',"
        " CASE WHEN mod(i, 10) = 0 THEN 'running' ELSE 'stopped' END, '[]', '/', 'h', 'b', '{}', i, 'none', 0, 1, i"
        " FROM generate_series(1, 20000) i")
    store.db.execute("ANALYZE sessions")
    (sql,) = [s for s in _sent(store, lambda db: queries.list_sessions(db, include_stopped=False, status=None,
                                                                      now=0.0, limit=50))]
    plan = "\n".join(row[0] for row in store.db.execute("EXPLAIN " + sql, {"now": 0.0}).fetchall())
    assert "sessions_live_started" in plan and "Sort" not in plan, plan


def test_a_page_of_the_listing_is_asked_of_the_database(store) -> None:
    """``list -n N`` (with or without ``--json``) sends ``LIMIT N`` with each query that reads sessions or
    documents: a PostgreSQL client receives a query's whole result however few rows it reads."""
    asks = [lambda db: list(queries.iter_sessions(db, include_stopped=False, status=None, now=0.0, limit=50)),
            lambda db: list(queries.session_json_lines(db, include_stopped=True, status=None, now=0.0, limit=50)),
            lambda db: list(queries.session_json_lines(db, include_stopped=True, status="stopped", now=0.0,
                                                       limit=50))]
    for ask in asks:
        reads = [sql for sql in _sent(store, ask) if "count(" not in sql]
        assert reads and all(sql.endswith(" LIMIT 50") for sql in reads), reads
