"""``agentledger db copy``: a SQLite ledger's whole history into a PostgreSQL one, resumable, never merged.

The source is the test's SQLite ledger (hence ``sqlite_only``); the target is a
fresh schema in the test server, created and dropped here.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
from conftest import POSTGRES_URL, _postgres_admin, dead_identity, record, wait_for

pytestmark = pytest.mark.sqlite_only

#: Sessions written straight to the ledger, each saved in rounds of heartbeats (interleaved in the log).
BEATING_SESSIONS, ROUNDS, BEATS_PER_ROUND = 5, 12, 50


class Interrupted(Exception):
    pass


@pytest.fixture
def target_url() -> Iterator[str]:
    schema = f"copy_{uuid4().hex[:16]}"
    _postgres_admin().close()  # skips the test without a server
    try:
        yield f"{POSTGRES_URL}?schema={schema}"
    finally:
        admin = _postgres_admin()  # a fresh connection: the test may have held one in a lock
        admin.execute("SET lock_timeout = '10s'")
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Any:
    """``agentledger ARGS`` in this process against the ledger at ``url`` (None: the source): its stdout."""
    from agentledger.entrypoints.cli import main

    def run_on(url: str | None, *args: str) -> str:
        with pytest.MonkeyPatch.context() as patch:
            if url is not None:
                patch.setenv("AGENTLEDGER_DB", url)
            code = main(list(args))
        out, err = capsys.readouterr()
        assert code == 0, f"agentledger {' '.join(args)} exited {code}: {err}"
        return out

    return run_on


def open_target(url: str) -> Any:
    from agentledger.infrastructure.settings import store_location
    from agentledger.infrastructure.store import open_store

    return open_store(store_location({"AGENTLEDGER_DB": url}))


def build_source(cli: Any, store: Any, spawn: Any) -> None:
    """Real sessions: launched and ended through the CLI, thousands of heartbeats, reconciler stops."""
    from agentledger.application.clock import utc_now
    from agentledger.domain.vocabulary import Component
    from agentledger.infrastructure.host import actor

    cli.launch("true", options=("--name", "quick", "--label", "team=a"))
    cli.launch("sh", "-c", "exit 3")
    cli.launch("sleep", "30", options=("--timeout", "300ms"))
    cli("launch", "--", "/nonexistent/agent", check=False)  # spawn-failed
    wait_for(lambda: all(s["status"] == "stopped" for s in cli.json_lines("list", "--all")), timeout=30)

    beating = [store.ledger.session(record(store, dead_identity(spawn), fuse_ttl=3600, lapsed=False))
               for _ in range(BEATING_SESSIONS)]
    for _ in range(ROUNDS):
        for session in beating:
            for _ in range(BEATS_PER_ROUND):
                session.heartbeat(source="supervisor", now=utc_now())
            store.ledger.save(session)
    for session in beating[1:]:  # the first keeps running, on a live fuse
        session.record_stop(reason="exited", decided_by=actor(Component.SUPERVISOR.value),
                            evidence={"observed": "waitpid"}, exit_code=0)
        store.ledger.save(session)

    for _ in range(3):
        record(store, dead_identity(spawn))
    cli("reconcile")


def stored_log(store: Any) -> list[tuple[str, int, str, bytes]]:
    """Every stored event, verbatim, in log order (positions left out: they may be renumbered)."""
    return [(n.originator_id.hex, n.originator_version, n.topic, bytes(n.state))
            for n in store.ledger.recorder.select_notifications(start=None, limit=10**7)]


def _without_positions(value: Any) -> Any:
    """JSON with log positions, and what is measured from "now", left out: they may differ between two reads."""
    if isinstance(value, dict):
        return {k: _without_positions(v) for k, v in value.items()
                if k not in ("position", "now", "last_heartbeat_age")}
    if isinstance(value, list):
        return [_without_positions(v) for v in value]
    return value


def ledger_view(run: Any, url: str | None) -> dict[str, Any]:
    """What a user sees of a ledger: ``list --all``, and every session's ``history`` and ``why``."""
    listed = [json.loads(line) for line in run(url, "list", "--all", "--json").splitlines()]
    ids = sorted(s["id"] for s in listed)
    return _without_positions({
        "list": listed,
        "history": {i: [json.loads(line) for line in run(url, "history", i, "--json").splitlines()] for i in ids},
        "why": {i: json.loads(run(url, "why", i, "--json")) for i in ids},
    })


