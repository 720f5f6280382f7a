"""The real store, SQLite and PostgreSQL: creation, schema, projections, concurrency, corruption, outages."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
import subprocess
import sys
from uuid import UUID, uuid4

import orjson
import pytest
from conftest import POSTGRES_URL, wait_for

from agentledger.application.clock import utc_now
from agentledger.application.errors import StoreError
from agentledger.domain.session import Session
from agentledger.infrastructure.config import ConfigError, StoreLocation
from agentledger.infrastructure.settings import store_location
from agentledger.infrastructure.store import SCHEMA_HEAD, open_store
from agentledger.projections.catchup import catch_up, rebuild

FIELDS = dict(argv=["true"], cwd="/", adapter="command", name=None, model=None, prompt=None, group=None,
              labels={}, host="h", boot_id="b", pid=1, pid_start_time=1.0, boot_time=0.0,
              supervisor_pid=None, log_path=None, launched_by="t")


def snapshot(db: sqlite3.Connection) -> dict[str, list[tuple]]:
    return {t: [tuple(r) for r in db.execute(f"SELECT * FROM {t} ORDER BY 1, 2")] for t in ("sessions", "fuses")}


def test_first_use_creates_a_private_store(home):
    store = open_store(store_location())
    store.close()
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(home / "ledger.db").st_mode) == 0o600


def test_schema_head_matches_the_alembic_migrations():
    from agentledger.infrastructure.schema import head_revision

    assert head_revision() == SCHEMA_HEAD


def test_store_url_selection(home, monkeypatch, tmp_path):
    assert store_location().path == home / "ledger.db"
    monkeypatch.setenv("AGENTLEDGER_DB", f"sqlite:///{tmp_path}/other.db")
    assert store_location().path == tmp_path / "other.db"
    for bad in ("banana", "mysql://x/y", "sqlite://", "sqlite:///:memory:", "postgresql://h/", "postgresql://u@h:x/db",
                "postgresql://u@h/db?sslmode=off", "postgresql://u@h/db?schema=Not-Valid"):
        monkeypatch.setenv("AGENTLEDGER_DB", bad)
        with pytest.raises(ConfigError):
            store_location()


def test_a_postgres_url_never_shows_its_password(monkeypatch):
    monkeypatch.setenv("AGENTLEDGER_DB", "postgresql://agent:s3cr%40t@db.example:6543/ledger?schema=team_a")
    location = store_location()
    assert (location.host, location.port, location.dbname, location.user, location.password, location.schema) == (
        "db.example", 6543, "ledger", "agent", "s3cr@t", "team_a")
    assert "s3cr" not in location.url + repr(location) and location.url.startswith("postgresql://agent:***@")
    assert location.connect_url == "postgresql://agent:s3cr%40t@db.example:6543/ledger?schema=team_a"
    monkeypatch.setenv("AGENTLEDGER_DB", "postgresql://agent:hunter2@h/db?nope=1")
    with pytest.raises(ConfigError) as refused:
        store_location()
    assert "hunter2" not in str(refused.value)


def test_an_unreachable_postgres_is_one_line(cli, monkeypatch):
    """A server that refuses the connection is said at once, for a read and for a launch (nothing runs): the 30 s
    of retries are for a connection lost mid-way."""
    import time

    monkeypatch.setenv("AGENTLEDGER_DB", "postgresql://agent:hunter2@127.0.0.1:9/ledger")
    started = time.monotonic()
    launched = cli("launch", "--", "true", check=False)
    assert launched.returncode == 1 and "cannot reach the PostgreSQL ledger" in launched.stderr
    result = cli("list", check=False)
    assert time.monotonic() - started < 25  # two commands, neither retrying for 30 s
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "cannot reach the PostgreSQL ledger postgresql://agent:***@127.0.0.1:9/ledger" in result.stderr
    assert "hunter2" not in result.stderr


def test_events_round_trip_through_the_store(store):
    sid = uuid4()
    store.ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="t", **FIELDS)
    store.ledger.change(sid, lambda s: s.heartbeat(source="t", now=utc_now()))
    loaded = store.ledger.session(sid)
    assert loaded.version == 3 and loaded.fuse_expires_at.tzinfo is not None
    assert sorted(store.event_positions(sid.hex)) == [1, 2, 3]


def test_rebuild_equals_incremental_projection(store):
    for i in range(30):
        sid = uuid4()
        store.ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="t", **FIELDS)
        catch_up(store)  # incremental, interleaved with appends
        store.ledger.change(sid, lambda s: s.heartbeat(source="t", now=utc_now()))
        if i % 3 == 0:
            store.ledger.change(sid, lambda s: s.set_fuse(ttl=5, set_by="p", now=utc_now()))
        if i % 2 == 0:
            store.ledger.change(sid, lambda s, i=i: s.record_stop(reason="exited", exit_code=i, decided_by={"component": "t"}, evidence={}))
    catch_up(store)
    incremental = snapshot(store.db)
    assert len(incremental["sessions"]) == 30
    assert rebuild(store).applied == store.ledger.recorder.max_notification_id()
    assert snapshot(store.db) == incremental


def test_a_rebuild_writing_heartbeats_every_few_entries_equals_one_writing_them_at_the_end(store, monkeypatch):
    """Held-back heartbeats are written every ``FLUSH_EVERY`` entries (so a long catch-up never sits silent):
    the read models come out the same."""
    from agentledger.projections import catchup

    sids = [uuid4() for _ in range(4)]
    for sid in sids:
        store.ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="t", **FIELDS)
    for i in range(40):
        store.ledger.change(sids[i % 4], lambda s: s.heartbeat(source="t", now=utc_now()))
        if i % 13 == 0:
            store.ledger.change(sids[i % 4], lambda s: s.set_fuse(ttl=5, set_by="p", now=utc_now()))
    store.ledger.change(sids[0], lambda s: s.record_stop(reason="exited", exit_code=0, decided_by={"component": "t"},
                                                         evidence={}))
    rebuild(store)
    at_the_end = snapshot(store.db)
    monkeypatch.setattr(catchup, "FLUSH_EVERY", 3)
    rebuild(store)
    assert snapshot(store.db) == at_the_end


_KEYS = {"sessions": "id", "fuses": "session_id, set_version", "projection_tracking": "name"}


def _rows_in_rowid_order(db) -> dict[str, list[tuple]]:
    """Every row; on SQLite with its rowid, so that even insertion order must match."""
    if isinstance(db, sqlite3.Connection):
        return {t: [tuple(r) for r in db.execute(f"SELECT rowid, * FROM {t} ORDER BY rowid")] for t in _KEYS}
    return {t: [tuple(r) for r in db.execute(f"SELECT * FROM {t} ORDER BY {keys}")] for t, keys in _KEYS.items()}


def test_coalesced_heartbeats_project_exactly_as_one_event_at_a_time(store):
    """Rebuild and catch-up write a session's run of heartbeats as one UPDATE per table; the rows (rowids
    too) must be those of projecting every event alone, whatever else the session's runs are mixed with."""
    import random
    from datetime import timedelta

    from agentledger.application.log import read_log
    from agentledger.projections.catchup import project

    rng = random.Random(20261126)
    clock = [utc_now()]
    live = []
    for i in range(6):  # sessions 0 and 3 never have a fuse: their heartbeats extend nothing
        sid = uuid4()
        store.ledger.launch(session_id=sid, fuse_ttl=None if i % 3 == 0 else 20, fuse_set_by="t", **FIELDS)
        catch_up(store)
        live.append(sid)

    def step(session: Session) -> None:
        now, roll = clock[0], rng.random()
        if roll < 0.04:
            session.set_fuse(ttl=rng.choice([5, 20]), set_by="p", now=now)  # replaces the fuse, lapsed or not
        elif roll < 0.06 and session.fuse_state == "set":
            session.cancel_fuse(by="p", reason="r")  # later heartbeats extend nothing
        elif roll < 0.14 and session.fuse_state == "set" and not session.fuse_is_live(now):
            session.record_fuse_expired(decided_by={"component": "reconciler"}, evidence={}, now=now)
        elif roll < 0.16:
            session.request_stop(requested_by="me", signal="SIGTERM", grace=1.0, note=None)
        else:
            session.heartbeat(source="t", now=now)

    for n in range(700):
        clock[0] += timedelta(seconds=rng.choice([1, 3, 30]))
        sid = rng.choice(live)
        if n % 150 == 149:
            store.ledger.change(sid, lambda s: s.record_stop(reason="exited", exit_code=0,
                                                             decided_by={"component": "t"}, evidence={}))
            live.remove(sid)
        else:
            store.ledger.change(sid, step)
        catch_up(store)  # one event at a time: nothing to coalesce
    one_at_a_time = _rows_in_rowid_order(store.db)
    topics = {t.rsplit(".", 1)[-1] for (t,) in store.db.execute(f"SELECT topic FROM {store.events_table}")}
    assert topics == {"Launched", "FuseSet", "Heartbeat", "FuseCancelled", "FuseExpired", "StopRequested", "Stopped"}
    assert sum(r["heartbeat_count"] for r in store.db.execute("SELECT heartbeat_count FROM sessions")) > 450
    assert store.db.execute("SELECT count(*) FROM fuses WHERE extensions > 0 AND state = 'set'").fetchone()[0]

    head = store.ledger.recorder.max_notification_id()
    assert rebuild(store).applied == head
    assert _rows_in_rowid_order(store.db) == one_at_a_time

    for split in (head // 3, head // 2, head - 1):  # one catch-up in two windows, flushed apart
        with store.write_transaction() as cursor:
            for table in ("sessions", "fuses"):
                cursor.execute(f"DELETE FROM {table}")
            project(cursor, read_log(store.ledger, upto=split))
            project(cursor, read_log(store.ledger, after=split))
        assert _rows_in_rowid_order(store.db) == one_at_a_time, split


def test_compare_and_set_refuses_a_save_from_a_stale_version(store):
    from eventsourcing.persistence import IntegrityError

    sid = uuid4()
    store.ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="t", **FIELDS)
    first, second = store.ledger.session(sid), store.ledger.session(sid)
    first.heartbeat(source="a", now=utc_now())
    store.ledger.save(first)
    second.record_stop(reason="reconciled", decided_by={"component": "t"}, evidence={})
    with pytest.raises(IntegrityError):
        store.ledger.save(second)
    assert not store.ledger.session(sid).is_stopped


