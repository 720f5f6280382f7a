"""A scale simulation toward many hosts on one PostgreSQL ledger (issue 20).

N concurrent sessions are spread over simulated hosts (``--sessions-per-host``,
named ``sim-host-NNNNN``); a few worker processes play all their supervisors and
daemons through the real API, one event per transaction with compare-and-set:

* a ``Heartbeat`` per session every H seconds, H the production cadence read
  from the code (the default fuse TTL, ``Settings.fuse_ttl``, over
  ``launching.heartbeat_interval``: three beats per TTL), through
  ``store.ledger.change(sid, lambda s: s.heartbeat(...))`` as
  ``runtime/supervisor.py`` does;
* the exit stream: sessions last ``--session-minutes`` on average; an exit is the
  supervisor's ``ledger.change(sid, record_observed_exit(...))``, and a new
  session replaces it (``ledger.launch`` with its fuse), so N stays N;
* a ``Host.DaemonAlive`` per host every ``host_heartbeat`` (``application/hosting.py``).

For each size (10k / 50k / 100k sessions by default, grown in one schema of a
scratch database made for the run and dropped ``WITH (FORCE)`` at the end):

1. needed appends/s: N/H + 2 N/L (exit and its replacement) + hosts / host heartbeat;
2. sustained appends/s: the workers run that mix flat out for a window, in
   rounds alternating with raw psycopg inserts of the same heartbeat rows
   (``bench_postgres.RawInserter``: the statements the library sends); medians,
   and the ratio to raw taken within each round;
3. a paced phase at the needed rate (flat out when that is beyond reach) with the
   daemon's ``LogFollower`` keeping the read models current: projection lag per
   event as ``bench_postgres.py`` measures it; meanwhile a real reconcile pass
   (cold, then warm) in a separate process per measured host, with
   ``AGENTLEDGER_HOST_ID`` set to that host, and the CLI timed under that load;
4. read-model and event-table sizes (``pg_total_relation_size``), and the CLI
   (``python -m agentledger list`` / ``status ID``, bytecode cached) with the
   appenders idle.

Setup saves sessions 500 to a ``save()`` (a bulk path, not the timed one) with
a one-hour fuse, so that no fuse lapses whatever pace the appends reach and no
reconcile pass has a PID to probe (the simulated PIDs are not real): every pass
judges live fuses, as on a healthy fleet. Each worker plays many supervisors,
each of which holds its own session in its repository cache, so a worker's
cache is sized to hold all of its sessions.

    cd scripts && ../.venv/bin/python bench_scale.py [--sizes 10000,50000] [--quick]

``BENCH_PG`` names the server (default ``postgresql://postgres@127.0.0.1:5432/test``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from uuid import UUID, uuid4

import bench_postgres as pg
from benchlib import LAUNCHED, cli_env, machine, percentile, remove_temp_home, temp_home, time_command

SETUP_TTL = 3600.0  # seconds; see the module's docstring
SETUP_BATCH = 500  # sessions per save() during setup
RAW_ROWS = 50  # heartbeat rows each worker re-inserts, cycled, in the raw baseline
RAW_IDS = 1000  # distinct originator ids of those raw rows
START_DELAY = 1.0  # seconds between telling the workers to start and their common start
HOST_PREFIX = "sim-host-"


def cadence() -> tuple[float, float]:
    """(a session's heartbeat interval, a host's) at the default settings, as production computes them."""
    from agentledger.application.launching import heartbeat_interval
    from agentledger.infrastructure.settings import Settings

    return heartbeat_interval(Settings.fuse_ttl, None), Settings.host_heartbeat


def host_of(index: int, per_host: int) -> str:
    return f"{HOST_PREFIX}{index // per_host:05d}"


def rates(sessions: int, args) -> dict[str, float]:
    """Transactions per second the fleet needs, by kind."""
    beat, host_beat = cadence()
    hosts = -(-sessions // args.sessions_per_host)
    exits = sessions / (args.session_minutes * 60)
    return {"heartbeat": sessions / beat, "exit": exits, "launch": exits, "host": hosts / host_beat}


# -- the simulated supervisors (one worker process plays many) ----------------------------------------------


def weighted(weights: dict[str, float]):
    """Kinds in proportion to ``weights``, evenly interleaved (smooth weighted round robin)."""
    total = sum(weights.values())
    credit = dict.fromkeys(weights, 0.0)
    while True:
        for kind, weight in weights.items():
            credit[kind] += weight
        kind = max(credit, key=credit.__getitem__)
        credit[kind] -= total
        yield kind


class Supervisors:
    """The supervisors and daemons of some hosts, played by one process through the real ledger API."""

    def __init__(self, store, schema: str, hosts: list[str], mix: dict[str, float]) -> None:
        from agentledger.projections.queries import NOT_STOPPED

        self.store = store
        rows = store.db.execute(f"SELECT id, host FROM sessions WHERE host = ANY(?) AND {NOT_STOPPED}",
                                (hosts,)).fetchall()
        self.sessions = [(UUID(row[0]), row[1]) for row in rows]
        self.hosts = hosts
        self.mix = {"heartbeat": mix["heartbeat"], "exit": mix["exit"], "host": mix["host"]}
        self.turn = 0
        self.host_turn = 0
        self._size_cache(len(self.sessions))
        self.raw = pg.RawInserter(schema, RAW_IDS)
        self.raw_rows: list[tuple[str, bytes]] = []

    def _size_cache(self, sessions: int) -> None:
        from eventsourcing.application import LRUCache

        repository = self.store.ledger.repository
        repository.cache = LRUCache(maxsize=sessions + 1000)

    def close(self) -> None:
        self.raw.conn.close()
        self.store.close()

    # one operation each: the (aggregate id, version) of every event it appended

    def op(self, kind: str) -> list[tuple[str, int | None]]:
        return {"heartbeat": self.heartbeat, "exit": self.exit, "host": self.host_beat}[kind]()

    def _next(self) -> tuple[UUID, str]:
        self.turn = (self.turn + 1) % len(self.sessions)
        return self.sessions[self.turn]

    def heartbeat(self) -> list[tuple[str, int]]:
        from agentledger.application.clock import reported_offset, utc_now
        from agentledger.domain.vocabulary import Component

        def beat(session) -> int:
            session.heartbeat(source=Component.SUPERVISOR.value, now=utc_now(), clock_offset=reported_offset())
            return session.version

        sid, _ = self._next()
        return [(sid.hex, self.store.ledger.change(sid, beat))]  # as the supervisor does

    def exit(self) -> list[tuple[str, int]]:
        """The supervisor records its agent's exit; a new session on that host takes its place."""
        from agentledger.application.exits import record_observed_exit
        from agentledger.domain.exits import ObservedExit
        from agentledger.domain.vocabulary import Component
        from agentledger.infrastructure.host import actor

        sid, host = self._next()
        decided_by = {**actor(Component.SUPERVISOR.value), "host": host}

        def stop(session) -> int:
            record_observed_exit(session, ObservedExit(0, None), pid=session.pid, decided_by=decided_by)
            return session.version

        stopped = (sid.hex, self.store.ledger.change(sid, stop))
        new = uuid4()
        self.store.ledger.launch(session_id=new, fuse_ttl=SETUP_TTL, fuse_set_by=Component.SUPERVISOR.value,
                                 **{**LAUNCHED, "host": host, "argv": ["opencode", "run", f"task {new.hex[:8]}"]})
        self.sessions[self.turn] = (new, host)
        return [stopped, (new.hex, 2)]

    def host_beat(self) -> list[tuple[str, int | None]]:
        """A host's daemon says it is alive (its version is not read back: no lag is taken of it)."""
        from agentledger.application.hosting import record_daemon_alive
        from agentledger.infrastructure.host import boot_id

        self.host_turn = (self.host_turn + 1) % len(self.hosts)
        name = self.hosts[self.host_turn]
        record_daemon_alive(self.store.ledger, name, pid=os.getpid(), version="bench", boot_id=boot_id(),
                            every=cadence()[1])
        return [(name, None)]

    # phases

    def flat(self, seconds: float, start_at: float) -> tuple[int, float, float]:
        """The mix flat out from ``start_at`` for ``seconds``: (transactions, t0, t1)."""
        kinds = weighted(self.mix)
        wait_until(start_at)
        t0, done = time.time(), 0
        while time.time() < t0 + seconds:
            done += len(self.op(next(kinds)))
        return done, t0, time.time()

    def flat_raw(self, seconds: float, start_at: float) -> tuple[int, float, float]:
        """Raw psycopg inserts of this worker's latest heartbeat rows, one per transaction, flat out."""
        if not self.raw_rows:
            self.raw_rows = self.raw.rows([sid.hex for sid, _ in self.sessions], RAW_ROWS)
        wait_until(start_at)
        t0, done = time.time(), 0
        while time.time() < t0 + seconds:
            self.raw.one(done, *self.raw_rows[done % len(self.raw_rows)])
            done += 1
        return done, t0, time.time()

    def paced(self, rate: float, start_at: float, stop) -> tuple[int, float, float, list]:
        """The mix at ``rate`` transactions/s (flat out when behind) until ``stop`` is set; each event's
        (id, version, called, returned) for the lag."""
        kinds = weighted(self.mix)
        commits: list[tuple[str, int, float, float]] = []
        wait_until(start_at)
        t0, done = time.time(), 0
        while not stop.is_set():
            wait_until(t0 + done / rate)
            called = time.time()
            appended = self.op(next(kinds))
            returned = time.time()
            commits.extend((sid, version, called, returned) for sid, version in appended if version is not None)
            done += len(appended)
        return done, t0, time.time(), commits


