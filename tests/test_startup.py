"""What a read command imports: on read models level with the log, none of the heavy modules.

``agentledger list`` asks the log's head and the tracked position (two small
queries) and, when they agree, reads the read models without loading the
domain, ``eventsourcing``, SQLAlchemy, psutil or APScheduler. Checked with
``python -X importtime``, which names every module the process imported.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import wait_for

#: Modules a read command on an up-to-date store must not import (each costs milliseconds to tens of them).
HEAVY = ("eventsourcing", "sqlalchemy", "alembic", "psutil", "apscheduler", "starlette", "jinja2", "uvicorn")


def _imported(*args: str) -> set[str]:
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "agentledger", *args], capture_output=True,
                            text=True, env=dict(os.environ), timeout=60)
    assert result.returncode == 0, result.stderr
    return {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")
            and "|" in line}


@pytest.mark.sqlite_only
@pytest.mark.parametrize("args", [("list",), ("list", "--all", "--json"), ("list", "--count")])
def test_a_read_on_an_up_to_date_store_imports_nothing_heavy(cli, args) -> None:
    cli.launch("true")
    cli("list")  # the read models catch up here (this one may import the projection)
    heavy = sorted(m for m in _imported(*args) if m.split(".")[0] in HEAVY)
    assert heavy == [], f"agentledger {' '.join(args)} imported {heavy}"


@pytest.mark.sqlite_only
def test_status_of_a_stopped_session_with_nothing_left_running_imports_nothing_heavy(cli) -> None:
    session_id = cli.launch("true")
    wait_for(lambda: cli.json("status", session_id)["status"] == "stopped")
    heavy = sorted(m for m in _imported("status", session_id) if m.split(".")[0] in HEAVY)
    assert heavy == [], f"agentledger status imported {heavy}"  # its leftovers are looked for without psutil


@pytest.mark.sqlite_only
def test_a_read_that_must_catch_up_still_does(cli) -> None:
    session_id = cli.launch("true")
    assert "agentledger.projections.sessions" in _imported("list", "--all")  # the launch was not projected yet
    assert session_id in cli("list", "--all", "-q").stdout
