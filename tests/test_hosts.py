"""Several hosts on one ledger: daemons' signs of life, host-silent, forgetting a host, two reconcilers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import dead_identity, record, wait_for


def agentledger(*args: str, host: str | None = None, home: Path | None = None, check: bool = True,
                **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI as another host would run it (``AGENTLEDGER_HOST_ID``, the test-only override)."""
    environment = dict(os.environ, **env)
    if host:
        environment["AGENTLEDGER_HOST_ID"] = host
    if home:
        environment["AGENTLEDGER_HOME"] = str(home)
    result = subprocess.run([sys.executable, "-m", "agentledger", *args], capture_output=True, text=True,
                            timeout=60, env=environment)
    if check and result.returncode != 0:
        raise AssertionError(f"agentledger {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


@pytest.fixture
def daemons(tmp_path):
    """Daemons playing other hosts, each with its own home; killed at the end."""
    started: list[int] = []

    # Another home, the same ledger: name the test's store explicitly (on SQLite it lives in the home, which
    # must exist: a store named in a directory that does not is refused, not made).
    ledger = os.environ.get("AGENTLEDGER_DB") or f"sqlite:///{os.environ['AGENTLEDGER_HOME']}/ledger.db"
    os.makedirs(os.environ["AGENTLEDGER_HOME"], mode=0o700, exist_ok=True)

    def start(host: str, *options: str) -> int:
        out = agentledger("daemon", "start", "--interval", "0.2", *options, host=host, home=tmp_path / host,
                          AGENTLEDGER_HOST_HEARTBEAT="200ms", AGENTLEDGER_DB=ledger).stdout
        pid = int(out.split("(pid ")[1].split(")")[0])
        started.append(pid)
        return pid

    yield start
    for pid in started:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def hosts(cli) -> dict[str, dict]:
    return {h["host"]: h for h in cli.json_lines("hosts")}


def test_a_daemon_says_its_host_is_alive_and_a_silent_host_is_never_stopped(cli, daemons):
    pid = daemons("beta")
    session = agentledger("launch", "--", "sleep", "60", host="beta").stdout.strip()
    alive = wait_for(lambda: (h := hosts(cli).get("beta")) and h["daemon"] and h)
    assert alive["daemon"]["pid"] == pid and alive["daemon"]["version"] and not alive["silent"]
    assert alive["sessions_not_stopped"] == 1
    refused = cli("host", "forget", "beta", "--reason", "it is fine", check=False)
    assert refused.returncode == 2 and "still heard from" in refused.stderr

    os.kill(pid, signal.SIGKILL)  # the host goes quiet without a word
    wait_for(lambda: hosts(cli)["beta"]["silent"], timeout=60)
    assert cli.json("status", session)["status"] == "host-silent"
    assert [s["id"] for s in cli.json_lines("list", "--status", "host-silent")] == [session]
    assert "host-silent" in cli("list").stdout
    assert cli.json("status", session)["stopped_at"] is None  # silence is not death

    done = cli.json("host", "forget", "beta", "--reason", "rack 4 lost power")
    assert done["stopped"] == [session]
    stop = cli.json("why", session)["stop"]
    assert stop["reason"] == "host-lost" and stop["note"] == "rack 4 lost power"
    assert stop["decided_by"]["component"] == "cli"
    assert hosts(cli)["beta"]["forgotten"]["reason"] == "rack 4 lost power"
    assert "ok: every check passed" in cli("verify").stdout


def test_a_stopped_daemon_leaves_its_host_not_silent(cli, daemons, tmp_path):
    daemons("gamma")
    wait_for(lambda: (h := hosts(cli).get("gamma")) and h["daemon"])
    ledger = os.environ.get("AGENTLEDGER_DB") or f"sqlite:///{os.environ['AGENTLEDGER_HOME']}/ledger.db"
    agentledger("daemon", "stop", host="gamma", home=tmp_path / "gamma", AGENTLEDGER_DB=ledger)
    gamma = wait_for(lambda: (h := hosts(cli)["gamma"]) and h["daemon"] is None and h)
    assert not gamma["silent"] and gamma["forgotten"] is None


def test_forget_refuses_this_host_unknown_hosts_and_no_reason(cli):
    here = cli.launch("sleep", "30")
    this_host = cli.json("status", here)["host"]
    for args, words in ((("host", "forget", this_host, "--reason", "x"), "is this host"),
                        (("host", "forget", "nowhere", "--reason", "x"), "no host 'nowhere'"),
                        (("host", "forget", this_host, "--reason", " "), "--reason"),
                        (("host", "forget", this_host), "--reason")):
        result = cli(*args, check=False)
        assert result.returncode == 2 and words in result.stderr and result.stderr.count("\n") == 1, args
    cli("stop", here)


def test_two_hosts_each_stop_only_their_own_dead_sessions(cli, store, spawn, daemons, backend):
    if backend != "postgres":
        pytest.skip("two hosts share a server ledger; on SQLite one file is one host's")
    sessions = {record(store, dead_identity(spawn), host=host).hex: host
                for host in ("alpha", "beta") for _ in range(50)}
    daemons("alpha")
    daemons("beta")
    wait_for(lambda: sum(s["status"] == "stopped" for s in cli.json_lines("list", "--all")) == 100, timeout=60)
    stopped = [json.loads(line) for line in cli("events").stdout.splitlines()]
    stops = [e for e in stopped if e["type"] == "Stopped"]
    assert len(stops) == 100 and {e["session_id"] for e in stops} == set(sessions)
    for event in stops:
        assert event["fields"]["reason"] == "reconciled"
        assert event["fields"]["decided_by"]["host"] == sessions[event["session_id"]]
    verified = cli("verify", check=False)
    assert verified.returncode == 0, verified.stdout
