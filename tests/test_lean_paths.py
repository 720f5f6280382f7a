"""The lean load and save (``application/lean_paths.py``, ``infrastructure/sqlite_recorder.py``) keep the
library's promises: a cached aggregate no command can corrupt, a fast-forward that sees other writers,
snapshots from the aggregate in hand equal to a replay, written in the events' own transaction on SQLite.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from uuid import uuid4

import pytest
from eventsourcing.application import project_aggregate

from agentledger.application.clock import utc_now
from agentledger.application.lean_paths import copy_for_command
from agentledger.application.ledger import Ledger
from agentledger.domain.hosts import Host
from agentledger.domain.locks import DirectoryLock
from agentledger.domain.session import Session, StopCause
from agentledger.domain.stop_hooks import StopHook
from agentledger.domain.workspace import Workspace

LAUNCH = dict(argv=["opencode", "run"], cwd="/src", adapter="command", name=None, model=None, prompt=None, group=None,
              labels={"team": "a"}, host="h", boot_id="b", pid=4242, pid_start_time=1.0, boot_time=0.0,
              supervisor_pid=4241, log_path=None, launched_by="me")


def every_command(session: Session) -> None:
    """Each kind of command a session takes, in an order that lets each one apply."""
    now = utc_now()
    session.heartbeat(source="t", now=now)
    session.observe_agent(facts={"native_session_id": "n1", "model": "m"}, heartbeat=True, source="t", now=now)
    session.observe_agent(facts={"model": "m2"}, heartbeat=False, source="t", now=now)
    session.request_stop(requested_by="me", signal="TERM", grace=1.0, note="n", cause=StopCause.USER)
    session.request_stop(requested_by="me", signal="KILL", grace=0.0, note=None, cause=StopCause.USER)
    session.record_fuse_expired(decided_by={"component": "t"}, evidence={"pid": 1}, now=now + timedelta(hours=1))
    session.set_fuse(ttl=30, set_by="me", now=now)
    session.cancel_fuse(by="me", reason="done")
    session.record_stop(reason="exited", decided_by={"component": "t"}, evidence={}, exit_code=3)


def launched(**changes: object) -> Session:
    session = Session.launch(session_id=uuid4(), **{**LAUNCH, **changes})
    session.set_fuse(ttl=30, set_by="me", now=utc_now())
    return session


def every_host_command(host: Host) -> None:
    host.daemon_alive(pid=1, version="v", boot_id="b", every=10.0)
    host.daemon_alive(pid=2, version="v", boot_id="b", every=10.0)
    host.daemon_stopped(pid=2)
    host.forget(by={"user": "me"}, reason="gone", stopped=["s1"])


def every_lock_command(lock: DirectoryLock) -> None:
    lock.take(holder_session="s1", taker={"pid": 1}, by="me", reason=None, displaced=None, forced=False)
    lock.release(by="me", reason="done")
    lock.take(holder_session=None, taker={"pid": 2}, by="me", reason="manual", displaced="s1", forced=True)


def every_workspace_command(workspace: Workspace) -> None:
    workspace.record_check(command="make", exit_code=1, duration=1.0, output_tail="failed")
    workspace.record_merge(into="main", commit="c" * 40, squash=True, by={"user": "me"})
    workspace.record_removal(by={"user": "me"}, forced=False, branch_deleted=True)


def every_stop_hook_command(hook: StopHook) -> None:
    hook.finish(exit_code=0, signal=None, timed_out=False, duration_seconds=1.0, output_tail="ok")


AGGREGATES = {
    "session": (launched, every_command),
    "host": (lambda: Host(name="h"), every_host_command),
    "lock": (lambda: DirectoryLock(directory="/src"), every_lock_command),
    "workspace": (lambda: Workspace(session_id=uuid4().hex, repository="/r", worktree="/w", branch="b", base_ref=None,
                                    base_commit="a" * 40), every_workspace_command),
    "stop hook": (lambda: StopHook(session_id=uuid4().hex, command="true", host="h", claimed_by={"pid": 1}),
                  every_stop_hook_command),
}


@pytest.mark.unit
@pytest.mark.parametrize("kind", AGGREGATES)
def test_no_command_on_a_copy_changes_the_original(kind):
    """Each aggregate's every command, run on a copy, leaves the original (the cached one) as it was: events
    replace attributes, never change them in place, which is what lets the copy share them."""
    build, commands = AGGREGATES[kind]
    original = build()
    original.collect_events()
    before = copy.deepcopy(vars(original))
    working = copy_for_command(original)
    commands(working)
    assert vars(original) == before
    assert working.collect_events() and working.version > original.version
    assert not original.collect_events()


class _UpgradedHeartbeat(Session.Heartbeat):
    """An event class at its second version: the mapper writes ``class_version`` into its state."""

    class_version = 2


@pytest.mark.unit
def test_the_mapper_stores_each_event_as_the_library_does():
    """``CheckedMapper.to_stored_event`` builds its ``StoredEvent`` without the dataclass's ``__init__``: the same
    object, field for field and byte for byte, for every kind of event, a snapshot and a versioned class."""
    from eventsourcing.persistence import Mapper, StoredEvent

    from agentledger.infrastructure.store import CheckedMapper
    from agentledger.infrastructure.transcoder import OrjsonTranscoder

    ours, library = CheckedMapper(transcoder=OrjsonTranscoder()), Mapper(transcoder=OrjsonTranscoder())
    session = Session.launch(session_id=uuid4(), **LAUNCH)
    session.set_fuse(ttl=30, set_by="me", now=utc_now())
    every_command(session)
    events = [*session.collect_events(), Session.Snapshot.take(session),
              _UpgradedHeartbeat(originator_id=session.id, originator_version=session.version + 1,
                                 timestamp=utc_now(), source="t", fuse_expires_at=None)]
    for event in events:
        mine, theirs = ours.to_stored_event(event), library.to_stored_event(event)
        assert type(mine) is StoredEvent and mine == theirs and vars(mine) == vars(theirs), type(event).__name__
        assert vars(ours.to_domain_event(mine)) == vars(event)
    assert b'"class_version":2' in ours.to_stored_event(events[-1]).state


@pytest.fixture
def cached_ledger():
    ledger = Ledger(env={"PERSISTENCE_MODULE": "eventsourcing.popo", "AGGREGATE_CACHE_MAXSIZE": "100",
                         "TRANSCODER_TOPIC": "agentledger.infrastructure.transcoder:OrjsonTranscoder"})
    yield ledger
    ledger.close()


@pytest.mark.unit
def test_a_command_that_fails_half_way_leaves_the_cache_as_it_was(cached_ledger):
    sid = uuid4()
    cached_ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="me", **LAUNCH)
    cached_ledger.change(sid, lambda s: s.heartbeat(source="t", now=utc_now()))  # now cached, as saved

    def request_then_fail(session: Session) -> None:
        session.request_stop(requested_by="me", signal="TERM", grace=1.0, note=None)
        raise RuntimeError("the decision fails after its first event")

    with pytest.raises(RuntimeError):
        cached_ledger.change(sid, request_then_fail)
    session = cached_ledger.session(sid)
    assert session.version == 3 and session.stop_requests == [] and session.status == "running"


@pytest.mark.unit
def test_a_save_that_records_nothing_leaves_the_events_pending(cached_ledger):
    """A refused save (here a lost compare-and-set) puts each aggregate's events back, in order, so that a retry
    saves the same events: what ``save_retrying`` relies on for a store that was locked."""
    from eventsourcing.persistence import IntegrityError

    first, second = uuid4(), uuid4()
    for sid in (first, second):
        cached_ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="me", **LAUNCH)
    behind, other = cached_ledger.session(first), cached_ledger.session(second)
    cached_ledger.change(first, lambda s: s.heartbeat(source="winner", now=utc_now()))
    behind.heartbeat(source="one", now=utc_now())
    behind.heartbeat(source="two", now=utc_now())
    other.heartbeat(source="three", now=utc_now())
    with pytest.raises(IntegrityError):
        cached_ledger.save(behind, other)
    assert [e.source for e in behind._pending_events] == ["one", "two"]
    assert [e.source for e in other._pending_events] == ["three"]
    assert cached_ledger.session(second).version == other.version - 1  # nothing of the refused save was recorded
    cached_ledger.save(other)
    assert cached_ledger.session(second).last_heartbeat_at == other.last_heartbeat_at and not other._pending_events


@pytest.mark.unit
def test_the_cache_is_fast_forwarded_past_another_writers_events(cached_ledger):
    sid = uuid4()
    cached_ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="me", **LAUNCH)
    cached_ledger.change(sid, lambda s: s.heartbeat(source="t", now=utc_now()))
    other = cached_ledger.repository.get(sid, version=3)  # loaded apart from the cache, as another writer would
    other.request_stop(requested_by="other", signal="TERM", grace=1.0, note=None)
    cached_ledger.save(other)
    assert cached_ledger.session(sid).status == "stopping"
    assert cached_ledger.change(sid, lambda s: s.version) == 4


@pytest.mark.unit
def test_a_change_from_the_cache_asks_the_store_nothing_when_nobody_else_wrote(cached_ledger, monkeypatch):
    sid = uuid4()
    cached_ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="me", **LAUNCH)
    reads = []
    event_store = cached_ledger.repository.event_store
    real_get = event_store.get
    monkeypatch.setattr(event_store, "get", lambda *a, **k: reads.append(k) or real_get(*a, **k))
    for _ in range(3):
        cached_ledger.change(sid, lambda s: s.heartbeat(source="t", now=utc_now()))
    cached_ledger.change(sid, lambda s: s.cancel_fuse(by="t", reason="done"))
    assert reads == []
    assert [type(e).__name__ for e in cached_ledger.session_events(sid)][-4:] == ["Heartbeat"] * 3 + ["FuseCancelled"]


@pytest.mark.unit
def test_a_change_with_nothing_cached_loads_the_session(cached_ledger, monkeypatch):
    sid = uuid4()
    cached_ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="me", **LAUNCH)
    cached_ledger.repository.cache.clear()  # as in a new process: a CLI command's first change
    reads = []
    event_store = cached_ledger.repository.event_store
    real_get = event_store.get
    monkeypatch.setattr(event_store, "get", lambda *a, **k: reads.append(k) or real_get(*a, **k))
    assert cached_ledger.change(sid, lambda s: s.version) == 2
    assert len(reads) == 1


def _written_by_another(ledger: Ledger, sid, command) -> None:
    """``command`` saved as another writer would: from the store, not through this ledger's cache."""
    other = ledger.repository.get(sid, version=len(ledger.session_events(sid)))
    command(other)
    ledger.save(other)


