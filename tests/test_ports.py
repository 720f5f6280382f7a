"""The ``Store`` port (``application/ports.py``), one test case that every backend runs.

Like the event library's own recorder test cases: the same assertions on the
SQLite store and on the PostgreSQL one (the ``store`` fixture runs each test on
both), about what the service layer relies on and nothing else: the log's
positions, the store's clock, transactions, the named lock, the locations'
addresses, the read models as the service layer asks them, the webhook outbox's
rows, and the raw log ``db copy`` reads and writes verbatim.
"""

from __future__ import annotations

import time
from uuid import UUID, uuid4

import pytest
from conftest import dead_identity, record

from agentledger.application.clock import utc_now
from agentledger.application.errors import AlreadyStored, SessionNotFound
from agentledger.application.ports import Attempt, NewDelivery, Store
from agentledger.domain.reconciliation import SessionFacts
from agentledger.domain.webhooks import HttpOutcome


def test_it_is_a_store_as_the_service_layer_types_it(store):
    typed: Store = store  # mypy checks the classes; this checks the objects open_store really returns
    for name in ("ledger", "db", "read_models", "webhook_outbox", "raw_log", "location", "events_table",
                 "position_column"):
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


def test_a_damaged_document_is_named_by_its_session(store, spawn):
    """``session_documents`` does not begin with its session's id: a mismatch names the session all the same."""
    sid = record(store, dead_identity(spawn)).hex
    store.ledger.change(UUID(sid), lambda s: s.record_stop(reason="reconciled", decided_by={}, evidence={}))
    store.read_models.catch_up()
    with store.write_transaction() as cursor:
        cursor.execute("DELETE FROM session_documents WHERE session_id = ?", (sid,))
    _, mismatches = store.read_models.compare_with_rebuild()
    assert [(m.table, m.differing) for m in mismatches] == [("session_documents", [sid])]


# -- the webhook outbox -------------------------------------------------------------------------------


def _delivery(endpoint: str, event_id: str, position: int, session: str = "ab" * 16) -> NewDelivery:
    return NewDelivery(endpoint, event_id, "session.started", position, session, f'{{"position": {position}}}',
                       created_at=1000.0 + position)


def _outbox_rows(store) -> list[tuple]:
    return [(r["endpoint"], r["event_id"], r["state"], r["attempts"])
            for r in store.webhook_outbox.deliveries(dead_only=False, endpoint=None, limit=100)]


def test_the_outbox_moves_positions_only_with_the_deliveries_read_from_them(store):
    outbox = store.webhook_outbox
    assert outbox.positions(["a", "b"]) == {}
    outbox.add_positions({"a": 0, "b": 5})
    outbox.add_positions({"a": 7, "c": 9})  # a keeps its position
    assert outbox.positions(["a", "b", "c", "d"]) == {"a": 0, "b": 5, "c": 9}

    assert outbox.add_deliveries([_delivery("a", "e1", 3), _delivery("a", "e2", 6)], read_at={"a": 0, "b": 5}, upto=6)
    assert outbox.positions(["a", "b"]) == {"a": 6, "b": 6}
    assert not outbox.add_deliveries([_delivery("a", "e3", 7)], read_at={"a": 0, "b": 5}, upto=7)  # read at stale ones
    assert outbox.positions(["a", "b"]) == {"a": 6, "b": 6}
    assert outbox.add_deliveries([_delivery("a", "e2", 6), _delivery("c", "e2", 6)], read_at={"a": 6, "c": 9}, upto=8)
    assert outbox.positions(["a", "c"]) == {"a": 8, "c": 9}  # never moved back
    assert _outbox_rows(store) == [("c", "e2", "pending", 0), ("a", "e2", "pending", 0), ("a", "e1", "pending", 0)]

    [head] = outbox.pending("a", 1)  # the oldest, with its body, due when written
    assert (head["event_id"], head["payload"], head["next_attempt_at"]) == ("e1", '{"position": 3}', 1003.0)
    assert [r["event_id"] for r in outbox.pending("a", 10)] == ["e1", "e2"] and outbox.pending("b", 10) == []


def test_due_deliveries_keep_order_per_session_not_across_sessions(store):
    outbox = store.webhook_outbox
    outbox.add_positions({"a": 0})
    a, b = "aa" * 16, "bb" * 16
    batch = [_delivery("a", "a1", 1, a), _delivery("a", "b1", 2, b), _delivery("a", "a2", 3, a),
             _delivery("a", "b2", 4, b)]
    assert outbox.add_deliveries(batch, read_at={"a": 0}, upto=4)
    a1 = outbox.pending("a", 1)[0]["id"]
    outbox.mark_failed(Attempt(a1, 2000.0, 2001.0, HttpOutcome(503)), state="pending", retry_at=3000.0,
                       error="HTTP 503")
    assert [r["event_id"] for r in outbox.pending("a", 10, due_at=2500.0)] == ["b1", "b2"]  # a's wait behind a1
    assert [r["event_id"] for r in outbox.pending("a", 10, due_at=3000.0)] == ["a1", "b1", "a2", "b2"]
    assert [r["session_id"] for r in outbox.pending("a", 10)] == [a, b, a, b]  # without due_at: all, in order


