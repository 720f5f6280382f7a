"""Store faults a supervisor must survive, made for real: a full disk, a read-only store, a read-only or lost server.

The SQLite cases put the ledger's home on a small tmpfs this test mounts, or make the store's files
immutable (``chattr +i``); both need root (CI runs as root; elsewhere they skip loudly, and
``AGENTLEDGER_REQUIRE_FAULTS=1`` makes that a failure). The PostgreSQL case
makes a database of its own read-only (``default_transaction_read_only``) and ends its connections, so the
supervisor's pool reconnects into a server that refuses every write; and it stops a PostgreSQL server of the
test's own (``initdb`` in a temporary directory, on a free port) while the agent exits, then starts it again.

In every case the agent exits while the store refuses writes; the supervisor must stay alive, keep the
exit (spooled in the slot it reserved at launch, so a full disk cannot stop it), and record it with the
exact code and the real exit time within seconds of the store accepting writes again.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import POSTGRES_URL, no_real_fault, running, wait_for

#: The agent: waits for a file outside the faulty store, then exits 7.
WAITING_AGENT = "while [ ! -e {go} ]; do sleep 0.05; done; exit 7"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs, mounted for this test only."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        no_real_fault(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'not root'})")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def fill(disk: Path) -> None:
    subprocess.run(["dd", "if=/dev/zero", f"of={disk / 'filler'}", "bs=64k"], capture_output=True)


def launch_waiting(cli, go: Path) -> tuple[str, int]:
    """A session whose agent exits 7 once ``go`` exists; its id and its supervisor's pid."""
    sid = cli.launch("sh", "-c", WAITING_AGENT.format(go=go), options=("--fuse-ttl", "3s"))
    return sid, cli.json("status", sid)["supervisor_pid"]


def recorded_exit(cli, sid: str, went_at: float) -> dict:
    status = wait_for(lambda: (s := cli.json("status", sid))["status"] == "stopped" and s, timeout=60)
    assert (status["stop_reason"], status["exit_code"], status["stopped_by"]) == ("exited", 7, "supervisor")
    exited = datetime.fromisoformat(status["exited_at"]).timestamp()
    assert went_at - 0.5 <= exited <= went_at + 5  # the real exit time, not when the store took it
    return status


@pytest.mark.sqlite_only
def test_a_full_disk_loses_no_exit_and_leaves_no_empty_spool_file(cli, small_disk, monkeypatch, tmp_path):
    home = small_disk / "home"
    monkeypatch.setenv("AGENTLEDGER_HOME", str(home))
    go = tmp_path / "go"
    sid, supervisor = launch_waiting(cli, go)
    assert (home / "spool" / f"{sid}.slot").stat().st_size > 0  # reserved at launch
    fill(small_disk)
    with pytest.raises(OSError):
        (small_disk / "more").write_bytes(b"x" * 65536)
    went_at = time.time()
    go.touch()
    spooled = home / "spool" / f"{sid}.json"
    wait_for(spooled.exists, timeout=30)  # the exit is safe on the full disk
    time.sleep(2)  # two of the supervisor's retries while the disk is still full
    assert psutil.Process(supervisor).is_running()
    assert cli.json("why", sid)["spooled_exit"]["returncode"] == 7
    (small_disk / "filler").unlink()
    status = recorded_exit(cli, sid, went_at)
    assert status["stopped_at"] > status["exited_at"]
    wait_for(lambda: not list((home / "spool").iterdir()), timeout=30)  # no slot, no .json, no 0-byte .tmp


@pytest.mark.sqlite_only
def test_a_read_only_store_loses_no_exit(cli, home, tmp_path):
    """``chattr +i`` on the store's files: even root cannot write them (the home itself stays writable)."""
    go = tmp_path / "go"
    sid, supervisor = launch_waiting(cli, go)
    agent = cli.json("status", sid)["pid"]
    # The data files: an immutable WAL index (-shm), which every process maps, is a SIGBUS in the first
    # process to write to it (docs/operations.md, "When the store refuses writes").
    files = [str(home / name) for name in ("ledger.db", "ledger.db-wal")]
    frozen = subprocess.run(["chattr", "+i", *files], capture_output=True, text=True)
    if frozen.returncode != 0:
        no_real_fault(f"cannot make the store immutable ({frozen.stderr.strip()})")
    try:
        went_at = time.time()
        go.touch()
        wait_for(lambda: not running(agent), timeout=30)
        wait_for((home / "spool" / f"{sid}.json").exists, timeout=30)
        time.sleep(2)  # its supervisor keeps trying
        assert psutil.Process(supervisor).is_running()
        assert cli.json("why", sid)["spooled_exit"]["returncode"] == 7
    finally:
        subprocess.run(["chattr", "-i", *files], check=True)
    recorded_exit(cli, sid, went_at)


