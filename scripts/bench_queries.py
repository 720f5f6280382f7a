"""Whole-command wall time of `list` and `status` with 10,000 sessions in the projection.

Targets: `agentledger list` <= 250 ms, `agentledger status ID` <= 150 ms (fresh
process each run, read models caught up; one more case where a few new events
must be caught up first).

    scripts/bench_queries.py [--baseline SRC]

With ``--baseline SRC`` (the ``src`` folder of another checkout, e.g. a
``git worktree`` of an older commit), every command is also run from that code,
A and B in turn, and the median of the pair-by-pair ratios is printed: "did
this change make the CLI slower", measured in one run on one store.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

from benchlib import AGENTLEDGER, machine, open_temp_store, populate_sessions, time_command

SESSIONS = 10_000
RUNNING = 1_000
RUNS = 15


def populate(store) -> list[str]:
    ids, took = populate_sessions(store, SESSIONS, RUNNING, fuse_ttl=60)
    print(f"populated {SESSIONS:,} sessions ({RUNNING:,} running); first catch-up of "
          f"{store.ledger.recorder.max_notification_id():,} events took {took:.1f}s")
    return ids


def time_median(args: list[str]) -> float:
    return statistics.median(time_command(args, runs=RUNS, warm_up=False))


def time_pairs(args: list[str], baseline: str) -> tuple[float, float, float]:
    """Medians of this code's and the baseline's runs of ``agentledger ARGS``, A and B in turn, and of A/B."""
    other = dict(os.environ, PYTHONPATH=baseline)
    a, b = [], []
    for _ in range(RUNS):
        a += time_command(args, runs=1, warm_up=False)
        b += time_command(args, runs=1, warm_up=False, env=other)
    return statistics.median(a), statistics.median(b), statistics.median(x / y for x, y in zip(a, b, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", metavar="SRC", help="also time the code in SRC, A/B in turn")
    options = parser.parse_args()
    store = open_temp_store("queries")
    print(f"machine: {machine()}")
    ids = populate(store)
    running_id = ids[0]
    rows = [
        ("list", ["list"], 0.250),
        ("list --all", ["list", "--all"], None),
        ("list --json", ["list", "--json"], None),
        ("list --all --json", ["list", "--all", "--json"], None),
        ("status ID", ["status", running_id[:10]], 0.150),
        ("status ID --json", ["status", running_id, "--json"], None),
        ("--version (interpreter start-up floor)", ["--version"], None),
    ]
    for label, args, target in rows:
        if options.baseline:
            a, b, ratio = time_pairs(args, options.baseline)
            print(f"{label:42s} median {a * 1000:6.1f} ms, baseline {b * 1000:6.1f} ms: ratio {ratio:.3f} "
                  f"over {RUNS} pairs")
            continue
        median = time_median(args)
        verdict = "" if target is None else f"  target <= {target * 1000:.0f} ms: {'met' if median <= target else 'MISSED'}"
        print(f"{label:42s} median {median * 1000:6.1f} ms over {RUNS} runs{verdict}")

    from agentledger.application.clock import utc_now

    behind = []
    for _ in range(RUNS):
        for sid in ids[1:6]:
            from uuid import UUID

            store.ledger.change(UUID(sid), lambda s: s.heartbeat(source="bench", now=utc_now()))
        started = time.perf_counter()
        subprocess.run([*AGENTLEDGER, "list"], check=True, stdout=subprocess.DEVNULL)
        behind.append(time.perf_counter() - started)
    print(f"{'list, 5 new events to catch up first':42s} median {statistics.median(behind) * 1000:6.1f} ms over {RUNS} runs")
    store.close()


if __name__ == "__main__":
    main()
