"""End to end, as a user: the real CLI, real supervisors, real processes, a real SQLite file."""

from __future__ import annotations

import os
import time
from datetime import datetime

import psutil
import pytest
from conftest import running, wait_for


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_a_session_goes_from_running_to_exited_with_its_code(cli, tmp_path):
    marker, go = tmp_path / "ended", tmp_path / "go"
    sid = cli.launch("sh", "-c", f"while [ ! -e {go} ]; do sleep 0.05; done; date +%s.%N > {marker}; exit 7")
    assert len(sid) == 32
    status = cli.json("status", sid)
    assert status["status"] == "running" and status["fuse"]["live"]
    assert psutil.Process(status["pid"]).is_running()
    go.touch()
    stopped = wait_for(lambda: (s := cli.json("status", sid[:8]))["status"] == "stopped" and s)
    assert (stopped["stop_reason"], stopped["exit_code"], stopped["stopped_by"]) == ("exited", 7, "supervisor")
    assert stopped["fuse"] == {**stopped["fuse"], "state": "cancelled", "live": False}
    assert abs(ts(stopped["stopped_at"]) - float(marker.read_text())) < 1.0


def test_stop_ends_the_process_group_and_records_the_user(cli):
    sid = cli.launch("sh", "-c", "sleep 600 & sleep 600; wait")
    pid = cli.json("status", sid)["pid"]
    wait_for(lambda: len(psutil.Process(pid).children()) == 2)
    group = [p.pid for p in psutil.process_iter() if _pgid(p.pid) == pid]
    assert len(group) == 3
    result = cli("stop", sid[:10], "--reason", "done testing")
    assert "sent SIGTERM" in result.stdout
    assert not any(_runs_in_group(p, pid) for p in group)  # ended (init may not have reaped the orphans yet)
    status = cli.json("status", sid)
    assert (status["status"], status["stop_reason"], status["signal"]) == ("stopped", "user", "SIGTERM")
    history = cli.json_lines("history", sid)
    types = [r["type"] for r in history]
    assert types[:2] == ["Launched", "FuseSet"] and types[-3:] == ["StopRequested", "FuseCancelled", "Stopped"]
    assert history[-3]["fields"]["requested_by"] and history[-3]["fields"]["note"] == "done testing"
    assert [r["position"] for r in history] == sorted(r["position"] for r in history)
    again = cli("stop", sid)
    assert again.returncode == 0 and "already stopped" in again.stderr and again.stdout == ""


def _runs_in_group(pid: int, group: int) -> bool:
    """Is ``pid`` a process of ``group`` that has not ended (a zombie has)?"""
    try:
        return _pgid(pid) == group and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period(cli):
    sid = cli.launch("sh", "-c", "trap '' TERM; sleep 600 & wait; sleep 600")
    pid = cli.json("status", sid)["pid"]
    wait_for(lambda: psutil.Process(pid).children())
    started = time.monotonic()
    out = cli.json("stop", sid, "--grace", "500ms")
    assert time.monotonic() - started < 60  # after the grace, not after the 600 s the process would take
    assert out["signals_sent"] == ["SIGTERM", "SIGKILL"] and out["signal"] == "SIGKILL"
    assert not psutil.pid_exists(pid)
    requests = [r for r in cli.json_lines("history", sid) if r["type"] == "StopRequested"]
    assert [r["fields"]["signal"] for r in requests] == ["SIGTERM", "SIGKILL"]


def test_force_sends_sigkill_at_once(cli):
    sid = cli.launch("sleep", "600")
    out = cli.json("stop", sid, "--force")
    assert out["signals_sent"] == ["SIGKILL"] and out["stop_reason"] == "user"


def test_a_signal_from_elsewhere_is_recorded_as_signalled(cli):
    sid = cli.launch("sleep", "600")
    os.kill(cli.json("status", sid)["pid"], 9)
    stopped = wait_for(lambda: (s := cli.json("status", sid))["status"] == "stopped" and s)
    assert (stopped["stop_reason"], stopped["signal"], stopped["exit_code"]) == ("signalled", "SIGKILL", None)


def test_stop_records_it_when_no_supervisor_is_left(cli):
    sid = cli.launch("sleep", "600")
    status = cli.json("status", sid)
    os.kill(status["supervisor_pid"], 9)  # supervisor gone; the process lives on, unwatched
    wait_for(lambda: not running(status["supervisor_pid"]))
    # the process ends at SIGTERM and nobody else can record it: stop returns then, not after the grace period
    # (the 60 s the cli fixture allows a command), even where init reaps the orphan late
    out = cli.json("stop", sid, "--grace", "1h")
    assert out["recorded_by"] == "cli" and out["stop_reason"] == "user" and out["signals_sent"] == ["SIGTERM"]
    assert not running(status["pid"])


