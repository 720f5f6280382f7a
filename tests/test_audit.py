"""Audit and replay over real processes and a real store: why, history, --as-of, replay, verify."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from uuid import UUID

import pytest
from conftest import dead_identity, record, wait_for

from agentledger.application.clock import utc_now
from agentledger.infrastructure import processes


def stopped(cli, sid: str) -> dict:
    return wait_for(lambda: (s := cli.json("status", sid))["status"] == "stopped" and s)


# -- why, for every stop reason ------------------------------------------------------


def test_why_exited_names_the_supervisor_and_the_exit_code(cli):
    sid = cli.launch("sh", "-c", "exit 3", options=("--fuse-ttl", "5s"))
    stopped(cli, sid)
    facts = cli.json("why", sid)
    assert facts["stop"]["reason"] == "exited" and facts["stop"]["decider"] == "supervisor"
    assert facts["stop"]["exit_code"] == 3 and facts["stop"]["decided_by"]["component"] == "supervisor"
    assert facts["stop"]["fuse"]["live"] is True  # the supervisor was watching: it saw the exit itself
    assert facts["stop"]["evidence"]["observed"] == "waitpid"
    text = cli("why", sid).stdout
    assert "exited by itself with exit code 3" in text and "supervisor" in text


def test_why_signalled_names_the_signal(cli):
    sid = cli.launch("sh", "-c", "kill -9 $$")
    stopped(cli, sid)
    stop = cli.json("why", sid)["stop"]
    assert (stop["reason"], stop["decider"], stop["signal"], stop["exit_code"]) == (
        "signalled", "supervisor", "SIGKILL", None)
    assert "killed by SIGKILL" in cli("why", sid).stdout


def test_why_user_names_who_asked(cli):
    sid = cli.launch("sleep", "60")
    cli("stop", sid)
    stop = cli.json("why", sid)["stop"]
    assert stop["reason"] == "user" and stop["decider"] == "user"
    assert stop["stop_requests"] and stop["stop_requests"][-1]["signal"] == "SIGTERM"
    assert "A user stopped it" in cli("why", sid).stdout


def test_why_spawn_failed_names_the_error(cli):
    result = cli("launch", "--", "no-such-binary-anywhere", check=False)
    assert result.returncode != 0
    sid = cli.json_lines("list", "--all")[0]["id"]
    stop = cli.json("why", sid)["stop"]
    assert stop["reason"] == "spawn-failed" and stop["decider"] == "supervisor"
    assert "No such file" in stop["evidence"]["error"]
    assert "could not be started" in cli("why", sid).stdout


def test_why_timeout_names_the_timeout(cli):
    sid = cli.launch("sleep", "60", options=("--timeout", "500ms"))
    stop = cli.json("why", stopped(cli, sid)["id"])["stop"]
    assert stop["reason"] == "timeout" and stop["decider"] == "timeout"
    assert stop["stop_requests"][-1]["cause"] == "timeout"
    assert "master timeout passed" in cli("why", sid).stdout


def test_why_reconciled_names_the_dead_pid_and_the_lapsed_fuse(cli, store, spawn):
    sid = record(store, dead_identity(spawn)).hex
    cli("reconcile")
    facts = cli.json("why", sid)
    stop = facts["stop"]
    assert stop["reason"] == "reconciled" and stop["decider"] == "reconciler"
    assert stop["pid_probe"]["alive"] is False and stop["pid_probe"]["detail"] == "no such process"
    assert stop["fuse"]["state"] == "set" and stop["fuse"]["live"] is False
    assert stop["decided_on"]["version"] == stop["version"] - 2  # FuseCancelled, then Stopped
    assert stop["decided_on"]["position"] is not None
    text = cli("why", sid).stdout
    assert "Nobody was watching it" in text and "no such process" in text and "reconciler" in text


def test_why_running_says_what_keeps_it_running_and_what_would_stop_it(cli):
    sid = cli.launch("sleep", "60", options=("--fuse-ttl", "1h"))
    facts = cli.json("why", sid)
    assert facts["status"] == "running" and facts["running"]["fuse"]["live"] is True
    assert facts["running"]["pid_probe"]["alive"] is True
    text = cli("why", sid).stdout
    assert "A live fuse keeps it running" in text and "What would stop it" in text
    cli("stop", sid)


def test_why_on_a_running_session_shows_the_decision_a_reconcile_pass_would_make(cli, store, spawn):
    """``why`` asks the reconciler's own look and rule: a live fuse keeps; a dead PID with a lapsed fuse and no
    supervisor is stopped; a dead PID whose supervisor still runs is left to it (the supervisor's patience)."""
    import re
    from uuid import uuid4

    watched = record(store, processes.identity_of(spawn().pid), fuse_ttl=3600, lapsed=False).hex
    dead = record(store, dead_identity(spawn)).hex
    waited_for = uuid4()
    supervisor = spawn("sh", "-c", "sleep 600", "supervisor-of", waited_for.hex)  # its command line names it
    record(store, dead_identity(spawn), session_id=waited_for, supervisor_pid=supervisor.pid)
    dry = {d["session_id"]: d for d in cli.json("reconcile", "--dry-run", "--json")["decisions"]}

    def timeless(why: str) -> str:
        return re.sub(r"\((?:just now|[^()]* ago)\)", "(…)", why)

    expected = {watched: ("keep", None), dead: ("stop", "reconciled"), waited_for.hex: ("keep", None)}
    for sid, (action, reason) in expected.items():
        decision = cli.json("why", sid)["running"]["decision"]
        assert (decision["action"], decision["reason"]) == (action, reason), (sid, decision)
        assert (dry[sid]["action"], dry[sid]["reason"]) == (action, reason), (sid, dry[sid])
        assert timeless(decision["why"]) == timeless(dry[sid]["why"])
    assert "its supervisor still runs" in cli.json("why", waited_for.hex)["running"]["decision"]["why"]
    assert "A reconcile pass now would stop it (reconciled)" in cli("why", dead).stdout
    assert "A reconcile pass now would keep it: fuse live until" in cli("why", watched).stdout


# -- history -------------------------------------------------------------------------


def test_history_shows_the_status_after_each_event_and_where_the_fuse_lapsed(cli, store, spawn):
    process = spawn("sleep", "60")
    identity = processes.identity_of(process.pid)
    sid = record(store, identity, fuse_ttl=0.3, lapsed=False).hex
    time.sleep(0.4)
    cli("heartbeat", sid)  # revives the lapsed fuse
    records = cli.json_lines("history", sid)
    kinds = [r["type"] or r["marker"] for r in records]
    assert kinds[:4] == ["Launched", "FuseSet", "fuse-lapsed", "Heartbeat"]
    assert [r["status"] for r in records[:4]] == ["unwatched", "running", "unwatched", "running"]
    assert records[1]["marks"] == ["fuse live"] and records[3]["marks"] == ["fuse live"]
    assert records[3]["delta"].startswith("+")
    table = cli("history", sid).stdout
    assert "STATUS" in table and "fuse-lapsed" in table


def test_history_tail_since_and_limit_are_windows_of_the_whole_history(cli, store, spawn):
    from agentledger.application.clock import utc_now

    sid = record(store, processes.identity_of(spawn("sleep", "60").pid), fuse_ttl=3600, lapsed=False)
    for _ in range(450):  # past two snapshots (every 200 events)
        store.ledger.change(sid, lambda s: s.heartbeat(source="test", now=utc_now()))
    whole = cli.json_lines("history", sid.hex)

    def same(window, expected):
        assert [(r["version"], r["position"], r["type"], r["status"], r["marks"], r["summary"]) for r in window] == [
            (r["version"], r["position"], r["type"], r["status"], r["marks"], r["summary"]) for r in expected]
        assert [r["delta"] for r in window] == [r["delta"] for r in expected]  # the first's from the one before

    same(cli.json_lines("history", sid.hex, "--tail", "5"), whole[-5:])
    same(cli.json_lines("history", sid.hex, "--tail", "250"), whole[-250:])  # from before a snapshot
    since = whole[100]["position"]
    same(cli.json_lines("history", sid.hex, "--since", str(since)), whole[101:])
    same(cli.json_lines("history", sid.hex, "--limit", "3"), whole[:3])
    same(cli.json_lines("history", sid.hex, "--since", str(since), "--limit", "2"), whole[101:103])
    assert cli.json_lines("history", sid.hex, "--tail", "1000") == whole
    assert cli.json_lines("history", sid.hex, "--tail", "0") == []
    assert "Heartbeat" in cli("history", sid.hex, "--tail", "1").stdout


# -- time travel -------------------------------------------------------------------


def test_list_as_of_matches_what_list_printed_at_ten_moments(cli, store, spawn):
    """Ten recorded moments; at each, ``list --all --json`` as printed then equals ``--as-of`` now."""
    from agentledger.domain.session import Session

    live = processes.identity_of(spawn("sleep", "60").pid)
    ids = []
    moments = []

    def snapshot() -> None:
        printed = cli("list", "--all", "--json").stdout
        moments.append((utc_now(), store.ledger.recorder.max_notification_id(), printed))
        time.sleep(0.02)

    def change(sid: UUID, command) -> None:
        session = store.ledger.session(sid)
        command(session)
        store.ledger.save(session)

    for step in range(10):
        if step < 3:
            ids.append(record(store, live, fuse_ttl=3600, lapsed=False))
        elif step == 3:
            ids.append(record(store, live, fuse_ttl=0.05, lapsed=False))
            time.sleep(0.15)  # lapsed before the snapshot: unwatched then
        elif step in (4, 5):
            change(ids[0], lambda s: s.heartbeat(source="test", now=utc_now()))
        elif step == 6:
            change(ids[1], lambda s: s.cancel_fuse(by="test", reason="done watching"))
        elif step == 7:
            change(ids[1], lambda s: s.request_stop(requested_by="test", signal="SIGTERM", grace=1, note=None))
        elif step == 8:
            change(ids[1], lambda s: s.record_stop(reason="user", decided_by={"component": "cli"}, evidence={}))
        else:
            change(ids[2], lambda s: s.record_stop(reason="exited", decided_by={"component": "supervisor"},
                                                   evidence={}, exit_code=0))
        snapshot()
    assert all(isinstance(s, Session) for s in (store.ledger.session(i) for i in ids))

    for at, _position, printed in moments:
        then = json.loads(f"[{','.join(printed.splitlines())}]")
        assert then, "list printed nothing"
        by_time = cli("list", "--all", "--json", "--as-of", at.isoformat()).stdout
        assert json.loads(f"[{','.join(by_time.splitlines())}]") == then, f"as of {at.isoformat()}"
    # A log position answers with the log up to that event, judged at that event's time.
    first_position = moments[0][1]
    by_position = cli.json_lines("list", "--all", "--as-of", f"@{first_position}")
    assert [s["id"] for s in by_position] == [ids[0].hex]


def test_status_as_of_a_relative_time_and_bad_moments(cli):
    sid = cli.launch("sleep", "60", options=("--fuse-ttl", "1h"))
    assert cli.json("status", sid, "--as-of", "-1ms")["status"] == "running"
    missing = cli("status", sid, "--as-of", "-1h", check=False)
    assert missing.returncode == 2 and "as of -1h: it did not exist yet" in missing.stderr
    for bad in ("yesterday", "@x", "@-3", "-soon"):
        result = cli("list", "--as-of", bad, check=False)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, bad
    cli("stop", sid)


def test_as_of_never_touches_the_live_read_models(cli, store, spawn):
    sid = record(store, processes.identity_of(spawn("sleep", "60").pid), fuse_ttl=3600, lapsed=False)
    cli("list")
    before = [tuple(r) for r in store.db.execute("SELECT * FROM sessions")]
    tracked = store.db.execute("SELECT position FROM projection_tracking").fetchall()
    session = store.ledger.session(sid)
    session.heartbeat(source="test", now=utc_now())
    store.ledger.save(session)
    cli("list", "--as-of", "@1")
    assert [tuple(r) for r in store.db.execute("SELECT * FROM sessions")] == before
    assert store.db.execute("SELECT position FROM projection_tracking").fetchall() == tracked


# -- the seed's race, replayed -------------------------------------------------------


def faulty_stop_under_a_live_fuse(store, spawn) -> UUID:
    """A heartbeating session under a live fuse, stopped by a (deliberately faulty) reconciler decision:
    its evidence claims the fuse had expired and the PID was dead, as the seed bug's stale signal did."""
    identity = processes.identity_of(spawn("sleep", "60").pid)
    sid = record(store, identity, fuse_ttl=10, lapsed=False)
    session = store.ledger.session(sid)
    for _ in range(3):
        session.heartbeat(source="supervisor", now=utc_now())
    store.ledger.save(session)
    session = store.ledger.session(sid)
    now = utc_now()
    decided_on = {"version": session.version, "position": store.event_position(sid.hex, session.version), "at": now}
    session.record_stop(
        reason="reconciled",
        decided_by={"component": "reconciler", "host": identity.host, "pid": 4242, "user": "faulty"},
        evidence={
            "fuse": {"state": "expired", "live": False, "ttl": 10, "expires_at": now - timedelta(seconds=1)},
            "last_heartbeat_at": session.last_heartbeat_at,
            "pid_probe": {"pid": identity.pid, "expected_start_time": identity.start_time, "found_start_time": None,
                          "host": identity.host, "boot_id": identity.boot_id, "alive": False,
                          "detail": "no such process"},
            "decided_on": decided_on,
            "policy_version": "1",
        },
        note="a stale signal said it was gone",
    )
    store.ledger.save(session)
    return sid


def test_the_seeds_race_is_flagged_by_verify_replay_and_timeline(cli, store, spawn, tmp_path):
    sid = faulty_stop_under_a_live_fuse(store, spawn).hex
    cli("timeline", sid, "--out", str(tmp_path / "race.html"))
    page = (tmp_path / "race.html").read_text()
    assert "stopped while the fuse was live" in page and 'class="race-line"' in page
    result = cli("verify", check=False)
    assert result.returncode == 1
    assert "VIOLATION stop-under-live-fuse" in result.stdout and sid[:12] in result.stdout
    report = json.loads(cli("verify", "--json", check=False).stdout)
    assert not report["ok"] and {v["kind"] for v in report["violations"]} == {"stop-under-live-fuse"}

    replayed = cli("replay", sid, check=False)
    assert replayed.returncode == 1 and "DIFFERS" in replayed.stdout
    assert "the rule now decides keep" in replayed.stdout
    assert "evidence says fuse expired, the log says set" in replayed.stdout
    [verdict] = [json.loads(line) for line in cli("replay", "--json", check=False).stdout.splitlines()]
    assert verdict["agrees"] is False and verdict["recorded"] == "stop (reconciled)" and verdict["replayed"] == "keep"


def test_a_clean_history_verifies_and_replays(cli, store, spawn):
    for _ in range(3):
        record(store, dead_identity(spawn))
    cli("reconcile")
    assert cli("verify").stdout.strip().endswith("ok: every check passed")
    verdicts = [json.loads(line) for line in cli("replay", "--json").stdout.splitlines()]
    assert len(verdicts) == 3 and all(v["agrees"] for v in verdicts)


def test_verify_finds_two_stops_events_after_a_stop_gaps_and_stale_read_models(cli, store, spawn):
    sid = record(store, dead_identity(spawn), fuse_ttl=None)
    session = store.ledger.session(sid)
    session.record_stop(reason="exited", decided_by={"component": "supervisor"}, evidence={}, exit_code=0)
    store.ledger.save(session)
    cli("list")  # read models caught up
    # Forge what the domain refuses: a second Stopped and a heartbeat after it, then a version gap.
    rows = store.db.execute(
        f"SELECT topic, state FROM {store.events_table} WHERE originator_id = ? ORDER BY originator_version", (sid.hex,)
    ).fetchall()
    stop_topic, stop_state = rows[-1]
    store.db.execute(f"INSERT INTO {store.events_table} (originator_id, originator_version, topic, state) "
                     "VALUES (?, ?, ?, ?)", (sid.hex, len(rows) + 1, stop_topic, stop_state))
    store.db.execute(f"INSERT INTO {store.events_table} (originator_id, originator_version, topic, state) "
                     "VALUES (?, ?, ?, ?)", (sid.hex, len(rows) + 3, stop_topic, stop_state))
    store.db.execute("UPDATE sessions SET exit_code = 99 WHERE id = ?", (sid.hex,))
    store.db.execute("UPDATE projection_tracking SET position = ?", (store.ledger.recorder.max_notification_id(),))
    report = json.loads(cli("verify", "--json", check=False).stdout)
    kinds = sorted(v["kind"] for v in report["violations"])
    assert kinds == sorted(["second-stop", "event-after-stop", "second-stop", "event-after-stop", "version-gap",
                            "read-model-mismatch", "read-model-mismatch"]), kinds
    mismatched = sorted(v["detail"].split(":")[0] for v in report["violations"] if v["kind"] == "read-model-mismatch")
    assert mismatched == ["session_documents", "sessions"], mismatched  # the forged stop remade the document


# -- a corrupted or newer log --------------------------------------------------------


def test_unreadable_events_are_reported_and_everything_goes_on(cli, store, spawn):
    good = record(store, processes.identity_of(spawn("sleep", "60").pid), fuse_ttl=3600, lapsed=False)
    bad = record(store, dead_identity(spawn), fuse_ttl=None)
    store.db.execute(  # an event type from a newer version
        f"INSERT INTO {store.events_table} (originator_id, originator_version, topic, state) VALUES (?, 2, ?, ?)",
        (bad.hex, "agentledger.domain.session:Session.FromTheFuture", b'{"timestamp": "x"}'))
    store.db.execute(  # a truncated payload
        f"UPDATE {store.events_table} SET state = substr(state, 1, 10) WHERE originator_id = ? AND originator_version = 2",
        (good.hex,))
    listed = cli("list")
    assert "warning: skipped unreadable event" in listed.stderr and "Traceback" not in listed.stderr
    assert good.hex[:12] in listed.stdout and bad.hex[:12] in listed.stdout

    history = cli("history", bad.hex)
    assert "UNREADABLE" in history.stdout and "FromTheFuture" in history.stdout
    assert "Traceback" not in history.stderr

    result = cli("verify", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    unreadable = [line for line in result.stdout.splitlines() if "unreadable-event" in line]
    assert len(unreadable) == 2 and any("FromTheFuture" in line for line in unreadable)

    events = cli("replay", check=False)
    assert "Traceback" not in events.stderr


@pytest.mark.parametrize("args", [("why", "ffff"), ("replay", "ffff"), ("why",)])
def test_bad_ids_are_one_line(cli, args):
    result = cli(*args, check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
