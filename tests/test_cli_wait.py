"""Names as ids, ``wait`` and ``launch --wait``: what a script or a CI job needs, with real sessions.

``wait`` exits with the session's exit status as a shell would give it
(128 + N for signal N), 124 when its ``--timeout`` passes first; a name
means the one session of that name not stopped, else the latest.
"""

from __future__ import annotations

import json

import pytest
from conftest import wait_for


def test_a_name_works_where_an_id_does(cli) -> None:
    sid = cli.launch("sleep", "30", options=("--name", "long"))
    assert cli.json("status", "long")["id"] == sid
    cli("stop", "long")
    later = cli.launch("true", options=("--name", "long"))
    wait_for(lambda: cli.json("status", later)["status"] == "stopped")
    assert cli.json("status", "long")["id"] == later  # all stopped: the latest


def test_two_running_sessions_of_one_name_are_ambiguous(cli) -> None:
    ids = [cli.launch("sleep", "30", options=("--name", "twin")) for _ in range(2)]
    result = cli("status", "twin", check=False)
    assert result.returncode == 2 and "2 sessions named 'twin' are not stopped" in result.stderr
    assert all(sid[:12] in result.stderr for sid in ids)
    assert cli.json("status", ids[0][:8])["id"] == ids[0]  # an id prefix still works
    for sid in ids:
        cli("stop", sid)


def test_an_unknown_name_is_one_line(cli) -> None:
    result = cli("status", "nosuch", check=False)
    assert result.returncode != 0 and result.stderr.count("\n") == 1 and "no session is named 'nosuch'" in result.stderr


@pytest.mark.parametrize(("command", "status"), [("exit 0", 0), ("exit 7", 7), ("kill -TERM $$", 143)])
def test_wait_passes_the_exit_status_through(cli, command: str, status: int) -> None:
    sid = cli.launch("sh", "-c", f"sleep 1; {command}")
    result = cli("wait", sid, check=False, timeout=60)
    assert (result.returncode, result.stdout.strip()) == (status, str(status))


def test_launch_wait_runs_in_the_foreground_of_the_record(cli) -> None:
    result = cli("launch", "--wait", "--json", "--", "sh", "-c", "exit 3", check=False, timeout=60)
    launched, waited = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 3 and waited["id"] == launched["id"] and waited["exit_code"] == 3


def test_wait_gives_up_after_its_timeout_and_leaves_the_session_running(cli) -> None:
    sid = cli.launch("sleep", "30", options=("--name", "slow"))
    result = cli("wait", "slow", "--timeout", "1s", check=False)
    assert result.returncode == 124 and "still not stopped" in result.stderr and sid[:12] in result.stderr
    assert cli.json("status", sid)["status"] == "running"
    cli("stop", sid)
    assert cli("wait", sid, check=False).returncode == 143


def test_wait_for_a_session_that_never_started(cli) -> None:
    cli("launch", "--", "/no/such/binary", check=False)
    [session] = cli.json_lines("list", "--all")
    assert cli("wait", session["id"], check=False).returncode == 127