def test_stop_continues_a_stopped_process_so_that_sigterm_ends_it(cli):
    import signal

    sid = cli.launch("sleep", "600")
    os.kill(cli.json("status", sid)["pid"], signal.SIGSTOP)
    out = cli.json("stop", sid, "--grace", "1h")  # SIGCONT after SIGTERM: not the grace period, then SIGKILL
    assert out["signals_sent"] == ["SIGTERM"] and out["signal"] == "SIGTERM"


def test_the_reason_given_is_the_stops_note_when_sigkill_follows(cli):
    sid = cli.launch("sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done")
    wait_for(lambda: "ready" in cli("logs", sid, "--output").stdout)
    out = cli.json("stop", sid, "--grace", "500ms", "--reason", "ignores TERM")
    assert out["signals_sent"] == ["SIGTERM", "SIGKILL"]
    assert cli.json("status", sid)["stop_note"] == "ignores TERM (grace period ended)"


def test_heartbeats_extend_the_fuse_while_the_process_lives(cli):
    sid = cli.launch("sleep", "600", options=("--fuse-ttl", "600ms"))
    wait_for(lambda: cli.json("status", sid)["heartbeat_count"] >= 3)
    other = cli.launch("sleep", "600", options=("--heartbeat-every", "100ms"))
    wait_for(lambda: cli.json("status", other)["heartbeat_count"] >= 5, timeout=60)
    assert cli.json("status", other)["fuse"]["ttl_seconds"] == 30.0
    cli("stop", other, "--force")

    def live_and_ahead() -> bool:  # long after its first 600ms ran out: heartbeats keep moving it
        status = cli.json("status", sid)
        assert status["status"] != "stopped"
        return status["fuse"]["live"] and ts(status["fuse"]["expires_at"]) > time.time()

    wait_for(live_and_ahead, timeout=30)  # on a busy machine a beat can come late and the fuse lapse for a moment
    cli("stop", sid, "--force")


