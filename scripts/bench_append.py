"""Heartbeat appends through the Ledger against raw sqlite3 inserts of the same rows, one transaction per event.

Two places, each with its own figures (issue 20's targets, ratios within one run):

* ``tmpfs`` (``/dev/shm``): the disk sync is free, so only CPU counts. Rates are
  events per second of this process's CPU time (``time.process_time``), which a
  busy machine's other work does not change. Targets: ``save`` >= 0.4x raw,
  ``change`` >= 0.25x raw.
* ``disk`` (a temp dir on the machine's disk, WAL with ``synchronous=FULL``, the
  library's default): wall-clock rates, where the sync dominates. Target >= 0.8x.

"save" keeps the aggregate in hand (domain event, orjson encoding, insert,
commit); "change" is what every command does per event in a process that has
the session cached (a supervisor, the daemon): ``Ledger.change``, decided on the
cached session, saved with compare-and-set, with no query unless another
writer appended since; "load" is the path a command takes when it must read
the session first (its cache is old: the fast-forward query from the cache,
decide, save), the path every ``change`` took before.
The baseline inserts rows the ledger stored (a fourth session's heartbeats),
with raw ``sqlite3``, ``BEGIN; INSERT; COMMIT`` per row, same journal and sync
settings, into a table of the same shape in a file of its own. The two sides run
in alternating blocks of 100 appends, each block of a mode paired with a block
of raw inserts, so a disk whose speed drifts during a round (a shared VM's
disk does, by 2x within seconds) slows both sides of each ratio alike.
Each append is also timed on its own: no append
may cost more than 5x the median (snapshot spikes), checked on CPU time. The
appends that wrote a snapshot (versions 200, 400, ...) are reported apart:
they are what that bound was written for, where the slowest append overall is
mostly SQLite's own automatic WAL checkpoint (every ~1,000 pages) and the
machine's noise, which raw ``sqlite3`` shows as well.

Usage: ``python scripts/bench_append.py [--events N] [--rounds R] [--where tmpfs,disk]``
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from uuid import uuid4

from benchlib import LAUNCHED, machine, open_temp_store, percentile

PLACES = {"tmpfs": "/dev/shm", "disk": None}  # None: the default temp dir, on disk
SNAPSHOT_INTERVAL = 200  # Ledger.snapshotting_intervals[Session], checked in main()
BLOCK = 100  # appends in a row before the other side takes its turn
MODES = ("save", "change", "load")


class Timed:
    """Each append's cost on one clock, and their sum."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.each: list[float] = []

    def run(self, append: Callable[[], object], count: int) -> float:
        """Appends per second of this clock."""
        clock, each = self.clock, self.each
        for _ in range(count):
            started = clock()
            append()
            each.append(clock() - started)
        return count / sum(each[-count:])


def at_snapshots(each: list[float]) -> list[float]:
    """The times of the appends that wrote a snapshot: each mode's session is at version 2 (``Launched``,
    ``FuseSet``) before its first timed append, and ``Ledger.snapshotting_intervals`` is 200."""
    return [cost for number, cost in enumerate(each, start=3) if number % SNAPSHOT_INTERVAL == 0]


class RawTable:
    """Raw sqlite3 in a file of its own: ``BEGIN; INSERT; COMMIT`` per row, WAL and synchronous=FULL."""

    def __init__(self, path, rows: list[tuple]) -> None:
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE raw_events (originator_id TEXT, originator_version INTEGER, topic TEXT,"
                        " state BLOB, PRIMARY KEY (originator_id, originator_version))")
        self.rows, self.next, self.other = rows, 0, uuid4().hex

    def insert(self) -> None:
        """The next of the ledger's rows (again from the first when they run out), at the next version."""
        _, _, topic, state = self.rows[self.next % len(self.rows)]
        self.next += 1
        self.db.execute("BEGIN")
        self.db.execute("INSERT INTO raw_events VALUES (?,?,?,?)", (self.other, self.next, topic, state))
        self.db.execute("COMMIT")


