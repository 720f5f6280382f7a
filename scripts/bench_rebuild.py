"""Rebuilding the read models from a 1,000,000-event log, against merely reading that log.

Target (issue 4): `rebuild(store)` over 1,000,000 events >= 50,000 events/s, and
>= 0.3 of the rate of merely reading the same notifications in the same run
(`recorder.select_notifications` paged through the whole log). Reading *and*
decoding every notification (`mapper.to_domain_event`) is reported beside it.
`agentledger db rebuild` (the whole CLI command) is timed once at the end.

The log: 10,000 sessions of 100 events each (Launched, FuseSet, heartbeats,
then FuseCancelled + Stopped; one in ten stopped sessions had a StopRequested
first, one in twenty sessions had a fuse lapse recorded by the reconciler and
revived by the next heartbeat; the last 1,000 sessions never stop), built as
`Session` aggregates, `CONCURRENT` of them alive at any time so their events
interleave in the log as a host's supervisors would write them. The built
store file is cached in the temporary directory, keyed by `LOG_KEY`, and copied
into a throw-away home for each run; it is built here when absent (~2 min).
`bench_why.py` uses the same log.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from uuid import uuid4

from benchlib import AGENTLEDGER, LAUNCHED, machine, temp_home

SESSIONS = 10_000
EVENTS_PER_SESSION = 100
RUNNING_SESSIONS = 1_000  # the last ones launched; they heartbeat and never stop
CONCURRENT = 50  # sessions alive at once: a page of 1,000 notifications holds ~20 events of each
TTL = 60.0
BEAT = 20.0  # simulated seconds between two heartbeats of one session (TTL / 3)
SAVE_EVERY = 5_000  # events per save() (one transaction)
ROUNDS = 3
TARGET_RATE = 50_000
TARGET_RATIO = 0.3

LOG_KEY = f"biglog-v1-{SESSIONS}x{EVENTS_PER_SESSION}-c{CONCURRENT}"
CACHE_DIR = Path(tempfile.gettempdir()) / "agentledger-bench-cache"


# -- the log ------------------------------------------------------------------------------------------------


def _life(session, index: int, now) -> Iterator[int]:
    """One session's events, one step per simulated heartbeat interval; yields how many it appended."""
    from agentledger.domain.vocabulary import StopReason

    session.set_fuse(ttl=TTL, set_by="supervisor", now=now())
    yield 2  # Launched (pending since launch) + FuseSet
    running = index >= SESSIONS - RUNNING_SESSIONS
    requested = not running and index % 10 == 0
    lapse = index % 20 == 7
    ending = 0 if running else 2 + requested  # FuseCancelled + Stopped (+ StopRequested)
    beats = EVENTS_PER_SESSION - 2 - ending - lapse
    supervisor = {"component": "supervisor", "host": "bench", "pid": 4242, "user": "bench"}
    for beat in range(beats):
        if lapse and beat == beats // 2:
            for _ in range(4):  # the supervisor stalls past its fuse's expiry
                yield 0
            session.record_fuse_expired(
                decided_by={"component": "reconciler", "host": "bench", "pid": 99, "user": "bench"},
                evidence={"pid_alive": True, "fuse_expires_at": session.fuse_expires_at}, now=now())
            yield 1
        session.heartbeat(source="supervisor", now=now())
        yield 1
    if running:
        return
    if requested:
        session.request_stop(requested_by="bench", signal="SIGTERM", grace=10.0, note="enough")
        yield 1
    session.record_stop(
        reason=StopReason.USER if requested else StopReason.EXITED,
        decided_by=supervisor, exit_code=None if requested else 0, signal="SIGTERM" if requested else None,
        note=None, evidence={"observed": "waitpid", "pid": 1, "returncode": 0, "stop_requests": [],
                             "fuse": {"state": "set", "live": True, "expires_at": session.fuse_expires_at},
                             "last_heartbeat_at": session.last_heartbeat_at,
                             "decided_on_version": session.version})
    yield 2