def test_spawn_failure_is_a_usage_error_and_recorded(cli):
    result = cli("launch", "--", "/no/such/binary", check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "no such file" in result.stderr
    [row] = cli.json_lines("list", "--all")
    assert (row["status"], row["stop_reason"], row["pid"]) == ("stopped", "spawn-failed", None)


def test_a_file_that_is_not_executable_is_a_spawn_failure(cli, tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("echo hi\n")
    result = cli("launch", "--", str(script), check=False)
    assert result.returncode == 2 and "permission denied" in result.stderr


def test_manual_fuse_and_heartbeat(cli):
    sid = cli.launch("sleep", "600", options=("--name", "manual", "--fuse-ttl", "1h"))
    cli("fuse", "set", sid, "--ttl", "5m")
    [fuse] = cli.json_lines("fuses")
    assert (fuse["session_id"], fuse["ttl_seconds"], fuse["live"], fuse["session_name"]) == (sid, 300.0, True, "manual")
    assert len(cli.json_lines("fuses", "--all")) == 2  # the supervisor's was replaced
    cli("fuse", "cancel", sid)
    assert cli.json_lines("fuses") == []
    assert "no live fuse" in cli("heartbeat", sid).stderr
    assert cli.json("status", sid)["heartbeat_count"] >= 1
    cli("stop", sid, "--force")
    refused = cli("heartbeat", sid, check=False)
    assert refused.returncode == 1 and "is stopped" in refused.stderr


def test_list_filters_and_orders(cli):
    first = cli.launch("sleep", "600")
    second = cli.launch("true")
    wait_for(lambda: cli.json("status", second)["status"] == "stopped")
    assert [r["id"] for r in cli.json_lines("list")] == [first]
    assert [r["id"] for r in cli.json_lines("list", "--all")] == [second, first]
    assert [r["id"] for r in cli.json_lines("list", "--status", "stopped")] == [second]
    table = cli("list", "--all").stdout.splitlines()
    assert table[0].split()[:4] == ["ID", "NAME", "ADAPTER", "STATUS"] and len(table) == 3
    cli("stop", first, "--force")


def test_logs_capture_output(cli):
    sid = cli.launch("sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; echo err >&2; sleep 0.3")
    assert cli("logs", sid, "--follow", timeout=30).stdout.splitlines() == ["line1", "line2", "line3", "line4", "line5", "err"]
    assert cli("logs", sid, "-n", "2").stdout.splitlines() == ["line5", "err"]


@pytest.mark.parametrize(
    "args",
    [("status", "nosuchid"), ("status", "zzzz"), ("fuse", "set", "0", "--ttl", "banana"), ("stop",),
     ("launch",), ("launch", "--", ""), ("launch", "--cwd", "/no/such/dir", "--", "true"), ("list", "--status", "asleep"),
     ("launch", "--fuse-ttl", "-1s", "--", "true"), ("launch", "--fuse-ttl", "1s", "--heartbeat-every", "600ms", "--", "true"), ("frobnicate",), ("logs", "0", "-n", "-3"),
     ("launch", "--timeout", "0", "--", "true"), ("launch", "--timeout", "soon", "--", "true"),
     ("reconcile", "--mass-stop-share", "2"), ("reconcile", "--mass-stop-share", "0"), ("reconcile", "--mass-stop-min", "-1"),
     ("daemon",), ("daemon", "reload"), ("daemon", "stop", "--wait", "banana"), ("daemon", "run", "--interval", "0ms"),
     ("list", "--status", "watched")],
)
def test_bad_input_is_one_line_and_exit_2(cli, args):
    cli.launch("true")  # a store with a session in it
    result = cli(*args, check=False)
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_ambiguous_prefix_lists_candidates(cli):
    ids = [cli.launch("true") for _ in range(20)]
    first_chars = [i[0] for i in ids]
    shared = next(c for c in first_chars if first_chars.count(c) > 1)  # 20 ids, 16 digits: a clash is certain
    result = cli("status", shared, check=False)
    assert result.returncode == 2 and "ambiguous" in result.stderr
    assert all(i[:12] in result.stderr for i in ids if i.startswith(shared))


def test_db_rebuild_reproduces_the_projection(cli):
    sid = cli.launch("sh", "-c", "exit 3")
    wait_for(lambda: cli.json("status", sid)["status"] == "stopped")
    before = cli.json_lines("list", "--all")
    assert "rebuilt read models" in cli("db", "rebuild").stdout
    assert cli.json_lines("list", "--all") == before
    info = cli.json("db", "info")
    assert info["log_head"] == info["read_models_at"] > 0


def test_the_session_gets_the_users_environment_and_umask(cli, tmp_path):
    os.umask(0o022)
    sid = cli.launch("sh", "-c", f"umask > {tmp_path}/umask; echo $AGENTLEDGER_SESSION_ID > {tmp_path}/id",
                     options=("--cwd", str(tmp_path)))
    wait_for(lambda: cli.json("status", sid)["status"] == "stopped")
    assert (tmp_path / "umask").read_text().strip() == "0022"
    assert (tmp_path / "id").read_text().strip() == sid


def test_a_supervisor_told_to_terminate_passes_it_on_and_records_the_exit(cli):
    sid = cli.launch("sleep", "600")
    status = cli.json("status", sid)
    os.kill(status["supervisor_pid"], 15)
    stopped = wait_for(lambda: (s := cli.json("status", sid))["status"] == "stopped" and s)
    assert (stopped["stop_reason"], stopped["signal"], stopped["stopped_by"]) == ("signalled", "SIGTERM", "supervisor")
    assert not psutil.pid_exists(status["pid"])
    why = cli("why", sid).stdout  # who sent it: from outside, to the supervisor, which passed it on
    assert "was sent SIGTERM from outside agentledger" in why and "nobody here sent" not in why


def test_the_session_outlives_the_terminal_that_launched_it(cli, tmp_path):
    """Kill the launching shell's whole process group, as closing a terminal would."""
    import signal
    import subprocess
    import sys

    id_file = tmp_path / "id"
    shell = subprocess.Popen(
        ["sh", "-c", f"{sys.executable} -m agentledger launch -- sleep 600 > {id_file}; sleep 600"],
        start_new_session=True,
    )
    wait_for(lambda: id_file.exists() and len(id_file.read_text().strip()) == 32)
    os.killpg(shell.pid, signal.SIGHUP)
    os.killpg(shell.pid, signal.SIGKILL)
    shell.wait()
    sid = id_file.read_text().strip()
    status = cli.json("status", sid)
    assert status["status"] == "running"
    assert psutil.Process(status["pid"]).is_running() and psutil.Process(status["supervisor_pid"]).is_running()
    cli("stop", sid)
    assert cli.json("status", sid)["stop_reason"] == "user"
