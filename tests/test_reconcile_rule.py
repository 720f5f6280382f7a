"""The pure rule, row by row: every row of the truth tables in docs/reconciler.md.

No store, no processes, no clock: facts, a probe and ``now`` in, a decision out.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from agentledger.domain.liveness import FoundProcess, Liveness, PidProbe, ProcessIdentity, judge
from agentledger.domain.reconciliation import (
    Action,
    ReconcilePolicy,
    SessionFacts,
    StopRequestFacts,
    decide,
)
from agentledger.domain.stop_guard import screen_stops

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 13, 5, 51, 20, tzinfo=timezone.utc)
IDENTITY = ProcessIdentity(pid=4242, start_time=1_000.25, boot_time=900.0, host="h", boot_id="boot-1")
POLICY = ReconcilePolicy(termination_grace=10.0)


def facts(**changes) -> SessionFacts:
    base = SessionFacts(
        session_id="a" * 32,
        status="running",
        identity=IDENTITY,
        fuse_state="set",
        fuse_ttl=30.0,
        fuse_expires_at=NOW - timedelta(seconds=5),  # lapsed
        last_heartbeat_at=NOW - timedelta(seconds=35),
        deadline=None,
        last_stop_request=None,
        version=7,
        position=123,
    )
    return base._replace(**changes)


def probe(liveness: Liveness, error: str | None = None) -> PidProbe:
    return PidProbe(pid=4242, expected_start_time=1_000.25, found_start_time=None, host="h",
                    boot_id="boot-1", liveness=liveness, error=error)


ALIVE, GONE = probe(Liveness.ALIVE), probe(Liveness.NO_SUCH_PROCESS)
LIVE_FUSE = {"fuse_state": "set", "fuse_expires_at": NOW + timedelta(seconds=1)}
DEAD_PROBES = [Liveness.NO_SUCH_PROCESS, Liveness.ZOMBIE, Liveness.PID_REUSED, Liveness.REBOOTED, Liveness.NO_PID]
NOT_LIVE_FUSES = {
    "never set": {"fuse_state": "none", "fuse_expires_at": None, "fuse_ttl": None},
    "lapsed": {"fuse_state": "set", "fuse_expires_at": NOW - timedelta(milliseconds=1)},
    "expiring this instant": {"fuse_state": "set", "fuse_expires_at": NOW},
    "expiry recorded": {"fuse_state": "expired"},
    "cancelled": {"fuse_state": "cancelled"},
}


def timeout_request(signal: str, ago: float) -> StopRequestFacts:
    return StopRequestFacts(cause="timeout", signal=signal, grace=10.0, at=NOW - timedelta(seconds=ago))


# -- the stop rule: rows 1-17 of docs/reconciler.md ----------------------------------


def test_row_1_a_stopped_session_is_left_alone():
    assert decide(facts(status="stopped"), GONE, NOW).action is Action.KEEP


@pytest.mark.parametrize("liveness", list(Liveness))
def test_row_2_a_live_fuse_keeps_the_session_whatever_the_probe(liveness):
    decision = decide(facts(**LIVE_FUSE), probe(liveness), NOW)
    assert decision.action is Action.KEEP and "fuse live until" in decision.why
    assert decide(facts(**LIVE_FUSE), None, NOW).action is Action.KEEP  # no probe needed


def test_row_2_a_live_fuse_needs_no_probe_but_a_lapsed_one_does():
    with pytest.raises(ValueError):
        decide(facts(), None, NOW)


@pytest.mark.parametrize("fuse", NOT_LIVE_FUSES)
def test_row_3_a_probe_that_failed_is_not_a_dead_pid(fuse):
    decision = decide(facts(**NOT_LIVE_FUSES[fuse]), probe(Liveness.UNKNOWN, "AccessDenied"), NOW)
    assert decision.action is Action.KEEP and "could not be checked" in decision.why


@pytest.mark.parametrize("fuse", NOT_LIVE_FUSES)
@pytest.mark.parametrize("liveness", DEAD_PROBES)
def test_rows_4_to_8_no_live_fuse_and_a_dead_pid_is_a_stop(fuse, liveness):
    decision = decide(facts(**NOT_LIVE_FUSES[fuse]), probe(liveness), NOW)
    assert (decision.action, decision.reason) == (Action.STOP, "reconciled")
    assert decision.certain == (liveness in (Liveness.REBOOTED, Liveness.NO_PID))
    assert liveness.value in decision.why


@pytest.mark.parametrize("liveness", DEAD_PROBES)
def test_row_8b_a_dead_pid_whose_supervisor_runs_is_its_to_record_until_the_patience_runs_out(liveness):
    patient = decide(facts(), probe(liveness), NOW, POLICY, supervisor_alive=True)  # fuse over 5 s ago
    assert patient.action is Action.KEEP and "supervisor still runs" in patient.why
    late = NOW + timedelta(seconds=POLICY.supervisor_patience)
    overdue = decide(facts(), probe(liveness), late, POLICY, supervisor_alive=True)
    assert (overdue.action, overdue.reason) == (Action.STOP, "reconciled")
    assert overdue.evidence.as_dict()["supervisor_alive"] is True
    assert decide(facts(), probe(liveness), NOW, POLICY).evidence.as_dict()["supervisor_alive"] is False


@pytest.mark.parametrize(("cause", "reason"), [("user", "user"), ("timeout", "timeout")])
def test_rows_9_and_10_a_requested_stop_ends_with_its_cause(cause, reason):
    request = StopRequestFacts(cause=cause, signal="SIGTERM", grace=10.0, at=NOW - timedelta(seconds=1))
    decision = decide(facts(status="stopping", last_stop_request=request), GONE, NOW)
    assert (decision.action, decision.reason) == (Action.STOP, reason)
    assert decision.evidence.as_dict()["stop_request"]["cause"] == cause


@pytest.mark.parametrize("fuse", ["lapsed", "expiring this instant"])
def test_row_11_a_lapsed_fuse_with_a_live_pid_is_recorded_not_stopped(fuse):
    decision = decide(facts(**NOT_LIVE_FUSES[fuse]), ALIVE, NOW)
    assert decision.action is Action.EXPIRE_FUSE and "alive" in decision.why


@pytest.mark.parametrize("fuse", ["never set", "expiry recorded", "cancelled"])
def test_row_12_an_unwatched_live_session_is_kept(fuse):
    decision = decide(facts(**NOT_LIVE_FUSES[fuse]), ALIVE, NOW)
    assert decision.action is Action.KEEP and "unwatched" in decision.why


def test_row_13_a_passed_timeout_with_a_live_pid_terminates_with_sigterm():
    decision = decide(facts(deadline=NOW - timedelta(seconds=1)), ALIVE, NOW, POLICY)
    assert (decision.action, decision.signal) == (Action.TERMINATE, "SIGTERM")
    assert decision.evidence.as_dict()["deadline"] == NOW - timedelta(seconds=1)


def test_row_14_within_the_grace_period_it_waits():
    f = facts(deadline=NOW - timedelta(seconds=5), status="stopping", last_stop_request=timeout_request("SIGTERM", 9.9))
    assert decide(f, ALIVE, NOW, POLICY).action is Action.KEEP


def test_row_15_after_the_grace_period_sigkill():
    f = facts(deadline=NOW - timedelta(seconds=20), status="stopping", last_stop_request=timeout_request("SIGTERM", 10))
    decision = decide(f, ALIVE, NOW, POLICY)
    assert (decision.action, decision.signal) == (Action.TERMINATE, "SIGKILL")


def test_row_16_after_sigkill_it_only_waits_for_the_process_to_be_gone():
    f = facts(deadline=NOW - timedelta(seconds=60), status="stopping", last_stop_request=timeout_request("SIGKILL", 30))
    assert decide(f, ALIVE, NOW, POLICY).action is Action.KEEP
    assert decide(f, probe(Liveness.ZOMBIE), NOW, POLICY).reason == "timeout"


def test_row_17_a_passed_timeout_under_a_live_fuse_is_the_supervisors_to_enforce():
    assert decide(facts(deadline=NOW - timedelta(seconds=1), **LIVE_FUSE), ALIVE, NOW).action is Action.KEEP


def test_a_users_stop_request_does_not_stop_a_live_process():
    request = StopRequestFacts(cause="user", signal="SIGTERM", grace=10.0, at=NOW - timedelta(seconds=60))
    decision = decide(facts(status="stopping", fuse_state="cancelled", last_stop_request=request), ALIVE, NOW)
    assert decision.action is Action.KEEP


def test_the_evidence_says_what_the_decision_saw():
    decision = decide(facts(), probe(Liveness.PID_REUSED), NOW, POLICY)
    evidence = decision.evidence.as_dict()
    assert evidence["fuse"] == {"state": "set", "live": False, "ttl": 30.0, "expires_at": NOW - timedelta(seconds=5)}
    assert evidence["last_heartbeat_at"] == NOW - timedelta(seconds=35)
    assert evidence["pid_probe"]["detail"] == "pid reused" and evidence["pid_probe"]["pid"] == 4242
    assert evidence["decided_on"] == {"version": 7, "position": 123, "at": NOW}
    assert evidence["policy_version"] == POLICY.version


def test_a_recorded_probe_replays_to_the_same_decision():
    decision = decide(facts(), probe(Liveness.ZOMBIE), NOW)
    recorded = PidProbe.from_evidence(decision.evidence.as_dict()["pid_probe"])
    assert decide(facts(), recorded, NOW) == decision


# -- PID liveness: the rows of the second table ----------------------------------------


def found(offset_seconds: float = 100.25, zombie: bool = False, boot_time: float = 900.0) -> FoundProcess:
    return FoundProcess(start_time=boot_time + offset_seconds, boot_time=boot_time, zombie=zombie)


@pytest.mark.parametrize(
    ("identity_changes", "here_boot", "seen", "error", "expected"),
    [
        ({}, "boot-1", found(), None, Liveness.ALIVE),
        ({}, "boot-1", found(boot_time=950.0), None, Liveness.ALIVE),  # wall clock stepped: offsets still match
        ({}, "boot-1", found(offset_seconds=100.254), None, Liveness.ALIVE),  # within half a clock tick
        ({}, "boot-1", None, None, Liveness.NO_SUCH_PROCESS),
        ({}, "boot-1", found(zombie=True), None, Liveness.ZOMBIE),
        ({}, "boot-1", found(offset_seconds=100.27), None, Liveness.PID_REUSED),
        ({}, "boot-1", found(offset_seconds=5.0, zombie=True), None, Liveness.PID_REUSED),
        ({}, "boot-2", found(), None, Liveness.REBOOTED),
        ({}, "boot-1", None, "AccessDenied", Liveness.UNKNOWN),
        ({"pid": None, "start_time": None, "boot_time": None}, "boot-1", None, None, Liveness.NO_PID),
    ],
)
def test_pid_liveness(identity_changes, here_boot, seen, error, expected):
    identity = IDENTITY._replace(**identity_changes)
    result = judge(identity, here_host="h", here_boot_id=here_boot, found=seen, error=error)
    assert result.liveness is expected
    assert result.dead == (expected not in (Liveness.ALIVE, Liveness.UNKNOWN))


def test_never_judges_another_hosts_pid():
    with pytest.raises(ValueError):
        judge(IDENTITY, here_host="other", here_boot_id="boot-1", found=found())


# -- the mass-stop guard ------------------------------------------------------------------


def stops(count: int, *, certain: bool = False, prefix: str = "s") -> list:
    liveness = Liveness.REBOOTED if certain else Liveness.NO_SUCH_PROCESS
    return [decide(facts(session_id=f"{prefix}{i:031d}"), probe(liveness), NOW) for i in range(count)]


@pytest.mark.parametrize(
    ("would_stop", "not_stopped", "held"),
    [(5, 6, 0), (6, 10, 6), (6, 12, 0), (6, 13, 0), (3, 4, 0), (100, 100, 100), (7, 20, 0), (11, 20, 11)],
)
def test_the_guard_holds_uncertain_stops_over_half_and_over_five(would_stop, not_stopped, held):
    screened = screen_stops(stops(would_stop), not_stopped=not_stopped, policy=POLICY,
                            previously_held=frozenset(), confirm=False)
    assert len(screened.held) == held and len(screened.proceed) == would_stop - held


def test_certain_evidence_is_never_held():
    decisions = stops(6) + stops(4, certain=True, prefix="c")
    screened = screen_stops(decisions, not_stopped=10, policy=POLICY, previously_held=frozenset(), confirm=False)
    assert {d.session_id[0] for d in screened.held} == {"s"} and len(screened.held) == 6
    assert {d.session_id[0] for d in screened.proceed} == {"c"}


def test_the_next_pass_confirms_what_is_still_dead_and_clears_the_rest():
    first = screen_stops(stops(8), not_stopped=10, policy=POLICY, previously_held=frozenset(), confirm=False)
    held = frozenset(d.session_id for d in first.held)
    second = screen_stops(stops(6), not_stopped=10, policy=POLICY, previously_held=held, confirm=False)
    assert second.held == [] and len(second.proceed) == 6
    assert len(second.confirmed) == 6 and len(second.cleared) == 2


def test_confirm_by_hand_stops_everything():
    screened = screen_stops(stops(8), not_stopped=10, policy=POLICY, previously_held=frozenset(), confirm=True)
    assert screened.held == [] and len(screened.proceed) == 8


def test_the_guard_is_configurable():
    loose = ReconcilePolicy(mass_stop_share=1.0, mass_stop_min=0)
    assert screen_stops(stops(10), not_stopped=10, policy=loose, previously_held=frozenset(), confirm=False).held == []
    strict = ReconcilePolicy(mass_stop_share=0.1, mass_stop_min=1)
    assert len(screen_stops(stops(2), not_stopped=10, policy=strict, previously_held=frozenset(),
                            confirm=False).held) == 2
