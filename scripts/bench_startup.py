"""What a read command costs in CPU beside the interpreter's floor: ``list`` and ``status`` at 0 sessions.

Target (issue 20): ``agentledger list`` at 0 sessions <= 3x ``python -c "import sqlite3, orjson"``
(the modules any read needs), in CPU time (user + system), medians of whole processes run in turn,
each with its bytecode cached (``benchlib.cli_env``), as an installed package runs.

    scripts/bench_startup.py [--runs R]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys

from benchlib import AGENTLEDGER, cli, cli_env, machine, temp_home


def cpu_of(argv: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env())
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    temp_home("startup")
    cli("list")  # the store made, its read models level with the (empty) log
    session = cli("launch", "--no-lock", "--", "true").strip()
    cli("list", "--all")
    cases = {
        'python -c "import sqlite3, orjson"': [sys.executable, "-c", "import sqlite3, orjson"],
        "agentledger --version": [*AGENTLEDGER, "--version"],
        "agentledger list": [*AGENTLEDGER, "list"],
        "agentledger list --all --json (1 session)": [*AGENTLEDGER, "list", "--all", "--json"],
        "agentledger status ID (stopped)": [*AGENTLEDGER, "status", session[:12]],
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for argv in cases.values():
        cpu_of(argv)  # warm the caches
    for _ in range(args.runs):
        for name, argv in cases.items():
            times[name].append(cpu_of(argv))
    floor = statistics.median(times['python -c "import sqlite3, orjson"'])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:45s} CPU median {median * 1000:6.1f} ms  x{median / floor:.2f} the floor (n={args.runs})")
    ratio = statistics.median(times["agentledger list"]) / floor
    print(f"list at 0 sessions: x{ratio:.2f} the floor (target <= 3): {'met' if ratio <= 3 else 'MISSED'}")


if __name__ == "__main__":
    main()