@pytest.mark.unit
def test_a_change_from_an_old_cache_is_decided_again_on_the_state_that_won(cached_ledger):
    sid = uuid4()
    cached_ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="me", **LAUNCH)
    cached_ledger.change(sid, lambda s: s.heartbeat(source="t", now=utc_now()))  # cached at version 3
    _written_by_another(cached_ledger, sid, lambda s: s.cancel_fuse(by="other", reason="done"))
    seen = []

    def beat(session: Session) -> int:
        seen.append((session.version, session.fuse_state))
        session.heartbeat(source="t", now=utc_now())
        return session.version

    assert cached_ledger.change(sid, beat) == 5
    assert seen == [(3, "set"), (4, "cancelled")]  # the old state lost the compare-and-set; the new one decided
    last = cached_ledger.session_events(sid)[-1]
    assert type(last).__name__ == "Heartbeat" and last.fuse_expires_at is None  # a cancelled fuse is not extended


@pytest.mark.unit
def test_an_error_or_no_event_from_an_old_cache_is_not_the_answer(cached_ledger):
    from agentledger.domain.errors import SessionAlreadyStopped

    sid = uuid4()
    cached_ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="me", **LAUNCH)
    cached_ledger.change(sid, lambda s: s.heartbeat(source="t", now=utc_now()))  # cached at version 3
    _written_by_another(cached_ledger, sid, lambda s: s.heartbeat(source="other", now=utc_now()))

    def fails_on_an_old_state(session: Session) -> int:
        if session.version < 4:
            raise RuntimeError("what only the old state would say")
        return session.version

    assert cached_ledger.change(sid, fails_on_an_old_state) == 4  # nothing to save: read again
    _written_by_another(cached_ledger, sid, lambda s: s.record_stop(reason="exited", decided_by={"component": "o"},
                                                                      evidence={}, exit_code=0))
    with pytest.raises(SessionAlreadyStopped):  # the cache still says running; the store says stopped
        cached_ledger.change(sid, lambda s: s.heartbeat(source="t", now=utc_now()))


