"""Reconcile passes on a real SQLite store, over real processes (spawned, killed, reaped)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any
from uuid import UUID

import psutil
import pytest
from conftest import dead_identity, record

from agentledger.application.clock import utc_now
from agentledger.application.reconciling import Outcome, Reconciler, load_guard
from agentledger.bootstrap import this_machine
from agentledger.domain.policy import ReconcilePolicy
from agentledger.infrastructure import processes
from agentledger.infrastructure.host import boot_id, host_name
from agentledger.infrastructure.store import open_store
from agentledger.projections.catchup import catch_up

NO_GUARD = ReconcilePolicy(mass_stop_share=1.0)


def event_types(store, sid: UUID) -> list[str]:
    return [type(e).__name__ for e in store.ledger.session_events(sid)]


def stops_in_log(store) -> int:
    return store.db.execute(
        f"SELECT count(*) FROM {store.events_table} WHERE topic = 'agentledger.domain.session:Session.Stopped'"
    ).fetchone()[0]


def test_a_dead_pid_with_a_lapsed_fuse_is_stopped_with_its_evidence(store, spawn):
    identity = dead_identity(spawn)
    sid = record(store, identity)
    [judged] = Reconciler(store, machine=this_machine(), policy=NO_GUARD).run_pass().judged
    assert (judged.outcome, judged.decision.reason) == (Outcome.STOPPED, "reconciled")
    stopped = store.ledger.session_events(sid)[-1]
    assert type(stopped).__name__ == "Stopped" and stopped.reason == "reconciled"
    assert stopped.decided_by["component"] == "reconciler" and stopped.decided_by["pid"] == os.getpid()
    evidence = stopped.evidence
    assert evidence["pid_probe"]["pid"] == identity.pid and evidence["pid_probe"]["detail"] == "no such process"
    assert evidence["pid_probe"]["expected_start_time"] == identity.start_time
    assert evidence["fuse"]["state"] == "set" and not evidence["fuse"]["live"]
    assert evidence["decided_on"]["version"] == 2
    assert evidence["decided_on"]["position"] == store.event_position(sid.hex, 2)
    assert evidence["policy_version"] == "2"


def test_a_reused_pid_is_judged_dead_and_the_process_that_has_it_now_is_not_touched(store, spawn):
    impostor = spawn()
    identity = processes.identity_of(impostor.pid)
    recorded = identity._replace(start_time=identity.start_time - 30)  # launched 30s earlier
    sid = record(store, recorded)
    [judged] = Reconciler(store, machine=this_machine(), policy=NO_GUARD).run_pass().judged
    assert judged.outcome == Outcome.STOPPED
    probe = store.ledger.session_events(sid)[-1].evidence["pid_probe"]
    assert probe["detail"] == "pid reused" and probe["found_start_time"] == pytest.approx(identity.start_time)
    assert impostor.poll() is None  # alive: the reconciler records, it never kills on a stop


def test_a_live_pid_is_never_stopped_its_lapsed_fuse_is_recorded_once(store, spawn):
    alive = processes.identity_of(spawn().pid)
    sid = record(store, alive)
    reconciler = Reconciler(store, machine=this_machine(), policy=NO_GUARD)
    assert [j.outcome for j in reconciler.run_pass().judged] == [Outcome.FUSE_EXPIRED]
    assert [j.outcome for j in reconciler.run_pass().judged] == [Outcome.KEPT]
    assert event_types(store, sid) == ["Launched", "FuseSet", "FuseExpired"]
    catch_up(store)
    assert tuple(store.db.execute("SELECT status, fuse_state FROM sessions").fetchone()) == ("unwatched", "expired")


def test_a_live_fuse_keeps_a_dead_session_until_it_lapses(store, spawn):
    sid = record(store, dead_identity(spawn), fuse_ttl=60.0, lapsed=False)
    [judged] = Reconciler(store, machine=this_machine(), policy=NO_GUARD).run_pass().judged
    assert judged.outcome == Outcome.KEPT and "fuse live until" in judged.decision.why
    assert event_types(store, sid) == ["Launched", "FuseSet"]


@pytest.mark.parametrize("interference", ["heartbeat", "fuse set", "supervisor stop"])
def test_a_change_between_the_decision_and_its_append_makes_it_judge_again(store, spawn, interference):
    """The compare-and-set: an event appended after the reconciler loaded the session wins."""
    sid = record(store, dead_identity(spawn))
    other = open_store(store.location)  # another process, as far as SQLite is concerned

    def meanwhile(session_id: UUID, decision: Any) -> None:
        if interference == "heartbeat":
            other.ledger.change(session_id, lambda s: s.heartbeat(source="adapter", now=utc_now()))
        elif interference == "fuse set":
            other.ledger.change(session_id, lambda s: s.set_fuse(ttl=60, set_by="user:me", now=utc_now()))
        else:
            other.ledger.change(session_id, lambda s: s.record_stop(
                reason="exited", exit_code=3, decided_by={"component": "supervisor"}, evidence={}))
        reconciler.before_append = None

    reconciler = Reconciler(store, machine=this_machine(), policy=NO_GUARD, before_append=meanwhile)
    [judged] = reconciler.run_pass().judged
    other.close()
    assert judged.outcome == Outcome.KEPT and judged.attempts == 2
    types = event_types(store, sid)
    assert types.count("Stopped") == (1 if interference == "supervisor stop" else 0)
    if interference == "supervisor stop":
        assert store.ledger.session(sid).stop["exit_code"] == 3
    else:
        assert store.ledger.session(sid).fuse_is_live(utc_now())


def test_dry_run_appends_nothing(store, spawn):
    record(store, dead_identity(spawn))
    record(store, processes.identity_of(spawn().pid))
    head = store.ledger.recorder.max_notification_id()
    report = Reconciler(store, machine=this_machine(), policy=NO_GUARD).run_pass(dry_run=True)
    assert sorted(j.decision.action.value for j in report.judged) == ["expire-fuse", "stop"]
    assert {j.outcome for j in report.judged} == {Outcome.WOULD}
    assert store.ledger.recorder.max_notification_id() == head


def test_only_sessions_of_this_host_are_judged(store, spawn):
    identity = dead_identity(spawn)
    record(store, identity, host="elsewhere")
    assert Reconciler(store, machine=this_machine(), policy=NO_GUARD).run_pass().judged == []


def test_a_reboot_is_certain_evidence(store, spawn):
    sid = record(store, processes.identity_of(spawn().pid), boot_id="an-earlier-boot")
    [judged] = Reconciler(store, machine=this_machine()).run_pass().judged
    assert judged.outcome == Outcome.STOPPED and judged.decision.certain
    assert store.ledger.session_events(sid)[-1].evidence["pid_probe"]["detail"] == "rebooted"


def test_the_mass_stop_guard_holds_then_the_next_pass_confirms(store, spawn):
    alive = [record(store, processes.identity_of(spawn().pid), fuse_ttl=600, lapsed=False) for _ in range(2)]
    dead = [record(store, dead_identity(spawn)) for _ in range(8)]
    rebooted = record(store, processes.identity_of(spawn().pid), boot_id="an-earlier-boot")
    reconciler = Reconciler(store, machine=this_machine())
    first = reconciler.run_pass()
    assert first.counts == {Outcome.HELD: 8, Outcome.KEPT: 2, Outcome.STOPPED: 1}  # certain evidence is not held
    assert store.ledger.session(rebooted).is_stopped and not any(store.ledger.session(s).is_stopped for s in dead)
    guard = load_guard(store.ledger, host_name())
    assert sorted(guard.held) == sorted(s.hex for s in dead) and guard.would_stop == 9
    assert first.guard["tripped"] and first.guard["recorded"]

    second = reconciler.run_pass()
    assert second.counts == {Outcome.STOPPED: 8, Outcome.KEPT: 2}
    assert second.guard["released"]["how"] == "next pass" and len(second.guard["released"]["confirmed"]) == 8
    note = store.ledger.session_events(dead[0])[-1].evidence["mass_stop_guard"]
    assert note["confirmed"] == "next pass" and note["held_since"] == guard.tripped_at
    assert load_guard(store.ledger, host_name()).held == []
    assert not any(store.ledger.session(s).is_stopped for s in alive)


def test_a_glitch_that_goes_away_is_cleared_and_confirm_stops_at_once(store, spawn):
    sleepers = [spawn() for _ in range(8)]
    sids = [record(store, processes.identity_of(p.pid)) for p in sleepers]
    for sid in sids:  # the fuses lapsed long ago and were recorded; now the processes "vanish"
        store.ledger.change(sid, lambda s: s.record_fuse_expired(decided_by={}, evidence={}, now=utc_now()))
    for p in sleepers:
        p.kill()
        p.wait()
    reconciler = Reconciler(store, machine=this_machine())
    assert reconciler.run_pass().counts == {Outcome.HELD: 8}
    confirmed = reconciler.run_pass(confirm=True)
    assert confirmed.counts == {Outcome.STOPPED: 8}
    assert confirmed.guard["released"]["how"] == "confirmed by hand"


def test_a_passed_timeout_terminates_an_unwatched_process_then_stops_it(store):
    child = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        sid = record(store, processes.identity_of(child.pid), fuse_ttl=None, timeout=0.001)
        reconciler = Reconciler(store, machine=this_machine(), policy=NO_GUARD)
        [judged] = reconciler.run_pass().judged
        assert (judged.outcome, judged.decision.signal) == (Outcome.TERMINATING, "SIGTERM")
        assert child.wait(timeout=10) == -15
        [judged] = reconciler.run_pass().judged
        assert (judged.outcome, judged.decision.reason) == (Outcome.STOPPED, "timeout")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    events = store.ledger.session_events(sid)
    assert [type(e).__name__ for e in events] == ["Launched", "StopRequested", "Stopped"]
    assert (events[1].cause, events[1].signal, events[1].requested_by) == ("timeout", "SIGTERM", "reconciler")


def test_told_to_stop_it_finishes_the_decision_in_hand_and_leaves_the_rest(store, spawn):
    sids = [record(store, dead_identity(spawn)) for _ in range(5)]
    reconciler = Reconciler(store, machine=this_machine(), policy=NO_GUARD, before_append=lambda *_: reconciler.stopping.set())
    report = reconciler.run_pass()
    assert report.counts == {Outcome.STOPPED: 1, Outcome.NOT_REACHED: 4}
    assert sum(store.ledger.session(s).is_stopped for s in sids) == 1
    assert stops_in_log(store) == 1


def _racer(go: str, rounds: int) -> subprocess.Popen:
    """``agentledger reconcile --confirm --json``, ``rounds`` times, from the moment ``go`` exists."""
    script = (
        "import os, sys, time\n"
        f"while not os.path.exists({go!r}): time.sleep(0.001)\n"
        "from agentledger.entrypoints.cli import main\n"
        f"sys.exit(max(main(['reconcile', '--confirm', '--json']) for _ in range({rounds})))\n"
    )
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ))


def test_two_reconcilers_racing_over_100_dead_sessions_make_exactly_100_stops(store, spawn, tmp_path):
    import json

    sids = [record(store, dead_identity(spawn)) for _ in range(100)]
    go = tmp_path / "go"
    racers = [_racer(str(go), rounds=3) for _ in range(2)]
    go.touch()
    stopped_by_each = []
    for racer in racers:
        out, err = racer.communicate(timeout=180)
        assert racer.returncode == 0, err
        reports = [json.loads(line) for line in out.splitlines()]
        stopped_by_each.append(sum(r["counts"].get(Outcome.STOPPED, 0) for r in reports))
    assert stops_in_log(store) == 100
    assert sum(stopped_by_each) == 100  # each stop was appended, and claimed, by exactly one of them
    for sid in sids:
        types = event_types(store, sid)
        assert types.count("Stopped") == 1 and types[-1] == "Stopped"


def test_the_probe_checks_start_time_against_the_boot_it_was_read_with(spawn):
    process = spawn()
    identity = processes.identity_of(process.pid)
    assert processes.probe(identity).alive
    assert psutil.Process(process.pid).create_time() == pytest.approx(identity.start_time)
    assert identity.host == host_name() and identity.boot_id == boot_id()


def test_the_process_watch_answers_from_pidfds_and_notices_an_exit(spawn):
    process = spawn()
    identity = processes.identity_of(process.pid)
    watch = processes.ProcessWatch()
    watch.start_pass()
    assert watch.probe(identity).alive
    watch.finish_pass()
    watch.start_pass()
    assert watch.probe(identity).alive  # from the pidfd
    watch.finish_pass()
    process.kill()
    process.wait()
    watch.start_pass()
    assert watch.probe(identity).liveness == "no such process"
    watch.finish_pass()
    watch.close()


def test_a_session_that_cannot_be_loaded_fails_alone(store, spawn):
    broken, fine = record(store, dead_identity(spawn)), record(store, dead_identity(spawn))
    catch_up(store)
    store.db.execute(f"UPDATE {store.events_table} SET topic = 'gone.module:Vanished' WHERE originator_id = ?"
                     " AND originator_version = 2", (broken.hex,))
    fresh = open_store(store.location)  # nothing cached
    report = Reconciler(fresh, machine=this_machine(), policy=NO_GUARD).run_pass()
    outcomes = {j.decision.session_id: j for j in report.judged}
    assert outcomes[fine.hex].outcome == Outcome.STOPPED
    assert outcomes[broken.hex].outcome == Outcome.FAILED and "Vanished" in outcomes[broken.hex].error
    fresh.close()


def test_reconcile_exits_1_when_a_session_could_not_be_judged(cli, store, spawn):
    broken, fine = record(store, dead_identity(spawn)), record(store, dead_identity(spawn))
    catch_up(store)
    store.db.execute(f"UPDATE {store.events_table} SET topic = 'gone.module:Vanished' WHERE originator_id = ?"
                     " AND originator_version = 2", (broken.hex,))
    result = cli("reconcile", "--mass-stop-share", "1", check=False)
    assert result.returncode == 1 and "1 failed" in result.stdout and "1 stopped" in result.stdout, result.stdout
    assert cli.json("status", fine.hex)["status"] == "stopped"  # the others were judged all the same


def _supervised(store, identity, supervisor_pid: int, sid: UUID | None = None) -> UUID:
    """A session whose PID is ``identity``'s, whose supervisor is ``supervisor_pid``, its fuse lapsed 6 s ago."""
    from datetime import timedelta
    from uuid import uuid4

    from agentledger.domain.session import Session

    sid = sid or uuid4()
    session = Session.launch(
        session_id=sid, argv=["sleep", "600"], cwd="/", adapter="command", name=None, model=None, prompt=None,
        group=None, labels={}, host=identity.host, boot_id=identity.boot_id, pid=identity.pid,
        pid_start_time=identity.start_time, boot_time=identity.boot_time, supervisor_pid=supervisor_pid,
        log_path=None, launched_by="test")
    session.set_fuse(ttl=1.0, set_by="supervisor", now=utc_now() - timedelta(seconds=7))
    store.ledger.save(session)
    return sid


