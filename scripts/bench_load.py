"""Loading a session with 100,000 heartbeats, with snapshots and without.

Target (issue 4): <= 50 ms with snapshots (the Ledger snapshots a Session every
200 events), reported beside the time to load the same session by replaying
every event. Each load is timed in a fresh process on a fresh store object,
so the repository's in-memory aggregate cache (AGGREGATE_CACHE_MAXSIZE) is
empty: what a CLI command or a restarted supervisor pays.

The session: Launched + FuseSet + 100,000 heartbeats, the first 99,000 saved
in batches of 1,000 events, the last 1,000 through `Ledger.change` one event
per save (the supervisor's path). Then 197 more heartbeats put it 199 events
past its last snapshot, the worst case, and the loads are timed again.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from uuid import UUID, uuid4

from benchlib import AGENTLEDGER, LAUNCHED, machine, open_temp_store

HEARTBEATS = 100_000
CHANGED = 1_000  # the last heartbeats, appended one per save with Ledger.change
BATCH = 1_000
RUNS = 7
TARGET = 0.050
INTERVAL = 200  # Ledger.snapshotting_intervals[Session]


# -- in a fresh process ----------------------------------------------------------------------------------------


def child(mode: str, session_hex: str) -> None:
    """Time one load of the session; print the figures as JSON."""
    started = time.perf_counter()
    from agentledger.infrastructure.settings import store_location
    from agentledger.infrastructure.store import SqliteStore

    store = SqliteStore(store_location())
    sid = UUID(session_hex)
    if mode == "replay":  # the same application, without snapshots: the repository replays every event
        from agentledger.application.ledger import Ledger
        from agentledger.infrastructure.store import ledger_env

        class NoSnapshots(Ledger):
            name = Ledger.name
            snapshotting_intervals = {}  # noqa: RUF012

        ledger = NoSnapshots(env=ledger_env(store.location.path, create_tables=False))
        assert ledger.snapshots is None
    else:
        ledger = store.ledger
        assert ledger.snapshots is not None
    opened = time.perf_counter()
    if mode == "events":  # replaying ledger.events.get(id) by hand
        session = None
        for event in ledger.events.get(sid):
            session = event.mutate(session)
    else:
        session = ledger.repository.get(sid)
    loaded = time.perf_counter()
    again = ledger.repository.get(sid) if mode == "snapshots" else None  # from the cache, fast-forwarded
    cached = time.perf_counter()
    print(json.dumps({"load": loaded - opened, "open": opened - started, "cached": cached - loaded if again else None,
                      "version": session.version}))


def run_child(mode: str, session_hex: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "child", mode, session_hex], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


# -- the benchmark ---------------------------------------------------------------------------------------------


def build(store) -> tuple[UUID, float]:
    from agentledger.application.clock import utc_now
    from agentledger.domain.session import Session

    started = time.perf_counter()
    ledger = store.ledger
    sid = uuid4()
    now = utc_now() - timedelta(seconds=20 * HEARTBEATS)
    session = Session.launch(session_id=sid, **LAUNCHED)
    session.set_fuse(ttl=60, set_by="supervisor", now=now)
    for _ in range(HEARTBEATS - CHANGED):
        now += timedelta(seconds=20)
        session.heartbeat(source="supervisor", now=now)
        if len(session._pending_events) >= BATCH:  # noqa: SLF001
            ledger.save(session)
    ledger.save(session)
    for _ in range(CHANGED):
        ledger.change(sid, lambda s: s.heartbeat(source="supervisor", now=utc_now()))
    return sid, time.perf_counter() - started


def snapshot_versions(store, sid: UUID) -> list[int]:
    return [v for (v,) in store.db.execute(
        "SELECT originator_version FROM stored_snapshots WHERE originator_id = ? ORDER BY originator_version",
        (sid.hex,))]


def measure(sid: UUID, label: str) -> dict[str, float]:
    times: dict[str, list[float]] = {"snapshots": [], "replay": [], "events": []}
    cached, opened, version = [], [], set()
    for _ in range(RUNS):
        for mode in times:
            result = run_child(mode, sid.hex)
            times[mode].append(result["load"])
            version.add(result["version"])
            if mode == "snapshots":
                cached.append(result["cached"])
                opened.append(result["open"])
    assert len(version) == 1, version
    medians = {mode: statistics.median(values) for mode, values in times.items()}
    print(f"[{label}] session version {version.pop():,}; fresh process each, median of {RUNS}:")
    verdict = "met" if medians["snapshots"] <= TARGET else "MISSED"
    print(f"  repository.get, snapshots (the Ledger)           {medians['snapshots'] * 1000:8.1f} ms   "
          f"(runs {', '.join(f'{t * 1000:.1f}' for t in times['snapshots'])})   target <= {TARGET * 1000:.0f} ms: "
          f"{verdict}")
    print(f"  repository.get, no snapshots (full replay)       {medians['replay'] * 1000:8.1f} ms   "
          f"x{medians['replay'] / medians['snapshots']:.0f}")
    print(f"  ledger.events.get + mutate by hand (full replay)  {medians['events'] * 1000:8.1f} ms   "
          f"x{medians['events'] / medians['snapshots']:.0f}")
    print(f"  second get in the same process (cache, fast-forward) {statistics.median(cached) * 1000:5.1f} ms; "
          f"imports + opening the store before the first get {statistics.median(opened) * 1000:.1f} ms")
    return medians


def time_why(sid: UUID) -> float | None:
    """`agentledger why ID` on the session, whole command, with a bytecode cache (see bench_why.py)."""
    from bench_why import cli_env

    env = cli_env()
    if subprocess.run([*AGENTLEDGER, "why", "--help"], capture_output=True, env=env).returncode != 0:
        return None
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run([*AGENTLEDGER, "why", sid.hex], check=True, stdout=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    whole = time.perf_counter()
    print(f"machine: {machine()}")
    store = open_temp_store("load")
    sid, took = build(store)
    versions = snapshot_versions(store, sid)
    head = store.ledger.recorder.max_notification_id()
    print(f"recorded 1 session with {HEARTBEATS:,} heartbeats ({head:,} events) in {took:.1f}s; "
          f"{len(versions)} snapshots, versions {versions[0]:,} .. {versions[-1]:,}")
    assert versions == list(range(INTERVAL, HEARTBEATS + 2 + 1, INTERVAL)), "not a snapshot every 200 events"

    # The state a snapshot restores is the state a full replay makes.
    from agentledger.application.ledger import Ledger
    from agentledger.infrastructure.store import SqliteStore

    fresh = SqliteStore(store.location)
    full = None
    for event in fresh.ledger.events.get(sid):
        full = event.mutate(full)
    assert vars(fresh.ledger.session(sid)) == vars(full)
    fresh.close()
    print("a fresh load from the snapshot equals a full replay (vars of both aggregates compared)")

    results = {"head": measure(sid, "2 events past the last snapshot")}
    why = time_why(sid)
    if why is not None:
        print(f"  `agentledger why ID` on this session (whole command)  {why * 1000:.1f} ms")

    from agentledger.application.clock import utc_now

    for _ in range(INTERVAL - 3):
        store.ledger.change(sid, lambda s: s.heartbeat(source="supervisor", now=utc_now()))
    versions = snapshot_versions(store, sid)
    print(f"appended {INTERVAL - 3} more heartbeats: last snapshot at {versions[-1]:,}, "
          f"session at {store.ledger.session(sid).version:,}")
    results["worst"] = measure(sid, f"{INTERVAL - 1} events past the last snapshot (worst case)")
    store.close()
    assert Ledger.snapshotting_intervals  # the figures above are for the Ledger as configured
    shutil.rmtree(Path(os.environ["AGENTLEDGER_HOME"]).parent, ignore_errors=True)
    print(f"whole run {time.perf_counter() - whole:.0f}s")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
