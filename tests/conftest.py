"""Shared fixtures: a private AGENTLEDGER_HOME per test, the real CLI, condition waits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

#: The PostgreSQL server this machine kind runs (trust auth); each test gets a schema of its own in it.
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
_STORE_FIXTURES = {"cli", "store"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: the test is about the embedded SQLite file itself")
    config.addinivalue_line("markers", "postgres_only: the test is about the PostgreSQL server itself")
    config.addinivalue_line("markers", "unit: the domain or the service layer alone, in memory: no store file, "
                                       "server or process (`pytest -m unit`, seconds)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that touches the store (through ``cli`` or ``store``) runs on both backends."""
    if metafunc.definition.get_closest_marker("postgres_only"):
        metafunc.parametrize("backend", ["postgres"], indirect=True)
    elif _STORE_FIXTURES & set(metafunc.fixturenames) and not metafunc.definition.get_closest_marker("sqlite_only"):
        metafunc.parametrize("backend", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str) -> Iterator[Path]:
    """A fresh ledger home for every test (never the user's), also used by CLI subprocesses.

    On the PostgreSQL backend the ledger is a fresh schema in the server's
    ``test`` database, dropped afterwards with everything the test started.
    """
    path = tmp_path / "home"
    monkeypatch.setenv("AGENTLEDGER_HOME", str(path))
    monkeypatch.delenv("AGENTLEDGER_DB", raising=False)
    monkeypatch.setenv("AGENTLEDGER_METRICS_ADDR", "off")  # test daemons never contend for the default port
    monkeypatch.setenv("AGENTLEDGER_AUTOSTART_DAEMON", "0")  # tests start the daemons they need themselves
    monkeypatch.setenv("AGENTLEDGER_AUTO_LOCK", "0")  # many tests launch into one directory; test_locks turns it on
    monkeypatch.delenv("COLUMNS", raising=False)  # tables at their full width, whatever terminal runs the suite
    if backend == "sqlite":
        yield path
        return
    schema = f"t_{uuid4().hex[:16]}"
    _postgres_admin().close()  # skip (or fail) now if the server is absent
    monkeypatch.setenv("AGENTLEDGER_DB", f"{POSTGRES_URL}?schema={schema}")
    try:
        yield path
    finally:
        _end_processes_of(path)
        admin = _postgres_admin()  # a fresh one: a test may have terminated every other connection
        admin.execute("SET lock_timeout = '10s'")
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()


def _postgres_admin() -> Any:
    """A connection to the test server, or a skip (a failure where CI requires PostgreSQL)."""
    try:
        import psycopg

        return psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except Exception as error:
        reason = f"PostgreSQL at {POSTGRES_URL} is not available ({type(error).__name__}: {error})"
        if os.environ.get("AGENTLEDGER_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason}, and AGENTLEDGER_REQUIRE_POSTGRES=1 requires it")
        pytest.skip(f"SKIPPED ON POSTGRESQL: {reason}")


def no_real_fault(reason: str) -> None:
    """A real fault this machine cannot make (not root, no faketime): a loud skip, or a failure where CI
    requires real faults (``AGENTLEDGER_REQUIRE_FAULTS=1``, set by ``.ci/run``)."""
    if os.environ.get("AGENTLEDGER_REQUIRE_FAULTS") == "1":
        pytest.fail(f"{reason}, and AGENTLEDGER_REQUIRE_FAULTS=1 requires real faults")
    pytest.skip(f"SKIPPED, NO REAL FAULTS: {reason}")


def _end_processes_of(home: Path) -> None:
    """Kill what the test left running against its ledger (supervisors, daemons, their agents)."""
    import psutil

    for process in psutil.process_iter(["pid"]):
        try:
            if process.pid != os.getpid() and process.environ().get("AGENTLEDGER_HOME") == str(home):
                process.kill()
        except (psutil.Error, OSError):
            continue


