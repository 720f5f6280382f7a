"""Stopped sessions' ``--json`` documents kept ready (``session_documents``, migration 0013), on both backends.

The kept text must be exactly what ``session_json`` builds from the row, at
any moment it is used; these tests hold ``list --all --json`` with the kept
documents to the same command with them deleted (every row built), through
the events that can follow a stop, a fuse still live at the stop, ordering
among running sessions, ``-n``, rebuild, ``verify`` and archiving.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import dead_identity, record


def _stopped(store: Any, spawn: Any, *, fuse_ttl: float = 1.0, lapsed: bool = True) -> str:
    sid = record(store, dead_identity(spawn), fuse_ttl=fuse_ttl, lapsed=lapsed)
    store.ledger.change(sid, lambda s: s.record_stop(reason="exited", decided_by={"component": "supervisor"},
                                                     evidence={}, exit_code=0))
    return sid.hex


def _documents(store: Any) -> dict[str, bytes]:
    from agentledger.projections.catchup import catch_up

    catch_up(store)
    rows = store.db.execute("SELECT session_id, document FROM session_documents").fetchall()
    return {row[0]: row[1] for row in rows}


def _built(cli: Any, store: Any, *args: str) -> str:
    """``list`` as every row's document built from the row: the kept ones set aside, then put back."""
    kept = store.db.execute("SELECT started_at, session_id, document FROM session_documents").fetchall()
    store.db.execute("DELETE FROM session_documents")
    try:
        return cli("list", *args).stdout
    finally:
        store.db.executemany("INSERT INTO session_documents (started_at, session_id, document) VALUES (?, ?, ?)",
                             [tuple(row) for row in kept])


def test_a_stop_keeps_the_document_list_prints_it_as_built(cli: Any, store: Any, spawn: Any) -> None:
    old = _stopped(store, spawn)
    running = record(store, dead_identity(spawn), fuse_ttl=3600, lapsed=False).hex
    new = _stopped(store, spawn)
    documents = _documents(store)
    assert set(documents) == {old, new}  # stopped ones only
    text = documents[new]
    row = store.db.execute("SELECT position FROM sessions WHERE id = ?", (new,)).fetchone()
    assert orjson.loads(text)["status"] == "stopped" and orjson.loads(text)["position"] == row[0]
    listed = cli("list", "--all", "--json").stdout
    assert [orjson.loads(line)["id"] for line in listed.splitlines()] == [new, running, old]  # newest first
    assert listed == _built(cli, store, "--all", "--json")
    assert cli("list", "--all", "--json", "-n", "2").stdout.splitlines() == listed.splitlines()[:2]
    assert cli("list", "--status", "stopped", "--json").stdout == _built(cli, store, "--status", "stopped", "--json")
    assert [orjson.loads(line)["id"] for line in cli("list", "--json").stdout.splitlines()] == [running]


def test_a_stop_caught_up_apart_from_the_launch_is_kept_as_its_row_stands(cli: Any, store: Any, spawn: Any) -> None:
    """A stopped session takes no further events, so the document is made by the catch-up that applies the stop,
    whatever came before it in other catch-ups."""
    from uuid import UUID

    from agentledger.application.clock import utc_now

    sid = record(store, dead_identity(spawn), fuse_ttl=1.0, lapsed=True)
    store.ledger.change(sid, lambda s: s.heartbeat(source="test", now=utc_now()))
    assert _documents(store) == {}
    store.ledger.change(UUID(sid.hex), lambda s: s.record_stop(reason="exited", decided_by={"component": "t"},
                                                               evidence={}, exit_code=3))
    text = _documents(store)[sid.hex]
    row = store.db.execute("SELECT position, heartbeat_count FROM sessions WHERE id = ?", (sid.hex,)).fetchone()
    assert orjson.loads(text)["position"] == row[0] and orjson.loads(text)["heartbeat_count"] == row[1] == 1
    assert orjson.loads(text)["exit_code"] == 3
    assert cli("list", "--all", "--json").stdout == _built(cli, store, "--all", "--json")


