"""What each session costs a PostgreSQL server in connections, which a fleet runs out of first (docs/scaling.md).

A supervisor appends and loads through the ledger alone, on the one
connection its recorder keeps: not the read-model connection every opened
store has, not a second one the pool opened while the library's first request
raced its opening, and not one for the snapshot every 200 events (written in
the events' transaction). The pool may still lend another while two threads
append at once, or to load a snapshot after another writer appended.
"""

from __future__ import annotations

import psutil
import pytest
from conftest import wait_for

pytestmark = pytest.mark.postgres_only


def _server_connections(pid: int) -> int:
    return sum(1 for c in psutil.Process(pid).net_connections("tcp") if c.raddr and c.raddr.port == 5432)


def test_a_supervisor_keeps_one_server_connection(cli) -> None:
    sid = cli.launch("sleep", "60", options=("--no-lock", "--fuse-ttl", "1s"))
    try:
        status = wait_for(lambda: (s := cli.json("status", sid))["heartbeat_count"] >= 3 and s)
        assert status["status"] == "running"
        assert _server_connections(status["supervisor_pid"]) == 1
    finally:
        cli("stop", sid)
    assert cli.json("status", sid)["stopped_by"] is not None


def test_a_snapshot_is_written_on_the_kept_connection(store) -> None:
    """205 heartbeats from the cache, as a supervisor beats: the snapshot at version 200 lands in the events'
    transaction, and the pool never opens a second connection."""
    from uuid import uuid4

    from test_lean_paths import LAUNCH

    from agentledger.application.clock import utc_now

    ledger, sid = store.ledger, uuid4()
    ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="me", **LAUNCH)
    for _ in range(205):
        ledger.change(sid, lambda s: s.heartbeat(source="test", now=utc_now()))
    assert ledger.recorder.datastore.pool.get_stats()["connections_num"] == 1
    (version,) = store.db.execute("SELECT originator_version FROM agentledger_snapshots WHERE originator_id = ?",
                                  (str(sid),)).fetchone()
    assert version == 200
    assert ledger.session(sid).version == 207


def test_a_snapshot_due_while_another_thread_appends_is_still_written(store) -> None:
    """With the kept connection busy (its lock held, as another thread's append holds it), the events go
    through the library's pooled path, and the snapshot due with them follows on the same path."""
    from uuid import uuid4

    from test_lean_paths import LAUNCH

    from agentledger.application.clock import utc_now

    ledger, sid = store.ledger, uuid4()
    ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="me", **LAUNCH)
    with ledger.recorder._held_lock:  # noqa: SLF001 - another thread's append, held still
        for _ in range(200):
            ledger.change(sid, lambda s: s.heartbeat(source="test", now=utc_now()))
    (version,) = store.db.execute("SELECT originator_version FROM agentledger_snapshots WHERE originator_id = ?",
                                  (str(sid),)).fetchone()
    assert version == 200
    assert ledger.session(sid).version == 202
