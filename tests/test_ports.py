"""The ``Store`` port (``application/ports.py``), one test case that every backend runs.

Like the event library's own recorder test cases: the same assertions on the
SQLite store and on the PostgreSQL one (the ``store`` fixture runs each test on
both), about what the service layer relies on and nothing else: the log's
positions, the store's clock, transactions, the named lock, the locations'
addresses, and the read models as the service layer asks them.
"""

from __future__ import annotations

import time
from uuid import UUID

import pytest
from conftest import dead_identity, record

from agentledger.application.clock import utc_now
from agentledger.application.errors import SessionNotFound
from agentledger.application.ports import Store
from agentledger.domain.reconciliation import SessionFacts


def test_it_is_a_store_as_the_service_layer_types_it(store):
    typed: Store = store  # mypy checks the classes; this checks the objects open_store really returns
    for name in ("ledger", "db", "read_models", "location", "events_table", "position_column"):
        assert getattr(typed, name) is not None, name
    assert typed.location.kind in ("sqlite", "postgresql") and typed.location.url
    assert typed.location.address[0] == typed.location.kind


def test_positions_grow_with_the_log_and_name_each_event_of_a_session(store, spawn):
    assert store.log_head() == 0
    sid = record(store, dead_identity(spawn))
    session = store.ledger.session(sid)
    positions = store.event_positions(sid.hex)
    assert sorted(positions) == list(range(1, session.version + 1))
    assert store.event_position(sid.hex, session.version) == max(positions.values()) == store.log_head()
    assert store.event_position(sid.hex, session.version + 1) is None
    counted = store.db.execute(
        f"SELECT COUNT(*) FROM {store.events_table} WHERE {store.position_column} <= ?", (store.log_head(),)
    ).fetchone()[0]
    assert counted == session.version


def test_the_stores_clock_is_the_hosts_or_the_servers_and_close_to_this_one(store):
    assert abs(store.clock() - time.time()) < 5


def test_a_write_transaction_commits_or_rolls_back_as_one(store, spawn):
    record(store, dead_identity(spawn))
    store.read_models.catch_up()
    before = store.read_models.position()
    with pytest.raises(RuntimeError), store.write_transaction() as cursor:
        cursor.execute("UPDATE projection_tracking SET position = ?", (before + 1000,))
        raise RuntimeError("in the middle")
    assert store.read_models.position() == before
    with store.read_transaction() as cursor:
        rows = cursor.execute("SELECT position FROM projection_tracking").fetchall()
    assert [row[0] for row in rows] == [before]


def test_a_named_lock_is_held_for_the_connections_life(store):
    assert store.hold_lock("test:a") and store.hold_lock("test:a")  # held already: still this store's


def test_the_read_models_answer_what_the_service_layer_asks(store, spawn):
    from agentledger.infrastructure.host import host_name

    dead = record(store, dead_identity(spawn)).hex
    applied = store.read_models.catch_up()
    assert applied.applied >= 2 and applied.skipped == []
    assert store.read_models.catch_up().applied == 0  # level with the log
    assert store.read_models.position() == store.log_head()
    assert store.read_models.session(dead)["status"] in ("running", "unwatched")
    with pytest.raises(SessionNotFound):
        store.read_models.session("0" * 32)
    facts = store.read_models.facts_on_host(host_name())
    assert [f.session_id for f in facts] == [dead] and isinstance(facts[0], SessionFacts)
    assert facts[0].fuse_state == "set" and not facts[0].fuse_live(utc_now())
    assert [row["id"] for row in store.read_models.tracked_processes(host_name())] == [dead]
    assert store.read_models.open_on_host(host_name()) == [dead]
    assert store.read_models.agent_sessions_on_host(host_name()) == []  # a plain command, not an agent
    assert store.read_models.resumed_by(dead) == []
    store.ledger.change(UUID(dead), lambda s: s.record_stop(reason="reconciled", decided_by={}, evidence={}))
    store.read_models.catch_up()
    assert [row["id"] for row in store.read_models.stopped_since(host_name(), 0)] == [dead]
    assert store.read_models.stopped_since(host_name(), store.log_head()) == []
    assert store.read_models.facts_on_host(host_name()) == [] and store.read_models.open_on_host(host_name()) == []


def test_the_read_models_compare_with_a_rebuild_of_the_log(store, spawn):
    sid = record(store, dead_identity(spawn)).hex
    store.read_models.catch_up()
    assert store.read_models.compare_with_rebuild() == (store.log_head(), [])
    with store.write_transaction() as cursor:  # a damaged row: the rebuild disagrees with it, and says which
        cursor.execute("UPDATE sessions SET status = 'stopped' WHERE id = ?", (sid,))
    position, mismatches = store.read_models.compare_with_rebuild()
    assert position == store.log_head()
    assert [(m.table, m.live_rows, m.rebuilt_rows, m.differing) for m in mismatches] == [("sessions", 1, 1, [sid])]
