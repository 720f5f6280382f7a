"""Heartbeat append rate, one transaction per event, against raw sqlite3 inserts of the same rows.

Target: >= 2,000 events/s through the Ledger, and >= 0.5 of raw sqlite3 with the
same durability (WAL, synchronous=FULL, one transaction per row), same run.
"""

from __future__ import annotations

import sqlite3
import time
from uuid import uuid4

from benchlib import LAUNCHED, machine, open_temp_store

EVENTS = 3000
ROUNDS = 3


def ledger_rate(store, reload_each_time: bool) -> tuple[float, list[tuple]]:
    from agentledger.application.clock import utc_now

    ledger = store.ledger
    sid = uuid4()
    ledger.launch(session_id=sid, fuse_ttl=60, fuse_set_by="bench", **LAUNCHED)
    session = ledger.session(sid)
    started = time.perf_counter()
    for _ in range(EVENTS):
        if reload_each_time:
            ledger.change(sid, lambda s: s.heartbeat(source="bench", now=utc_now()))
        else:
            session.heartbeat(source="bench", now=utc_now())
            ledger.save(session)
    elapsed = time.perf_counter() - started
    rows = store.db.execute(
        "SELECT originator_id, originator_version, topic, state FROM stored_events WHERE originator_id = ?"
        " AND originator_version > 2", (sid.hex,)
    ).fetchall()
    return EVENTS / elapsed, [tuple(r) for r in rows]


def raw_rate(path, rows: list[tuple]) -> float:
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE raw_events (originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB,"
               " PRIMARY KEY (originator_id, originator_version))")
    other = uuid4().hex
    started = time.perf_counter()
    for _, version, topic, state in rows:
        db.execute("BEGIN")
        db.execute("INSERT INTO raw_events VALUES (?,?,?,?)", (other, version, topic, state))
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return len(rows) / elapsed


def main() -> None:
    store = open_temp_store("append")
    print(f"machine: {machine()}")
    print(f"synchronous (eventsourcing default): {store.db.execute('PRAGMA synchronous').fetchone()[0]} (2 = FULL)")
    results = []
    for round_ in range(ROUNDS):
        held, rows = ledger_rate(store, reload_each_time=False)
        reloaded, _ = ledger_rate(store, reload_each_time=True)
        raw = raw_rate(store.location.path.with_name(f"raw{round_}.db"), rows)
        results.append((held, reloaded, raw))
        print(f"round {round_ + 1}: ledger save {held:,.0f} ev/s; ledger.change (load+save) {reloaded:,.0f} ev/s; "
              f"raw sqlite3 {raw:,.0f} rows/s; ratio {held / raw:.2f} / {reloaded / raw:.2f}")
    results.sort(key=lambda r: r[0] / r[2])
    held, reloaded, raw = results[len(results) // 2]
    print(f"median round: {held:,.0f} ev/s (ratio {held / raw:.2f}); with reload per event {reloaded:,.0f} ev/s "
          f"(ratio {reloaded / raw:.2f}); raw {raw:,.0f} rows/s")
    store.close()


if __name__ == "__main__":
    main()
