"""A PostgreSQL ledger directly and through PgBouncer in transaction mode: server connections per session, and
the append rate the extra hop leaves (``docs/scaling.md``, "What to change beyond that").

Two ledgers, each a fresh database on the server named by ``BENCH_PG`` (default
``postgresql://postgres@127.0.0.1:5432``), one reached directly and one through
a PgBouncer this script starts on a free port (Debian's ``pgbouncer``,
``pool_mode = transaction``, ``default_pool_size`` from ``--pool``); both are
dropped at the end.

1. **Connections.** ``--sessions`` real sessions (``agentledger launch -- sleep``,
   the default 30 s fuse, a heartbeat every 10 s) on each ledger: the server's
   connections to its database (``pg_stat_activity``) once they all run.
2. **Appends.** 1 and 8 processes, each heartbeating its own session through
   ``ledger.change`` (load, decide, compare-and-set save: a supervisor's path) for
   ``--seconds``: events/s directly and through the pooler, alternated, ``--rounds``
   times; the ratio pooled / direct per round, and its median.

Usage: ``python scripts/bench_pooler.py [--sessions 50] [--pool 5] [--seconds 5] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import uuid4

import psutil
from benchlib import AGENTLEDGER, LAUNCHED, machine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pgbouncer import PoolerMissing, running_pgbouncer  # noqa: E402 - the tests' own, as bench_agents does

SERVER = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")


def admin():
    import psycopg

    return psycopg.connect(f"{SERVER}/postgres", autocommit=True)


@contextmanager
def pgbouncer(pool: int) -> Iterator[int]:
    """A PgBouncer in transaction mode in front of ``SERVER`` (any database name), on the port it yields."""
    host, _, server_port = SERVER.rsplit("@", 1)[1].partition(":")
    try:
        with running_pgbouncer(pool, server_host=host, server_port=int(server_port or 5432),
                               max_clients=5000) as port:
            yield port
    except PoolerMissing as error:
        raise SystemExit(str(error)) from None


@contextmanager
def ledgers(port: int) -> Iterator[dict[str, tuple[str, str]]]:
    """Two fresh databases: {"direct": (name, url), "pooled": (name, url through the pooler)}."""
    names = {mode: f"bench_{uuid4().hex[:12]}" for mode in ("direct", "pooled")}
    connection = admin()
    for name in names.values():
        connection.execute(f"CREATE DATABASE {name}")
    try:
        yield {"direct": (names["direct"], f"{SERVER}/{names['direct']}"),
               "pooled": (names["pooled"], f"postgresql://postgres@127.0.0.1:{port}/{names['pooled']}"
                                           "?pooler=transaction")}
    finally:
        for name in names.values():
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        connection.close()


def connections(name: str) -> int:
    with admin() as connection:
        return connection.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone()[0]


def launch_sessions(url: str, count: int, home: Path) -> list[int]:
    """``count`` real sessions on the ledger at ``url``; the supervisors' pids."""
    env = dict(os.environ, AGENTLEDGER_DB=url, AGENTLEDGER_HOME=str(home), AGENTLEDGER_AUTOSTART_DAEMON="0",
               AGENTLEDGER_AUTO_LOCK="0", AGENTLEDGER_METRICS_ADDR="off")
    subprocess.run([*AGENTLEDGER, "list"], env=env, check=True, capture_output=True)  # creates the ledger
    for _ in range(count):
        subprocess.run([*AGENTLEDGER, "launch", "--", "sleep", "3600"], env=env, check=True, capture_output=True)
    out = subprocess.run([*AGENTLEDGER, "list", "--json"], env=env, check=True, capture_output=True, text=True)
    return [json.loads(line)["supervisor_pid"] for line in out.stdout.splitlines()]


def heartbeats(url: str, seconds: float, ready: multiprocessing.Barrier, counts: multiprocessing.Queue) -> None:
    """One process: its own session, heartbeats through ``ledger.change`` for ``seconds``."""
    from agentledger.application.clock import utc_now
    from agentledger.infrastructure.config import location_from_url
    from agentledger.infrastructure.store import open_store

    store = open_store(location_from_url(url, "BENCH"))
    ledger, sid = store.ledger, uuid4()
    ledger.launch(session_id=sid, fuse_ttl=60, fuse_set_by="bench", **LAUNCHED)
    ready.wait()
    done, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        ledger.change(sid, lambda s: s.heartbeat(source="bench", now=utc_now()))
        done += 1
    counts.put(done)
    store.close()


def append_rate(url: str, writers: int, seconds: float) -> float:
    ready, counts = multiprocessing.Barrier(writers), multiprocessing.Queue()
    workers = [multiprocessing.Process(target=heartbeats, args=(url, seconds, ready, counts)) for _ in range(writers)]
    for worker in workers:
        worker.start()
    total = sum(counts.get(timeout=seconds + 120) for _ in workers)
    for worker in workers:
        worker.join()
    return total / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--pool", type=int, default=5, help="PgBouncer's default_pool_size (default 5)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}; PgBouncer pool of {args.pool}")
    workers_home = Path(tempfile.mkdtemp(prefix="agentledger-bench-writers-"))
    os.environ["AGENTLEDGER_HOME"] = str(workers_home)  # the writers' stores.json: never the user's home
    with pgbouncer(args.pool) as port, ledgers(port) as dbs:
        print(f"\nconnections with {args.sessions} running sessions (the default fuse, a heartbeat every 10 s):")
        for mode, (name, url) in dbs.items():
            home = Path(tempfile.mkdtemp(prefix=f"agentledger-bench-{mode}-"))
            supervisors = launch_sessions(url, args.sessions, home)
            time.sleep(12)  # every supervisor past its first heartbeat
            print(f"  {mode:6}: {len(supervisors)} sessions, {connections(name)} server connections")
            for pid in supervisors:
                os.kill(pid, signal.SIGTERM)  # a supervisor passes it on to its agent and records the stop
            psutil.wait_procs([psutil.Process(pid) for pid in supervisors if psutil.pid_exists(pid)], timeout=60)
            shutil.rmtree(home, ignore_errors=True)  # after them: each writes its session's log as it ends
        for writers in (1, 8):
            ratios = []
            for round_ in range(args.rounds):
                direct = append_rate(dbs["direct"][1], writers, args.seconds)
                pooled = append_rate(dbs["pooled"][1], writers, args.seconds)
                ratios.append(pooled / direct)
                print(f"{writers} writer(s), round {round_ + 1}: direct {direct:,.0f} ev/s, "
                      f"through the pooler {pooled:,.0f} ev/s, ratio {pooled / direct:.2f}", flush=True)
            print(f"{writers} writer(s): pooled / direct, median of rounds {statistics.median(ratios):.2f}")
    shutil.rmtree(workers_home, ignore_errors=True)


if __name__ == "__main__":
    main()