def test_a_dead_pid_whose_supervisor_still_runs_is_left_to_it_until_its_patience_runs_out(store, spawn):
    """The supervisor stalled (a locked store, say) past its fuse, its agent dead: it holds the exact exit,
    so the reconciler waits for it, up to supervisor_patience after the fuse ended, and no longer."""
    from uuid import uuid4

    identity = dead_identity(spawn)
    sid = uuid4()
    stuck = spawn(sys.executable, "-c", "import time; time.sleep(60)", sid.hex)  # names its session, as one does
    _supervised(store, identity, stuck.pid, sid)

    [judged] = Reconciler(store, machine=this_machine(), policy=NO_GUARD).run_pass().judged
    assert judged.outcome == Outcome.KEPT and "its supervisor still runs" in judged.decision.why
    assert event_types(store, sid)[-1] == "FuseSet"

    impatient = ReconcilePolicy(mass_stop_share=1.0, supervisor_patience=5.0)  # the fuse ended 6 s ago
    [judged] = Reconciler(store, machine=this_machine(), policy=impatient).run_pass().judged
    assert (judged.outcome, judged.decision.reason) == (Outcome.STOPPED, "reconciled")
    assert store.ledger.session_events(sid)[-1].evidence["supervisor_alive"] is True


def test_a_supervisor_gone_leaves_the_stop_to_the_reconciler_at_once(store, spawn):
    identity = dead_identity(spawn)
    sid = _supervised(store, identity, dead_identity(spawn).pid)
    [judged] = Reconciler(store, machine=this_machine(), policy=NO_GUARD).run_pass().judged
    assert (judged.outcome, judged.decision.reason) == (Outcome.STOPPED, "reconciled")
    assert store.ledger.session_events(sid)[-1].evidence["supervisor_alive"] is False