def test_a_heartbeat_from_the_cache_sees_another_process_on_the_same_store(store):
    """Two stores on one ledger (SQLite file or PostgreSQL schema), as a supervisor and the CLI are."""
    from agentledger.infrastructure.settings import store_location
    from agentledger.infrastructure.store import open_store

    sid = uuid4()
    store.ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="me", **LAUNCH)
    store.ledger.change(sid, lambda s: s.heartbeat(source="t", now=utc_now()))  # not cached yet
    cli = open_store(store_location())
    try:
        cli.ledger.change(sid, lambda s: s.cancel_fuse(by="cli", reason="done"))
    finally:
        cli.close()
    store.ledger.change(sid, lambda s: s.heartbeat(source="t", now=utc_now()))
    events = store.ledger.session_events(sid)
    assert [type(e).__name__ for e in events][2:] == ["Heartbeat", "FuseCancelled", "Heartbeat"]
    assert events[-1].fuse_expires_at is None


def test_snapshots_from_the_aggregate_in_hand_are_the_replayed_state(store):
    """Over 450 versions of every kind of event, each snapshot decodes to the state a replay gives."""
    ledger = store.ledger
    sid = uuid4()
    ledger.launch(session_id=sid, fuse_ttl=3600, fuse_set_by="me", **LAUNCH)
    for i in range(225):
        ledger.change(sid, lambda s, i=i: s.heartbeat(source=f"t{i}", now=utc_now()))
        ledger.change(sid, lambda s, i=i: s.observe_agent(facts={"model": f"m{i % 7}", "tokens_in": i}, heartbeat=False,
                                                           source="t", now=utc_now()))
    snapshots = list(ledger.snapshots.get(sid))
    assert [s.originator_version for s in snapshots] == [200, 400]
    events = list(ledger.events.get(sid))
    for snapshot in snapshots:
        replayed = project_aggregate(None, events[:snapshot.originator_version])
        assert snapshot.state == _state(replayed)
        assert ledger.session_at(sid, snapshot.originator_version + 1).version == snapshot.originator_version + 1
    assert _state(ledger.session(sid)) == _state(project_aggregate(None, events))