def test_a_stop_that_left_its_fuse_set_keeps_no_document(cli: Any, store: Any, spawn: Any) -> None:
    """A stop cancels a set fuse first (``Session.record_stop``); a log where one did not (forged here, as an
    older writer might have left it) has a ``fuse.live`` that depends on the time: built, never kept."""
    import time

    from agentledger.projections.queries import session_json_lines

    other = _stopped(store, spawn)  # a Stopped event to copy
    stop_topic, stop_state = store.db.execute(
        f"SELECT topic, state FROM {store.events_table} WHERE originator_id = ? ORDER BY originator_version DESC",
        (other,)).fetchone()
    sid = record(store, dead_identity(spawn), fuse_ttl=3600, lapsed=False).hex  # Launched, FuseSet
    store.db.execute(f"INSERT INTO {store.events_table} (originator_id, originator_version, topic, state)"
                     " VALUES (?, 3, ?, ?)", (sid, stop_topic, stop_state))
    assert sid not in _documents(store) and other in _documents(store)
    expires = store.db.execute("SELECT fuse_expires_at FROM sessions WHERE id = ?", (sid,)).fetchone()[0]
    assert expires > time.time()

    def listed(now: float) -> dict[str, Any]:
        documents = [orjson.loads(line)
                     for line in session_json_lines(store.db, include_stopped=True, status=None, now=now)]
        return {d["id"]: d for d in documents}

    assert listed(expires - 1)[sid]["fuse"]["live"] is True and listed(expires + 1)[sid]["fuse"]["live"] is False
    assert cli("list", "--all", "--json").stdout == _built(cli, store, "--all", "--json")


def test_stopped_sessions_without_a_document_are_built_in_their_place(cli: Any, store: Any, spawn: Any) -> None:
    """Sessions stopped before revision 0013 have no document until ``db rebuild``."""
    sids = [_stopped(store, spawn) for _ in range(4)]
    running = record(store, dead_identity(spawn), fuse_ttl=3600, lapsed=False).hex
    last = _stopped(store, spawn)
    full = cli("list", "--all", "--json").stdout
    store.db.execute("DELETE FROM session_documents WHERE session_id IN (?, ?)", (sids[1], last))
    assert cli("list", "--all", "--json").stdout == full
    assert cli("list", "--status", "stopped", "--json").stdout == "".join(
        line + "\n" for line in full.splitlines() if orjson.loads(line)["id"] != running)
    assert cli("list", "--all", "--json", "-n", "3").stdout.splitlines() == full.splitlines()[:3]


def test_rebuild_remakes_them_and_verify_finds_one_changed(cli: Any, store: Any, spawn: Any) -> None:
    sids = [_stopped(store, spawn) for _ in range(3)]
    kept = _documents(store)
    cli("db", "rebuild")
    assert _documents(store) == kept
    assert cli("verify").returncode == 0
    store.db.execute("UPDATE session_documents SET document = '{}' WHERE session_id = ?", (sids[1],))
    result = cli("verify", check=False)
    assert result.returncode != 0 and "session_documents" in result.stdout + result.stderr


def test_an_as_of_view_lists_the_same_as_built(cli: Any, store: Any, spawn: Any) -> None:
    _stopped(store, spawn)
    head = _documents(store)
    position = store.db.execute("SELECT max(position) FROM sessions").fetchone()[0]
    _stopped(store, spawn)
    past = cli("list", "--all", "--json", "--as-of", f"@{position}").stdout
    assert [orjson.loads(line)["id"] for line in past.splitlines()] == list(head)


def test_archiving_removes_the_documents(cli: Any, store: Any, spawn: Any, tmp_path: Path) -> None:
    sid = _stopped(store, spawn)
    record(store, dead_identity(spawn), fuse_ttl=3600, lapsed=False)  # the log's last event is never archived
    assert sid in _documents(store)
    cli("db", "archive", "--stopped-before", "1ms", "--out", str(tmp_path / "a.ndjson.gz"))
    assert sid not in _documents(store)
    cli("db", "import", str(tmp_path / "a.ndjson.gz"))
    assert sid in _documents(store)
    assert cli("list", "--all", "--json").stdout == _built(cli, store, "--all", "--json")


@pytest.mark.parametrize("count", [40])
def test_many_sessions_interleaved_list_in_the_order_of_the_rows(cli: Any, store: Any, spawn: Any, count: int) -> None:
    """Stopped and running sessions started in turn: the two merged queries keep ``started_at`` order."""
    from uuid import uuid4

    from agentledger.domain.session import Session

    identity = dead_identity(spawn)
    sessions = []
    for n in range(count):
        session = Session.launch(
            session_id=uuid4(), argv=["true"], cwd="/", adapter="command", name=f"s{n}", model=None, prompt=None,
            group=None, labels={"n": str(n)}, host=identity.host, boot_id=identity.boot_id, pid=identity.pid,
            pid_start_time=identity.start_time, boot_time=identity.boot_time, supervisor_pid=None, log_path=None,
            launched_by="test",
        )
        if n % 3:
            session.record_stop(reason="exited", decided_by={"component": "test"}, evidence={}, exit_code=n)
        sessions.append(session)
    store.ledger.save(*sessions)
    listed = cli("list", "--all", "--json").stdout
    assert [orjson.loads(line)["name"] for line in listed.splitlines()] == [f"s{n}" for n in reversed(range(count))]
    assert listed == _built(cli, store, "--all", "--json")
