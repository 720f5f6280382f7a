"""What each session costs a PostgreSQL server in connections, which a fleet runs out of first (docs/scaling.md).

A supervisor appends and loads through the ledger alone: it keeps the
recorder's connection (and the pool may lend one more while another thread
appends), but not the read-model connection every opened store has.
"""

from __future__ import annotations

import psutil
import pytest
from conftest import wait_for

pytestmark = pytest.mark.postgres_only


def _server_connections(pid: int) -> int:
    return sum(1 for c in psutil.Process(pid).net_connections("tcp") if c.raddr and c.raddr.port == 5432)


def test_a_supervisor_holds_no_read_model_connection(cli) -> None:
    sid = cli.launch("sleep", "60", options=("--no-lock", "--fuse-ttl", "1s"))
    try:
        status = wait_for(lambda: (s := cli.json("status", sid))["heartbeat_count"] >= 3 and s)
        assert status["status"] == "running"
        assert 1 <= _server_connections(status["supervisor_pid"]) <= 2
    finally:
        cli("stop", sid)
    assert cli.json("status", sid)["stopped_by"] is not None