def test_a_save_the_store_refuses_leaves_no_snapshot(store):
    """The snapshot is part of the save: a lost compare-and-set records neither the events nor their snapshot."""
    from eventsourcing.persistence import IntegrityError

    ledger = store.ledger
    sid = heartbeated_to(ledger, 199)
    behind = ledger.session(sid)
    ledger.change(sid, lambda s: s.heartbeat(source="winner", now=utc_now()))  # takes version 200, snapshotted
    behind.heartbeat(source="loser", now=utc_now())
    with pytest.raises(IntegrityError):
        ledger.save(behind)
    assert [s.originator_version for s in ledger.snapshots.get(sid)] == [200]
    assert list(ledger.snapshots.get(sid))[0].state["last_heartbeat_at"] == ledger.session(sid).last_heartbeat_at


def heartbeated_to(ledger: Ledger, version: int):
    """A new session with heartbeats up to ``version`` (``Launched`` and ``FuseSet`` are its first two)."""
    sid = uuid4()
    ledger.launch(session_id=sid, fuse_ttl=3600, fuse_set_by="me", **LAUNCH)
    for _ in range(version - 2):
        ledger.change(sid, lambda s: s.heartbeat(source="t", now=utc_now()))
    return sid


def _state(session: Session) -> dict:
    """What a snapshot keeps of a session: its attributes but the three the library stores apart."""
    return {k: v for k, v in vars(session).items() if k not in ("_id", "_version", "_pending_events")}


def test_the_sqlite_ledger_keeps_its_insert_prepared_between_appends(store):
    """The library opens its connections with a statement cache of one, where each append's ``BEGIN`` evicted
    the insert and SQLite compiled it anew; ours keep it (``sqlite_recorder.STATEMENT_CACHE``)."""
    if store.location.kind != "sqlite":
        pytest.skip("a SQLite connection's prepared statements (psycopg prepares on its own terms)")
    ledger = store.ledger
    sid = uuid4()
    ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="me", **LAUNCH)
    for _ in range(3):
        ledger.change(sid, lambda s: s.heartbeat(source="t", now=utc_now()))
    held = ledger.recorder._held._sqlite_conn  # the connection every append of this process goes through
    prepared = [row[0] for row in held.execute("SELECT sql FROM sqlite_stmt")]
    assert ledger.recorder.insert_events_statement in prepared
    assert {"BEGIN", "COMMIT"} <= set(prepared)  # sqlite3's Connection.commit() prepares its COMMIT anew each time


