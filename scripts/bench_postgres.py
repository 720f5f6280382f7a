"""The ledger on PostgreSQL (issue 5): heartbeat appends, projection lag, `list` with 10,000 sessions.

Targets:

1. Heartbeat append, one event per transaction: >= 1,500 events/s from one
   process and >= 5,000 events/s from 8 concurrent processes, each beside raw
   psycopg inserts of the same rows (a scratch copy of ``agentledger_events``,
   one row per transaction with the statements the library sends per insert:
   ``SET LOCAL lock_timeout``, ``LOCK TABLE … IN EXCLUSIVE MODE``, ``NOTIFY``,
   ``INSERT … RETURNING notification_id``) in the same run. Both the
   supervisor's path (``ledger.change``: decided on the cached session, compare-and-set save) and
   the bare ``save`` of an aggregate kept in hand.
2. Projection lag behind the log while the 8 appenders run: p99 <= 100 ms, from
   each event's commit (``time.time()`` right after its save returned, in the
   appender) to the commit of the catch-up that applied it. Two followers: a
   polling ``catch_up`` loop, and the daemon's own ``LogFollower`` (LISTEN/NOTIFY).
3. ``agentledger list`` with 10,000 sessions: <= 300 ms, whole command in a
   fresh process, median of 15 runs after a warm-up.

Everything happens in fresh schemas ``bench_<random>`` of the database named by
``BENCH_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``), dropped
in a ``finally``. With ``BENCH_PG_OWN_DATABASE=1`` the schemas are made in a
fresh database ``bench_<random>`` on that server instead, dropped the same way:
the project's own tests terminate every backend of database ``test`` while they
simulate a lost server, which would kill a benchmark running there.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import multiprocessing
import os
import queue
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID, uuid4

from benchlib import LAUNCHED, cli_env, machine, percentile, populate_sessions, time_command

SERVER = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
ROUNDS = 3
SINGLE_EVENTS = 1500  # per mode per round, one process
WORKERS = 8
WORKER_EVENTS = 500  # per process per mode per round
LAG_EVENTS = 750  # per process in each lag phase
POLL_SLEEP = 0.005  # the polling follower's sleep when it found nothing new
WARM_UP = 30
LIST_SESSIONS = 10_000
LIST_RUNNING = 1_000
RUNS = 15
HEARTBEAT_TOPIC_SUFFIX = "Session.Heartbeat"

TARGET_ONE = 1500
TARGET_EIGHT = 5000
TARGET_LAG = 0.100
TARGET_LIST = 0.300


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# -- connections ---------------------------------------------------------------------------------------


def ledger_url(schema: str) -> str:
    return f"{SERVER}?schema={schema}"


def raw_connect():
    import psycopg

    return psycopg.connect(SERVER, autocommit=True)


def open_ledger(schema: str):
    from agentledger.infrastructure.settings import store_location
    from agentledger.infrastructure.store import open_store

    return open_store(store_location({"AGENTLEDGER_DB": ledger_url(schema)}))


def create_scratch_table(schema: str) -> None:
    """``raw_events``: the DDL eventsourcing.postgres uses for ``agentledger_events`` (own sequence)."""
    with raw_connect() as conn:
        conn.execute(
            f"CREATE TABLE {schema}.raw_events (originator_id uuid NOT NULL, originator_version bigint NOT NULL,"
            " topic text, state bytea, notification_id bigserial, PRIMARY KEY (originator_id, originator_version))"
            " WITH (autovacuum_enabled = true, autovacuum_vacuum_threshold = 100000000,"
            " autovacuum_vacuum_scale_factor = 0.5, autovacuum_analyze_threshold = 1000,"
            " autovacuum_analyze_scale_factor = 0.01)")
        conn.execute(f"CREATE UNIQUE INDEX raw_events_notification_id_idx ON {schema}.raw_events"
                     " (notification_id ASC)")


class RawInserter:
    """One stored row per transaction with raw psycopg, the same statements the library sends per insert."""

    def __init__(self, schema: str, sessions: int) -> None:
        self.conn = raw_connect()
        self.schema = schema
        self.ids = [uuid4() for _ in range(sessions)]
        self.versions = itertools.count(1)
        self.insert = (f"INSERT INTO {schema}.raw_events (originator_id, originator_version, topic, state)"
                       " VALUES (%s, %s, %s, %s) RETURNING notification_id")
        self.lock = f"LOCK TABLE {schema}.raw_events IN EXCLUSIVE MODE"

    def rows(self, session_hexes: list[str], count: int) -> list[tuple[str, bytes]]:
        """The latest ``count`` heartbeat rows the ledger stored for these sessions (topic, state bytes)."""
        rows = self.conn.execute(
            f"SELECT topic, state FROM {self.schema}.agentledger_events WHERE originator_id = ANY(%s)"
            " AND topic LIKE %s ORDER BY notification_id DESC LIMIT %s",
            ([UUID(h) for h in session_hexes], f"%{HEARTBEAT_TOPIC_SUFFIX}", count)).fetchall()
        assert len(rows) == count, (len(rows), count)
        return [(topic, bytes(state)) for topic, state in rows]

    def one(self, i: int, topic: str, state: bytes) -> None:
        """Plain: BEGIN; SET LOCAL lock_timeout; LOCK TABLE … EXCLUSIVE; NOTIFY; INSERT … RETURNING; COMMIT."""
        conn = self.conn
        with conn.transaction():
            conn.execute("SET LOCAL lock_timeout = '0s'")
            conn.execute(self.lock)
            conn.execute("NOTIFY raw_events")
            conn.execute(self.insert, (self.ids[i % len(self.ids)], next(self.versions), topic, state)).fetchone()

    def one_pipelined(self, i: int, topic: str, state: bytes) -> None:
        """The same statements in psycopg's pipeline mode, sent as eventsourcing.postgres sends them."""
        conn = self.conn
        with conn.pipeline() as pipeline, conn.transaction():
            cursor = conn.cursor()
            cursor.execute("SET LOCAL lock_timeout = '0s'", prepare=True)
            cursor.execute(self.lock, prepare=True)
            cursor.execute("NOTIFY raw_events")
            insert = conn.cursor()
            insert.execute(self.insert, (self.ids[i % len(self.ids)], next(self.versions), topic, state),
                           prepare=True)
            pipeline.sync()
            insert.fetchall()