def _hammer(url: str, session_hex: str, count: int) -> None:
    store = open_store(store_location({"AGENTLEDGER_DB": url}))
    for _ in range(count):
        store.ledger.change(UUID(session_hex), lambda s: s.heartbeat(source=str(os.getpid()), now=utc_now()))
        catch_up(store)
    store.close()


def test_concurrent_processes_lose_nothing(store):
    sid = uuid4()
    store.ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="t", **FIELDS)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_hammer, args=(store.location.connect_url, sid.hex, 40)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    assert store.ledger.session(sid).version == 2 + 4 * 40
    catch_up(store)
    assert store.db.execute("SELECT heartbeat_count FROM sessions").fetchone()[0] == 160


def test_a_corrupted_store_is_one_clear_line(home):
    home.mkdir(mode=0o700)
    (home / "ledger.db").write_bytes(b"this is not a database" * 100)
    result = subprocess.run([sys.executable, "-m", "agentledger", "list"], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "not a readable SQLite database" in result.stderr
    assert "Traceback" not in result.stderr
    assert (home / "ledger.db").read_bytes().startswith(b"this is not a database")  # left as found
    with pytest.raises(StoreError):
        open_store(store_location())


def test_alembic_from_the_repository_root_then_first_use(home, tmp_path):
    """`alembic upgrade head` (alembic.ini at the top level) makes the read models; first use adds the rest."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    env = dict(os.environ, AGENTLEDGER_DB=f"sqlite:///{tmp_path}/via-alembic.db")
    done = subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=root, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    listed = subprocess.run([sys.executable, "-m", "agentledger", "list", "--all"], env=env,
                            capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["ID", "NAME", "ADAPTER", "STATUS", "PID", "STARTED", "STOPPED", "RAN", "FUSE",
                                    "EXIT", "COMMAND"]


def test_snapshots_restore_the_same_state_as_a_full_replay(store):
    sid = uuid4()
    ledger = store.ledger
    ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="t", **FIELDS)
    session = ledger.session(sid)
    for _ in range(450):
        session.heartbeat(source="t", now=utc_now())
        ledger.save(session)
    session.request_stop(requested_by="me", signal="SIGTERM", grace=1.0, note=None)
    ledger.save(session)
    assert [s.originator_version for s in ledger.snapshots.get(sid)] == [200, 400]
    from_snapshot = ledger.session(sid)
    full = None
    for event in ledger.events.get(sid):
        full = event.mutate(full)
    assert vars(from_snapshot) == vars(full)


@pytest.mark.sqlite_only  # SQLite's file lock and busy timeout
def test_a_store_locked_past_the_busy_timeout_is_waited_out(store, monkeypatch):
    """A write lock held longer than SQLite's busy timeout delays a command; it never fails it."""
    import threading
    import time

    import agentledger.infrastructure.store as store_module

    sid = uuid4()
    store.ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="t", **FIELDS)
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_SECONDS", 1)
    impatient = open_store(store.location)  # waits 1 s for the lock, then gets "database is locked"
    holder = sqlite3.connect(str(store.location.path), isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    threading.Timer(2.5, holder.rollback).start()
    started = time.monotonic()
    impatient.ledger.change(sid, lambda s: s.heartbeat(source="t", now=utc_now()))
    assert time.monotonic() - started >= 2.0
    holder.execute("BEGIN IMMEDIATE")
    threading.Timer(2.5, holder.rollback).start()
    assert catch_up(impatient).applied == 3
    assert impatient.ledger.session(sid).version == 3
    impatient.close()
    holder.close()


def test_stored_events_are_orjson_with_tagged_utc_datetimes(store):
    import orjson

    sid = uuid4()
    store.ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="t", **FIELDS)
    topic, state = store.db.execute(
        f"SELECT topic, state FROM {store.events_table} WHERE originator_id = ? AND originator_version = 2", (sid.hex,)
    ).fetchone()
    assert topic == "agentledger.domain.session:Session.FuseSet"
    payload = orjson.loads(state)
    assert payload["expires_at"]["_type_"] == "datetime_iso"
    assert payload["expires_at"]["_data_"].endswith("+00:00") and payload["timestamp"]["_data_"].endswith("+00:00")