def wait_until(moment: float) -> None:
    delay = moment - time.time()
    if delay > 0:
        time.sleep(delay)


def worker(index: int, schema: str, hosts: list[str], mix: dict[str, float], commands, results, stop) -> None:
    """Run the commands the parent sends until it sends None; every answer tagged with ``index``."""
    os.environ["AGENTLEDGER_HOST_ID"] = hosts[0]  # this process's actor; each session names its own host
    store = pg.open_ledger(schema)
    sims = None
    try:
        sims = Supervisors(store, schema, hosts, mix)
        results.put(("ready", index, len(sims.sessions)))
        while (command := commands.get()) is not None:
            kind, *rest = command
            if kind == "paced":
                results.put((kind, index, *sims.paced(*rest, stop)))
            else:
                results.put((kind, index, *(sims.flat if kind == "ledger" else sims.flat_raw)(*rest)))
    except BaseException as error:  # tell the parent rather than leave it waiting
        results.put(("error", index, repr(error)))
        raise
    finally:
        (sims or store).close()


class Workers:
    """The worker processes of one size, hosts dealt round-robin."""

    def __init__(self, schema: str, sessions: int, args) -> None:
        context = multiprocessing.get_context("spawn")
        hosts = sorted({host_of(i, args.sessions_per_host) for i in range(sessions)})
        self.results = context.Queue()
        self.stop = context.Event()
        self.commands = [context.Queue() for _ in range(args.workers)]
        self.procs = [context.Process(target=worker, daemon=True, args=(
            i, schema, hosts[i::args.workers], rates(sessions, args), self.commands[i], self.results, self.stop))
            for i in range(args.workers)]
        for proc in self.procs:
            proc.start()
        self.played = sum(item[2] for item in self.collect("ready", timeout=600))

    def collect(self, kind: str, timeout: float = 300) -> list[tuple]:
        got = []
        while len(got) < len(self.procs):
            item = self.results.get(timeout=timeout)
            if item[0] == "error":
                raise RuntimeError(f"worker {item[1]} failed: {item[2]}")
            assert item[0] == kind, (item[0], kind)
            got.append(item)
        return got

    def window(self, kind: str, seconds: float) -> float:
        """All workers flat out for ``seconds`` from one moment; transactions/s over the window."""
        start_at = time.time() + START_DELAY
        for commands in self.commands:
            commands.put((kind, seconds, start_at))
        return rate_of(self.collect(kind))

    def start_paced(self, rate: float) -> None:
        self.stop.clear()
        start_at = time.time() + START_DELAY
        for commands in self.commands:
            commands.put(("paced", rate / len(self.procs), start_at))
        wait_until(start_at)

    def finish_paced(self) -> tuple[float, list]:
        self.stop.set()
        items = self.collect("paced")
        return rate_of(items), [c for item in items for c in item[5]]

    def close(self) -> None:
        self.stop.set()  # a worker still pacing (the run was interrupted) ends its phase first
        for commands in self.commands:
            commands.put(None)
        for proc in self.procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()