def server_cpu() -> float:
    """CPU seconds used so far by every PostgreSQL server process (backends, WAL writer, checkpointer...)."""
    import psutil

    total = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "postgres":
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
    return total


def schedstat() -> tuple[int, int]:
    """This thread's time on a CPU and time runnable but waiting for one, in ns (Linux schedstat)."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            on_cpu, waiting, _ = f.read().split()
        return int(on_cpu), int(waiting)
    except OSError:
        return 0, 0


def beat(session) -> int:
    from agentledger.application.clock import utc_now

    session.heartbeat(source="bench", now=utc_now())
    return session.version


def append(store, raw: RawInserter, mode: str, sessions: list[UUID], count: int,
           record: list | None = None) -> float:
    """``count`` heartbeats (or raw rows), one per transaction, round-robin over ``sessions``; seconds taken."""
    ledger = store.ledger
    held = [ledger.session(s) for s in sessions] if mode == "save" else []
    rows = raw.rows([s.hex for s in sessions], count) if mode.startswith("raw") else []
    started = time.perf_counter()
    for i in range(count):
        sid = sessions[i % len(sessions)]
        before = time.time()
        if mode == "change":
            version = ledger.change(sid, beat)
        elif mode == "save":
            session = held[i % len(held)]
            version = beat(session)
            ledger.save(session)
        elif mode == "raw":
            raw.one(i, *rows[i])
            continue
        else:
            raw.one_pipelined(i, *rows[i])
            continue
        if record is not None:
            record.append((sid.hex, version, before, time.time()))
    return time.perf_counter() - started


# -- 8 processes ---------------------------------------------------------------------------------------


def plan() -> list[tuple[str, str, int, bool]]:
    """Phases every worker runs, each started from the barrier: (name, mode, events, record commit times)."""
    phases = [(f"r{r}-{mode}", mode, WORKER_EVENTS, False) for r in range(ROUNDS) for mode in ("save", "change", "raw")]
    return [*phases, ("lag-poll", "change", LAG_EVENTS, True), ("lag-follow", "change", LAG_EVENTS, True)]


def worker(index: int, schema: str, session_hexes: list[str], barrier, results) -> None:
    store = open_ledger(schema)
    raw = RawInserter(schema, len(session_hexes))
    sessions = [UUID(h) for h in session_hexes]
    try:
        append(store, raw, "change", sessions, WARM_UP)
        for name, mode, count, record in plan():
            commits: list | None = [] if record else None
            held_ready = None
            if mode == "save":  # load before the barrier: the timed part is heartbeat + save
                held_ready = [store.ledger.session(s) for s in sessions]
            rows = raw.rows(session_hexes, count) if mode == "raw" else None
            barrier.wait(timeout=300)
            t0, cpu0 = time.time(), time.process_time()
            if held_ready is not None:
                for i in range(count):
                    session = held_ready[i % len(held_ready)]
                    beat(session)
                    store.ledger.save(session)
            elif rows is not None:
                for i in range(count):
                    raw.one(i, *rows[i])
            else:
                append(store, raw, mode, sessions, count, commits)
            t1 = time.time()
            results.put((name, index, t0, t1, count, commits, time.process_time() - cpu0))
    except threading.BrokenBarrierError:  # the parent gave up (and says why)
        return
    except BaseException as error:  # tell the parent rather than leave it waiting
        results.put(("error", index, 0.0, 0.0, 0, repr(error), 0.0))
        barrier.abort()
        raise
    finally:
        raw.conn.close()
        store.close()


def collect(results, name: str) -> list[tuple]:
    got = []
    while len(got) < WORKERS:
        item = results.get(timeout=300)
        if item[0] == "error":
            raise RuntimeError(f"worker {item[1]} failed: {item[5]}")
        assert item[0] == name, (item[0], name)
        got.append(item)
    return got


def rate_of(items: list[tuple]) -> float:
    return sum(i[4] for i in items) / (max(i[3] for i in items) - min(i[2] for i in items))


class CatchUps:
    """When each catch-up committed, and the log position it had then reached."""

    def __init__(self) -> None:
        #: (committed at, position reached, seconds taken, events applied, ns on a CPU, ns waiting for a CPU)
        self.done: list[tuple[float, int, float, int, int, int]] = []

    def timed(self, store, catch_up):
        from agentledger.projections.catchup import tracked_position

        on_cpu, waiting = schedstat()
        started = time.time()
        applied = catch_up(store)
        committed = time.time()
        on_cpu_after, waiting_after = schedstat()
        self.done.append((committed, tracked_position(store.db), committed - started, applied.applied,
                          on_cpu_after - on_cpu, waiting_after - waiting))
        return applied


def lags(store, schema: str, commits: list[tuple[str, int, float, float]],
         catch_ups: CatchUps) -> tuple[list[float], list[float]]:
    """Per event: commit of the catch-up that applied it minus the moment its save returned (the lag), and
    minus the moment the appender called ``change`` (an upper bound: it includes the append itself)."""
    first = min(commits, key=lambda c: c[3])
    positions = {(o.hex, v): n for o, v, n in store.db.execute(
        f"SELECT originator_id, originator_version, notification_id FROM {schema}.agentledger_events"
        " WHERE notification_id >= (SELECT notification_id FROM "
        f"{schema}.agentledger_events WHERE originator_id = ? AND originator_version = ?)",
        (UUID(first[0]), first[1])).fetchall()}
    done = sorted(catch_ups.done, key=lambda d: d[1])
    reached = [d[1] for d in done]
    after, before = [], []
    for sid, version, called, returned in commits:
        applied_at = done[bisect.bisect_left(reached, positions[(sid, version)])][0]
        after.append(applied_at - returned)
        before.append(applied_at - called)
    return after, before


@contextlib.contextmanager
def following(store, catch_ups: CatchUps) -> Iterator:
    """The daemon's ``LogFollower`` on a store of its own, each catch-up it makes timed into ``catch_ups``;
    yielded once it listens (``catch_ups`` emptied then), stopped on the way out."""
    from agentledger.bootstrap import store_opener
    from agentledger.projections import catchup as catchup_module
    from agentledger.runtime.follower import LogFollower

    real_catch_up = catchup_module.catch_up
    catchup_module.catch_up = lambda s: catch_ups.timed(s, real_catch_up)
    follower = LogFollower(store_opener(store.location))
    try:
        follower.start()
        deadline = time.time() + 30
        while follower._subscription is None and time.time() < deadline:  # noqa: SLF001 - wait until it listens
            time.sleep(0.01)
        time.sleep(0.2)
        catch_ups.done.clear()
        yield follower
    finally:
        follower.stop()
        follower.join(timeout=10)
        catchup_module.catch_up = real_catch_up


def run_lag_phase(store, schema: str, name: str, barrier, results, follower_kind: str):
    """Release the workers and keep the read models current until they are done; lags and catch-up stats."""
    from agentledger.projections import catchup as catchup_module

    real_catch_up = catchup_module.catch_up
    catch_ups = CatchUps()
    real_catch_up(store)  # start level with the log
    items: list[tuple] = []
    with following(store, catch_ups) if follower_kind == "follow" else contextlib.nullcontext():
        barrier.wait(timeout=300)
        while len(items) < WORKERS:
            if follower_kind == "poll":
                result = catch_ups.timed(store, real_catch_up)
                if not result.applied:
                    time.sleep(POLL_SLEEP)
            try:
                item = results.get_nowait() if follower_kind == "poll" else results.get(timeout=1)
            except queue.Empty:
                continue
            if item[0] == "error":
                raise RuntimeError(f"worker {item[1]} failed: {item[5]}")
            items.append(item)
        head = store.ledger.recorder.max_notification_id()
        deadline = time.time() + 60
        while (not catch_ups.done or max(d[1] for d in catch_ups.done) < head) and time.time() < deadline:
            if follower_kind == "poll":
                catch_ups.timed(store, real_catch_up)
            else:
                time.sleep(0.01)
    commits = [c for item in items for c in item[5]]
    return lags(store, schema, commits, catch_ups), rate_of(items), catch_ups


# -- `list` with 10,000 sessions -----------------------------------------------------------------------


def command_line(label: str, times: list[float], target: float | None = None) -> str:
    median = statistics.median(times)
    tail = "" if target is None else f"   target <= {target * 1000:.0f} ms: {verdict(median <= target)}"
    return (f"  {label:44s} median {median * 1000:6.1f} ms, min {min(times) * 1000:6.1f}, "
            f"max {max(times) * 1000:6.1f} over {len(times)} runs{tail}")


# -- main ----------------------------------------------------------------------------------------------


def server_facts() -> str:
    with raw_connect() as conn:
        version = conn.execute("SELECT version()").fetchone()[0]
        settings = dict(conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('synchronous_commit', 'fsync',"
            " 'wal_sync_method', 'shared_buffers', 'commit_delay')").fetchall())
    buffers = int(settings["shared_buffers"]) * 8 // 1024
    return (f"{version}\n  settings: synchronous_commit={settings['synchronous_commit']}, fsync={settings['fsync']}, "
            f"wal_sync_method={settings['wal_sync_method']}, shared_buffers={buffers} MB, "
            f"commit_delay={settings['commit_delay']}")


def own_database(*, always: bool = False) -> str | None:
    """With BENCH_PG_OWN_DATABASE=1 (or ``always``): create a scratch database and point SERVER (and the
    workers) at it."""
    global SERVER
    if not always and os.environ.get("BENCH_PG_OWN_DATABASE") != "1":
        return None
    name = f"bench_{secrets.token_hex(4)}"
    with raw_connect() as conn:
        conn.execute(f"CREATE DATABASE {name}")
    SERVER = SERVER.rsplit("/", 1)[0] + f"/{name}"
    os.environ["BENCH_PG"] = SERVER  # spawned workers read it on import
    return name


def drop_database(name: str, admin_url: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def drop_schema(schema: str) -> None:
    with raw_connect() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def bench_appends(schema: str) -> dict:
    store = open_ledger(schema)
    create_scratch_table(schema)
    ledger = store.ledger
    out: dict = {}

    def new_session() -> UUID:
        sid = uuid4()
        ledger.launch(session_id=sid, fuse_ttl=60, fuse_set_by="bench", **LAUNCHED)
        return sid

    # One process.
    print(f"[1 process] {SINGLE_EVENTS:,} events per mode per round, one session, one transaction each")
    sid = new_session()
    raw = RawInserter(schema, 1)
    append(store, raw, "change", [sid], WARM_UP)
    rounds = []
    for r in range(ROUNDS):
        figures, cpu = {}, {}
        for mode in ("save", "change", "raw", "raw-pipelined"):
            client, server = time.process_time(), server_cpu()
            figures[mode] = SINGLE_EVENTS / append(store, raw, mode, [sid], SINGLE_EVENTS)
            cpu[mode] = ((time.process_time() - client) / SINGLE_EVENTS, (server_cpu() - server) / SINGLE_EVENTS)
        rounds.append(figures)
        f = figures
        print(f"  round {r + 1}: ledger save {f['save']:,.0f} ev/s; ledger.change {f['change']:,.0f} ev/s; "
              f"raw psycopg {f['raw']:,.0f} rows/s (pipelined like the library: {f['raw-pipelined']:,.0f}); "
              f"ratio save/raw {f['save'] / f['raw']:.2f}, change/raw {f['change'] / f['raw']:.2f}")
        print("           CPU per event, client + server: " + "; ".join(
            f"{mode} {c * 1e6:.0f} + {g * 1e6:.0f} us" for mode, (c, g) in cpu.items()))
    out["one"] = rounds
    raw.conn.close()

    # Eight processes.
    sessions = [[new_session().hex] for _ in range(WORKERS)]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS + 1)
    results = context.Queue()
    procs = [context.Process(target=worker, args=(i, schema, sessions[i], barrier, results), daemon=True)
             for i in range(WORKERS)]
    started = time.perf_counter()
    for proc in procs:
        proc.start()
    try:
        print(f"[{WORKERS} processes] spawn (each opens its own store and psycopg connection, one session each); "
              f"{WORKER_EVENTS:,} events per process per mode per round, started together from a barrier")
        eight: dict[int, dict[str, float]] = {}
        cpu: dict[str, tuple[float, float]] = {}
        for name, mode, _count, record in plan():
            if record:
                break
            server = server_cpu()
            barrier.wait(timeout=300)
            if not eight:
                print(f"  workers ready {time.perf_counter() - started:.1f}s after spawn")
            r = int(name[1:name.index("-")])
            items = collect(results, name)
            events = sum(i[4] for i in items)
            eight.setdefault(r, {})[mode] = rate_of(items)
            cpu[mode] = (sum(i[6] for i in items) / events, (server_cpu() - server) / events)
            if mode == "raw":
                f = eight[r]
                print(f"  round {r + 1}: ledger save {f['save']:,.0f} ev/s; ledger.change {f['change']:,.0f} ev/s; "
                      f"raw psycopg {f['raw']:,.0f} rows/s; ratio save/raw {f['save'] / f['raw']:.2f}, "
                      f"change/raw {f['change'] / f['raw']:.2f}")
                print("           CPU per event, clients + server: " + "; ".join(
                    f"{m} {c * 1e6:.0f} + {g * 1e6:.0f} us (2 cores: at most {2 / (c + g):,.0f}/s)"
                    for m, (c, g) in cpu.items()))
        out["eight"] = list(eight.values())

        print(f"[lag] {WORKERS} processes x {LAG_EVENTS:,} ledger.change heartbeats; per event: commit of the "
              "catch-up that applied it - the appender's time.time() right after its save returned")
        followers = (("lag-poll", "poll", f"polling catch_up loop (sleep {POLL_SLEEP * 1000:.0f} ms when idle)"),
                     ("lag-follow", "follow", "the daemon's LogFollower (LISTEN/NOTIFY)"))
        for name, kind, label in followers:
            (values, upper), rate, catch_ups = run_lag_phase(store, schema, name, barrier, results, kind)
            working = [d for d in catch_ups.done if d[3]]
            p99 = percentile(values, 99)
            print(f"  {label}: lag p50 {statistics.median(values) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
                  f"max {max(values) * 1000:.1f} ms, min {min(values) * 1000:.1f} ms (n={len(values):,}; "
                  f"{sum(v > TARGET_LAG for v in values)} over 100 ms); appends meanwhile {rate:,.0f} ev/s   "
                  f"target p99 <= {TARGET_LAG * 1000:.0f} ms: {verdict(p99 <= TARGET_LAG)}")
            print(f"    measured from the call to ledger.change instead (upper bound): p50 "
                  f"{statistics.median(upper) * 1000:.1f} ms, p99 {percentile(upper, 99) * 1000:.1f} ms, "
                  f"max {max(upper) * 1000:.1f} ms")
            def med(i: int, working: list = working) -> float:
                return statistics.median(d[i] for d in working)

            print(f"    {len(working)} catch-ups applied events: median {med(2) * 1000:.1f} ms ({med(4) / 1e6:.1f} ms "
                  f"on a CPU, {med(5) / 1e6:.1f} ms runnable but waiting for one) for {med(3):.0f} events; "
                  f"max {max(d[2] for d in working) * 1000:.1f} ms, {max(d[3] for d in working)} events")
            slow = [d for d in working if d[2] > 0.050]
            if slow:
                wall = sum(d[2] for d in slow)
                print(f"    the {len(slow)} catch-ups over 50 ms: {sum(d[4] for d in slow) / 1e9 / wall:.0%} of their "
                      f"time on a CPU, {sum(d[5] for d in slow) / 1e9 / wall:.0%} waiting for a CPU, the rest "
                      f"waiting on the server; {statistics.median(d[3] for d in slow):.0f} events each (median)")
            out[kind] = (values, rate)
    except BaseException:
        barrier.abort()  # release workers waiting for a phase that will not come
        raise
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()
        store.close()
    return out


def bench_list(schema: str, home: Path) -> dict:
    from agentledger.infrastructure.config import StoreLocation
    from agentledger.infrastructure.store import open_store

    store = open_ledger(schema)
    started = time.perf_counter()
    ids, projected = populate_sessions(store, LIST_SESSIONS, LIST_RUNNING, fuse_ttl=3600)
    events = store.ledger.recorder.max_notification_id()
    store.close()
    print(f"[list] {LIST_SESSIONS:,} sessions ({LIST_RUNNING:,} running), {events:,} events, saved 500 sessions to a "
          f"save and projected in {time.perf_counter() - started:.1f}s (the one catch-up {projected:.1f}s)")
    env = cli_env(AGENTLEDGER_HOME=str(home), AGENTLEDGER_DB=ledger_url(schema))
    out = {}
    rows = [("list", ["list"], TARGET_LIST), ("list --all", ["list", "--all"], None),
            ("status ID", ["status", ids[0][:10]], None), ("--version (start-up floor)", ["--version"], None)]
    for label, args, target in rows:
        out[label] = time_command(args, runs=RUNS, env=env)
        print(command_line(f"{label} (PostgreSQL)", out[label], target))

    # The same sessions on SQLite, same run, for comparison.
    sqlite_path = home / "sqlite" / "ledger.db"
    sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    sqlite_store = open_store(StoreLocation(path=sqlite_path))
    _, sqlite_projected = populate_sessions(sqlite_store, LIST_SESSIONS, LIST_RUNNING, fuse_ttl=3600)
    sqlite_store.close()
    print(f"  (the same sessions on SQLite, for comparison: the one catch-up of {events:,} events took "
          f"{sqlite_projected:.1f}s)")
    env = cli_env(AGENTLEDGER_HOME=str(home), AGENTLEDGER_DB=f"sqlite:///{sqlite_path}")
    out["list sqlite"] = time_command(["list"], runs=RUNS, env=env)
    print(command_line("list (SQLite, same sessions, same run)", out["list sqlite"]))
    return out


def main() -> int:
    whole = time.perf_counter()
    print(f"machine: {machine()}")
    here = Path(__file__).resolve().parent
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=here).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "../src"], capture_output=True, text=True,
                           cwd=here).stdout
    print(f"code: {head.strip()}, {len(dirty.splitlines())} uncommitted file(s) under src/ (the working tree as it was)")
    import psycopg

    try:
        raw_connect().close()
    except psycopg.OperationalError as error:
        print(f"no PostgreSQL server at {SERVER} ({str(error).strip().splitlines()[0]}): skipped")
        return 0
    print(f"server: {server_facts()}")
    admin_url = SERVER
    database = own_database()
    print(f"database: {SERVER.rsplit('/', 1)[1]}" + (" (a scratch database made for this run)" if database else ""))
    suffix = secrets.token_hex(4)
    schemas = [f"bench_{suffix}_a", f"bench_{suffix}_l"]
    home = Path(tempfile.mkdtemp(prefix="agentledger-pg-"))
    try:
        appends = bench_appends(schemas[0])
        listing = bench_list(schemas[1], home)
    except psycopg.errors.AdminShutdown:
        print("a server connection was terminated by someone else (the project's tests terminate every backend of "
              "database 'test' while simulating a lost server): figures are void; run again, or with "
              "BENCH_PG_OWN_DATABASE=1", file=sys.stderr)
        raise
    finally:
        for schema in schemas:
            try:
                drop_schema(schema)
            except psycopg.Error as error:
                print(f"could not drop schema {schema}: {error}", file=sys.stderr)
        if database:
            drop_database(database, admin_url)
        import shutil

        shutil.rmtree(home, ignore_errors=True)

    def med(rounds: list[dict], key: str, ratio: bool = False) -> float:
        return statistics.median(r[key] / r["raw"] if ratio else r[key] for r in rounds)

    print(f"summary (medians over {ROUNDS} rounds; ratios taken within each round):")
    for label, key, target in (("1 process", "one", TARGET_ONE), (f"{WORKERS} processes", "eight", TARGET_EIGHT)):
        rounds = appends[key]
        for mode, name in (("change", "ledger.change (cached, compare-and-set)"), ("save", "bare save of a held Heartbeat")):
            value = med(rounds, mode)
            print(f"  {label}, {name:34s} {value:7,.0f} ev/s   x{med(rounds, mode, True):.2f} raw "
                  f"({med(rounds, 'raw'):,.0f} rows/s)   target >= {target:,}: {verdict(value >= target)}")
    for kind, label in (("poll", "polling catch_up"), ("follow", "LogFollower")):
        values, _ = appends[kind]
        p99 = percentile(values, 99)
        print(f"  projection lag, {label:18s} p50 {statistics.median(values) * 1000:6.1f} ms, "
              f"p99 {p99 * 1000:6.1f} ms, max {max(values) * 1000:6.1f} ms   target p99 <= 100 ms: "
              f"{verdict(p99 <= TARGET_LAG)}")
    value = statistics.median(listing["list"])
    print(f"  `agentledger list`, 10,000 sessions     {value * 1000:6.1f} ms   target <= 300 ms: "
          f"{verdict(value <= TARGET_LIST)}")
    print(f"whole run {time.perf_counter() - whole:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
