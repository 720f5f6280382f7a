"""On-stop hooks: real supervisors, daemons and hook processes; the outcome read back from the log."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
from pathlib import Path
from typing import Any
from uuid import UUID

from conftest import record, running, wait_for


def finished(store, sid: str) -> Any:
    """The session's hook once its outcome is in the log (polled in-process: far cheaper than the CLI)."""
    hook = store.ledger.stop_hook(UUID(sid))
    return hook if hook is not None and hook.outcome is not None else None


def log_events(cli) -> list[dict]:
    return [json.loads(line) for line in cli("events").stdout.splitlines()]


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_the_hook_runs_once_after_the_stop_with_the_sessions_facts_and_is_logged(cli, store, tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    env_file, runs = tmp_path / "env", tmp_path / "runs"
    hook = f"env > {env_file}; pwd >> {runs}; echo hook-output"
    sid = cli.launch("sh", "-c", "exit 7", options=("--cwd", str(workdir), "--on-stop", hook))

    wait_for(lambda: finished(store, sid))
    facts = cli.json("why", sid)["on_stop"]
    assert facts["state"] == "finished"
    env = read_env(env_file)
    assert {k: env.get(k) for k in ("AGENTLEDGER_SESSION_ID", "AGENTLEDGER_EXIT_CODE", "AGENTLEDGER_STOP_REASON",
                                    "AGENTLEDGER_CWD", "AGENTLEDGER_ADAPTER")} == {
        "AGENTLEDGER_SESSION_ID": sid, "AGENTLEDGER_EXIT_CODE": "7", "AGENTLEDGER_STOP_REASON": "exited",
        "AGENTLEDGER_CWD": str(workdir), "AGENTLEDGER_ADAPTER": "command"}
    assert "AGENTLEDGER_SIGNAL" not in env
    assert runs.read_text() == f"{workdir}\n"  # once, in the session's cwd
    outcome = facts["outcome"]
    assert (outcome["exit_code"], outcome["signal"], outcome["timed_out"]) == (0, None, False)
    assert outcome["output_tail"] == "hook-output\n"
    assert facts["claimed_by"]["component"] == "supervisor" and facts["command"] == hook

    hook_events = [e for e in log_events(cli) if e["type"].startswith("StopHook.")]
    assert [(e["type"], e["version"]) for e in hook_events] == [("StopHook.Claimed", 1), ("StopHook.Finished", 2)]
    assert hook_events[0]["fields"]["session_id"] == sid and hook_events[0]["fields"]["command"] == hook
    lines = cli("why", sid).stdout.splitlines()
    assert any(line.startswith("On-stop hook ") and f"`{hook}`: exit 0 after " in line for line in lines)
    assert any(line.startswith("Hook output ") and "hook-output" in line for line in lines)
    assert cli("verify").stdout.endswith("ok: every check passed\n")


def test_the_configured_default_runs_and_an_empty_on_stop_turns_it_off(cli, store, home, tmp_path):
    runs = tmp_path / "runs"
    home.mkdir(mode=0o700, exist_ok=True)
    (home / "config.toml").write_text(
        'on_stop = "echo $AGENTLEDGER_SESSION_ID $AGENTLEDGER_STOP_REASON [$AGENTLEDGER_EXIT_CODE] '
        f'$AGENTLEDGER_SIGNAL >> {runs}"\non_stop_timeout = "5s"\n')
    configured = cli.launch("sh", "-c", "kill -TERM $$")
    turned_off = cli.launch("sh", "-c", "exit 0", options=("--on-stop", ""))

    wait_for(lambda: finished(store, configured))
    assert store.ledger.session(UUID(configured)).on_stop_timeout == 5.0
    off = wait_for(lambda: (s := store.ledger.session(UUID(turned_off))).is_stopped and s)
    assert (off.on_stop, off.on_stop_timeout) == (None, None)
    wait_for(lambda: not running(off.supervisor_pid))  # it would have run the hook by now
    assert cli.json("why", turned_off)["on_stop"] is None and store.ledger.stop_hook(off.id) is None
    assert runs.read_text() == f"{configured} signalled [] SIGTERM\n"


def test_a_hook_that_outlives_its_timeout_is_killed_with_its_group_and_recorded_timed_out(cli, store, tmp_path):
    child = tmp_path / "child"
    hook = f"sleep 30 & echo $! > {child}; wait"
    sid = cli.launch("true", options=("--on-stop", hook, "--on-stop-timeout", "1s"))

    wait_for(lambda: finished(store, sid))
    facts = cli.json("why", sid)["on_stop"]
    outcome = facts["outcome"]
    assert facts["state"] == "timed-out" and outcome["timed_out"] is True
    assert (outcome["exit_code"], outcome["signal"]) == (None, "SIGTERM")
    assert 1.0 <= outcome["duration_seconds"] < 5.0
    grandchild = int(child.read_text())
    wait_for(lambda: not running(grandchild))
    assert re.search(r"timed out: ended by SIGTERM after \d+(\.\d)?s", cli("why", sid).stdout)  # 1s, or more if busy


def test_a_hook_that_ignores_sigterm_gets_sigkill_after_the_grace_period(tmp_path, monkeypatch):
    from agentledger.application import stop_hooks
    from agentledger.infrastructure import hook_runner

    monkeypatch.setattr(hook_runner, "KILL_GRACE", 0.3)
    run = hook_runner.execute("trap '' TERM; echo waiting; sleep 30", cwd=str(tmp_path), env=dict(os.environ),
                             timeout=0.3)
    assert (run.timed_out, run.exit_code, run.signal, run.output_tail) == (True, None, "SIGKILL", "waiting\n")
    assert 0.6 <= run.duration_seconds < 3.0
    assert stop_hooks.outcome_words(run._asdict()).startswith("timed out: ended by SIGKILL after ")


def test_only_the_last_2_kb_of_the_output_is_kept(tmp_path):
    from agentledger.infrastructure.hook_runner import execute

    run = execute("head -c 5000 /dev/zero | tr '\\0' x; echo end >&2; exit 3", cwd=str(tmp_path),
                  env=dict(os.environ), timeout=10)
    assert (run.exit_code, run.timed_out, len(run.output_tail)) == (3, False, 2048)
    assert run.output_tail.endswith("xxend\n")


def test_the_daemon_runs_the_hook_of_a_session_the_reconciler_stopped_exactly_once(cli, store, daemon, tmp_path):
    runs = tmp_path / "runs"
    daemon("--interval", "300ms")
    sid = cli.launch("sleep", "600", options=(
        "--fuse-ttl", "1s", "--on-stop", f"echo $AGENTLEDGER_STOP_REASON [$AGENTLEDGER_EXIT_CODE] >> {runs}"))
    status = cli.json("status", sid)
    os.kill(status["supervisor_pid"], signal.SIGKILL)  # nobody left to see the exit or run the hook
    os.kill(status["pid"], signal.SIGKILL)

    wait_for(lambda: finished(store, sid), timeout=60)
    facts = cli.json("why", sid)["on_stop"]
    assert cli.json("status", sid)["stop_reason"] == "reconciled"
    assert facts["claimed_by"]["component"] == "reconciler"
    passes = cli.json("daemon", "status")["daemon"]["passes"]
    wait_for(lambda: cli.json("daemon", "status")["daemon"]["passes"] >= passes + 3)  # later passes leave it alone
    assert runs.read_text() == "reconciled []\n"
    claims = [e for e in log_events(cli) if e["type"] == "StopHook.Claimed"]
    assert [c["fields"]["session_id"] for c in claims] == [sid]
    assert cli("verify").returncode == 0


def test_of_two_claimants_racing_exactly_one_runs_the_hook(store, tmp_path):
    from agentledger.application.stop_hooks import run_stop_hook
    from agentledger.application.verifying import verify
    from agentledger.bootstrap import hook_runner, this_machine
    from agentledger.domain.vocabulary import StopReason
    from agentledger.infrastructure import processes
    from agentledger.infrastructure.host import actor
    from agentledger.infrastructure.settings import store_location
    from agentledger.infrastructure.store import open_store

    runs = tmp_path / "runs"
    sid = record(store, processes.identity_of(os.getpid()), fuse_ttl=None,
                 on_stop=f"echo $AGENTLEDGER_EXIT_CODE >> {runs}; sleep 0.3", on_stop_timeout=10.0)
    # not stopped yet: nothing to run
    assert run_stop_hook(store.ledger, sid, claimed_by=actor("test"), machine=this_machine(), runner=hook_runner()) is None
    assert store.ledger.stop_hook(sid) is None
    store.ledger.change(sid, lambda s: s.record_stop(reason=StopReason.EXITED, decided_by=actor("test"),
                                                     evidence={}, exit_code=3))

    claimants = [open_store(store_location()) for _ in range(2)]  # as two processes would
    start = threading.Barrier(2)
    results: list[object] = []

    def claim(other: object) -> None:
        start.wait()
        results.append(run_stop_hook(other.ledger, sid, claimed_by=actor(f"claimant-{id(other)}"),
                                     machine=this_machine(), runner=hook_runner()))

    threads = [threading.Thread(target=claim, args=(c,)) for c in claimants]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for c in claimants:
        c.close()
    assert sorted(r is None for r in results) == [False, True]
    assert runs.read_text() == "3\n"
    hook = store.ledger.stop_hook(sid)
    assert hook.outcome["exit_code"] == 0 and hook.claimed_by == next(r for r in results if r).claimed_by
    assert run_stop_hook(store.ledger, sid, claimed_by=actor("late"), machine=this_machine(), runner=hook_runner()) is None
    assert verify(store).ok