def rate_of(items: list[tuple]) -> float:
    """Transactions per second of all workers: all done over (last finish - first start)."""
    return sum(i[2] for i in items) / (max(i[4] for i in items) - min(i[3] for i in items))


# -- setup, sizes, the reconciler, the CLI ------------------------------------------------------------------


def grow(store, have: int, want: int, per_host: int) -> float:
    """Sessions ``have``..``want`` launched with a fuse, 500 to a save, then projected; seconds taken."""
    from agentledger.application.clock import utc_now
    from agentledger.domain.session import Session
    from agentledger.projections.catchup import catch_up

    started, batch = time.perf_counter(), []
    for i in range(have, want):
        session = Session.launch(session_id=uuid4(), **{**LAUNCHED, "host": host_of(i, per_host),
                                                         "argv": ["opencode", "run", f"task {i}"]})
        session.set_fuse(ttl=SETUP_TTL, set_by="supervisor", now=utc_now())
        batch.append(session)
        if len(batch) == SETUP_BATCH or i == want - 1:
            store.ledger.save(*batch)
            batch = []
    catch_up(store)
    return time.perf_counter() - started


def relation_sizes(schema: str) -> dict[str, int]:
    """Bytes (tables, their indexes and TOAST) of each table of the ledger's schema, but the raw baseline's."""
    with pg.raw_connect() as conn:
        rows = conn.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname <> 'raw_events'",
            (schema,)).fetchall()
    return dict(rows)