def snapshot_count(url: str) -> int:
    with _postgres_admin() as admin:
        return admin.execute(f"SELECT COUNT(*) FROM {url.rsplit('schema=', 1)[1]}.agentledger_snapshots").fetchone()[0]


# -- a whole copy -------------------------------------------------------------------


def test_a_copy_has_the_same_history_verifies_and_lists_the_same(cli, store, spawn, run, target_url):
    build_source(cli, store, spawn)
    source_log = stored_log(store)
    assert len(source_log) > BEATING_SESSIONS * ROUNDS * BEATS_PER_ROUND

    result = cli("db", "copy", "--to", target_url, "--batch-size", "500")
    assert f"copied {len(source_log):,} of {len(source_log):,} events" in result.stdout
    assert "events/s" in result.stderr and target_url in result.stdout
    summary = json.loads(cli("db", "copy", "--to", target_url, "--json").stdout)  # again: nothing left to copy
    assert (summary["events"], summary["already_present"], summary["copied"]) == (len(source_log), len(source_log), 0)

    target = open_target(target_url)
    try:
        assert stored_log(target) == source_log
    finally:
        target.close()
    source_snapshots = store.db.execute("SELECT COUNT(*) FROM stored_snapshots").fetchone()[0]
    assert source_snapshots >= BEATING_SESSIONS * 3 and summary["snapshots_present"] == source_snapshots
    assert snapshot_count(target_url) == source_snapshots

    source_view, target_view = ledger_view(run, None), ledger_view(run, target_url)
    assert len(source_view["list"]) == 4 + BEATING_SESSIONS + 3
    assert sum(1 for s in source_view["list"] if s["stop_reason"] == "reconciled") == 3
    assert target_view == source_view
    verified = json.loads(run(target_url, "verify", "--json"))
    assert verified["ok"] and verified["events"] == len(source_log) and verified["reconciler_stops"] == 3


# -- an interrupted copy ------------------------------------------------------------------


def test_an_interrupted_copy_resumes_where_it_stopped_without_duplicates(cli, store, spawn, run, target_url):
    from agentledger.application.copying import copy_ledger

    build_source(cli, store, spawn)
    source_log = stored_log(store)

    def fail_after_three(progress: Any) -> None:
        if progress.batches == 3:
            raise Interrupted

    target = open_target(target_url)
    try:
        with pytest.raises(Interrupted):
            copy_ledger(store, target, batch_size=250, progress=fail_after_three)
        assert stored_log(target) == source_log[:750]
    finally:
        target.close()

    summary = json.loads(cli("db", "copy", "--to", target_url, "--batch-size", "250", "--json").stdout)
    assert summary["already_present"] == 750 and summary["copied"] == len(source_log) - 750
    target = open_target(target_url)
    try:
        assert stored_log(target) == source_log
    finally:
        target.close()
    assert ledger_view(run, target_url) == ledger_view(run, None)
    assert json.loads(run(target_url, "verify", "--json"))["ok"]


