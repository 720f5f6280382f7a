"""``agentledger status``: one screen, as ``systemctl status`` shows a unit, with real processes.

The header says the state; for a session not stopped on this host the
supervisor and the process tree (memory, CPU time) are read now, the agent's
PID checked against its recorded start time; the last lines of output come
from where ``logs -n N`` reads them. A stopped session, another host's, and
``--as-of`` (history) show no live process data.
"""

from __future__ import annotations

import io
import os
import re
import signal
from collections import deque
from unittest import mock

import pytest
from conftest import record, running, wait_for
from hypothesis import given, settings
from hypothesis import strategies as st

#: One row of the process tree: PID, RSS, CPU time, %CPU, the command (after its branch drawing).
ROW = re.compile(r"\s*(\d+)\s+(\d+(?:\.\d)?[BKMGT])\s+(\d+:\d\d\.\d\d)\s+(\d+\.\d)  (.*)")
NEW_KEYS = {"liveness", "supervisor", "processes", "leftovers", "output"}


def tree_rows(text: str) -> list[tuple[str, ...]]:
    """The rows under "Process tree:" (after its header row), each parsed with ``ROW``."""
    block = text.split("Process tree:\n", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    rows = [ROW.fullmatch(line) for line in block]
    assert all(rows), block
    return [row.groups() for row in rows if row]


def line_of(text: str, key: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"{key} "))


def test_a_running_session_shows_its_supervisor_tree_and_last_output(cli, monkeypatch) -> None:
    sid = cli.launch("sh", "-c", "echo hello; sleep 60 & wait", options=("--name", "shown"))
    shown = wait_for(lambda: (s := cli.json("status", sid)) and any(p["cmdline"] == ["sleep", "60"]
                                                                   for p in s["processes"] or ())
                     and s["output"] and s, timeout=60)
    agent, supervisor = shown["pid"], shown["supervisor_pid"]
    text = cli("status", "shown").stdout

    assert text.splitlines()[0] == f"● shown ({sid[:12]}) - running"
    assert re.fullmatch(rf"Supervisor +PID {supervisor}, alive: \d+(\.\d)?[BKMGT] memory, CPU \d+:\d\d\.\d\d",
                        line_of(text, "Supervisor"))
    assert re.fullmatch(r"Process +alive: 2 processes, \d+(\.\d)?[BKMGT] memory", line_of(text, "Process"))
    assert "Fuse            live, ends in" in text  # the fuse, as before
    rows = tree_rows(text)
    assert [int(r[0]) for r in rows[:2]] == [supervisor, agent] and len(rows) == 3
    assert rows[1][4] == "└─ sh -c echo hello; sleep 60 & wait" and rows[2][4] == "   └─ sleep 60"
    assert "agentledger.entrypoints.supervise" in rows[0][4] and sid in rows[0][4]
    assert text.endswith("\nLast 10 lines of output:\nhello\n")

    sleep = next(p for p in shown["processes"] if p["cmdline"] == ["sleep", "60"])
    by_pid = {p["pid"]: p for p in shown["processes"]}
    assert by_pid[agent]["ppid"] == supervisor and sleep["ppid"] == agent and sleep["rss"] > 0
    assert shown["supervisor"]["pid"] == supervisor and shown["supervisor"]["state"] == "alive"
    assert shown["liveness"] == "alive" and shown["output"] == [{"at": None, "role": "output", "text": "hello"}]
    listed = next(s for s in cli.json_lines("list") if s["id"] == sid)  # the session object, unchanged
    assert set(shown) - set(listed) == NEW_KEYS
    moving = {"status", "fuse", "last_heartbeat_at", "heartbeat_count", "version", "position"}  # heartbeats go on
    assert {k: v for k, v in shown.items() if k in listed and k not in moving} == {
        k: v for k, v in listed.items() if k not in moving}

    quiet = cli("status", sid, "-n", "0").stdout
    assert "of output" not in quiet and not quiet.endswith("hello\n") and "Process tree:" in quiet
    assert cli("status", sid, "--lines", "1").stdout.endswith("\nLast line of output:\nhello\n")
    monkeypatch.setenv("COLUMNS", "40")  # commands and output lines are cut to the terminal's width
    narrow = cli("status", sid).stdout
    assert all(len(line) <= 40 for line in narrow.split("Process tree:\n")[1].splitlines())
    assert "…" in narrow.split("Process tree:\n")[1]
    monkeypatch.delenv("COLUMNS")

    past = cli("status", sid, "--as-of", "-1ms").stdout  # history: nothing of now
    assert "Process " not in past and "Supervisor" not in past and "of output" not in past
    assert {k: v for k, v in cli.json("status", sid, "--as-of", "-1ms").items() if k in NEW_KEYS} == dict.fromkeys(
        NEW_KEYS)

    cli("stop", sid)
    stopped = cli("status", sid).stdout
    assert stopped.splitlines()[0].startswith(f"● shown ({sid[:12]}) - stopped (user")
    assert "Process tree:" not in stopped and "Supervisor" not in stopped and "Process " not in stopped
    assert stopped.endswith("\nLast 10 lines of output:\nhello\n")
    as_json = cli.json("status", sid)
    assert as_json["processes"] is None and as_json["supervisor"] is None and as_json["output"][-1]["text"] == "hello"


