"""``list`` and ``status ID`` at a million sessions against their own cost at none.

Target (issue 20): at 1,000,000 sessions (10,000 running), ``agentledger list`` costs <= 1.2x its own CPU at
0 sessions, and ``status ID`` the same. ``list``'s table shows the newest 100 sessions not stopped and counts
the rest on stderr; ``list -n all`` prints all 10,000 where the small store prints one, and is measured beside
it with ``list -n 50`` and ``list --count``. Both are read-model queries, so the million rows are written straight
into the ``sessions`` read model (copies of one real session's row, new ids and start times, all but 10,000
stopped) with the tracking position left at the log's head: the commands find the read models level with the
log, as they would after the daemon caught up, and read exactly what they would read at that size. Making a
million sessions through the log would take an hour here and measure the same queries.

CPU time (user + system) of whole processes, bytecode cached (``benchlib.cli_env``), runs taken in turn,
medians; the stores live on /dev/shm.

    scripts/bench_list_scale.py [--sessions N] [--running R] [--runs K]
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import statistics
import subprocess
import tempfile
import time
from uuid import uuid4

from benchlib import AGENTLEDGER, cli, cli_env, machine, temp_home


def cpu_of(argv: list[str], env: dict[str, str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def a_home_with_one_session(prefix: str) -> tuple[dict[str, str], str]:
    home = temp_home(prefix)
    sid = cli("launch", "--no-lock", "--fuse-ttl", "1h", "--", "sleep", "3600").strip()
    cli("list", "--all")  # read models level with the log
    return cli_env(AGENTLEDGER_HOME=str(home)), sid


def fill(env: dict[str, str], sessions: int, running: int) -> None:
    """``sessions`` more rows in the ``sessions`` read model, copies of the one there, ``running`` of them not
    stopped; the tracking position untouched (still the log's head)."""
    db = sqlite3.connect(os.path.join(env["AGENTLEDGER_HOME"], "ledger.db"))
    columns = [row[1] for row in db.execute("PRAGMA table_info(sessions)")]
    template = dict(zip(columns, db.execute("SELECT * FROM sessions").fetchone()))
    started = time.time() - sessions
    stopped = {"status": "stopped", "stopped_at": time.time(), "stop_reason": "exited", "exit_code": 0,
               "fuse_state": "cancelled"}

    def rows():
        for i in range(sessions):
            row = {**template, "id": uuid4().hex, "started_at": started + i, "name": None}
            if i >= running:
                row.update(stopped)
            yield tuple(row[c] for c in columns)

    with db:
        db.executemany(f"INSERT INTO sessions VALUES ({','.join('?' * len(columns))})", rows())
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--running", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    tempfile.tempdir = "/dev/shm"
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
    small, small_id = a_home_with_one_session("listscale-0")
    big, big_id = a_home_with_one_session("listscale-n")
    started = time.perf_counter()
    fill(big, args.sessions, args.running)
    print(f"{args.sessions:,} rows written in {time.perf_counter() - started:.0f} s")
    cases = {"list": (["list"], ["list"]), "list -n all": (["list", "-n", "all"], ["list", "-n", "all"]),
             "list -n 50": (["list", "-n", "50"], ["list", "-n", "50"]),
             "list --count": (["list", "--count"], ["list", "--count"]),
             "status ID": (["status", small_id], ["status", big_id])}
    for name, (few, many) in cases.items():
        for env, argv in ((small, few), (big, many)):
            cpu_of([*AGENTLEDGER, *argv], env)  # warm-up: bytecode, pages
        at_few, at_many = [], []
        for _ in range(args.runs):
            at_few.append(cpu_of([*AGENTLEDGER, *few], small))
            at_many.append(cpu_of([*AGENTLEDGER, *many], big))
        few_cpu, many_cpu = statistics.median(at_few), statistics.median(at_many)
        print(f"{name}: 1 session {few_cpu * 1e3:.1f} ms CPU; {args.sessions:,} sessions ({args.running:,} running) "
              f"{many_cpu * 1e3:.1f} ms CPU; ratio {many_cpu / few_cpu:.2f} (target <= 1.2); median of {args.runs}")
    for env, sid in ((small, small_id), (big, big_id)):
        subprocess.run([*AGENTLEDGER, "stop", "--force", sid], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