def test_events_stored_before_the_reconciler_fields_existed_still_load_and_project(store):
    """Launched without ``timeout`` and StopRequested without ``cause``, as issue-2 versions stored them."""
    import orjson

    sid = uuid4()
    store.ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="t", **FIELDS)
    store.ledger.change(sid, lambda s: s.request_stop(requested_by="me", signal="SIGTERM", grace=1.0, note=None))
    for version, field in ((1, "timeout"), (3, "cause")):
        state = orjson.loads(store.db.execute(
            f"SELECT state FROM {store.events_table} WHERE originator_id = ? AND originator_version = ?",
            (sid.hex, version)).fetchone()[0])
        del state[field]
        store.db.execute(f"UPDATE {store.events_table} SET state = ? WHERE originator_id = ? AND originator_version = ?",
                         (orjson.dumps(state), sid.hex, version))
    fresh = open_store(store.location)  # no cached aggregate
    session = fresh.ledger.session(sid)
    assert session.timeout is None and session.deadline is None
    assert session.stop_requests[0]["cause"] == "user"
    rebuild(fresh)
    row = fresh.db.execute("SELECT timeout_at, stop_request_cause, status FROM sessions").fetchone()
    assert tuple(row) == (None, "user", "stopping")
    fresh.close()


def test_a_store_at_schema_0001_is_upgraded_and_its_read_models_replayed(home, tmp_path):
    """Migration 0002 adds columns derived from events, so it empties the read models for a replay."""
    from alembic import command
    from sqlalchemy import create_engine

    from agentledger.application.ledger import Ledger
    from agentledger.infrastructure.schema import alembic_config
    from agentledger.infrastructure.store import ledger_env, schema_revision

    location = StoreLocation(path=tmp_path / "old.db")
    Ledger(env=ledger_env(location.path, create_tables=True)).close()
    engine = create_engine(location.url)
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.exec_driver_sql("INSERT INTO projection_tracking (name, position) VALUES ('sessions', 99)")
    engine.dispose()
    old = Ledger(env=ledger_env(location.path, create_tables=False))
    sid = uuid4()
    old.launch(session_id=sid, fuse_ttl=30, fuse_set_by="t", **FIELDS)
    old.close()
    assert schema_revision(location.path) == "0001"

    store = open_store(location)
    assert schema_revision(location.path) == SCHEMA_HEAD
    catch_up(store)
    row = store.db.execute("SELECT id, boot_time FROM sessions").fetchone()
    assert tuple(row) == (sid.hex, 0.0)
    store.close()


