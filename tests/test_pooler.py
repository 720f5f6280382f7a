"""A PostgreSQL ledger reached through a transaction pooler: a real PgBouncer (Debian's ``pgbouncer``,
``pool_mode = transaction``) in front of the test server, where each transaction may run on another server
connection and no session state lasts.

This is how a fleet gets past the server's connection limit (``docs/scaling.md``): every supervisor keeps a
connection, and through the pooler those are the pooler's clients, a few server connections between them.
Each test has a database of its own (a pooled ledger lives in schema ``public``), dropped afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from uuid import uuid4

import psutil
import pytest
from conftest import CLI, _end_processes_of, _postgres_admin, wait_for
from pgbouncer import free_port, pgbouncer_binary, running_pgbouncer

#: Server connections the pooler opens per database and user: far fewer than the sessions of these tests.
POOL_SIZE = 3


@dataclass
class Pooler:
    """A running PgBouncer in transaction mode on ``port``, and the scratch databases made through it."""

    port: int
    databases: list[str] = field(default_factory=list)

    def new_ledger(self) -> str:
        """A new empty database on the server, and the URL that reaches it through the pooler."""
        name = f"t_{uuid4().hex[:16]}"
        admin = _postgres_admin()
        try:
            admin.execute(f"CREATE DATABASE {name}")
        finally:
            admin.close()
        self.databases.append(name)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}?pooler=transaction"

    def server_connections(self, database: str) -> int:
        """Connections the server has to ``database`` (the pooler's, and any made around it)."""
        admin = _postgres_admin()
        try:
            return admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)).fetchone()[0]
        finally:
            admin.close()


def _no_pooler(reason: str) -> None:
    if os.environ.get("AGENTLEDGER_REQUIRE_POOLER") == "1":
        pytest.fail(f"{reason}, and AGENTLEDGER_REQUIRE_POOLER=1 requires it")
    pytest.skip(f"SKIPPED, NO POOLER: {reason}")


@pytest.fixture(scope="module")
def pooler() -> Iterator[Pooler]:
    if pgbouncer_binary() is None:
        _no_pooler("pgbouncer is not installed (Debian package pgbouncer)")
    _postgres_admin().close()  # skip (or fail) now if the server is absent
    pooler = None
    try:
        with running_pgbouncer(POOL_SIZE) as port:
            pooler = Pooler(port)
            yield pooler
    finally:
        admin = _postgres_admin()
        try:
            for name in pooler.databases if pooler else ():
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            admin.close()


