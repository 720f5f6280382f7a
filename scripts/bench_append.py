"""Heartbeat appends through the Ledger against raw sqlite3 inserts of the same rows, one transaction per event.

Two places, each with its own figures (issue 20's targets, ratios within one run):

* ``tmpfs`` (``/dev/shm``): the disk sync is free, so only CPU counts. Rates are
  events per second of this process's CPU time (``time.process_time``), which a
  busy machine's other work does not change. Targets: ``save`` >= 0.4x raw,
  ``change`` >= 0.25x raw.
* ``disk`` (a temp dir on the machine's disk, WAL with ``synchronous=FULL``, the
  library's default): wall-clock rates, where the sync dominates. Target >= 0.8x.

"save" keeps the aggregate in hand (domain event, orjson encoding, insert,
commit); "change" is what every command does per event: load the session
(cache, fast-forwarded from the store), decide, save with compare-and-set;
"beat" is a supervisor's heartbeat, ``change(..., from_cache=True)``: decided on
the cached session without the fast-forward query, the compare-and-set checking. The baseline inserts the very rows the ledger stored, with raw
``sqlite3``, ``BEGIN; INSERT; COMMIT`` per row, same journal and sync settings,
into a table of the same shape. Each append is also timed on its own: no append
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


def ledger_rates(store, events: int, clock: Callable[[], float]) -> tuple[float, float, float, list[Timed], list[tuple]]:
    """(save, change and beat rates, each mode's appends timed, the rows stored), one new session per mode."""
    from agentledger.application.clock import utc_now

    ledger = store.ledger
    held_id, changed_id, beaten_id = uuid4(), uuid4(), uuid4()  # one session per mode: each as its callers use it
    for sid in (held_id, changed_id, beaten_id):
        ledger.launch(session_id=sid, fuse_ttl=60, fuse_set_by="bench", **LAUNCHED)
    session = ledger.session(held_id)
    ledger.session(changed_id)  # loaded once before the clock starts, as a supervisor's first beat does
    ledger.session(beaten_id)

    def save() -> None:
        session.heartbeat(source="bench", now=utc_now())
        ledger.save(session)

    saves, changes, beats = Timed(clock), Timed(clock), Timed(clock)
    held = saves.run(save, events)
    changed = changes.run(lambda: ledger.change(changed_id, lambda s: s.heartbeat(source="bench", now=utc_now())),
                          events)
    beaten = beats.run(lambda: ledger.change(beaten_id, lambda s: s.heartbeat(source="bench", now=utc_now()),
                                             from_cache=True), events)
    rows = store.db.execute(
        "SELECT originator_id, originator_version, topic, state FROM stored_events WHERE originator_id = ?"
        " AND originator_version > 2", (held_id.hex,)
    ).fetchall()
    return held, changed, beaten, [saves, changes, beats], [tuple(r) for r in rows]


def raw_rate(path, rows: list[tuple], clock: Callable[[], float]) -> tuple[float, Timed]:
    """Raw sqlite3: the same rows, one ``BEGIN; INSERT; COMMIT`` each, WAL and synchronous=FULL."""
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE raw_events (originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB,"
               " PRIMARY KEY (originator_id, originator_version))")
    other = uuid4().hex

    def insert(row: tuple) -> None:
        db.execute("BEGIN")
        db.execute("INSERT INTO raw_events VALUES (?,?,?,?)", (other, row[1], row[2], row[3]))
        db.execute("COMMIT")

    timed = Timed(clock)
    rows_left = iter(rows)
    rate = timed.run(lambda: insert(next(rows_left)), len(rows))
    db.close()
    return rate, timed


def measure(place: str, events: int, rounds: int) -> None:
    directory = PLACES[place]
    if directory is not None:
        tempfile.tempdir = directory
    clock = time.process_time if place == "tmpfs" else time.perf_counter
    store = open_temp_store(f"append-{place}")
    print(f"\n{place}: {store.location.path} ({'CPU' if place == 'tmpfs' else 'wall'} time), "
          f"synchronous={store.db.execute('PRAGMA synchronous').fetchone()[0]} (2 = FULL)")
    results, spikes, snapshot_spikes = [], [], []
    for round_ in range(rounds):
        held, changed, beaten, timed, rows = ledger_rates(store, events, clock)
        raw, raw_timed = raw_rate(store.location.path.with_name(f"raw{round_}.db"), rows, clock)
        results.append((held, changed, raw, beaten))
        spikes.append(max(max(t.each) / statistics.median(t.each) for t in timed))
        snapshot_spikes.append(max(max(at_snapshots(t.each)) / statistics.median(t.each) for t in timed))
        print(f"round {round_ + 1}: save {held:,.0f} ev/s; change {changed:,.0f} ev/s; beat {beaten:,.0f} ev/s; "
              f"raw {raw:,.0f} rows/s; ratio {held / raw:.2f} / {changed / raw:.2f} / {beaten / raw:.2f}")
        for name, each in (("save", timed[0].each), ("change", timed[1].each), ("beat", timed[2].each),
                           ("raw", raw_timed.each)):
            middle = statistics.median(each)
            print(f"    one {name:6} append: median {middle * 1e6:.0f} us, p99.9 {percentile(each, 99.9) * 1e6:.0f} us, "
                  f"max {max(each) * 1e6:.0f} us ({max(each) / middle:.1f}x the median)"
                  + (f"; snapshot appends max {max(at_snapshots(each)) / middle:.1f}x" if name != "raw" else ""))
    save_ratio = statistics.median(r[0] / r[2] for r in results)
    change_ratio = statistics.median(r[1] / r[2] for r in results)
    beat_ratio = statistics.median(r[3] / r[2] for r in results)
    print(f"{place} median of rounds: save {save_ratio:.2f}x raw, change {change_ratio:.2f}x raw, "
          f"beat (change from the cache, a supervisor's heartbeat) {beat_ratio:.2f}x raw; "
          f"slowest append {statistics.median(spikes):.1f}x the median, slowest append that wrote a snapshot "
          f"{statistics.median(snapshot_spikes):.1f}x (medians of rounds)")
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