@pytest.mark.sqlite_only  # it upgrades one store of each kind itself
def test_one_migration_history_gives_the_same_schema_on_sqlite_and_postgres(home, tmp_path):
    from uuid import uuid4 as fresh

    from conftest import _postgres_admin
    from sqlalchemy import inspect

    from agentledger.infrastructure.config import PostgresLocation
    from agentledger.infrastructure.schema import engine_for
    from agentledger.infrastructure.store import initialise_store, store_schema_revision

    admin = _postgres_admin()
    schema = f"t_{fresh().hex[:16]}"
    locations = [StoreLocation(path=tmp_path / "empty.db"),
                 PostgresLocation(host="127.0.0.1", port=5432, dbname="test", user="postgres", schema=schema)]
    try:
        described = []
        for location in locations:
            assert store_schema_revision(location) is None
            initialise_store(location)
            assert store_schema_revision(location) == SCHEMA_HEAD
            engine = engine_for(location)
            try:
                inspector = inspect(engine)
                described.append({
                    table: (
                        [(c["name"], c["type"]._type_affinity.__name__, c["nullable"]) for c in inspector.get_columns(table)],
                        sorted(i["name"] for i in inspector.get_indexes(table)),
                        inspector.get_pk_constraint(table)["constrained_columns"],
                    )
                    for table in ("sessions", "fuses", "projection_tracking")
                })
            finally:
                engine.dispose()
        sqlite_schema, postgres_schema = described
        assert sqlite_schema == postgres_schema
    finally:
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()


