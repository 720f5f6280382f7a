"""Real separate hosts on one PostgreSQL ledger: process end to ``Stopped`` per host, pass time, foreign judgements.

Three hosts, each PID 1 of its own PID, UTS and mount namespaces (``tests/namespace_hosts.py``; needs root and
util-linux), each with its own ``AGENTLEDGER_HOME`` and daemon (``--interval``), share one fresh schema
``bench_<random>`` of the server at ``BENCH_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``),
dropped at the end. No ``AGENTLEDGER_HOST_ID``: each host is named by its own host name and sees only its own
PIDs, which start at 1 on every host, so the same PID numbers are live on all three.

On each host ``--sessions`` real ``sleep 3600`` sessions are launched (``agentledger launch --fuse-ttl 2s``, three
hosts at once) and each supervisor is killed right after its launch, as if it had died: from then on only the
host's reconciler watches the session (and the server is not asked for a connection per supervisor). Once each
host has recorded ``FuseExpired`` for all of its own, pass times are sampled for ``--window`` seconds (the steady
state: every session unwatched and alive, its PID probed every pass); then ``--kill`` of each host's sessions
are SIGKILLed, all hosts in one sweep, and the run waits until their ``Stopped`` are in the log, then five more
passes of every daemon.

Reported, per host: process end to ``Stopped`` (the event's time minus the moment SIGKILL was sent: p50, p99,
max); reconcile pass time (``daemon.status.json``'s last pass, read every 20 ms: median and p99, steady and
during the kills); the most sessions one pass judged, against the host's own; and in the whole log, decisions
(``Stopped``, ``FuseExpired``) whose decider's host is not the session's host (must be 0), and stops of
sessions that were not killed (must be 0).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from benchlib import AGENTLEDGER, machine, percentile, remove_temp_home, temp_home

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from conftest import wait_for  # noqa: E402
from namespace_hosts import NamespaceHost, namespaces_unavailable  # noqa: E402

SERVER = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
NAMES = ("alpha", "beta", "gamma")


def events(env: dict[str, str]) -> list[dict[str, Any]]:
    done = subprocess.run([*AGENTLEDGER, "events"], env=env, check=True, capture_output=True, text=True)
    return [json.loads(line) for line in done.stdout.splitlines()]


def of_type(log: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {e["session_id"]: e for e in log if e["type"] == kind}


class PassSampler(threading.Thread):
    """Reads each host's ``daemon.status.json`` every 20 ms; keeps each pass seen, tagged with the phase."""

    def __init__(self, hosts: list[NamespaceHost]) -> None:
        super().__init__(daemon=True)
        self.hosts, self.phase, self.done = hosts, "launch", threading.Event()
        self.passes: dict[str, dict[int, tuple[str, float, int]]] = defaultdict(dict)

    def run(self) -> None:
        while not self.done.wait(0.02):
            for host in self.hosts:
                status = host.daemon_status()
                last = status.get("last_pass") or {}
                if status.get("passes") and last.get("duration_ms") is not None and not last.get("error"):
                    self.passes[host.name].setdefault(status["passes"], (self.phase, last["duration_ms"],
                                                                        last.get("sessions") or 0))

    def durations(self, host: str, phase: str) -> list[float]:
        return [ms for tag, ms, _ in self.passes[host].values() if tag == phase]

    def most_judged(self, host: str) -> int:
        return max((judged for _, _, judged in self.passes[host].values()), default=0)


def launch_all(hosts: list[NamespaceHost], count: int) -> dict[str, list[dict[str, Any]]]:
    """``count`` unwatched ``sleep`` sessions on each host, the hosts in parallel; their ``status --json``."""
    def launch(host: NamespaceHost) -> list[dict[str, Any]]:
        return [host.unwatched("sleep", "3600") for _ in range(count)]

    with ThreadPoolExecutor(len(hosts)) as pool:
        return dict(zip([h.name for h in hosts], pool.map(launch, hosts), strict=True))


def collisions(hosts: list[NamespaceHost], sessions: dict[str, list[dict[str, Any]]]) -> int:
    """How many sessions' PIDs are live processes on another host too."""
    return sum(any(other.alive(s["pid"]) for other in hosts if other.name != name)
               for name, statuses in sessions.items() for s in statuses)


def stats(values: list[float], unit: str = "ms") -> str:
    if not values:
        return "no sample"
    return (f"p50 {statistics.median(values):7.1f} {unit}  p99 {percentile(values, 99):7.1f} {unit}  "
            f"max {max(values):7.1f} {unit}  (n={len(values)})")


