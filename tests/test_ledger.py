"""The Ledger (the service layer's session log) on the event library's in-memory recorder: no file, no server.

The same commands the store-backed tests run, in milliseconds: compare-and-set
on a lost race, a stop that is final, a launch with its fuse in one save.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from agentledger.application.clock import utc_now
from agentledger.application.errors import SessionNotFound
from agentledger.application.ledger import Ledger
from agentledger.domain.errors import SessionAlreadyStopped
from agentledger.domain.session import Session

pytestmark = pytest.mark.unit

LAUNCH = dict(argv=["opencode", "run"], cwd="/src", adapter="command", name=None, model=None, prompt=None, group=None,
              labels={}, host="h", boot_id="b", pid=4242, pid_start_time=1.0, boot_time=0.0, supervisor_pid=4241,
              log_path=None, launched_by="me")


@pytest.fixture
def ledger():
    ledger = Ledger(env={"PERSISTENCE_MODULE": "eventsourcing.popo",
                         "TRANSCODER_TOPIC": "agentledger.infrastructure.transcoder:OrjsonTranscoder"})
    yield ledger
    ledger.close()


def test_a_launch_and_its_fuse_are_one_save(ledger):
    sid = uuid4()
    ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="supervisor", **LAUNCH)
    assert [type(e).__name__ for e in ledger.session_events(sid)] == ["Launched", "FuseSet"]
    assert ledger.session(sid).fuse_is_live(utc_now())


def test_a_change_that_loses_a_race_is_decided_again_on_the_state_that_won(ledger):
    sid = uuid4()
    ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="supervisor", **LAUNCH)
    seen: list[int] = []

    def stop_unless_beaten(session: Session) -> str:
        seen.append(session.version)
        if len(seen) == 1:  # another writer stops it between this load and this save
            ledger.change(sid, lambda other: other.record_stop(reason="exited", exit_code=0,
                                                               decided_by={"component": "supervisor"}, evidence={}))
        if session.is_stopped:
            return "already stopped"
        session.record_stop(reason="reconciled", decided_by={"component": "reconciler"}, evidence={})
        return "stopped"

    assert ledger.change(sid, stop_unless_beaten) == "already stopped"
    assert seen[1] > seen[0]  # the second attempt saw the winner's events
    stops = [e for e in ledger.session_events(sid) if isinstance(e, Session.Stopped)]
    assert [s.reason for s in stops] == ["exited"]  # exactly one Stopped: the compare-and-set held


def test_a_stopped_session_takes_no_further_command_and_an_unknown_one_is_a_usage_error(ledger):
    sid = uuid4()
    ledger.launch(session_id=sid, fuse_ttl=None, fuse_set_by="supervisor", **LAUNCH)
    ledger.change(sid, lambda s: s.record_stop(reason="exited", exit_code=3, decided_by={}, evidence={}))
    with pytest.raises(SessionAlreadyStopped):
        ledger.change(sid, lambda s: s.heartbeat(source="late", now=utc_now() + timedelta(seconds=1)))
    with pytest.raises(SessionNotFound) as missing:
        ledger.session(uuid4())
    assert missing.value.exit_code == 2


def test_a_supervisor_beats_three_times_per_ttl_and_never_less_than_twice():
    from agentledger.application.errors import UsageError
    from agentledger.application.launching import heartbeat_interval

    assert heartbeat_interval(30.0, None) == 10.0
    assert heartbeat_interval(30.0, 15.0) == 15.0
    with pytest.raises(UsageError) as refused:
        heartbeat_interval(30.0, 15.5)
    assert refused.value.exit_code == 2 and "one late heartbeat would let the fuse lapse" in str(refused.value)
