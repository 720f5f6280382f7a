"""The pure aggregate: rules and facts, no store, no clock."""

from datetime import datetime, timedelta, timezone
from uuid import uuid4

import pytest

from agentledger.domain.errors import NoFuse, SessionAlreadyStopped
from agentledger.domain.exits import ObservedExit, reason_for_exit
from agentledger.domain.session import Session
from agentledger.domain.vocabulary import StopReason

T0 = datetime(2026, 3, 13, 5, 50, 57, tzinfo=timezone.utc)


def launched(**overrides) -> Session:
    fields = dict(argv=["opencode", "run"], cwd="/src", adapter="command", name=None, model=None, prompt=None,
                  group=None, labels={}, host="h", boot_id="b", pid=4242, pid_start_time=1.0, boot_time=0.0,
                  supervisor_pid=4241, log_path=None, launched_by="me")
    fields.update(overrides)
    return Session.launch(session_id=uuid4(), **fields)


def event_names(session: Session) -> list[str]:
    return [type(e).__name__ for e in session.collect_events()]


def test_a_launch_records_what_was_started():
    session = launched(labels={"team": "a"})
    assert (session.pid, session.status, session.fuse_state, session.labels) == (4242, "running", "none", {"team": "a"})
    assert event_names(session) == ["Launched"]


def test_heartbeats_extend_a_live_fuse_by_its_ttl():
    session = launched()
    session.set_fuse(ttl=30, set_by="supervisor", now=T0)
    session.heartbeat(source="supervisor", now=T0 + timedelta(seconds=20))
    assert session.fuse_expires_at == T0 + timedelta(seconds=50)
    assert session.fuse_is_live(T0 + timedelta(seconds=49))
    assert not session.fuse_is_live(T0 + timedelta(seconds=50))


def test_a_heartbeat_never_shortens_the_fuse():
    session = launched()
    session.set_fuse(ttl=60, set_by="person", now=T0)
    session.heartbeat(source="x", now=T0)  # same instant: expiry unchanged, not earlier
    assert session.fuse_expires_at == T0 + timedelta(seconds=60)


def test_a_lapsed_fuse_is_not_revived_by_a_heartbeat():
    session = launched()
    session.set_fuse(ttl=1, set_by="supervisor", now=T0)
    session.heartbeat(source="late", now=T0 + timedelta(seconds=5))
    assert not session.fuse_is_live(T0 + timedelta(seconds=5))
    assert session.last_heartbeat_at is not None


def test_cancel_needs_a_set_fuse():
    session = launched()
    with pytest.raises(NoFuse):
        session.cancel_fuse(by="me", reason="x")
    session.set_fuse(ttl=10, set_by="me", now=T0)
    session.cancel_fuse(by="me", reason="done")
    assert not session.fuse_is_live(T0)


def test_stopping_cancels_the_fuse_first_and_is_final():
    session = launched()
    session.set_fuse(ttl=10, set_by="supervisor", now=T0)
    session.record_stop(reason=StopReason.EXITED, exit_code=7, decided_by={"component": "supervisor"}, evidence={})
    assert event_names(session) == ["Launched", "FuseSet", "FuseCancelled", "Stopped"]
    assert session.stop["exit_code"] == 7
    for command in (
        lambda: session.heartbeat(source="x", now=T0),
        lambda: session.set_fuse(ttl=1, set_by="x", now=T0),
        lambda: session.request_stop(requested_by="x", signal="SIGTERM", grace=1, note=None),
        lambda: session.record_stop(reason=StopReason.USER, decided_by={}, evidence={}),
    ):
        with pytest.raises(SessionAlreadyStopped):
            command()


def test_stop_reasons_are_a_closed_set():
    session = launched()
    with pytest.raises(ValueError):
        session.record_stop(reason="vanished", decided_by={}, evidence={})
    assert not session.is_stopped


def test_a_stop_request_marks_the_session_stopping():
    session = launched()
    session.request_stop(requested_by="me", signal="SIGTERM", grace=10, note="done here")
    assert session.status == "stopping"
    assert session.stop_requests[-1]["note"] == "done here"


@pytest.mark.parametrize(
    ("returncode", "requested", "reason"),
    [(0, False, StopReason.EXITED), (7, False, StopReason.EXITED), (-9, False, StopReason.SIGNALLED),
     (-15, True, StopReason.USER), (0, True, StopReason.USER)],
)
def test_exit_status_to_reason(returncode, requested, reason):
    assert reason_for_exit(ObservedExit(returncode, None), stop_was_requested=requested) is reason
