"""The read models' hot queries use their indexes (SQLite's ``EXPLAIN QUERY PLAN``), whatever the number of sessions.

The SQL is caught as the query functions send it (``set_trace_callback``), so
the plan checked is the plan of the query that runs, not of a copy of it.
"""

from __future__ import annotations

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


@pytest.mark.parametrize("ask, index", [
    (lambda db: queries.list_sessions(db, include_stopped=False, status=None, now=0.0), "sessions_status_started"),
    (lambda db: queries.list_sessions(db, include_stopped=True, status="running", now=0.0), "sessions_status_started"),
    (lambda db: queries.list_sessions(db, include_stopped=True, status="stopped", now=0.0), "sessions_status_started"),
    (lambda db: queries.count_sessions(db, include_stopped=False, status=None, now=0.0), "sessions_status_started"),
    (lambda db: queries.not_stopped_on_host(db, "h"), "sessions_host_status (host=? AND status=?)"),
    (lambda db: queries.tracked_processes(db, "h"), "sessions_host_status (host=? AND status=?)"),
    (lambda db: queries.open_on_host(db, "h"), "sessions_host_status (host=? AND status=?)"),
], ids=["list", "list-running", "list-stopped", "count", "reconcile-facts", "tracked", "open-on-host"])
def test_the_sessions_not_stopped_are_found_through_an_index(store, ask, index) -> None:
    for plan in _plans(store, ask):
        assert "SCAN s " not in plan + " " and "SCAN sessions" not in plan, plan
        assert index in plan, plan


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
