"""Messages that must say exactly what is true: ``stop``'s line, ``fuses --all`` for an ended fuse, and a
store named in a directory that does not exist (refused, not made empty)."""

from __future__ import annotations

import os
import re

from conftest import wait_for


def test_stop_says_what_was_sent_how_it_ended_and_who_recorded_it(cli) -> None:
    sid = cli.launch("sleep", "60")
    line = cli("stop", sid).stdout.strip()
    assert line == f"stopped {sid[:12]}: sent SIGTERM; it was ended by SIGTERM; recorded by its supervisor"
    stubborn = cli.launch("sh", "-c", "trap '' TERM; echo ready; sleep 60")
    wait_for(lambda: "ready" in cli("logs", stubborn, "--output").stdout)
    line = cli("stop", stubborn, "--grace", "1s").stdout.strip()
    assert line == f"stopped {stubborn[:12]}: sent SIGTERM, then SIGKILL; it was ended by SIGKILL; recorded by its supervisor"


def test_a_cancelled_fuse_shows_when_it_ended_not_a_future_expiry(cli) -> None:
    sid = cli.launch("sleep", "60", options=("--fuse-ttl", "10m"))
    cli("fuse", "cancel", sid)
    [row] = [line for line in cli("fuses", "--all").stdout.splitlines() if line.startswith(sid[:12])]
    assert re.search(r"\bcancelled +10m +cancelled \S+ ago\b", row) and " in " not in row
    cli("stop", sid)


def test_a_store_in_a_directory_that_does_not_exist_is_refused_not_made(cli, tmp_path, monkeypatch) -> None:
    missing = tmp_path / "no" / "such"
    monkeypatch.setenv("AGENTLEDGER_DB", f"sqlite:///{missing}/ledger.db")
    result = cli("list", check=False)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert f"is in a directory that does not exist ({missing})" in result.stderr
    assert not os.path.exists(tmp_path / "no")


def test_a_bare_command_shows_the_help_and_a_typo_a_suggestion(cli) -> None:
    bare = cli(check=False)
    assert bare.returncode == 0 and bare.stdout.startswith("usage: agentledger") and bare.stderr == ""
    typo = cli("lst", check=False)
    assert typo.returncode == 2 and "unknown command 'lst'; did you mean 'list'?" in typo.stderr
    assert "did you mean 'start' or 'status'?" in cli("daemon", "stat", check=False).stderr


def test_launching_a_directory_says_it_is_one(cli, tmp_path) -> None:
    (tmp_path / "somedir").mkdir()
    result = cli("launch", "--cwd", str(tmp_path), "--", "./somedir", check=False)
    assert result.returncode == 2 and "cannot launch './somedir': it is a directory" in result.stderr


def test_why_of_a_session_whose_supervisor_and_agent_were_killed_says_nobody_watches_it(cli) -> None:
    import signal

    sid = cli.launch("sleep", "60", options=("--fuse-ttl", "1s"))
    status = cli.json("status", sid)
    os.kill(status["supervisor_pid"], signal.SIGKILL)
    os.kill(status["pid"], signal.SIGKILL)
    wait_for(lambda: cli.json("status", sid)["status"] == "unwatched", timeout=30)
    text = cli("why", sid).stdout
    assert "Nobody watches it" in text and "its process is gone (PID " in text
    assert "the reconciler stops it at its next pass" in text and "but;" not in text
    assert text.startswith(f"{sid[:12]} is unwatched.")  # the status `status` and `list` give it, not "running"
    assert f"PID {status['supervisor_pid']} is gone" in text
    assert cli.json("why", sid)["status"] == "unwatched"


def test_why_of_a_watched_session_says_its_supervisor_runs(cli) -> None:
    sid = cli.launch("sleep", "60")
    status = cli.json("status", sid)
    text = cli("why", sid).stdout
    assert text.startswith(f"{sid[:12]} is running.") and f"PID {status['supervisor_pid']}, running" in text
    cli("stop", sid)


def test_why_of_a_command_that_never_started_says_so(cli) -> None:
    cli("launch", "--", "/no/such/binary", check=False)
    [session] = cli.json_lines("list", "--all")
    text = cli("why", session["id"]).stdout
    assert "none (the process never started)" in text and "/ None" not in text