def test_a_killed_agent_is_shown_gone_not_as_a_process(cli) -> None:
    sid = cli.launch("sleep", "600")
    started = cli.json("status", sid)
    agent, supervisor = started["pid"], started["supervisor_pid"]
    os.kill(supervisor, signal.SIGKILL)  # first, so that nobody records the agent's end: it stays not stopped
    wait_for(lambda: cli.json("status", sid)["supervisor"]["state"] == "gone", timeout=30)
    os.kill(agent, signal.SIGKILL)
    wait_for(lambda: cli.json("status", sid)["liveness"] == "no such process", timeout=30)

    text = cli("status", sid).stdout
    assert line_of(text, "Process") == f"Process         PID {agent} is gone"
    assert line_of(text, "Supervisor") == f"Supervisor      PID {supervisor} is gone"
    assert "Process tree:" not in text and text.endswith("\nLast 10 lines of output:\n(no output yet)\n")
    assert cli.json("status", sid)["processes"] == []


def test_a_stopped_process_is_shown_alive_but_stopped(cli) -> None:
    sid = cli.launch("sleep", "600")
    started = cli.json("status", sid)
    os.kill(started["pid"], signal.SIGSTOP)
    os.kill(started["supervisor_pid"], signal.SIGSTOP)
    try:
        text = cli("status", sid).stdout
    finally:
        os.kill(started["supervisor_pid"], signal.SIGCONT)
    assert line_of(text, "Process").startswith("Process         alive but stopped (SIGSTOP")
    assert line_of(text, "Supervisor").startswith(f"Supervisor      PID {started['supervisor_pid']}, alive but stopped")
    cli("stop", sid)


def test_what_a_stopped_sessions_group_left_running_is_shown_and_stop_ends_it(cli) -> None:
    sid = cli.launch("sh", "-c", "sleep 600 & exec true")  # the background sleep stays in the agent's group
    stopped = wait_for(lambda: (s := cli.json("status", sid))["status"] == "stopped" and s)
    assert (stopped["stop_reason"], stopped["exit_code"], stopped["processes"]) == ("exited", 0, None)
    [left] = stopped["leftovers"]
    assert left["cmdline"] == ["sleep", "600"] and os.getpgid(left["pid"]) == stopped["pid"]

    text = cli("status", sid).stdout
    heading = f"Left running by its process group: 1 process (agentledger stop {sid[:12]} ends them):"
    assert heading in text and "Process tree:" not in text
    [row] = tree_rows(text.replace(heading, "Process tree:"))
    assert (row[0], row[4]) == (str(left["pid"]), "sleep 600")
    events = len(cli.json_lines("history", sid))

    ended = cli("stop", sid)
    assert ended.stdout.startswith(f"session {sid[:12]} was already stopped (exited at ")
    assert ended.stdout.endswith("its process group had left processes running: sent SIGTERM\n")
    wait_for(lambda: not running(left["pid"]))
    assert cli.json("status", sid)["leftovers"] == [] and "Left running" not in cli("status", sid).stdout
    assert len(cli.json_lines("history", sid)) == events  # the session's stop stands: nothing is appended
    again = cli("stop", sid)
    assert "nothing to do" in again.stderr and again.stdout == ""


def test_leftovers_that_ignore_sigterm_get_sigkill_after_the_grace_period(cli) -> None:
    sid = cli.launch("sh", "-c", "trap '' TERM; (trap '' TERM; sleep 600) & sleep 0.2; exit 3")
    wait_for(lambda: cli.json("status", sid)["status"] == "stopped")
    [left] = wait_for(lambda: [p for p in cli.json("status", sid)["leftovers"] if p["cmdline"] == ["sleep", "600"]])
    out = cli.json("stop", sid, "--grace", "300ms")
    assert out["already_stopped"] is True and out["signals_sent"] == ["SIGTERM", "SIGKILL"] and out["exit_code"] == 3
    wait_for(lambda: not running(left["pid"]))