def test_an_exit_spooled_while_the_pass_ran_is_recorded_instead_of_a_reconciled_stop(store, spawn, home):
    """The pass read the spool at its start; the supervisor spooled its agent's exit code afterwards.
    About to stop the session, the reconciler finds that exit and records it: the code is not lost."""
    from agentledger.infrastructure.spool import Spool

    identity = dead_identity(spawn)
    supervisor_pid = dead_identity(spawn).pid
    sid = _supervised(store, identity, supervisor_pid)
    spool = Spool(home)
    reconciler = Reconciler(store, machine=this_machine(), policy=NO_GUARD, spool=spool)
    first_looks_done = reconciler.watch.finish_pass

    def then_the_supervisor_spools() -> None:  # after the first looks, before the compare-and-set
        first_looks_done()
        spool.put(sid.hex, {"returncode": 3, "signal_name": None, "pid": identity.pid, "observed_at": "x",
                            "supervisor": {"component": "supervisor", "host": identity.host, "pid": supervisor_pid,
                                           "user": "test"}, "summary": "error: boom"})

    reconciler.watch.finish_pass = then_the_supervisor_spools
    [judged] = reconciler.run_pass().judged
    assert judged.outcome == Outcome.FROM_SPOOL
    stopped = store.ledger.session_events(sid)[-1]
    assert (stopped.reason, stopped.exit_code, stopped.note) == ("exited", 3, "error: boom")
    assert stopped.decided_by["component"] == "supervisor" and stopped.evidence["recorded_from_spool_by"]
    assert spool.get(sid.hex) is None
