"""Clock skew, made for real with libfaketime (Debian's ``faketime``): a writer an hour ahead, a daemon an hour behind.

Times are judged on the store's clock (SQLite: the host's, as the kernel keeps it; PostgreSQL: the
server's), so neither can keep a dead session live past its TTL. Without ``faketime`` these tests skip
loudly; ``AGENTLEDGER_REQUIRE_FAULTS=1`` (set by ``.ci/run``, which installs it) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime

import pytest
from conftest import no_real_fault, wait_for


@pytest.fixture
def skewed():
    """``skewed(offset, *args)`` runs ``agentledger ARGS`` with its clock moved by ``offset`` ('+1h', '-1h')."""
    if shutil.which("faketime") is None:
        no_real_fault("faketime is not installed (apt-get install faketime)")

    def run(offset: str, *args: str) -> subprocess.CompletedProcess[str]:
        # The wall clock only, as NTP trouble skews it: the monotonic clock (timeouts, waits) runs true.
        env = dict(os.environ, FAKETIME_DONT_FAKE_MONOTONIC="1")
        return subprocess.run(["faketime", "-f", offset, sys.executable, "-m", "agentledger", *args],
                              capture_output=True, text=True, timeout=60, env=env)

    return run


def dead_and_unsupervised(cli, ttl: str) -> str:
    """A session whose supervisor and process were both killed, its fuse still set."""
    sid = cli.launch("sleep", "600", options=("--fuse-ttl", ttl))
    status = cli.json("status", sid)
    os.kill(status["supervisor_pid"], signal.SIGKILL)
    os.kill(status["pid"], signal.SIGKILL)
    return sid


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_a_heartbeat_from_a_clock_an_hour_ahead_keeps_no_dead_session_live(cli, skewed):
    sid = dead_and_unsupervised(cli, "3s")
    sent = skewed("+1h", "heartbeat", sid)
    assert sent.returncode == 0, sent.stderr
    fuse = cli.json("status", sid)["fuse"]
    assert epoch(fuse["expires_at"]) <= time.time() + 3 + 2  # the store's now + TTL, not an hour on
    why = cli("why", sid).stdout
    assert "Clock" in why and "ahead of the store's" in why and "1h" in why
    cli_stop = wait_for(lambda: cli("reconcile").returncode == 0 and cli.json("status", sid)["status"] == "stopped",
                        timeout=20, interval=0.5)
    assert cli_stop and cli.json("status", sid)["stop_reason"] == "reconciled"


def test_a_daemon_an_hour_behind_still_stops_a_dead_session_on_time(cli, skewed):
    sid = dead_and_unsupervised(cli, "2s")
    started = skewed("-1h", "daemon", "start", "--interval", "500ms")
    assert started.returncode == 0, started.stderr
    try:
        killed = time.time()
        stopped = wait_for(lambda: (s := cli.json("status", sid))["status"] == "stopped" and s, timeout=60)
        assert stopped["stop_reason"] == "reconciled"
        assert epoch(stopped["stopped_at"]) - killed <= 2 + 0.5 + 3  # TTL + an interval (+ a busy machine)
        status = wait_for(lambda: cli.json("daemon", "status").get("daemon"), timeout=60)
        assert status["clock_offset"] < -3500  # it knows it is an hour behind, and judged on the store's clock
        assert "behind the store's" in cli("daemon", "status").stdout
    finally:
        cli("daemon", "stop", check=False)