def measure_round(store, raw_path, events: int, clock: Callable[[], float]) -> dict[str, tuple[Timed, Timed]]:
    """Each mode's appends and the raw inserts paired with them, timed in alternating blocks of :data:`BLOCK`.

    One new session per mode, each as its callers use it. The raw rows are a fourth session's heartbeats as the
    ledger stored them, written before the clock starts, so both sides write the same bytes. Each block of a
    mode's appends is paired with a block of raw inserts run next to it (first one, then the other, in turn),
    so a disk or a machine whose speed drifts over the round slows both sides of each ratio alike.
    """
    from agentledger.application.clock import utc_now

    ledger = store.ledger
    sample_id, held_id, changed_id, loaded_id = (uuid4() for _ in range(4))
    for sid in (sample_id, held_id, changed_id, loaded_id):
        ledger.launch(session_id=sid, fuse_ttl=60, fuse_set_by="bench", **LAUNCHED)
    sample = ledger.session(sample_id)
    for _ in range(events):
        sample.heartbeat(source="bench", now=utc_now())
        ledger.save(sample)
    rows = [tuple(r) for r in store.db.execute(
        "SELECT originator_id, originator_version, topic, state FROM stored_events WHERE originator_id = ?"
        " AND originator_version > 2", (sample_id.hex,))]
    raw = RawTable(raw_path, rows)
    session = ledger.session(held_id)
    ledger.session(changed_id)  # loaded once before the clock starts, as a supervisor's first beat does
    ledger.session(loaded_id)

    def save() -> None:
        session.heartbeat(source="bench", now=utc_now())
        ledger.save(session)

    def beat(s) -> None:
        s.heartbeat(source="bench", now=utc_now())

    modes = {"save": save, "change": lambda: ledger.change(changed_id, beat),
             "load": lambda: ledger.compare_and_set(lambda: ledger.session(loaded_id), beat, what=str)}
    timed = {name: (Timed(clock), Timed(clock)) for name in modes}
    for block in range(events // BLOCK):
        for name, append in modes.items():
            ours, theirs = timed[name]
            pair = [(ours, append), (theirs, raw.insert)]
            for side, work in pair if block % 2 == 0 else reversed(pair):
                side.run(work, BLOCK)
    raw.db.close()
    return timed


def measure(place: str, events: int, rounds: int) -> None:
    directory = PLACES[place]
    if directory is not None:
        tempfile.tempdir = directory
    clock = time.process_time if place == "tmpfs" else time.perf_counter
    store = open_temp_store(f"append-{place}")
    print(f"\n{place}: {store.location.path} ({'CPU' if place == 'tmpfs' else 'wall'} time), "
          f"synchronous={store.db.execute('PRAGMA synchronous').fetchone()[0]} (2 = FULL)")
    ratios: dict[str, list[float]] = {name: [] for name in MODES}
    spikes, snapshot_spikes, snapshot_medians, raw_spikes = [], [], [], []
    for round_ in range(rounds):
        timed = measure_round(store, store.location.path.with_name(f"raw{round_}.db"), events, clock)
        for name, (ours, theirs) in timed.items():
            ratios[name].append(sum(theirs.each) / sum(ours.each))
        spikes.append(max(max(ours.each) / statistics.median(ours.each) for ours, _ in timed.values()))
        snapshot_spikes.append(max(max(at_snapshots(ours.each)) / statistics.median(ours.each)
                                   for ours, _ in timed.values()))
        snapshot_medians.append(max(statistics.median(at_snapshots(ours.each)) / statistics.median(ours.each)
                                    for ours, _ in timed.values()))
        raw_each = [cost for _, theirs in timed.values() for cost in theirs.each]
        raw_spikes.append(max(raw_each) / statistics.median(raw_each))
        print(f"round {round_ + 1}: " + "; ".join(
            f"{name} {len(ours.each) / sum(ours.each):,.0f} ev/s against raw {len(theirs.each) / sum(theirs.each):,.0f}"
            f" ({ratios[name][-1]:.2f}x)" for name, (ours, theirs) in timed.items()))
        for name, each in [(name, ours.each) for name, (ours, _) in timed.items()] + [("raw", raw_each)]:
            middle = statistics.median(each)
            print(f"    one {name:6} append: median {middle * 1e6:.0f} us, p99.9 {percentile(each, 99.9) * 1e6:.0f} us, "
                  f"max {max(each) * 1e6:.0f} us ({max(each) / middle:.1f}x the median)"
                  + (f"; snapshot appends median {statistics.median(at_snapshots(each)) / middle:.1f}x, max "
                     f"{max(at_snapshots(each)) / middle:.1f}x" if name != "raw" else ""))
    print(f"{place} median of rounds: " + ", ".join(
        f"{name} {statistics.median(values):.2f}x raw ({min(values):.2f}-{max(values):.2f})"
        for name, values in ratios.items())
          + f"; slowest append {statistics.median(spikes):.1f}x the median (raw {statistics.median(raw_spikes):.1f}x"
          f" its own); the appends that wrote a snapshot: median {statistics.median(snapshot_medians):.1f}x the"
          f" median append, slowest {statistics.median(snapshot_spikes):.1f}x (medians of rounds)")
    store.close()
    tempfile.tempdir = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000, help="events per mode per round (default 3000)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--where", default="tmpfs,disk", help="tmpfs, disk or both (default both)")
    args = parser.parse_args()
    from agentledger.application.ledger import Ledger
    from agentledger.domain.session import Session

    assert Ledger.snapshotting_intervals[Session] == SNAPSHOT_INTERVAL, "bench_append.SNAPSHOT_INTERVAL is stale"
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
    for place in args.where.split(","):
        measure(place, args.events, args.rounds)


if __name__ == "__main__":
    main()