def run(args: argparse.Namespace) -> None:
    base = temp_home("hosts").parent
    url = f"{SERVER}?schema=bench_{uuid.uuid4().hex[:12]}"
    env = dict(os.environ, AGENTLEDGER_DB=url, AGENTLEDGER_METRICS_ADDR="off", AGENTLEDGER_HOST_HEARTBEAT="1s")
    env.pop("AGENTLEDGER_HOST_ID", None)
    hosts: list[NamespaceHost] = []
    try:
        hosts = [NamespaceHost(name, base / name, env) for name in NAMES]
        for host in hosts:
            host.start_daemon(args.interval)
        sampler = PassSampler(hosts)
        sampler.start()
        started = time.perf_counter()
        sessions = launch_all(hosts, args.sessions)
        launched = time.perf_counter() - started
        every = {s["id"] for statuses in sessions.values() for s in statuses}
        wait_for(lambda: every <= set(of_type(events(env), "FuseExpired")), timeout=600, interval=0.5)
        sampler.phase = "steady"
        time.sleep(args.window)  # the measurement window, not a wait for anything
        collided = collisions(hosts, sessions)

        rng = random.Random(20)
        victims = {name: rng.sample(statuses, round(len(statuses) * args.kill)) for name, statuses in sessions.items()}
        killed_at: dict[str, float] = {}
        sampler.phase = "kills"
        for name, host in ((h.name, h) for h in hosts):
            for status in victims[name]:
                killed_at[status["id"]] = time.time()
                host.signal(status["pid"], signal.SIGKILL)
        wait_for(lambda: set(killed_at) <= set(of_type(events(env), "Stopped")), timeout=600, interval=0.2)
        passes = {host: host.passes() + 5 for host in hosts}
        wait_for(lambda: all(host.passes() >= target for host, target in passes.items()), timeout=300)
        sampler.done.set()
        report(args, hosts, sessions, victims, killed_at, events(env), sampler, collided, launched)
    finally:
        for host in hosts:
            host.close()
        drop_schema(url)
        remove_temp_home(base / "home")


def report(args, hosts, sessions, victims, killed_at, log, sampler, collided, launched) -> None:
    host_of = {s["id"]: name for name, statuses in sessions.items() for s in statuses}
    decisions = [e for e in log if e["type"] in ("Stopped", "FuseExpired") and e["session_id"] in host_of]
    foreign = sum(e["fields"]["decided_by"]["host"] != host_of[e["session_id"]] for e in decisions)
    stops = of_type(log, "Stopped")
    wrong_stops = set(stops) - set(killed_at)
    total = sum(len(s) for s in sessions.values())
    print(f"machine: {machine()}")
    print(f"date: {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; ledger: PostgreSQL, one schema, {len(hosts)} hosts")
    print(f"{args.sessions} sessions per host ({total} in all) launched in {launched:.1f} s; daemons --interval "
          f"{args.interval}; {round(args.sessions * args.kill)} killed per host")
    print(f"session PIDs that are also live PIDs on another host: {collided} of {total}")
    for host in hosts:
        name = host.name
        latency = [(datetime.fromisoformat(stops[s["id"]]["time"]).timestamp() - killed_at[s["id"]]) * 1000
                   for s in victims[name]]
        print(f"{name}:")
        print(f"  process end -> Stopped   {stats(latency)}")
        print(f"  pass, steady             {stats(sampler.durations(name, 'steady'))}")
        print(f"  pass, during the kills   {stats(sampler.durations(name, 'kills'))}")
        print(f"  most sessions one pass judged: {sampler.most_judged(name)} (its own: {args.sessions})")
        by_host = {stops[s["id"]]["fields"]["decided_by"]["host"] for s in victims[name]}
        print(f"  its stops decided by: {', '.join(sorted(by_host))}")
    print(f"decisions in the log: {len(decisions)}; by another host than the session's: {foreign}")
    print(f"stops of sessions not killed: {len(wrong_stops)}")


def drop_schema(url: str) -> None:
    import psycopg

    schema = url.rsplit("schema=", 1)[1]
    with psycopg.connect(SERVER, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50, help="sessions per host (50)")
    parser.add_argument("--kill", type=float, default=0.2, help="share of each host's sessions killed (0.2)")
    parser.add_argument("--interval", default="1s", help="the daemons' --interval (1s)")
    parser.add_argument("--window", type=float, default=10.0, help="seconds of steady passes sampled (10)")
    args = parser.parse_args()
    reason = namespaces_unavailable()
    if reason:
        sys.exit(f"bench_hosts: cannot make separate hosts here: {reason}")
    run(args)


if __name__ == "__main__":
    main()