def test_ctrl_c_during_stop_says_what_state_the_session_is_in(cli) -> None:
    import signal
    import subprocess
    import sys

    sid = cli.launch("sh", "-c", "trap '' TERM; echo ready; sleep 60")
    wait_for(lambda: "ready" in cli("logs", sid, "--output").stdout)
    stopping = subprocess.Popen([sys.executable, "-m", "agentledger", "stop", sid, "--grace", "60s"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
                                # as from a terminal: a suite run in the background inherits SIGINT ignored
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for(lambda: cli.json("status", sid)["status"] == "stopping", timeout=30)
    stopping.send_signal(signal.SIGINT)
    out, err = stopping.communicate(timeout=30)
    assert stopping.returncode == 130 and err.count("\n") == 1
    assert f"session {sid[:12]} is stopping (SIGTERM was sent)" in err and "--force' sends SIGKILL now" in err
    cli("stop", sid, "--force")


def test_a_fuse_shorter_than_the_floor_is_refused_wherever_it_is_asked_for(cli, monkeypatch) -> None:
    for args in (("launch", "--fuse-ttl", "30ms", "--", "true"), ("launch", "--fuse-ttl", "0.0001ms", "--", "true")):
        result = cli(*args, check=False)
        assert result.returncode == 2 and "below the 250ms floor" in result.stderr
    sid = cli.launch("sleep", "30")
    assert "below the 250ms floor" in cli("fuse", "set", sid, "--ttl", "1ms", check=False).stderr
    monkeypatch.setenv("AGENTLEDGER_FUSE_TTL", "1ms")  # refused where the configuration is read
    result = cli("launch", "--", "true", check=False)
    assert result.returncode == 2 and "AGENTLEDGER_FUSE_TTL: 1ms is below the 250ms floor" in result.stderr
    monkeypatch.delenv("AGENTLEDGER_FUSE_TTL")
    assert [s["id"] for s in cli.json_lines("list", "--all")] == [sid]  # nothing else was launched
    cli("stop", sid)


def test_a_negative_duration_is_named_as_such_not_a_missing_argument(cli) -> None:
    result = cli("launch", "--fuse-ttl", "-5s", "--", "true", check=False)
    assert result.returncode == 2 and "argument --fuse-ttl: '-5s' is negative; it takes a duration > 0" in result.stderr
    assert "expected one argument" in cli("launch", "--fuse-ttl", check=False).stderr  # a missing one still is


def test_as_of_refuses_moments_the_log_has_not_reached_and_says_when_it_answers_for(cli) -> None:
    sid = cli.launch("sleep", "30")
    head = cli.json("db", "info")["log_head"]
    beyond = cli("list", "--as-of", f"@{head + 100}", check=False)
    assert beyond.returncode == 2 and f"past the end of the log (its last position is {head})" in beyond.stderr
    future = cli("list", "--as-of", "2999-01-01T00:00:00Z", check=False)
    assert future.returncode == 2 and "is in the future" in future.stderr
    past = cli("list", "--as-of", f"@{head}")
    assert sid[:12] in past.stdout
    assert re.search(rf"^agentledger: as of position {head} \(.+\): history, not the present$", past.stderr, re.M)
    assert "as of" not in cli("list").stderr  # the present says nothing of the kind
    cli("stop", sid)


def test_a_dangling_config_symlink_is_an_error_not_no_configuration(cli, home, backend) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").symlink_to(home / "gone.toml")
    # on PostgreSQL, AGENTLEDGER_DB names the store, and `list` has no need of the file
    for command in (("config", "show"),) + ((("list",),) if backend == "sqlite" else ()):
        result = cli(*command, check=False)
        assert result.returncode != 0 and result.stderr.count("\n") == 1, command
        assert f"config.toml is a symlink to {home / 'gone.toml'}, which does not exist" in result.stderr


def test_notes_that_nothing_happened_go_to_stderr(cli) -> None:
    assert cli("daemon", "stop").stdout == ""
    status = cli("daemon", "status", check=False)
    assert status.returncode == 3 and status.stdout == "" and "daemon: not running" in status.stderr


def test_read_commands_work_on_a_read_only_copy_of_a_home(cli, home, tmp_path, backend, monkeypatch) -> None:
    import shutil
    import subprocess

    from conftest import no_real_fault

    if backend != "sqlite":
        return  # the home's store is the server's here: nothing of it is in the home to make read-only
    if os.geteuid() != 0 or shutil.which("mount") is None:
        no_real_fault("a read-only mount needs root and mount(8)")
    sid = cli.launch("sleep", "30")
    cli("stop", sid)
    copy, mounted = tmp_path / "copy", tmp_path / "ro"
    shutil.copytree(home, copy)
    mounted.mkdir()
    subprocess.run(["mount", "--bind", str(copy), str(mounted)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(mounted)], check=True)
        monkeypatch.setenv("AGENTLEDGER_HOME", str(mounted))
        for command in (("list", "--all"), ("events",), ("verify",), ("status", sid), ("why", sid), ("history", sid)):
            result = cli(*command, check=False)
            assert result.returncode == 0, (command, result.stderr)
            assert sid[:12] in result.stdout or command[0] in ("verify", "events", "history"), command
            assert "Stopped" in result.stdout or command[0] != "history"
        refused = cli("launch", "--", "true", check=False)
        assert refused.returncode != 0 and "read-only" in refused.stderr.lower() and refused.stderr.count("\n") == 1
    finally:
        subprocess.run(["umount", str(mounted)], check=False)
