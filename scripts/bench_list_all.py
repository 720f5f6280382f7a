"""``list --all --json`` over many sessions: its CPU per row above the same command's start-up.

Target (issue 20): at 100,000 sessions, <= 5 µs of CPU per row above ``list --all --json`` at one
session. Both are whole processes (``python -m agentledger``, bytecode cached: ``benchlib.cli_env``)
writing to /dev/null, CPU time (user + system) of the child, medians of runs taken in turn. The
sessions are made as ``bench_queries.py`` makes them (a fuse, a heartbeat, all but 1% stopped),
saved 500 to a save and caught up once, in a store on /dev/shm.

    scripts/bench_list_all.py [--sessions N] [--runs R]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import tempfile

from benchlib import AGENTLEDGER, cli_env, machine, open_temp_store, populate_sessions


def cpu_of(argv: list[str], env: dict[str, str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def store_with(count: int) -> dict[str, str]:
    """A new home on /dev/shm holding ``count`` sessions; the environment that points the CLI at it."""
    store = open_temp_store(f"listall{count}")
    populate_sessions(store, count, running=max(1, count // 100), fuse_ttl=3600)
    store.close()
    return cli_env(AGENTLEDGER_HOME=os.environ["AGENTLEDGER_HOME"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    tempfile.tempdir = "/dev/shm"
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
    small, big = store_with(1), store_with(args.sessions)
    command = [*AGENTLEDGER, "list", "--all", "--json"]
    for env in (small, big):
        cpu_of(command, env)  # warm-up: bytecode written, pages cached
    at_one, at_many = [], []
    for _ in range(args.runs):
        at_one.append(cpu_of(command, small))
        at_many.append(cpu_of(command, big))
    one, many = statistics.median(at_one), statistics.median(at_many)
    per_row = (many - one) / (args.sessions - 1)
    print(f"list --all --json: 1 session {one * 1e3:.1f} ms CPU; {args.sessions:,} sessions {many * 1e3:.1f} ms CPU; "
          f"{per_row * 1e6:.2f} µs per row above start-up (target <= 5); median of {args.runs} runs each")


if __name__ == "__main__":
    main()