@pytest.fixture
def pooled(pooler: Pooler, home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This test's ledger through the pooler (``AGENTLEDGER_DB``); its processes are ended afterwards."""
    url = pooler.new_ledger()
    monkeypatch.setenv("AGENTLEDGER_DB", url)
    try:
        yield url.rsplit("/", 1)[1].split("?")[0]
    finally:
        _end_processes_of(home)  # before the database is dropped, with the others, at the module's end


def test_sessions_launch_heartbeat_and_stop_through_the_pooler(pooled):
    cli = CLI()
    exited = cli.launch("sh", "-c", "sleep 1; exit 3", options=("--fuse-ttl", "1s"))
    long = cli.launch("sleep", "600", options=("--fuse-ttl", "1s"))
    wait_for(lambda: cli.json("status", long)["heartbeat_count"] >= 3, timeout=60)  # heartbeats, three a second
    stopped = wait_for(lambda: (s := cli.json("status", exited))["status"] == "stopped" and s, timeout=60)
    assert (stopped["stop_reason"], stopped["exit_code"]) == ("exited", 3)
    cli("stop", long)
    stopped = wait_for(lambda: (s := cli.json("status", long))["status"] == "stopped" and s, timeout=60)
    assert stopped["stop_reason"] == "user"
    assert [e["type"] for e in cli.json_lines("history", exited)][-1] == "Stopped"
    assert "exit code 3" in cli("why", exited).stdout
    assert cli("verify").returncode == 0


def test_many_supervisors_share_the_pools_few_server_connections(pooler, pooled):
    """Twelve sessions, each supervisor with a connection of its own to the pooler; the server sees the pool."""
    cli = CLI()
    sessions = [cli.launch("sleep", "600", options=("--fuse-ttl", "1s")) for _ in range(12)]
    counts = {sid: cli.json("status", sid)["heartbeat_count"] for sid in sessions}
    wait_for(lambda: all(cli.json("status", sid)["heartbeat_count"] >= counts[sid] + 3 for sid in sessions),
             timeout=120)  # every supervisor kept appending
    assert pooler.server_connections(pooled) <= POOL_SIZE
    # Read commands, each catching up the heartbeats under the catch-up lock while more than the pool's
    # server connections' worth of them wait for it; the holder reads the log on a second connection.
    readers = [subprocess.Popen([sys.executable, "-m", "agentledger", "list", "--json"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(3 * POOL_SIZE)]
    for reader in readers:
        out, err = reader.communicate(timeout=100)  # the pooler gives up on a client after 120 s in its queue
        assert reader.returncode == 0, err
        assert len(out.splitlines()) == 12
    for sid in sessions:
        cli("stop", sid)
    wait_for(lambda: cli.json_lines("list") == [], timeout=120)
    assert {s["stop_reason"] for s in cli.json_lines("list", "--all")} == {"user"}


def test_a_new_ledger_made_by_many_processes_at_once_leaves_no_lock_behind(pooled):
    """The first commands create the ledger under an advisory lock. Held by a session, that lock would stay
    with the server connection the pooler lent, and every later start would wait on it for ever."""
    commands = [subprocess.Popen([sys.executable, "-m", "agentledger", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(8)]
    for command in commands:
        _, err = command.communicate(timeout=120)
        assert command.returncode == 0, err
    admin = _postgres_admin()
    try:
        held = admin.execute("SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                             " WHERE l.locktype = 'advisory' AND d.datname = %s", (pooled,)).fetchone()[0]
    finally:
        admin.close()
    assert held == 0
    assert CLI()("list", timeout=60).returncode == 0


def test_a_named_lock_has_one_holder_through_the_pooler_and_hands_over(pooled):
    """The webhook deliverer's lock (``Store.hold_lock``): one store holds it; when it closes, the next can."""
    from agentledger.infrastructure.settings import store_location
    from agentledger.infrastructure.store import open_store

    first, second = open_store(store_location()), open_store(store_location())
    try:
        assert first.hold_lock("webhook:ops") and first.hold_lock("webhook:ops")
        for _ in range(5):  # whichever server connection the pooler lends the second store
            assert not second.hold_lock("webhook:ops")
        assert second.hold_lock("webhook:other")
        first.close()
        assert wait_for(lambda: second.hold_lock("webhook:ops"), timeout=30)
    finally:
        second.close()


def test_a_daemon_through_the_pooler_reconciles_and_follows_no_notifications(pooled, monkeypatch):
    """A ``LISTEN`` lasts in a server session the pooler lends to others: the daemon catches up in each pass
    instead, and still stops a session whose supervisor and agent died."""
    port = free_port()
    monkeypatch.setenv("AGENTLEDGER_METRICS_ADDR", f"127.0.0.1:{port}")
    cli = CLI()
    daemon = int(cli("daemon", "start", "--interval", "500ms").stdout.split("(pid ")[1].split(")")[0])
    try:
        sid = cli.launch("sleep", "600", options=("--fuse-ttl", "1s"))
        status = cli.json("status", sid)
        os.kill(status["supervisor_pid"], signal.SIGKILL)
        os.kill(status["pid"], signal.SIGKILL)
        stopped = wait_for(lambda: (s := cli.json("status", sid))["status"] == "stopped" and s, timeout=60)
        assert (stopped["stop_reason"], stopped["stopped_by"]) == ("reconciled", "reconciler")
        health = wait_for(lambda: _healthz(port), timeout=30)
        assert "reconcile" in health["loops"] and "log-follower" not in health["loops"]
    finally:
        cli("daemon", "stop", check=False)
        try:
            os.kill(daemon, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_one_daemon_per_host_through_the_pooler_and_a_dead_ones_claim_is_let_go(pooled, tmp_path, monkeypatch):
    """The daemon's claim on the ledger for its host is a server lock. Held by a session, it would stay with the
    server connection the pooler keeps after the daemon is gone, and no daemon could start on this host again."""
    cli = CLI()
    first = int(cli("daemon", "start", "--interval", "500ms").stdout.split("(pid ")[1].split(")")[0])
    monkeypatch.setenv("AGENTLEDGER_HOME", str(tmp_path / "another-home"))  # not this home's lock file
    again = cli("daemon", "start", check=False)
    assert again.returncode == 1 and "already running" in again.stderr and f"pid {first}" in again.stderr
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not psutil.pid_exists(first) or psutil.Process(first).status() == psutil.STATUS_ZOMBIE)
    started = wait_for(lambda: (r := cli("daemon", "start", check=False)).returncode == 0 and r, timeout=60)
    second = int(started.stdout.split("(pid ")[1].split(")")[0])
    try:
        stopped = cli("daemon", "stop", check=False)
        assert stopped.returncode == 0 and f"pid {second}" in stopped.stdout, stopped.stderr
    finally:
        if psutil.pid_exists(second):
            os.kill(second, signal.SIGKILL)


def test_the_daemons_of_more_hosts_than_the_pool_has_connections_each_keep_none(pooled, tmp_path, monkeypatch):
    """Each host's daemon claims the ledger for its host with a lease, a row renewed at each host heartbeat: a
    lock would be held by a transaction left open, one server connection per daemon for its life, and the
    pool's last ones would go to the daemons (a fourth daemon here, and every other client, would then wait)."""
    daemons = []
    try:
        for number in range(POOL_SIZE + 1):
            monkeypatch.setenv("AGENTLEDGER_HOME", str(tmp_path / f"home-{number}"))
            monkeypatch.setenv("AGENTLEDGER_HOST_ID", f"host-{number}")
            started = CLI()("daemon", "start", "--interval", "300ms", timeout=90)
            daemons.append((tmp_path / f"home-{number}", int(started.stdout.split("(pid ")[1].split(")")[0])))
        for number, (home, _) in enumerate(daemons):
            monkeypatch.setenv("AGENTLEDGER_HOME", str(home))
            monkeypatch.setenv("AGENTLEDGER_HOST_ID", f"host-{number}")
            wait_for(lambda: CLI().json("daemon", "status")["daemon"]["passes"] >= 3, timeout=60)
        hosts = {h["host"]: h for h in CLI().json_lines("hosts")}
        assert {f"host-{n}" for n in range(len(daemons))} <= set(hosts)
        assert CLI()("list", timeout=30).returncode == 0  # and the pool still serves everyone else at once
    finally:
        for home, pid in daemons:
            monkeypatch.setenv("AGENTLEDGER_HOME", str(home))
            CLI()("daemon", "stop", check=False)
            if psutil.pid_exists(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_lease_is_held_renewed_run_out_taken_from_the_dead_and_given_back(pooled):
    """``infrastructure/leases.py`` on the server, through the pooler: one statement each, no session state."""
    import psycopg

    from agentledger.infrastructure import leases

    CLI()("list")  # creates the ledger, and its leases table
    url = os.environ["AGENTLEDGER_DB"].split("?")[0]  # this test's ledger, through the pooler
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as connection:
        assert leases.take(connection, "daemon:a", "first", 30) and leases.take(connection, "daemon:a", "first", 30)
        assert not leases.take(connection, "daemon:a", "second", 30)
        assert leases.current_holder(connection, "daemon:a") == "first"
        assert not leases.take(connection, "daemon:a", "second", 30, dead="someone else")
        assert leases.take(connection, "daemon:a", "second", 30, dead="first")  # found dead: taken at once
        assert not leases.take(connection, "daemon:a", "first", 30)  # the old holder's renewal is refused
        leases.give_back(connection, "daemon:a", "first")  # not its to give: nothing happens
        assert leases.current_holder(connection, "daemon:a") == "second"
        leases.give_back(connection, "daemon:a", "second")
        assert leases.current_holder(connection, "daemon:a") is None
        assert leases.take(connection, "daemon:b", "gone", -1)  # a lease whose end has passed (no sleeping)
        assert leases.current_holder(connection, "daemon:b") is None  # run out
        assert leases.take(connection, "daemon:b", "other", 30)  # is anyone's
        assert not leases.take(connection, "daemon:b", "gone", 30)
        assert leases.holder_text({"b": 1, "a": 2}) == leases.holder_text({"a": 2, "b": 1})


def _healthz(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:  # 503 while a loop is judged not alive: the report is still there
        return json.loads(error.read())
    except OSError:
        return None


@pytest.mark.unit
def test_a_pooled_url_says_so_keeps_it_and_prepares_nothing(monkeypatch):
    from agentledger.infrastructure.settings import store_location

    monkeypatch.setenv("AGENTLEDGER_DB", "postgresql://agent:pw@pool.example:6432/ledger?pooler=transaction")
    location = store_location()
    assert location.pooled and location.schema == "public"
    assert location.connect_url == "postgresql://agent:pw@pool.example:6432/ledger?pooler=transaction"
    assert location.connection_options() == {"prepare_threshold": None}  # and no search_path startup option
    assert "pooler" not in location.sqlalchemy_url
    monkeypatch.setenv("AGENTLEDGER_DB", "postgresql://agent@db.example/ledger?schema=team_a")
    assert store_location().connection_options() == {"options": "-c search_path=team_a"}


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql://u@h/db?pooler=session", "pooler 'session' must be 'transaction'"),
    ("postgresql://u@h/db?pooler=transaction&schema=team_a", "must be in schema 'public'"),
])
def test_a_pooled_url_it_cannot_serve_is_refused_in_one_line(monkeypatch, url, expected):
    monkeypatch.setenv("AGENTLEDGER_DB", url)
    result = CLI()("list", check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and expected in result.stderr


def test_a_pooler_whose_server_is_away_is_one_line_within_the_connect_timeout(home, monkeypatch):
    """PgBouncer accepts the client and holds its login while it cannot reach the server: the command gives up
    at the connect timeout, in one line, instead of retrying for the 30 s a connection lost mid-way gets."""
    import time

    from agentledger.infrastructure.postgres_store import CONNECT_TIMEOUT

    if pgbouncer_binary() is None:
        _no_pooler("pgbouncer is not installed (Debian package pgbouncer)")
    with running_pgbouncer(POOL_SIZE, server_port=free_port()) as port:  # nothing listens behind it
        monkeypatch.setenv("AGENTLEDGER_DB", f"postgresql://postgres@127.0.0.1:{port}/test?pooler=transaction")
        for command in (("list",), ("launch", "--", "true")):
            started = time.monotonic()
            result = CLI()(*command, check=False)
            took = time.monotonic() - started
            assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
            assert "the PostgreSQL ledger is unreachable: cannot reach the PostgreSQL ledger" in result.stderr
            assert took < CONNECT_TIMEOUT + 20, took  # the connect timeout at most, not 30 s of retries after it
