"""The pure aggregate: rules and facts, no store, no clock."""

from datetime import datetime, timedelta, timezone
from uuid import uuid4

import pytest

from agentledger.domain.errors import FuseStillLive, NoFuse, SessionAlreadyStopped
from agentledger.domain.exits import ObservedExit, reason_for_exit
from agentledger.domain.session import Session
from agentledger.domain.vocabulary import StopReason

pytestmark = pytest.mark.unit

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


def test_expiry_counts_heartbeats_a_lapsed_fuse_is_live_again_after_one():
    session = launched()
    session.set_fuse(ttl=1, set_by="supervisor", now=T0)
    assert not session.fuse_is_live(T0 + timedelta(seconds=5))
    session.heartbeat(source="late", now=T0 + timedelta(seconds=5))
    assert session.fuse_is_live(T0 + timedelta(seconds=5))
    assert session.fuse_expires_at == T0 + timedelta(seconds=6)


def test_a_heartbeat_revives_a_recorded_expiry_but_never_a_cancelled_fuse():
    session = launched()
    session.set_fuse(ttl=1, set_by="supervisor", now=T0)
    session.record_fuse_expired(decided_by={"component": "reconciler"}, evidence={}, now=T0 + timedelta(seconds=2))
    assert (session.status, session.fuse_state) == ("unwatched", "expired")
    session.heartbeat(source="supervisor", now=T0 + timedelta(seconds=3))
    assert (session.status, session.fuse_state) == ("running", "set")
    session.cancel_fuse(by="me", reason="done watching")
    session.heartbeat(source="x", now=T0 + timedelta(seconds=3))
    assert not session.fuse_is_live(T0 + timedelta(seconds=3)) and session.fuse_state == "cancelled"


def test_a_fuse_expiry_is_recorded_only_once_it_lapsed_and_once_per_fuse():
    session = launched()
    with pytest.raises(NoFuse):
        session.record_fuse_expired(decided_by={}, evidence={}, now=T0)
    session.set_fuse(ttl=10, set_by="supervisor", now=T0)
    with pytest.raises(FuseStillLive):
        session.record_fuse_expired(decided_by={}, evidence={}, now=T0 + timedelta(seconds=9))
    session.record_fuse_expired(decided_by={}, evidence={}, now=T0 + timedelta(seconds=10))
    with pytest.raises(NoFuse):
        session.record_fuse_expired(decided_by={}, evidence={}, now=T0 + timedelta(seconds=11))
    session.set_fuse(ttl=10, set_by="user:me", now=T0 + timedelta(seconds=12))
    assert session.status == "running"


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
    ("returncode", "cause", "reason"),
    [(0, None, StopReason.EXITED), (7, None, StopReason.EXITED), (-9, None, StopReason.SIGNALLED),
     (-15, "user", StopReason.USER), (0, "user", StopReason.USER), (-15, "timeout", StopReason.TIMEOUT),
     (-9, "timeout", StopReason.TIMEOUT)],
)
def test_exit_status_to_reason(returncode, cause, reason):
    assert reason_for_exit(ObservedExit(returncode, None), stop_cause=cause) is reason


def test_a_master_timeout_runs_from_the_launch():
    session = launched(timeout=90.0)
    assert session.deadline == session.created_on + timedelta(seconds=90)
    assert launched().deadline is None


def test_events_that_record_their_time_use_their_own_timestamp():
    """While an event applies, modified_on is still the previous event's: times come from the event itself."""
    session = launched()
    session.set_fuse(ttl=30, set_by="test", now=T0)
    session.heartbeat(source="test", now=T0 + timedelta(seconds=1))
    heartbeat = session.collect_events()[-1]
    assert session.last_heartbeat_at == heartbeat.timestamp
    session.request_stop(requested_by="me", signal="SIGTERM", grace=1.0, note=None)
    session.record_stop(reason=StopReason.USER, decided_by={"component": "cli"}, evidence={})
    requested, _cancelled, stopped = session.collect_events()
    assert session.stop_requests[-1]["at"] == requested.timestamp
    assert session.stop["at"] == stopped.timestamp.isoformat()


# -- the fuse and the status, as values ---------------------------------------------------


def test_a_fuse_is_live_until_its_expiry_and_only_while_set():
    from agentledger.domain.fuse import Fuse, fuse_live

    armed = Fuse("set", T0 + timedelta(seconds=30), ttl=30)
    assert armed.live_at(T0) and not armed.live_at(T0 + timedelta(seconds=30))
    assert not Fuse("cancelled", T0 + timedelta(seconds=30), ttl=30).live_at(T0)
    assert not Fuse("none").live_at(T0)
    expiry = (T0 + timedelta(seconds=30)).timestamp()  # read-model rows: epoch seconds, the same rule
    assert fuse_live("set", expiry, T0.timestamp()) and not fuse_live("set", expiry, expiry)
    assert not fuse_live("expired", expiry, T0.timestamp()) and not fuse_live("set", None, T0.timestamp())


def test_evidence_of_life_extends_a_set_or_lapsed_fuse_never_a_cancelled_one_and_never_shortens_it():
    from agentledger.domain.fuse import Fuse, extended_expiry

    assert extended_expiry("set", T0 + timedelta(seconds=5), 30, T0) == T0 + timedelta(seconds=30)
    assert extended_expiry("expired", T0 - timedelta(seconds=5), 30, T0) == T0 + timedelta(seconds=30)
    assert extended_expiry("set", T0 + timedelta(seconds=90), 30, T0) == T0 + timedelta(seconds=90)
    assert extended_expiry("cancelled", T0, 30, T0) is None and extended_expiry("none", None, None, T0) is None
    session = launched()
    session.set_fuse(ttl=30, set_by="supervisor", now=T0)
    assert session.fuse == Fuse("set", T0 + timedelta(seconds=30), 30.0)
    assert session.fuse.as_evidence(T0) == {"state": "set", "ttl": 30.0, "expires_at": T0 + timedelta(seconds=30),
                                            "live": True}


@pytest.mark.parametrize(("recorded", "live", "silent", "shown"), [
    ("running", True, False, "running"), ("running", False, False, "unwatched"),
    ("unwatched", True, False, "running"), ("stopping", False, False, "stopping"),
    ("stopped", True, True, "stopped"), ("running", True, True, "host-silent"), ("stopping", True, True, "host-silent"),
])
def test_the_status_is_derived_once_from_the_record_the_fuse_and_the_host(recorded, live, silent, shown):
    from agentledger.domain.fuse import session_status

    expiry = T0 + timedelta(seconds=30 if live else -1)
    assert session_status(recorded, "set", expiry, T0, host_silent=silent) == shown
    assert session_status(recorded, "set", expiry.timestamp(), T0.timestamp(), host_silent=silent) == shown