class CLI:
    """Runs ``agentledger`` as a user would: a separate process with the test's environment."""

    def __call__(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "agentledger", *args],
            capture_output=True, text=True, timeout=timeout, env=dict(os.environ),
        )
        if check and result.returncode != 0:
            raise AssertionError(f"agentledger {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)

    def json_lines(self, *args: str) -> list[Any]:
        return [json.loads(line) for line in self(*args, "--json").stdout.splitlines()]

    def launch(self, *argv: str, options: tuple[str, ...] = ()) -> str:
        return self("launch", *options, "--", *argv).stdout.strip()


@pytest.fixture
def cli(home: Path) -> CLI:
    return CLI()


@pytest.fixture
def daemon(cli: CLI) -> Iterator[Callable[..., int]]:
    """``start(*OPTIONS)`` runs ``agentledger daemon start OPTIONS`` and returns its pid; afterwards
    the daemon is stopped, and every one started is killed if it is still there."""
    started: list[int] = []

    def start(*options: str) -> int:
        result = cli("daemon", "start", *options)
        started.append(int(result.stdout.split("(pid ")[1].split(")")[0]))
        return started[-1]

    yield start
    cli("daemon", "stop", check=False)
    for pid in started:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_for(condition: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited: a zombie has, and one reaped between two looks too.

    ``pid_exists`` followed by ``Process(pid)`` races with the reaper; this asks once.
    """
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def store(home: Path):
    from agentledger.infrastructure.settings import store_location
    from agentledger.infrastructure.store import open_store

    opened = open_store(store_location())
    yield opened
    opened.close()


@pytest.fixture
def spawn() -> Iterator[Any]:
    """Start real processes; every one is killed and reaped at the end of the test."""
    started: list[subprocess.Popen] = []

    def start(*argv: str) -> subprocess.Popen:
        process = subprocess.Popen(list(argv or ("sleep", "600")), start_new_session=True)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def dead_identity(spawn) -> Any:
    """The identity of a real process that has ended (and been reaped)."""
    from agentledger.infrastructure import processes

    process = spawn("sleep", "0")
    identity = processes.identity_of(process.pid)
    process.wait()
    return identity


def record(store, identity, *, fuse_ttl: float | None = 1.0, lapsed: bool = True, **fields) -> UUID:
    """A session as a supervisor would record it, with no supervisor; its fuse lapsed unless told otherwise."""
    from agentledger.application.clock import utc_now
    from agentledger.domain.session import Session

    sid = fields.pop("session_id", None) or uuid4()
    session = Session.launch(
        session_id=sid, argv=["sleep", "600"], cwd=fields.pop("cwd", "/"), adapter=fields.pop("adapter", "command"),
        name=None, model=None, prompt=None,
        group=None, labels={}, host=fields.pop("host", identity.host), boot_id=fields.pop("boot_id", identity.boot_id),
        pid=identity.pid, pid_start_time=identity.start_time, boot_time=identity.boot_time,
        supervisor_pid=fields.pop("supervisor_pid", None),
        log_path=None, launched_by="test", **fields,
    )
    if fuse_ttl is not None:
        set_at = utc_now() - timedelta(seconds=fuse_ttl + 5 if lapsed else 0)
        session.set_fuse(ttl=fuse_ttl, set_by="supervisor", now=set_at)
    store.ledger.save(session)
    return sid


def stand_in_agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> Path:
    """``script`` installed as opencode, claude and codex first on PATH, a private HOME, none of the agents'
    own variables set, ``FAKE_SLEEP`` 0.2 s; returns the directory the stand-ins record into."""
    import stat

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("opencode", "claude", "codex"):
        path = bin_dir / name
        path.write_text(script.format(python=sys.executable))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    records = tmp_path / "records"
    records.mkdir()
    (tmp_path / "userhome").mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HOME", str(tmp_path / "userhome"))
    monkeypatch.setenv("FAKE_RECORD_DIR", str(records))
    for variable in ("XDG_DATA_HOME", "CLAUDE_CONFIG_DIR", "CODEX_HOME", "FAKE_MODE", "FAKE_EXIT", "FAKE_CHILD"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("FAKE_SLEEP", "0.2")
    return records