def test_postgres_connections_terminated_mid_run_lose_and_duplicate_nothing(cli, backend, monkeypatch):
    """Every connection to the ledger is killed again and again while a session heartbeats and ends."""
    if backend != "postgres":
        pytest.skip("terminating server backends is a PostgreSQL matter")
    import time

    from conftest import _postgres_admin, wait_for

    # This ledger's processes (CLI, supervisor) name themselves to the server, so that only their
    # connections are killed, not those of tests running beside this one.
    name = "agentledger-" + os.environ["AGENTLEDGER_DB"].split("schema=")[1]
    monkeypatch.setenv("PGAPPNAME", name)
    admin = _postgres_admin()
    sid = cli.launch("sh", "-c", "sleep 2; exit 5", options=("--fuse-ttl", "600ms"))
    killing_until = time.monotonic() + 3.0  # through the heartbeats and the exit
    killed = 0
    while time.monotonic() < killing_until:
        killed += sum(ok for (ok,) in admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()", (name,)).fetchall())
        time.sleep(0.15)
    admin.close()
    assert killed > 0  # the supervisor's connections were there to kill
    wait_for(lambda: cli.json("status", sid)["status"] == "stopped", timeout=60, interval=0.5)
    status = cli.json("status", sid)
    assert (status["status"], status["stop_reason"], status["exit_code"]) == ("stopped", "exited", 5)
    events = cli.json_lines("history", sid)
    assert [e["type"] for e in events].count("Stopped") == 1
    assert "ok: every check passed" in cli("verify").stdout


def test_an_exit_seen_during_an_outage_is_spooled_and_recorded_when_the_server_returns(cli, home, backend, tmp_path):
    """The server refuses the ledger's role while the agent exits and its supervisor dies: the exit,
    spooled on disk, is recorded by the next reconcile pass once the server is back."""
    if backend != "postgres":
        pytest.skip("an outage of the server")
    import signal as signals

    from conftest import _postgres_admin, wait_for

    schema = os.environ["AGENTLEDGER_DB"].split("schema=")[1]
    role = f"r_{schema}"
    admin = _postgres_admin()
    cli("db", "upgrade")
    admin.execute(f"CREATE ROLE {role} LOGIN")
    admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
    admin.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA {schema} TO {role}")
    admin.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA {schema} TO {role}")
    as_role = os.environ["AGENTLEDGER_DB"].replace("postgresql://postgres@", f"postgresql://{role}@")
    go = tmp_path / "go"  # the agent exits once the outage has begun, however slow the machine
    try:
        launched = subprocess.run([sys.executable, "-m", "agentledger", "launch", "--fuse-ttl", "30s", "--",
                                   "sh", "-c", f"while [ ! -e {go} ]; do sleep 0.05; done; "
                                               "echo 'fatal: token expired' >&2; exit 7"],
                                  capture_output=True, text=True, timeout=60,
                                  env=dict(os.environ, AGENTLEDGER_DB=as_role), check=True)
        sid = launched.stdout.strip()
        supervisor = cli.json("status", sid)["supervisor_pid"]
        admin.execute(f"ALTER ROLE {role} NOLOGIN")  # the outage, for this ledger's role
        admin.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
        go.touch()
        spooled = home / "spool" / f"{sid}.json"
        wait_for(lambda: spooled.exists(), timeout=60)
        assert orjson.loads(spooled.read_bytes())["returncode"] == 7
        os.kill(supervisor, signals.SIGKILL)  # and the supervisor dies before the server is back
        assert cli.json("status", sid)["status"] != "stopped"
        admin.execute(f"ALTER ROLE {role} LOGIN")
        out = cli("reconcile").stdout
        assert "spooled" in out
        status = cli.json("status", sid)
        assert (status["status"], status["stop_reason"], status["exit_code"]) == ("stopped", "exited", 7)
        assert status["stop_note"] == "fatal: token expired"  # the supervisor's summary, kept in the spool
        assert not spooled.exists()
        assert cli.json("why", sid)["stop"]["evidence"]["spooled_at"]
        assert "ok: every check passed" in cli("verify").stdout
    finally:
        admin.execute(f"ALTER ROLE {role} LOGIN")
        admin.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
        admin.execute(f"DROP OWNED BY {role}")
        admin.execute(f"DROP ROLE {role}")
        admin.close()


@pytest.mark.sqlite_only  # it is about choosing the store
def test_the_store_can_be_named_in_config_toml_and_the_environment_wins(home, monkeypatch, tmp_path):
    home.mkdir(mode=0o700)
    config = home / "config.toml"
    config.write_text(f'db = "sqlite:///{tmp_path}/from-config.db"\n')
    assert store_location().path == tmp_path / "from-config.db"
    monkeypatch.setenv("AGENTLEDGER_DB", f"sqlite:///{tmp_path}/from-env.db")
    assert store_location().path == tmp_path / "from-env.db"
    monkeypatch.delenv("AGENTLEDGER_DB")
    for text, words in (('db = "sqlite:///x"\ncolour = "red"\n', "line 2: unknown key 'colour'"),
                        ("db = \n", "not valid TOML"), ("db = 3\n", "line 1: db: expected a non-empty string"),
                        ('db = "mysql://x"\n', "config.toml, line 1: db: unsupported store")):
        config.write_text(text)
        with pytest.raises(ConfigError) as refused:
            store_location()
        assert str(config) in str(refused.value) and words in str(refused.value), text
    config.write_text('db = "postgresql://agent:hunter2@h/db"\n')
    assert "hunter2" not in store_location().url


@pytest.mark.sqlite_only
def test_an_exit_during_a_stalled_heartbeat_is_spooled_at_once_and_survives_the_supervisor(cli, home, tmp_path):
    """The store is locked while the supervisor is in a heartbeat write; the agent exits with 3 meanwhile
    and the supervisor is then killed, never having come back to its loop. The exit was spooled the
    moment it happened (not when the loop got to it), so the reconciler records exit code 3."""
    import signal as signals

    from conftest import wait_for

    go = tmp_path / "go"
    sid = cli.launch("sh", "-c", f"while [ ! -e {go} ]; do sleep 0.02; done; exit 3",
                     options=("--fuse-ttl", "600ms"))  # a heartbeat every 200 ms
    supervisor = cli.json("status", sid)["supervisor_pid"]
    holder = sqlite3.connect(str(home / "ledger.db"), isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # the next heartbeat blocks on this
    try:
        spooled = home / "spool" / f"{sid}.json"
        go.touch()
        wait_for(lambda: spooled.exists(), timeout=60)
        assert orjson.loads(spooled.read_bytes())["returncode"] == 3
        os.kill(supervisor, signals.SIGKILL)
    finally:
        holder.rollback()
        holder.close()
    wait_for(lambda: "stopped" in cli("reconcile").stdout or cli.json("status", sid)["status"] == "stopped",
             timeout=20, interval=0.3)
    status = cli.json("status", sid)
    assert (status["stop_reason"], status["exit_code"]) == ("exited", 3)
    assert not spooled.exists()


# -- a store is never silently replaced ----------------------------------------------------------------------


def _refused(result) -> bool:
    return (result.returncode == 1 and len(result.stderr.splitlines()) == 1
            and "db init --force" in result.stderr and "Traceback" not in result.stderr)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("how", ["emptied", "deleted"])
def test_an_emptied_or_deleted_sqlite_store_is_refused_not_taken_for_a_new_one(cli, home, how):
    sid = cli.launch("true")
    wait_for(lambda: cli.json("status", sid)["status"] == "stopped", timeout=30)
    store = home / "ledger.db"
    for path in home.glob("ledger.db-*"):
        path.unlink()
    if how == "emptied":
        store.write_bytes(b"")
    else:
        store.unlink()
    for command in (("list", "--all"), ("verify",), ("launch", "--", "true")):
        assert _refused(cli(*command, check=False)), command
    assert not store.exists() or store.stat().st_size == 0  # nothing was created in its place
    assert "now this home's" in cli("db", "init", "--force").stdout
    assert cli.json_lines("list", "--all") == [] and cli("verify").returncode == 0


@pytest.mark.sqlite_only
def test_a_home_from_before_the_check_refuses_its_emptied_store_by_its_logs(cli, home):
    sid = cli.launch("true")
    wait_for(lambda: cli.json("status", sid)["status"] == "stopped", timeout=30)
    (home / "stores.json").unlink()  # as an older agentledger left the home
    for path in home.glob("ledger.db*"):
        path.unlink()
    assert _refused(cli("list", check=False))


@pytest.mark.postgres_only
def test_a_home_that_moves_from_postgresql_to_the_default_store_takes_the_new_one(cli, home, monkeypatch):
    sid = cli.launch("true")
    wait_for(lambda: cli.json("status", sid)["status"] == "stopped", timeout=30)
    monkeypatch.delenv("AGENTLEDGER_DB")  # the same home, now on its default SQLite store: a new one, not a reset
    assert cli("list", "--all").returncode == 0
    assert cli.json("verify")["store_id"]
    assert len(orjson.loads((home / "stores.json").read_bytes())) == 2


def test_a_replaced_store_is_refused_on_both_backends(cli, home, backend):
    cli.launch("true")
    if backend == "postgres":
        import psycopg

        schema = os.environ["AGENTLEDGER_DB"].rsplit("schema=", 1)[1]
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")  # the next command makes a fresh one: another store
    else:
        for path in home.glob("ledger.db*"):
            path.unlink()
        cli("db", "init", "--force")  # a fresh store there, accepted: this home's from now on
        (home / "stores.json").write_text('{"sqlite://' + str((home / "ledger.db").resolve())
                                          + '": {"store_id": "' + "0" * 32 + '"}}')  # ... but it used another
    result = cli("list", check=False)
    assert _refused(result) and "not the ledger this home used" in result.stderr
    cli("db", "init", "--force")
    assert cli("list").returncode == 0
    assert cli.json("verify")["store_id"]


@pytest.mark.postgres_only
def test_a_stopped_process_holding_the_catch_up_lock_holds_up_nobody_for_long(cli, home, tmp_path):
    """A daemon stopped (SIGSTOP) inside a read-model write would hold the catch-up lock, which every ledger on
    the server shares, for as long as it stays stopped: the server ends its silent transaction instead."""
    import signal as signals
    import subprocess
    import sys
    import time

    from agentledger.infrastructure.postgres_store import IDLE_IN_WRITE_SECONDS

    cli("db", "upgrade")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import os, signal\n"
        "from agentledger.infrastructure.settings import store_location\n"
        "from agentledger.infrastructure.store import open_store\n"
        "store = open_store(store_location())\n"
        "with store.write_transaction() as cursor:\n"
        "    print('holding', flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGSTOP)\n"
    )], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        sid = cli.launch("true")  # its supervisor's projection and this list both need the catch-up lock
        assert cli("list", "--all").returncode == 0
        waited = time.monotonic() - started
        assert sid[:12] in cli("list", "--all").stdout
        assert waited < IDLE_IN_WRITE_SECONDS + 50  # not until the holder resumes (never, here)
    finally:
        holder.send_signal(signals.SIGKILL)
        holder.wait()


@pytest.mark.postgres_only
def test_two_ledgers_on_one_server_each_have_their_webhook_deliverer(home, monkeypatch):
    from conftest import POSTGRES_URL, _postgres_admin

    from agentledger.infrastructure.settings import store_location
    from agentledger.infrastructure.store import open_store

    first = open_store(store_location())
    other_schema = f"t_{os.urandom(8).hex()}"
    monkeypatch.setenv("AGENTLEDGER_DB", f"{POSTGRES_URL}?schema={other_schema}")
    monkeypatch.setenv("AGENTLEDGER_HOME", str(home.parent / "other-home"))
    second = open_store(store_location())
    try:
        assert first.hold_lock("webhook:ops") and second.hold_lock("webhook:ops")
    finally:
        first.close()
        second.close()
        admin = _postgres_admin()
        admin.execute(f"DROP SCHEMA IF EXISTS {other_schema} CASCADE")
        admin.close()
