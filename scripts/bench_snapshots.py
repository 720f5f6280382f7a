"""The snapshot interval: what a snapshot costs the appends, and what it saves a cold load.

Every command of the CLI is a new process, so it loads its session cold: the
latest snapshot, then every event after it, at worst ``interval - 1`` of them.
Each snapshot costs the append that takes it one more row (written in the
events' transaction on SQLite). For each interval, on a tmpfs store, in CPU
time of this process: the mean cost of a heartbeat ``save`` over 2,000 of
them (so the snapshots' share is in it), and the worst cold load (a new
Ledger, no cache) of a session one event short of its next snapshot.

Usage: ``python scripts/bench_snapshots.py [--intervals 25,50,100,200,500]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from uuid import uuid4

from benchlib import LAUNCHED, machine, open_temp_store

EVENTS = 2000


def measure(interval: int) -> tuple[float, float]:
    """(µs of CPU per save, ms of CPU for the worst cold load)."""
    from agentledger.application.clock import utc_now
    from agentledger.application.ledger import Ledger
    from agentledger.domain.session import Session

    Ledger.snapshotting_intervals = {**Ledger.snapshotting_intervals, Session: interval}
    store = open_temp_store(f"snap{interval}")
    ledger = store.ledger
    sid = uuid4()
    ledger.launch(session_id=sid, fuse_ttl=3600, fuse_set_by="bench", **LAUNCHED)
    session = ledger.session(sid)
    started = time.process_time()
    for _ in range(EVENTS):
        session.heartbeat(source="bench", now=utc_now())
        ledger.save(session)
    per_save = (time.process_time() - started) / EVENTS
    while (session.version + 1) % interval:  # one event short of the next snapshot: the longest replay
        session.heartbeat(source="bench", now=utc_now())
        ledger.save(session)
    loads = []
    for _ in range(7):
        cold = Ledger(env=ledger.env)
        started = time.process_time()
        cold.session(sid)
        loads.append(time.process_time() - started)
        cold.close()
    store.close()
    return per_save * 1e6, statistics.median(loads) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", default="25,50,100,200,500")
    args = parser.parse_args()
    tempfile.tempdir = "/dev/shm"
    print(f"machine: {machine()}")
    print(f"{'interval':>8}  {'save (µs CPU)':>14}  {'worst cold load (ms CPU)':>24}")
    for interval in map(int, args.intervals.split(",")):
        save, load = measure(interval)
        print(f"{interval:>8}  {save:>14.1f}  {load:>24.2f}")


if __name__ == "__main__":
    main()
