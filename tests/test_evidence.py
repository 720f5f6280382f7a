"""The typed evidence: it writes exactly the dicts stored events have always held, and reads any of them."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from agentledger.domain.evidence import DecidedOn, Evidence, FromSpool, Observation
from agentledger.domain.liveness import Liveness, PidProbe, ProcessIdentity
from agentledger.domain.policy import ReconcilePolicy
from agentledger.domain.reconciliation import Action, SessionFacts, StopRequestFacts, decide

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 13, 5, 51, 20, tzinfo=timezone.utc)
PROBE = PidProbe(pid=4242, expected_start_time=1_000.25, found_start_time=None, host="h", boot_id="boot-1",
                 liveness=Liveness.NO_SUCH_PROCESS)
REQUEST = StopRequestFacts(cause="user", signal="SIGTERM", grace=10.0, at=NOW - timedelta(seconds=3))
FUSE = {"state": "set", "ttl": 30.0, "expires_at": NOW - timedelta(seconds=5), "live": False}
GUARD_NOTE = {"held_since": NOW - timedelta(minutes=1), "confirmed": "next pass"}

EXAMPLES = {
    "rule": Evidence(Observation.PROBE, decided_on=DecidedOn(7, 123, NOW), supervisor_alive=False,
                     stop_request=REQUEST._asdict(), policy_version="2", pid_probe=PROBE, fuse=FUSE,
                     last_heartbeat_at=NOW - timedelta(seconds=35), mass_stop_guard=GUARD_NOTE),
    "rule, timeout": Evidence(Observation.PROBE, decided_on=DecidedOn(3, None, NOW), supervisor_alive=False,
                              policy_version="2", pid_probe=PROBE._replace(liveness=Liveness.ALIVE), fuse=FUSE,
                              deadline=NOW - timedelta(seconds=1)),
    "waitpid": Evidence(Observation.WAITPID, decided_on=DecidedOn(5), fuse=FUSE, stop_requests=[],
                        pid=4242, returncode=-15, output_summary="Error: boom",
                        from_spool=FromSpool("2026-03-13T05:51:19+00:00", {"component": "reconciler"})),
    "process gone": Evidence(Observation.PROCESS_GONE, decided_on=DecidedOn(4), pid_probe=PROBE,
                             stop_requests=[{"signal": "SIGTERM"}]),
    "host gone": Evidence(Observation.HOST_GONE, decided_on=DecidedOn(9), host="h2", reason="retired",
                          host_silent_from=None),
    "spawn failed": Evidence(Observation.SPAWN_FAILED, error="No such file or directory", errno=2,
                             filename="nope"),
}


@pytest.mark.parametrize("name", EXAMPLES)
def test_what_is_written_reads_back_the_same(name):
    evidence = EXAMPLES[name]
    assert Evidence.from_dict(evidence.as_dict()) == evidence


def test_a_reconciler_stop_records_exactly_the_shape_it_always_has():
    identity = ProcessIdentity(pid=4242, start_time=1_000.25, boot_time=900.0, host="h", boot_id="boot-1")
    facts = SessionFacts(
        session_id="a" * 32, status="stopping", identity=identity, fuse_state="set", fuse_ttl=30.0,
        fuse_expires_at=NOW - timedelta(seconds=5), last_heartbeat_at=NOW - timedelta(seconds=35), deadline=None,
        last_stop_request=REQUEST, version=7, position=123,
    )
    decision = decide(facts, PROBE, NOW, ReconcilePolicy())
    assert decision.action is Action.STOP and decision.evidence is not None
    recorded = replace(decision.evidence, mass_stop_guard=GUARD_NOTE).as_dict()
    assert list(recorded) == ["supervisor_alive", "fuse", "last_heartbeat_at", "pid_probe", "stop_request",
                              "decided_on", "policy_version", "mass_stop_guard"]
    assert recorded == {
        "supervisor_alive": False,
        "fuse": FUSE,
        "last_heartbeat_at": NOW - timedelta(seconds=35),
        "pid_probe": {"pid": 4242, "expected_start_time": 1_000.25, "found_start_time": None, "host": "h",
                      "boot_id": "boot-1", "alive": False, "detail": "no such process"},
        "stop_request": {"cause": "user", "signal": "SIGTERM", "grace": 10.0, "at": NOW - timedelta(seconds=3)},
        "decided_on": {"version": 7, "position": 123, "at": NOW},
        "policy_version": ReconcilePolicy().version,
        "mass_stop_guard": GUARD_NOTE,
    }
    assert list(recorded["fuse"]) == ["state", "ttl", "expires_at", "live"]
    assert list(recorded["decided_on"]) == ["version", "position", "at"]


def test_a_reaped_exit_records_its_keys_in_their_order_the_optional_ones_last():
    recorded = EXAMPLES["waitpid"].as_dict()
    assert list(recorded) == ["observed", "pid", "returncode", "stop_requests", "fuse", "last_heartbeat_at",
                              "decided_on_version", "output_summary", "spooled_at", "recorded_from_spool_by"]
    assert recorded["observed"] == "waitpid" and recorded["decided_on_version"] == 5
    plain = replace(EXAMPLES["waitpid"], output_summary=None, from_spool=None).as_dict()
    assert "output_summary" not in plain and "spooled_at" not in plain and plain["last_heartbeat_at"] is None


def test_the_other_deciders_shapes():
    assert EXAMPLES["process gone"].as_dict() == {
        "observed": "process gone, no supervisor left to record its exit", "pid_probe": PROBE.as_evidence(),
        "stop_requests": [{"signal": "SIGTERM"}], "decided_on_version": 4}
    assert list(EXAMPLES["host gone"].as_dict().items()) == [
        ("host", "h2"), ("reason", "retired"), ("host_silent_from", None), ("decided_on_version", 9)]
    assert list(EXAMPLES["spawn failed"].as_dict().items()) == [
        ("error", "No such file or directory"), ("errno", 2), ("filename", "nope")]


def test_an_old_or_partial_record_reads_with_what_it_lacks_as_none():
    old = Evidence.from_dict({"fuse": {"state": "expired", "live": False}, "decided_on": {"version": 2},
                              "pid_probe": {"pid": 1, "detail": "zombie"}})
    assert old.observed is Observation.PROBE and old.supervisor_alive is None and old.stop_request is None
    assert old.decided_on == DecidedOn(2) and old.decided_at is None
    assert old.pid_probe is not None and (old.pid_probe.pid, old.pid_probe.liveness) == (1, Liveness.ZOMBIE)
    assert old.pid_probe.expected_start_time is None
    assert Evidence.from_dict({}) == Evidence(Observation.PROBE)
    assert Evidence.from_dict({"pid_probe": {"pid": 1}}).pid_probe is None  # it does not say what it found


def test_each_deciders_record_is_recognised_and_their_version_read_alike():
    assert Evidence.from_dict({"observed": "waitpid", "decided_on_version": 3}).decided_on_version == 3
    assert Evidence.from_dict({"observed": "something older"}).observed is Observation.PROCESS_GONE
    assert Evidence.from_dict({"host": "h", "host_silent_from": 1.0}).observed is Observation.HOST_GONE
    assert Evidence.from_dict({"error": "x", "errno": None, "filename": "None"}).observed is Observation.SPAWN_FAILED