def event_count(store) -> int:
    return store.db.execute(f"SELECT count(*) FROM {store.events_table}").fetchone()[0]


def reconcile_host(schema: str, passes: int) -> None:
    """(A child process, AGENTLEDGER_HOST_ID set) a cold pass then warm ones over this host's sessions: JSON."""
    from agentledger.application.reconciling import Reconciler
    from agentledger.bootstrap import this_machine

    store = pg.open_ledger(schema)
    store.read_models.catch_up()
    reconciler = Reconciler(store, machine=this_machine())
    times, counts = [], {}
    try:
        for _ in range(passes):
            started = time.perf_counter()
            counts = reconciler.run_pass().counts
            times.append(time.perf_counter() - started)
    finally:
        reconciler.close()
        store.close()
    print(json.dumps({"host": reconciler.host, "cold": times[0], "warm": times[1:], "counts": counts}))


def reconcile_passes(schema: str, hosts: list[str], passes: int) -> list[dict]:
    """One process per host, as each host's daemon is."""
    out = []
    for host in hosts:
        env = {**os.environ, "AGENTLEDGER_HOST_ID": host, "BENCH_PG": pg.SERVER}
        done = subprocess.run([sys.executable, __file__, "--reconcile-host", "--schema", schema,
                               "--passes", str(passes)], env=env, capture_output=True, text=True)
        if done.returncode:
            print(f"  reconcile pass on {host} failed:\n{done.stderr[-3000:]}", flush=True)
            continue
        out.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return out


def cli_cases(ids: list[str], host: str, *, full: bool) -> list[tuple[str, list[str]]]:
    cases = [("list -n 50", ["list", "-n", "50"]), (f"list --filter host={host}", ["list", "--filter", f"host={host}"]),
             ("list --count", ["list", "--count"]), ("status ID", ["status", ids[0][:12]])]
    return [("list (every running session)", ["list"]), *cases] if full else cases


def time_cli(schema: str, cases: list[tuple[str, list[str]]], runs: int) -> dict[str, float]:
    env = cli_env(AGENTLEDGER_DB=pg.ledger_url(schema))
    return {label: statistics.median(time_command(args, runs=runs, env=env)) for label, args in cases}