def test_a_refused_sqlite_append_is_the_librarys_error_and_leaves_no_transaction_open(store):
    """The lean insert keeps ``SQLiteTransaction``'s promises: rolled back, ``sqlite3``'s error as the library's."""
    import sqlite3

    from eventsourcing.persistence import IntegrityError

    if store.location.kind != "sqlite":
        pytest.skip("the SQLite recorder's own transaction")
    ledger = store.ledger
    sid = uuid4()
    ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="me", **LAUNCH)
    behind = ledger.session(sid)
    ledger.change(sid, lambda s: s.heartbeat(source="winner", now=utc_now()))
    behind.heartbeat(source="loser", now=utc_now())
    behind.heartbeat(source="loser", now=utc_now())  # the second event's version is free: all or nothing
    with pytest.raises(IntegrityError) as refused:
        ledger.save(behind)
    assert isinstance(refused.value.__cause__, sqlite3.IntegrityError)
    assert not ledger.recorder._held._sqlite_conn.in_transaction
    assert [e.source for e in ledger.session_events(sid)[2:]] == ["winner"]
    ledger.change(sid, lambda s: s.heartbeat(source="next", now=utc_now()))
    assert [e.source for e in ledger.session_events(sid)[2:]] == ["winner", "next"]


def test_a_save_of_several_events_across_the_interval_is_snapshotted(store):
    """A snapshot is due when any of a save's events is at a multiple of the interval, not only its last."""
    ledger = store.ledger
    session = ledger.session(heartbeated_to(ledger, 198))
    for _ in range(4):  # 199 to 202
        session.heartbeat(source="t", now=utc_now())
    ledger.save(session)
    assert [s.originator_version for s in ledger.snapshots.get(session.id)] == [202]


@pytest.mark.unit
def test_the_cache_drops_the_least_recently_used_session_past_its_size():
    from agentledger.application.lean_paths import RecentCache

    cache = RecentCache(maxsize=2)
    a, b, c = uuid4(), uuid4(), uuid4()
    cache.put(a, "a")
    cache.put(b, "b")
    assert cache.get(a) == "a"  # a is now the more recently used
    cache.put(c, "c")
    with pytest.raises(KeyError):
        cache.get(b)
    assert (cache.get(a), cache.get(c)) == ("a", "c")
    cache.put(a, None)  # as the library's: None is not cached
    assert cache.get(a) == "a" and cache.get(c, evict=True) == "c"
    with pytest.raises(KeyError):
        cache.get(c)


@pytest.mark.unit
def test_a_ledger_with_a_cache_size_keeps_a_recent_cache(cached_ledger):
    from agentledger.application.lean_paths import RecentCache

    assert isinstance(cached_ledger.repository.cache, RecentCache) and cached_ledger.repository.cache.maxsize == 100


@pytest.mark.unit
def test_a_session_handed_out_by_a_change_is_not_the_cached_one(cached_ledger):
    """A command that returns the session (``agentledger heartbeat``) gets the one it changed; the cache keeps
    its own copy, which nothing the caller does to the one it holds can change."""
    sid = uuid4()
    cached_ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="me", **LAUNCH)
    handed = cached_ledger.change(sid, lambda s: s.heartbeat(source="t", now=utc_now()) or s)
    assert handed is not cached_ledger.repository.cache.get(sid)
    handed.heartbeat(source="never saved", now=utc_now())  # a caller's mistake: a command on it, never saved
    assert cached_ledger.change(sid, lambda s: (s.version, len(s._pending_events))) == (3, 0)
    kept = cached_ledger.repository.cache.get(sid)
    assert cached_ledger.change(sid, lambda s: s.heartbeat(source="t", now=utc_now())) is None
    assert cached_ledger.repository.cache.get(sid) is kept and kept.version == 4  # decided on in place: no copy


@pytest.mark.unit
def test_a_command_that_fails_after_appending_drops_the_cached_session_and_one_that_appended_nothing_keeps_it(
        cached_ledger):
    sid = uuid4()
    cached_ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="me", **LAUNCH)
    cached_ledger.change(sid, lambda s: s.heartbeat(source="t", now=utc_now()))
    kept = cached_ledger.repository.cache.get(sid)

    def refuses(session: Session) -> None:
        raise ValueError("no")

    with pytest.raises(ValueError):
        cached_ledger.change(sid, refuses)  # twice: on the cached state, then on the loaded one
    assert cached_ledger.repository.cache.get(sid) is kept and kept.version == 3

    def half_way(session: Session) -> None:
        session.heartbeat(source="t", now=utc_now())
        raise ValueError("after an event")

    with pytest.raises(ValueError):
        cached_ledger.change(sid, half_way)
    assert cached_ledger.repository.cache.get(sid) is not kept  # the failed decision is in no cache
    assert cached_ledger.change(sid, lambda s: (s.version, s._pending_events)) == (3, [])
    assert len(cached_ledger.session_events(sid)) == 3
