"""``history --tail 50`` of a session with 100,000 events beside ``history`` of one with 10, in CPU time.

Target (issue 20): the tail of the long one costs at most 1.2x the whole of
the short one: the state before the tail comes from the session's latest
snapshot (every 200 events), and only the last events are read and drawn.

    scripts/bench_history.py [--events N] [--runs R]

Each run is a whole ``agentledger`` process (with its bytecode cached, as an installed package runs); its CPU time (user + system) is
read from ``getrusage(RUSAGE_CHILDREN)``; the two commands alternate, and the
medians and their ratio are printed.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import time
from uuid import uuid4

from benchlib import AGENTLEDGER, cli_env, machine, open_temp_store

BATCH = 200  # events saved at a time: a save that ends on a multiple of 200 takes the snapshot


def long_session(store, events: int) -> str:
    """A session with ``events`` events: launched, a fuse, then heartbeats, saved ``BATCH`` at a time."""
    from agentledger.application.clock import utc_now
    from agentledger.domain.session import Session

    session = Session.launch(session_id=uuid4(), argv=["sleep", "600"], cwd="/", adapter="command", name=None,
                             model=None, prompt=None, group=None, labels={}, host="bench", boot_id="b", pid=1,
                             pid_start_time=1.0, boot_time=0.0, supervisor_pid=None, log_path=None,
                             launched_by="bench")
    session.set_fuse(ttl=3600, set_by="bench", now=utc_now())
    store.ledger.save(session)
    while session.version < events:
        for _ in range(min(BATCH - session.version % BATCH, events - session.version)):
            session.heartbeat(source="bench", now=utc_now())
        store.ledger.save(session)
    return session.id.hex


def cpu_of(args: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([*AGENTLEDGER, *args], check=True, stdout=subprocess.DEVNULL, env=cli_env())
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    store = open_temp_store("history")
    started = time.perf_counter()
    short = long_session(store, 10)
    long = long_session(store, args.events)
    store.close()
    print(f"a session of 10 events and one of {args.events:,} ({time.perf_counter() - started:.1f}s to write)")
    short_args, tail_args = ["history", short], ["history", long, "--tail", "50"]
    for warm in (short_args, tail_args):
        cpu_of(warm)
    short_cpu, tail_cpu = [], []
    for _ in range(args.runs):
        short_cpu.append(cpu_of(short_args))
        tail_cpu.append(cpu_of(tail_args))
    a, b = statistics.median(short_cpu), statistics.median(tail_cpu)
    print(f"history of 10 events:             CPU median {a * 1000:.1f} ms (n={args.runs})")
    print(f"history --tail 50 of {args.events:,}: CPU median {b * 1000:.1f} ms (n={args.runs})")
    print(f"ratio {b / a:.2f} (target <= 1.2): {'met' if b / a <= 1.2 else 'MISSED'}")


if __name__ == "__main__":
    main()