def test_a_copy_killed_mid_batch_resumes_with_nothing_lost_or_doubled(cli, store, spawn, target_url):
    """SIGKILL while an insert waits for the table: that batch never lands, the next run copies it."""
    build_source(cli, store, spawn)
    source_log = stored_log(store)
    schema = target_url.rsplit("schema=", 1)[1]
    admin = _postgres_admin()
    copying = subprocess.Popen(
        [sys.executable, "-m", "agentledger", "db", "copy", "--to", target_url, "--batch-size", "10"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(os.environ))

    def copied() -> int:
        assert copying.poll() is None, f"the copy ended before it could be killed: {copying.stderr.read()}"
        exists = admin.execute("SELECT to_regclass(%s)", (f"{schema}.agentledger_events",)).fetchone()[0]
        return admin.execute(f"SELECT COUNT(*) FROM {schema}.agentledger_events").fetchone()[0] if exists else 0
    try:
        wait_for(lambda: copied() >= 100, timeout=30, interval=0.005)
        with admin.transaction():
            admin.execute(f"LOCK TABLE {schema}.agentledger_events IN ACCESS EXCLUSIVE MODE")
            landed = admin.execute(f"SELECT COUNT(*) FROM {schema}.agentledger_events").fetchone()[0]
            copying.send_signal(signal.SIGKILL)
            copying.wait()
        assert 100 <= landed < len(source_log)
    finally:
        if copying.poll() is None:
            copying.kill()
            copying.wait()

    summary = json.loads(cli("db", "copy", "--to", target_url, "--json").stdout)
    assert summary["already_present"] == landed and summary["copied"] == len(source_log) - landed
    target = open_target(target_url)
    try:
        assert stored_log(target) == source_log
    finally:
        target.close()
    admin.close()


# -- refusals -----------------------------------------------------------------------------


def test_a_target_holding_another_ledger_is_refused_in_one_line(cli, store, spawn, target_url):
    record(store, dead_identity(spawn))
    other = open_target(target_url)
    try:
        record(other, dead_identity(spawn))
        before = stored_log(other)
    finally:
        other.close()
    result = cli("db", "copy", "--to", target_url, check=False)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "is not in this ledger" in result.stderr and "copy into an empty ledger" in result.stderr

    target = open_target(target_url)
    try:
        assert stored_log(target) == before  # nothing written
    finally:
        target.close()


def test_a_target_used_after_its_copy_is_refused(cli, store, spawn, target_url):
    """A finished copy that then lived on its own (new sessions on it) is no longer a prefix."""
    record(store, dead_identity(spawn))
    cli("db", "copy", "--to", target_url)
    record(store, dead_identity(spawn))  # appended since: a second run copies just that
    again = json.loads(cli("db", "copy", "--to", target_url, "--json").stdout)
    assert (again["already_present"], again["copied"]) == (2, 2)
    target = open_target(target_url)
    try:
        record(target, dead_identity(spawn))
    finally:
        target.close()
    result = cli("db", "copy", "--to", target_url, check=False)
    assert result.returncode == 1 and "not a copy of this ledger" in result.stderr


def test_this_ledger_under_another_spelling_of_its_url_is_refused(cli, spawn, target_url, monkeypatch):
    ledger = open_target(target_url)
    try:
        record(ledger, dead_identity(spawn))
    finally:
        ledger.close()
    monkeypatch.setenv("AGENTLEDGER_DB", target_url)
    assert "127.0.0.1" in target_url
    result = cli("db", "copy", "--to", target_url.replace("127.0.0.1", "localhost"), check=False)
    assert result.returncode == 2 and "this very ledger" in result.stderr and "the same store as" in result.stderr


def test_a_sqlite_file_of_another_database_is_refused_and_left_as_it_was(cli, store, spawn, tmp_path):
    record(store, dead_identity(spawn))
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE foo (x)")
    result = cli("db", "copy", "--to", f"sqlite:///{other}", check=False)
    assert result.returncode == 1 and "holds tables of another database (foo)" in result.stderr
    with sqlite3.connect(other) as db:
        assert [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["foo"]


def test_bad_urls_and_the_same_store_are_usage_errors(cli, home):
    for url in ("banana", "mysql://x/y", "sqlite:///:memory:", "postgresql://u@h/db?sslmode=off", ""):
        result = cli("db", "copy", "--to", url, check=False)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, (url, result.stderr)
        assert "--to" in result.stderr and "Traceback" not in result.stderr
    same = cli("db", "copy", "--to", f"sqlite:///{home}/./ledger.db", check=False)
    assert same.returncode == 2 and "this very ledger" in same.stderr
    zero = cli("db", "copy", "--to", "sqlite:///elsewhere.db", "--batch-size", "0", check=False)
    assert zero.returncode == 2 and "--batch-size" in zero.stderr
    unreachable = cli("db", "copy", "--to", "postgresql://agent:hunter2@127.0.0.1:9/ledger", check=False)
    assert unreachable.returncode == 1 and "hunter2" not in unreachable.stderr + unreachable.stdout
    assert "postgresql://agent:***@127.0.0.1:9/ledger" in unreachable.stderr