def build_log(store) -> float:
    """Append the whole log to ``store``; seconds taken."""
    from agentledger.domain.session import Session

    started = time.perf_counter()
    ticks_needed = SESSIONS * (EVENTS_PER_SESSION + 4) // CONCURRENT
    tick = [0]
    start = datetime.now(timezone.utc) - timedelta(seconds=BEAT * ticks_needed)

    def now() -> datetime:
        return start + timedelta(seconds=BEAT * tick[0])

    active: list[tuple[Session, Iterator[int]]] = []
    launched, pending, total = 0, [], 0
    while launched < SESSIONS or active:
        # Stagger the first wave over one session's lifetime, then keep CONCURRENT alive.
        wanted = min(CONCURRENT, 1 + tick[0] * CONCURRENT // EVENTS_PER_SESSION)
        while launched < SESSIONS and len(active) < wanted:
            session = Session.launch(session_id=uuid4(), **{
                **LAUNCHED, "argv": ["opencode", "run", f"task {launched}"], "name": f"task-{launched}",
                "pid": 10_000 + launched, "supervisor_pid": 4242})
            active.append((session, _life(session, launched, now)))
            launched += 1
        still = []
        for session, life in active:
            try:
                next(life)
            except StopIteration:
                continue
            still.append((session, life))
            pending.extend(session.collect_events())
        active = still
        if len(pending) >= SAVE_EVERY:
            store.ledger.save(*pending)
            total += len(pending)
            pending = []
        tick[0] += 1
    if pending:
        store.ledger.save(*pending)
        total += len(pending)
    assert total == SESSIONS * EVENTS_PER_SESSION, total
    return time.perf_counter() - started


def cached_log() -> Path:
    """The cached store file holding the log (built first if absent)."""
    path = CACHE_DIR / f"{LOG_KEY}.db"
    if path.exists():
        return path
    from agentledger.infrastructure.settings import store_location
    from agentledger.infrastructure.store import open_store

    home = temp_home("buildlog")
    store = open_store(store_location())
    print(f"building the {SESSIONS * EVENTS_PER_SESSION:,}-event log (not cached yet at {path}) ...", flush=True)
    took = build_log(store)
    store.close()
    db = sqlite3.connect(home / "ledger.db")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    CACHE_DIR.mkdir(exist_ok=True)
    partial = path.with_suffix(".partial")
    shutil.copyfile(home / "ledger.db", partial)
    partial.rename(path)
    shutil.rmtree(home.parent, ignore_errors=True)
    print(f"built in {took:.0f}s; cached as {path} ({path.stat().st_size / 1e6:.0f} MB)", flush=True)
    return path


def big_log_store(prefix: str):
    """A throw-away home holding a copy of the cached log; the open store."""
    from agentledger.infrastructure.settings import store_location
    from agentledger.infrastructure.store import open_store

    source = cached_log()
    home = temp_home(prefix)
    home.mkdir(mode=0o700, parents=True)
    shutil.copyfile(source, home / "ledger.db")
    os.chmod(home / "ledger.db", 0o600)
    return open_store(store_location())


# -- the measurements ---------------------------------------------------------------------------------------


def read_only(ledger, page: int) -> tuple[int, float]:
    recorder = ledger.recorder
    started = time.perf_counter()
    count, position = 0, 0
    while True:
        notifications = recorder.select_notifications(start=position, limit=page, inclusive_of_start=False)
        count += len(notifications)
        if len(notifications) < page:
            return count, time.perf_counter() - started
        position = notifications[-1].id


def read_and_decode(ledger, page: int) -> tuple[int, float]:
    recorder, to_domain_event = ledger.recorder, ledger.mapper.to_domain_event
    started = time.perf_counter()
    count, position = 0, 0
    while True:
        notifications = recorder.select_notifications(start=position, limit=page, inclusive_of_start=False)
        for notification in notifications:
            to_domain_event(notification)
        count += len(notifications)
        if len(notifications) < page:
            return count, time.perf_counter() - started
        position = notifications[-1].id


def rows_digest(db) -> str:
    import hashlib

    digest = hashlib.sha256()
    for table in ("sessions", "fuses", "projection_tracking"):
        for row in db.execute(f"SELECT * FROM {table} ORDER BY rowid"):
            digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()[:16]


def main() -> None:
    from agentledger.application.log import PAGE_SIZE
    from agentledger.projections.catchup import rebuild

    whole = time.perf_counter()
    print(f"machine: {machine()}")
    print(f"log: {LOG_KEY} ({SESSIONS:,} sessions x {EVENTS_PER_SESSION} events, {CONCURRENT} alive at once)")
    store = big_log_store("rebuild")
    head = store.ledger.recorder.max_notification_id()
    size = (Path(os.environ["AGENTLEDGER_HOME"]) / "ledger.db").stat().st_size
    print(f"store copied into a throw-away home: {head:,} events, {size / 1e6:.0f} MB; read page size {PAGE_SIZE}")
    rates: dict[str, list[float]] = {"read": [], "decode": [], "rebuild": []}
    digests = set()
    for round_ in range(1, ROUNDS + 1):
        count, took = read_only(store.ledger, PAGE_SIZE)
        assert count == head
        rates["read"].append(count / took)
        count, took = read_and_decode(store.ledger, PAGE_SIZE)
        rates["decode"].append(count / took)
        started = time.perf_counter()
        result = rebuild(store)
        took = time.perf_counter() - started
        assert result.applied == head and not result.skipped, result.applied
        rates["rebuild"].append(head / took)
        digests.add(rows_digest(store.db))
        print(f"round {round_}: read {rates['read'][-1]:,.0f} ev/s; read+decode {rates['decode'][-1]:,.0f} ev/s; "
              f"rebuild {rates['rebuild'][-1]:,.0f} ev/s ({took:.1f}s); ratio to read "
              f"{rates['rebuild'][-1] / rates['read'][-1]:.2f}, to read+decode "
              f"{rates['rebuild'][-1] / rates['decode'][-1]:.2f}", flush=True)
    assert len(digests) == 1, digests
    counts = dict(store.db.execute("SELECT status, count(*) FROM sessions GROUP BY status").fetchall())
    heartbeats = store.db.execute("SELECT sum(heartbeat_count) FROM sessions").fetchone()[0]
    print(f"read models after each rebuild identical (digest {digests.pop()}): sessions by recorded status "
          f"{counts}, {heartbeats:,} heartbeats counted")
    store.close()

    started = time.perf_counter()
    out = subprocess.run([*AGENTLEDGER, "db", "rebuild"], check=True, capture_output=True, text=True).stdout
    cli_took = time.perf_counter() - started
    print(f"`agentledger db rebuild` (whole command, once): {cli_took:.1f}s = {head / cli_took:,.0f} ev/s; "
          f"it printed: {out.strip()}")

    rate = statistics.median(rates["rebuild"])
    ratios = [b / r for b, r in zip(rates["rebuild"], rates["read"], strict=True)]
    ratios_decode = [b / r for b, r in zip(rates["rebuild"], rates["decode"], strict=True)]
    print(f"medians over {ROUNDS} rounds, {head:,} events each:")
    print(f"  read notifications (select_notifications)   {statistics.median(rates['read']):>9,.0f} ev/s")
    print(f"  read + decode (mapper.to_domain_event)      {statistics.median(rates['decode']):>9,.0f} ev/s")
    print(f"  rebuild(store)                              {rate:>9,.0f} ev/s   target >= {TARGET_RATE:,}: "
          f"{'met' if rate >= TARGET_RATE else 'MISSED'}")
    print(f"  rebuild / read                              {statistics.median(ratios):>9.2f}      target >= "
          f"{TARGET_RATIO}: {'met' if statistics.median(ratios) >= TARGET_RATIO else 'MISSED'}")
    print(f"  rebuild / read + decode                     {statistics.median(ratios_decode):>9.2f}")
    shutil.rmtree(Path(os.environ["AGENTLEDGER_HOME"]).parent, ignore_errors=True)
    print(f"whole run {time.perf_counter() - whole:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
