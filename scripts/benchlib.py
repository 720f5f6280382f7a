"""Shared helpers for the benchmark scripts: a throw-away ledger home, the CLI, stats."""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

AGENTLEDGER = [sys.executable, "-m", "agentledger"]
#: Where CLI runs keep their bytecode when this sandbox forbids writing it beside the sources.
PYCACHE = Path(tempfile.gettempdir()) / "agentledger-bench-pycache"


def temp_home(prefix: str) -> Path:
    """A private AGENTLEDGER_HOME for this run, exported for child processes too; removed when the script exits
    (a million-session store on /dev/shm is half a gigabyte of memory)."""
    import atexit
    import shutil

    home = Path(tempfile.mkdtemp(prefix=f"agentledger-{prefix}-")) / "home"
    atexit.register(shutil.rmtree, home.parent, True)
    os.environ["AGENTLEDGER_HOME"] = str(home)
    os.environ.pop("AGENTLEDGER_DB", None)
    os.environ["AGENTLEDGER_AUTOSTART_DAEMON"] = "0"  # a benchmark starts the daemons it measures itself
    os.environ["AGENTLEDGER_AUTO_LOCK"] = "0"  # benchmarks launch many sessions into one directory
    return home


def open_temp_store(prefix: str):
    from agentledger.infrastructure.settings import store_location
    from agentledger.infrastructure.store import open_store

    temp_home(prefix)
    return open_store(store_location())


def cli(*args: str) -> str:
    return subprocess.run([*AGENTLEDGER, *args], check=True, capture_output=True, text=True).stdout


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float], unit: str = "ms", scale: float = 1000.0) -> str:
    return (f"median {statistics.median(values) * scale:.1f} {unit}, p99 {percentile(values, 99) * scale:.1f} {unit}, "
            f"max {max(values) * scale:.1f} {unit} (n={len(values)})")


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return (f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}")


LAUNCHED = dict(argv=["sleep", "1"], cwd="/", adapter="command", name=None, model=None, prompt=None, group=None,
                labels={}, host="bench", boot_id="bench", pid=1, pid_start_time=1.0, boot_time=0.0,
                supervisor_pid=None, log_path=None, launched_by="bench")


# -- real processes and the sessions recorded for them (reconciler and daemon benchmarks) --------------


def raise_file_limit() -> tuple[int, int]:
    """Raise RLIMIT_NOFILE's soft limit to the hard one (a reconciler keeps a pidfd per live process)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def process_limits() -> str:
    import resource

    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    pid_max = Path("/proc/sys/kernel/pid_max").read_text().strip()
    return (f"RLIMIT_NPROC (ulimit -u) {'unlimited' if nproc == resource.RLIM_INFINITY else nproc}, "
            f"pid_max {pid_max}, RLIMIT_NOFILE soft {nofile[0]} / hard {nofile[1]}, "
            f"{sum(1 for p in os.listdir('/proc') if p.isdigit())} processes running")


@contextmanager
def sleeping(count: int, seconds: int = 3600) -> Iterator[list[subprocess.Popen]]:
    """``count`` real ``sleep`` processes in one process group of their own; killed and reaped on the
    way out, even on error or Ctrl-C."""
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(count):
            group = procs[0].pid if procs else 0
            procs.append(subprocess.Popen(["sleep", str(seconds)], stdin=subprocess.DEVNULL, process_group=group))
        yield procs
    finally:
        reap(procs)


def reap(procs: list[subprocess.Popen]) -> None:
    """Kill (one signal to their group, then each one still unreaped) and reap ``procs``."""
    import signal

    if procs:
        try:
            os.killpg(procs[0].pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for proc in procs:
        if proc.poll() is None:  # reaps a zombie; never signals a reused PID
            proc.kill()
    for proc in procs:
        proc.wait(timeout=30)


def session_fields(identity, argv: list[str]) -> dict:
    """``Launched`` fields for a session of the real process ``identity``, with no supervisor."""
    return dict(argv=list(argv), cwd="/", adapter="command", name=None, model=None, prompt=None, group=None,
                labels={}, host=identity.host, boot_id=identity.boot_id, pid=identity.pid,
                pid_start_time=identity.start_time, boot_time=identity.boot_time, supervisor_pid=None,
                log_path=None, launched_by="bench")


def record_sessions(store, identities, *, fuse_ttl: float | None, argv: list[str], batch: int = 500) -> list[str]:
    """One session per identity (with a fuse of ``fuse_ttl`` seconds, or none), saved in batches,
    then projected; their ids."""
    from uuid import uuid4

    from agentledger.application.clock import utc_now
    from agentledger.domain.session import Session
    from agentledger.projections.catchup import catch_up

    ids, pending = [], []
    for identity in identities:
        session = Session.launch(session_id=uuid4(), **session_fields(identity, argv))
        if fuse_ttl is not None:
            session.set_fuse(ttl=fuse_ttl, set_by="bench", now=utc_now())
        ids.append(session.id.hex)
        pending.append(session)
        if len(pending) == batch:
            store.ledger.save(*pending)
            pending = []
    if pending:
        store.ledger.save(*pending)
    catch_up(store)
    return ids


def remove_temp_home(home: Path) -> None:
    """Delete a throw-away home made by :func:`temp_home` (the temporary directory around it)."""
    import shutil

    parent = Path(home).parent
    if parent.name.startswith("agentledger-") and parent.parent == Path(tempfile.gettempdir()):
        shutil.rmtree(parent, ignore_errors=True)


# -- the CLI, timed -----------------------------------------------------------------


def cli_env(*, bytecode: bool = True, **overrides: str) -> dict[str, str]:
    """The environment for timed CLI runs: with bytecode (as an installed package runs) unless told not."""
    env = {**os.environ, **overrides}
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    return env


def time_command(args: list[str], *, runs: int, env: dict[str, str] | None = None,
                 warm_up: bool = True) -> list[float]:
    """Wall time of ``runs`` whole ``agentledger ARGS`` commands (after one untimed run with ``warm_up``)."""
    if warm_up:
        subprocess.run([*AGENTLEDGER, *args], check=True, stdout=subprocess.DEVNULL, env=env)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([*AGENTLEDGER, *args], check=True, stdout=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - started)
    return times


def populate_sessions(store, count: int, running: int, *, fuse_ttl: float) -> tuple[list[str], float]:
    """``count`` sessions with a fuse and a heartbeat, all but ``running`` of them stopped; saved 500 to a
    save, then caught up once. Their ids, and how long that catch-up took."""
    from uuid import uuid4

    from agentledger.application.clock import utc_now
    from agentledger.domain.session import Session
    from agentledger.projections.catchup import catch_up

    ids, batch = [], []
    for i in range(count):
        session = Session.launch(session_id=uuid4(), **{**LAUNCHED, "argv": ["opencode", "run", f"task {i}"]})
        session.set_fuse(ttl=fuse_ttl, set_by="bench", now=utc_now())
        session.heartbeat(source="bench", now=utc_now())
        if i >= running:
            session.record_stop(reason="exited", exit_code=0, decided_by={"component": "bench"}, evidence={})
        ids.append(session.id.hex)
        batch.append(session)
        if len(batch) == 500:
            store.ledger.save(*batch)
            batch = []
    if batch:
        store.ledger.save(*batch)
    started = time.perf_counter()
    catch_up(store)
    return ids, time.perf_counter() - started