def test_the_outbox_records_attempts_and_requeues_dead_deliveries_unless_the_check_refuses(store):
    outbox = store.webhook_outbox
    outbox.add_positions({"a": 0})
    assert outbox.add_deliveries([_delivery("a", f"e{n}", n) for n in (1, 2, 3)], read_at={"a": 0}, upto=3)
    first, second, third = (r["id"] for r in outbox.pending("a", 10))
    outbox.mark_delivered([Attempt(first, 2000.0, 2001.0, HttpOutcome(204))])
    outbox.mark_failed(Attempt(second, 2002.0, 2003.0, HttpOutcome(503)), state="pending", retry_at=2500.0,
                       error="HTTP 503")
    outbox.mark_failed(Attempt(third, 2004.0, 2005.0, HttpOutcome(None, "refused")), state="dead", retry_at=None,
                       error="gave up")
    assert _outbox_rows(store) == [("a", "e3", "dead", 1), ("a", "e2", "pending", 1), ("a", "e1", "delivered", 1)]
    [retried] = outbox.pending("a", 10)
    assert (retried["id"], retried["next_attempt_at"], retried["first_attempt_at"]) == (second, 2500.0, 2002.0)
    [dead] = outbox.deliveries(dead_only=True, endpoint="a", limit=10)
    assert (dead["id"], dead["last_status"], dead["last_error"]) == (third, None, "gave up")
    assert outbox.deliveries(dead_only=False, endpoint="b", limit=10) == []

    def refuse(rows):
        assert [r["id"] for r in rows] == [second, third]
        raise RuntimeError("not all dead")

    with pytest.raises(RuntimeError):
        outbox.requeue([third, second], now=3000.0, check=refuse)
    assert _outbox_rows(store)[0] == ("a", "e3", "dead", 1)  # rolled back
    [requeued] = outbox.requeue(None, now=3000.0, check=lambda rows: None)  # every dead one
    assert (requeued["id"], requeued["state"]) == (third, "dead")  # as it was
    [again] = [r for r in outbox.pending("a", 10) if r["id"] == third]
    assert (again["attempts"], again["first_attempt_at"], again["next_attempt_at"]) == (0, None, 3000.0)


# -- the raw log --------------------------------------------------------------------------------------


def test_the_raw_log_reads_its_events_verbatim_in_pages_and_counts_them(store, spawn):
    raw = store.raw_log
    assert (raw.head(), raw.count_upto(10**6), raw.originator_ids()) == (0, 0, [])
    sid = record(store, dead_identity(spawn))
    other = record(store, dead_identity(spawn))
    events = store.ledger.session(sid).version + store.ledger.session(other).version
    assert raw.head() == store.log_head() and raw.count_upto(raw.head()) == events
    assert sorted(raw.originator_ids()) == sorted([sid, other])

    first_page = raw.page(after=0, upto=raw.head(), limit=2)
    assert [n.originator_id for n in first_page] == [sid, sid] and first_page[0].originator_version == 1
    assert raw.first_event() == first_page[0] and raw.event_at(first_page[1].id) == first_page[1]
    assert raw.count_upto(first_page[1].id) == 2
    rest = raw.page(after=first_page[-1].id, upto=raw.head(), limit=100)
    assert len(first_page) + len(rest) == events and rest[-1].id == raw.head()
    assert raw.page(after=0, upto=first_page[0].id, limit=100) == first_page[:1]  # up to and including upto


def test_the_raw_log_appends_verbatim_all_or_nothing(store, spawn):
    from eventsourcing.persistence import StoredEvent

    raw = store.raw_log
    sid = record(store, dead_identity(spawn))
    original = raw.page(after=0, upto=raw.head(), limit=100)
    copy_id = uuid4()
    copies = [StoredEvent(originator_id=copy_id, originator_version=n.originator_version, topic=n.topic,
                          state=n.state) for n in original]
    raw.append(copies)
    appended = raw.page(after=original[-1].id, upto=raw.head(), limit=100)
    assert [(n.originator_id, n.originator_version, n.topic, bytes(n.state)) for n in appended] == [
        (copy_id, n.originator_version, n.topic, bytes(n.state)) for n in original]
    assert store.ledger.session(copy_id).pid == store.ledger.session(sid).pid  # readable like any other

    head = raw.head()
    new = StoredEvent(originator_id=uuid4(), originator_version=1, topic=original[0].topic, state=original[0].state)
    with pytest.raises(AlreadyStored):
        raw.append([new, copies[0]])
    assert raw.head() == head and new.originator_id not in raw.originator_ids()


def test_the_raw_log_keeps_snapshots_per_aggregate(store):
    from eventsourcing.persistence import StoredEvent

    raw = store.raw_log
    assert raw.keeps_snapshots
    aggregate = uuid4()
    assert raw.snapshots(aggregate) == []
    snapshot = StoredEvent(originator_id=aggregate, originator_version=200, topic="t:Snapshot", state=b"{}")
    raw.add_snapshots([snapshot])
    [found] = raw.snapshots(aggregate)
    assert (found.originator_id, found.originator_version, found.topic, bytes(found.state)) == (
        aggregate, 200, "t:Snapshot", b"{}")
    assert raw.snapshots(uuid4()) == [] and raw.originator_ids() == []  # snapshots are not the log