def test_a_reused_pid_is_not_shown_as_the_agent(cli, store, spawn) -> None:
    from agentledger.infrastructure import processes

    other = spawn("sleep", "600")
    identity = processes.identity_of(other.pid)
    sid = record(store, identity._replace(start_time=identity.start_time - 100))  # the session's ran earlier

    text = cli("status", sid.hex).stdout
    assert line_of(text, "Process") == f"Process         PID {other.pid} is now another process"
    assert line_of(text, "Supervisor") == "Supervisor      none recorded"
    assert "Process tree:" not in text
    shown = cli.json("status", sid.hex)
    assert shown["liveness"] == "pid reused" and shown["processes"] == [] and shown["supervisor"] is None
    assert text.endswith("\nLast 10 lines of output:\n(no output captured)\n")  # recorded with no log


def test_another_hosts_session_is_one_line_without_a_tree(cli, store, spawn) -> None:
    from agentledger.infrastructure import processes

    sid = record(store, processes.identity_of(spawn("sleep", "600").pid), host="elsewhere")
    text = cli("status", sid.hex).stdout
    assert text.splitlines()[0] == f"● {sid.hex[:12]} - unwatched"
    assert line_of(text, "Process") == "Process         on host elsewhere: process details only on that host"
    assert "Supervisor" not in text and "Process tree:" not in text
    shown = cli.json("status", sid.hex)
    assert shown["processes"] is None and shown["supervisor"] is None and shown["liveness"] is None


@pytest.mark.parametrize("lines", ["-1", "banana"])
def test_a_bad_line_count_is_one_line_and_exit_2(cli, lines: str) -> None:
    sid = cli.launch("true")
    result = cli("status", sid, "-n", lines, check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "-n/--lines" in result.stderr and result.stdout == ""


# -- the pieces, in memory ------------------------------------------------------------------------------


def use(pid: int, ppid: int, started: float = 0.0):
    from agentledger.infrastructure.process_tree import ProcessUse

    return ProcessUse(pid=pid, ppid=ppid, started_at=started, rss=1024, cpu_seconds=0.0, cmdline=(f"p{pid}",),
                      name=f"p{pid}", zombie=False)


@pytest.mark.unit
def test_the_tree_is_drawn_children_by_start_time_and_strays_left_out() -> None:
    from agentledger.entrypoints.status_commands import draw_tree

    drawn = draw_tree([use(1, 0)], [use(3, 1, 2.0), use(2, 1, 1.0), use(4, 2), use(5, 3), use(9, 8)])
    assert [(branch, p.pid) for branch, p in drawn] == [
        ("", 1), ("├─ ", 2), ("│  └─ ", 4), ("└─ ", 3), ("   └─ ", 5)]
    two_roots = draw_tree([use(1, 0), use(7, 1)], [use(8, 7), use(7, 1)])  # a root listed again is drawn once
    assert [(branch, p.pid) for branch, p in two_roots] == [("", 1), ("", 7), ("└─ ", 8)]


@pytest.mark.unit
@pytest.mark.parametrize(("size", "shown"), [(None, "-"), (0, "0B"), (1023, "1023B"), (1024, "1K"), (832_000, "812K"),
                                             (12_900_000, "12.3M"), (3 * 1024**3 // 2, "1.5G"), (2 * 1024**4, "2.0T")])
def test_memory_is_shown_as_systemctl_shows_it(size: int | None, shown: str) -> None:
    from agentledger.entrypoints.status_commands import memory

    assert memory(size) == shown


@pytest.mark.unit
@pytest.mark.parametrize(("seconds", "shown"), [(None, "-"), (0.0, "0:00.00"), (1.234, "0:01.23"),
                                                (75.5, "1:15.50"), (3600.0, "60:00.00"), (59.999, "1:00.00")])
def test_cpu_time_is_shown_as_tops_time_plus(seconds: float | None, shown: str) -> None:
    from agentledger.entrypoints.status_commands import cpu_time

    assert cpu_time(seconds) == shown


@pytest.mark.unit
@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"bc", b"\n", b"\r\n", b"\xff", b"long line " * 3]), max_size=40),
       st.integers(min_value=0, max_value=12), st.integers(min_value=1, max_value=9))
def test_the_last_lines_are_read_from_the_end_as_a_whole_read_would_give_them(parts, count, chunk) -> None:
    from agentledger.entrypoints import session_output

    data = b"".join(parts)
    handle = io.BytesIO(data)
    with mock.patch.object(session_output, "_CHUNK", chunk):
        assert session_output.last_lines(handle, count) == list(deque(io.BytesIO(data), maxlen=count))
    assert handle.tell() == len(data)  # where ``logs --follow`` reads on from