def connections(schema: str, store_a_session) -> dict[str, int]:
    """Server connections held by one supervisor's store after a heartbeat, and by a running daemon."""
    from agentledger.application.clock import utc_now

    before = backends()
    store = pg.open_ledger(schema)
    store.ledger.change(store_a_session, lambda s: s.heartbeat(source="supervisor", now=utc_now()))
    supervisor = backends() - before
    store.close()
    env = cli_env(AGENTLEDGER_DB=pg.ledger_url(schema), AGENTLEDGER_HOST_ID=f"{HOST_PREFIX}daemon",
                  AGENTLEDGER_METRICS_ADDR="off")
    daemon = subprocess.Popen([sys.executable, "-m", "agentledger", "daemon", "run", "--interval", "5s"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(8)
        held = backends() - before
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    return {"supervisor": supervisor, "daemon": held}


def backends() -> int:
    with pg.raw_connect() as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                            " AND pid <> pg_backend_pid()").fetchone()[0]


def max_connections() -> int:
    with pg.raw_connect() as conn:
        return int(conn.execute("SHOW max_connections").fetchone()[0])


# -- one size ----------------------------------------------------------------------------------------------


def measure_size(store, schema: str, sessions: int, args) -> dict:
    need = rates(sessions, args)
    out: dict = {"sessions": sessions, "needed": sum(need.values()), "need": need, "load": [os.getloadavg()[0]]}
    events_before, size_before = event_count(store), relation_sizes(schema)["agentledger_events"]
    workers = Workers(schema, sessions, args)
    try:
        out["rounds"] = [(workers.window("ledger", args.window), workers.window("raw", args.window))
                         for _ in range(args.rounds)]
        out["load"].append(os.getloadavg()[0])
        out.update(paced_phase(store, schema, workers, out["needed"], sessions, args))
    finally:
        workers.close()
    out["load"].append(os.getloadavg()[0])
    out["bytes_per_event"] = ((relation_sizes(schema)["agentledger_events"] - size_before)
                              / max(1, event_count(store) - events_before))
    out["sizes"], out["events"] = relation_sizes(schema), event_count(store)
    out["cli_idle"] = time_cli(schema, cli_cases(some_ids(store), host_of(0, args.sessions_per_host), full=True),
                               args.runs)
    return out


def paced_phase(store, schema: str, workers: Workers, needed: float, sessions: int, args) -> dict:
    """Appends at the needed rate with the LogFollower on (and ``--followers`` - 1 other hosts' followers);
    reconcile passes and the CLI meanwhile; the lags, and the server's transactions per append."""
    from agentledger.projections.catchup import catch_up

    catch_ups = pg.CatchUps()
    catch_up(store)
    hosts = [host_of(i * args.sessions_per_host, args.sessions_per_host)
             for i in range(min(args.reconcile_hosts, -(-sessions // args.sessions_per_host)))]
    with pg.following(store, catch_ups), other_followers(schema, args.followers - 1):
        transactions = server_transactions()
        workers.start_paced(needed)
        started = time.time()
        passes = reconcile_passes(schema, hosts, args.passes)
        cli_busy = time_cli(schema, cli_cases(some_ids(store), hosts[0], full=False), args.runs)
        wait_until(started + args.paced)
        load = os.getloadavg()[0]
        rate, commits = workers.finish_paced()
        wait_for_follower(store, catch_ups)
        per_append = (server_transactions() - transactions) / len(commits)
    lag, _ = pg.lags(store, schema, commits, catch_ups)
    return {"paced_rate": rate, "lag": lag, "passes": passes, "cli_busy": cli_busy, "paced_load": load,
            "server_per_append": per_append}


@contextlib.contextmanager
def other_followers(schema: str, count: int) -> Iterator[None]:
    """``count`` more hosts' daemons' LogFollowers, a process each, following the same log meanwhile."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    procs = [context.Process(target=follow_until, args=(schema, stop), daemon=True) for _ in range(count)]
    for proc in procs:
        proc.start()
    try:
        time.sleep(3 if procs else 0)  # let them subscribe
        yield
    finally:
        stop.set()
        for proc in procs:
            proc.join(timeout=30)


def follow_until(schema: str, stop) -> None:
    from agentledger.bootstrap import store_opener
    from agentledger.runtime.follower import LogFollower

    store = pg.open_ledger(schema)
    follower = LogFollower(store_opener(store.location))
    follower.start()
    stop.wait()
    follower.stop()
    follower.join(timeout=10)
    store.close()


def server_transactions() -> int:
    """Transactions committed or rolled back in this database so far (the server's statistics)."""
    with pg.raw_connect() as conn:
        return conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database"
                            " WHERE datname = current_database()").fetchone()[0]


def wait_for_follower(store, catch_ups, patience: float = 120) -> None:
    head = store.ledger.recorder.max_notification_id()
    deadline = time.time() + patience
    while (not catch_ups.done or max(d[1] for d in catch_ups.done) < head) and time.time() < deadline:
        time.sleep(0.01)


def some_ids(store) -> list[str]:
    from agentledger.projections.queries import NOT_STOPPED

    return [row[0] for row in store.db.execute(f"SELECT id FROM sessions WHERE {NOT_STOPPED} LIMIT 3").fetchall()]


# -- report ------------------------------------------------------------------------------------------------


def read_model_bytes(sizes: dict[str, int]) -> int:
    from agentledger.projections.catchup import READ_MODEL_TABLES

    return sum(v for k, v in sizes.items() if k in (*READ_MODEL_TABLES, "projection_tracking"))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms"


def mb(size: float) -> str:
    return f"{size / 2**20:,.1f} MB"


def report(r: dict, args) -> None:
    ledger = statistics.median(a for a, _ in r["rounds"])
    raw = statistics.median(b for _, b in r["rounds"])
    ratio = statistics.median(a / b for a, b in r["rounds"])
    need = r["need"]
    lag = r["lag"]
    read_models = read_model_bytes(r["sizes"])
    print(f"== {r['sessions']:,} sessions, {-(-r['sessions'] // args.sessions_per_host):,} hosts "
          f"(load average {', '.join(f'{x:.1f}' for x in r['load'])})")
    print(f"  appends/s needed {r['needed']:,.0f} (heartbeats {need['heartbeat']:,.0f}, exits {need['exit']:,.1f}, "
          f"launches {need['launch']:,.1f}, host beats {need['host']:,.1f})")
    print(f"  appends/s sustained {ledger:,.0f} (rounds: {', '.join(f'{a:,.0f}' for a, _ in r['rounds'])}); raw "
          f"psycopg {raw:,.0f} rows/s; ledger/raw x{ratio:.2f}; headroom sustained/needed x{ledger / r['needed']:.2f}")
    print(f"  paced phase: {r['paced_rate']:,.0f} appends/s reached (load average {r['paced_load']:.1f}); projection "
          f"lag (LogFollower) p50 {ms(statistics.median(lag))}, p99 {ms(percentile(lag, 99))}, "
          f"max {ms(max(lag))} (n={len(lag):,}); {args.followers} follower(s), "
          f"{r['server_per_append']:.1f} server transactions per append")
    for p in r["passes"]:
        print(f"  reconcile pass, host {p['host']}: cold {ms(p['cold'])}, warm {ms(statistics.median(p['warm']))} "
              f"(median of {len(p['warm'])}); {p['counts']}")
    print(f"  sizes: read models {mb(read_models)} ({', '.join(f'{k} {mb(v)}' for k, v in sorted(r['sizes'].items()))});"
          f" {r['events']:,} events; {r['bytes_per_event']:,.0f} bytes per event appended in this size's phases")
    for label, seconds in r["cli_idle"].items():
        busy = r["cli_busy"].get(label)
        print(f"  {label:42s} idle {ms(seconds):>9}" + (f", under the paced load {ms(busy):>9}" if busy else ""))


def summary(results: list[dict]) -> None:
    print("summary (medians):")
    print("| sessions | needed/s | sustained/s | x raw | headroom | lag p99 | pass (cold/warm) | read models "
          "| events table | list -n 50 | status ID | list (all) |")
    for r in results:
        ledger = statistics.median(a for a, _ in r["rounds"])
        ratio = statistics.median(a / b for a, b in r["rounds"])
        cold = statistics.median(p["cold"] for p in r["passes"])
        warm = statistics.median(w for p in r["passes"] for w in p["warm"])
        read_models = read_model_bytes(r["sizes"])
        cli = r["cli_idle"]
        print(f"| {r['sessions']:,} | {r['needed']:,.0f} | {ledger:,.0f} | x{ratio:.2f} | x{ledger / r['needed']:.2f} "
              f"| {ms(percentile(r['lag'], 99))} | {ms(cold)} / {ms(warm)} | {mb(read_models)} "
              f"| {mb(r['sizes']['agentledger_events'])} | {ms(cli['list -n 50'])} | {ms(cli['status ID'])} "
              f"| {ms(cli['list (every running session)'])} |")


# -- main --------------------------------------------------------------------------------------------------


def parse(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000,100000", help="concurrent sessions, comma-separated")
    parser.add_argument("--quick", action="store_true", help="a small, short run (2,000 sessions, short windows)")
    parser.add_argument("--workers", type=int, default=4, help="processes playing the supervisors")
    parser.add_argument("--sessions-per-host", type=int, default=100)
    parser.add_argument("--session-minutes", type=float, default=30.0, help="mean session length (the exit stream)")
    parser.add_argument("--window", type=float, default=10.0, help="seconds of each flat-out window")
    parser.add_argument("--rounds", type=int, default=3, help="flat-out rounds (ledger, then raw) per size")
    parser.add_argument("--paced", type=float, default=30.0, help="seconds of the paced phase, at least")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each CLI command")
    parser.add_argument("--reconcile-hosts", type=int, default=3, help="hosts whose reconcile pass is timed")
    parser.add_argument("--passes", type=int, default=4, help="passes per timed host (the first is cold)")
    parser.add_argument("--followers", type=int, default=1,
                        help="hosts' daemons following the log in the paced phase (the timed one and others)")
    parser.add_argument("--skip-connections", action="store_true",
                        help="do not count the connections a supervisor and a daemon hold (starts a daemon)")
    parser.add_argument("--reconcile-host", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--schema", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.window, args.rounds, args.paced, args.runs, args.passes = "2000", 3, 1, 10, 3, 3
    args.sizes = sorted(int(s) for s in str(args.sizes).split(","))
    return args


def run(args) -> list[dict]:
    schema = "scale"
    store = pg.open_ledger(schema)
    pg.create_scratch_table(schema)
    results, have = [], 0
    try:
        for size in args.sizes:
            took = grow(store, have, size, args.sessions_per_host)
            print(f"[setup] {have:,} -> {size:,} sessions saved {SETUP_BATCH} to a save() and projected in "
                  f"{took:.0f}s", flush=True)
            if not results and not args.skip_connections:
                held = connections(schema, UUID(some_ids(store)[0]))
                print(f"[connections] one supervisor's store holds {held['supervisor']}, one daemon "
                      f"{held['daemon']}; max_connections {max_connections()}", flush=True)
            have = size
            results.append(measure_size(store, schema, size, args))
            report(results[-1], args)
    finally:
        store.close()
    return results


def main() -> int:
    args = parse()
    if args.reconcile_host:
        reconcile_host(args.schema, args.passes)
        return 0
    whole = time.perf_counter()
    beat, host_beat = cadence()
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} at start")
    print(f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; server: {pg.server_facts()}")
    print(f"cadence: a heartbeat per session every {beat:g}s (fuse {beat * 3:g}s), a host beat every {host_beat:g}s; "
          f"sessions last {args.session_minutes:g} min on average; {args.sessions_per_host} sessions per host; "
          f"{args.workers} worker processes")
    admin = pg.SERVER
    database = pg.own_database(always=True)
    home = temp_home("scale")
    try:
        results = run(args)
    finally:
        pg.drop_database(database, admin)
        remove_temp_home(home)
    summary(results)
    print(f"scratch database {database} dropped; whole run {time.perf_counter() - whole:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