@pytest.mark.sqlite_only
def test_a_launch_on_a_read_only_store_starts_nothing(cli, home, tmp_path):
    """Without a directory lock to take first, the store's refusal comes before the supervisor starts the
    command, not after (it would have run, then been killed for want of a record)."""
    cli("list")  # the store made
    ran = tmp_path / "ran"
    files = [str(home / name) for name in ("ledger.db", "ledger.db-wal") if (home / name).exists()]
    frozen = subprocess.run(["chattr", "+i", *files], capture_output=True, text=True)
    if frozen.returncode != 0:
        no_real_fault(f"cannot make the store immutable ({frozen.stderr.strip()})")
    try:
        result = cli("launch", "--no-lock", "--", "touch", str(ran), check=False)
    finally:
        subprocess.run(["chattr", "-i", *files], check=True)
    assert result.returncode == 1 and "the store is read-only" in result.stderr and result.stderr.count("\n") == 1, (
        result.stderr)
    assert not list((home / "logs").glob("*.supervisor.log")) and not ran.exists()  # no supervisor was started


@pytest.mark.postgres_only
def test_a_read_only_server_loses_no_exit(cli, monkeypatch, tmp_path):
    import psycopg

    name = f"al_ro_{uuid.uuid4().hex[:12]}"
    admin = psycopg.connect(POSTGRES_URL, autocommit=True)
    admin.execute(f"CREATE DATABASE {name}")
    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    monkeypatch.setenv("AGENTLEDGER_DB", url)

    def read_only(on: bool) -> None:
        admin.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = {'on' if on else 'off'}")
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))

    try:
        go = tmp_path / "go"
        sid, supervisor = launch_waiting(cli, go)
        read_only(True)
        went_at = time.time()
        go.touch()
        spooled = Path(os.environ["AGENTLEDGER_HOME"]) / "spool" / f"{sid}.json"
        wait_for(spooled.exists, timeout=30)
        time.sleep(2)
        assert psutil.Process(supervisor).is_running()
        waiting = cli.json("why", sid)
        assert waiting["status"] != "stopped" and waiting["spooled_exit"]["returncode"] == 7
        read_only(False)
        recorded_exit(cli, sid, went_at)
    finally:
        _kill_processes_of(url)
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[tuple[str, Any, Any]]:
    """A PostgreSQL server of this test's own: its URL, and functions that stop (as a crash) and start it."""
    bindir = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)), None)
    if bindir is None:
        no_real_fault("no PostgreSQL server binaries (initdb) on this machine")
    bindir = bindir.parent
    as_owner: list[str] = []
    data = Path(tempfile.mkdtemp(prefix="agentledger-pg-"))  # not under tmp_path: the server's user must reach it
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the postgres user
        as_owner = ["runuser", "-u", "postgres", "--"]
        shutil.chown(data, "postgres", "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pgdata = data / "data"
    subprocess.run([*as_owner, str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust",
                    "--no-sync"], check=True, capture_output=True)
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"

    def start() -> None:
        subprocess.run([*as_owner, str(bindir / "pg_ctl"), "-D", str(pgdata), "-l", str(data / "log"),
                        "-o", options, "-w", "-t", "120", "start"], check=True, capture_output=True)

    def stop() -> None:
        subprocess.run([*as_owner, str(bindir / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "-w", "stop"],
                       check=True, capture_output=True)

    start()
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", stop, start
    finally:
        subprocess.run([*as_owner, str(bindir / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.postgres_only
def test_a_lost_server_loses_no_exit(cli, own_server, monkeypatch, tmp_path):
    url, stop_server, start_server = own_server
    monkeypatch.setenv("AGENTLEDGER_DB", url)
    go = tmp_path / "go"
    try:
        sid, supervisor = launch_waiting(cli, go)
        stop_server()
        went_at = time.time()
        go.touch()
        spooled = Path(os.environ["AGENTLEDGER_HOME"]) / "spool" / f"{sid}.json"
        wait_for(spooled.exists, timeout=30)  # the exit is safe while the server is gone
        time.sleep(2)
        assert psutil.Process(supervisor).is_running()
        gone = cli("status", sid, check=False)
        assert gone.returncode == 1 and len(gone.stderr.splitlines()) == 1 and "Traceback" not in gone.stderr
        start_server()
        back_at = time.time()
        recorded_exit(cli, sid, went_at)
        print(f"recorded {time.time() - back_at:.1f}s after the server came back")
        assert not spooled.exists()
    finally:
        _kill_processes_of(url)


def _kill_processes_of(url: str) -> None:
    """SIGKILL every process (supervisor, daemon) that was given this store's URL."""
    for process in psutil.process_iter(["pid"]):
        try:
            if process.environ().get("AGENTLEDGER_DB") == url:
                process.kill()
        except (psutil.Error, OSError):
            continue


# -- what the store layer makes of each driver's errors ---------------------------------------------------------


@pytest.mark.sqlite_only
def test_sqlite_errors_are_classified_by_their_result_code(tmp_path):
    from agentledger.infrastructure.store_faults import StoreFault, classify

    path = tmp_path / "x.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE t (x)")
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    with pytest.raises(sqlite3.Error) as busy:
        sqlite3.connect(path, timeout=0).execute("INSERT INTO t VALUES (1)")
    locker.execute("ROLLBACK")
    with pytest.raises(sqlite3.Error) as read_only:
        sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute("INSERT INTO t VALUES (1)")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 200)
    with pytest.raises(sqlite3.Error) as corrupt:
        sqlite3.connect(garbage).execute("SELECT * FROM t")
    assert [classify(e.value) for e in (busy, read_only, corrupt)] == [
        StoreFault.LOCKED, StoreFault.READ_ONLY, StoreFault.CORRUPT]
    wrapped = RuntimeError("the library's own error")
    wrapped.__cause__ = read_only.value
    assert classify(wrapped) is StoreFault.READ_ONLY  # through the chain of causes
    assert classify(ValueError("a bug")) is None
    assert classify(OSError(28, "No space left on device")) is StoreFault.FULL


@pytest.mark.postgres_only
def test_postgres_errors_are_classified_by_their_sqlstate():
    import psycopg

    from agentledger.infrastructure.store_faults import StoreFault, classify

    with psycopg.connect(POSTGRES_URL, autocommit=True) as db:
        db.execute("SET default_transaction_read_only = on")
        with pytest.raises(psycopg.Error) as read_only:
            db.execute("CREATE TABLE al_never (x int)")
    with pytest.raises(psycopg.Error) as refused:
        psycopg.connect("postgresql://postgres@127.0.0.1:1/test", connect_timeout=2)
    assert classify(read_only.value) is StoreFault.READ_ONLY
    assert classify(refused.value) is StoreFault.UNAVAILABLE


def test_every_error_a_user_sees_is_in_one_hierarchy_with_its_exit_status(tmp_path):
    """Usage errors exit 2, the rest 1; a driver's error becomes a StoreError naming the fault, a home file's
    OSError names the file; anything else is left alone, for the entry point to report as a bug."""
    from agentledger.application.errors import SessionNotFound, StoreError
    from agentledger.domain.durations import InvalidDuration, parse_duration
    from agentledger.domain.errors import DomainError, LedgerError, SessionAlreadyStopped
    from agentledger.infrastructure.config import ConfigError
    from agentledger.infrastructure.store_faults import translate

    with pytest.raises(InvalidDuration) as bad_duration:
        parse_duration("soon")
    for usage in (bad_duration.value, ConfigError("bad"), SessionNotFound("no session")):
        assert isinstance(usage, LedgerError) and usage.exit_code == 2
    refusal = SessionAlreadyStopped("ab" * 16, "exited", "2026-12-06T00:00:00+00:00")
    assert isinstance(refusal, DomainError) and isinstance(refusal, LedgerError) and refusal.exit_code == 1
    assert translate(refusal) is refusal
    path = tmp_path / "x.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(sqlite3.Error) as read_only:
        sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute("INSERT INTO t VALUES (1)")
    store = translate(read_only.value)
    assert isinstance(store, StoreError) and store.exit_code == 1 and store.__cause__ is read_only.value
    assert str(store).startswith("the store is read-only: ")
    home_file = translate(PermissionError(13, "Permission denied", "/home/x/daemon.status.json"))
    assert isinstance(home_file, LedgerError) and str(home_file) == "Permission denied: /home/x/daemon.status.json"
    bug = KeyError("x")
    assert translate(bug) is bug
