"""The daemon's /metrics and /healthz: counts equal to the log, loops judged alive or not, off, address taken."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

import psutil
import pytest
from conftest import dead_identity, record, wait_for


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def daemon(daemon, monkeypatch):
    """The shared fixture, with metrics on ``addr`` (a free port by default)."""

    def start(*options: str, addr: str | None = None) -> int:
        monkeypatch.setenv("AGENTLEDGER_METRICS_ADDR", addr or f"127.0.0.1:{free_port()}")
        return daemon(*options)

    return start


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urlopen(Request(url), timeout=20) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def scrape(base: str) -> dict[str, dict[frozenset, float]]:
    """Every sample of /metrics: name -> {frozenset of label pairs: value}."""
    from prometheus_client.parser import text_string_to_metric_families

    status, content_type, body = get(f"{base}/metrics")
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    samples: dict[str, dict[frozenset, float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return samples


def by(samples: dict[str, dict[frozenset, float]], name: str, *labels: str) -> dict:
    """One metric's values keyed by the given labels' values (one label: the bare value)."""
    result = {}
    for pairs, value in samples.get(name, {}).items():
        values = tuple(dict(pairs)[label] for label in labels)
        result[values[0] if len(values) == 1 else values] = value
    return result


def value(samples: dict[str, dict[frozenset, float]], name: str) -> float:
    [only] = samples[name].values()
    return only


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[str]]]:
    """A webhook receiver answering 200: its URL, and the Idempotency-Key of every request it got."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[str] = []

    class Receive(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            received.append(self.headers["Idempotency-Key"])
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receive)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def test_after_a_scripted_scenario_the_metrics_equal_what_the_log_holds(cli, daemon, backend, home, receiver,
                                                                         monkeypatch):
    url, received = receiver
    monkeypatch.setenv("AGENTLEDGER_WEBHOOK_URL", url)  # the endpoint "default", which answers
    home.mkdir(mode=0o700, exist_ok=True)
    (home / "config.toml").write_text(  # and one nobody answers: its deliveries stay queued
        f'[webhooks.down]\nurl = "http://127.0.0.1:{free_port()}/"\nretry_initial = "1h"\nretry_max = "1h"\n')
    daemon("--interval", "200ms")
    base = f"http://{os.environ['AGENTLEDGER_METRICS_ADDR']}"
    launches = [
        ((), ("sh", "-c", "exit 0")),
        ((), ("sh", "-c", "exit 3")),
        ((), ("sleep", "600")),  # stopped by `agentledger stop`
        (("--fuse-ttl", "1s"), ("sleep", "600")),  # orphaned, then stopped by the reconciler
        (("--fuse-ttl", "6s", "--heartbeat-every", "300ms"), ("sleep", "600")),  # runs on, heartbeating
    ]
    with ThreadPoolExecutor(len(launches)) as pool:  # at once: each CLI call costs ~1s on a busy machine
        sids = list(pool.map(lambda spec: cli.launch(*spec[1], options=spec[0]), launches))
    stopped_by_user, orphan, running = sids[2:]
    cli("heartbeat", running)
    cli("stop", stopped_by_user)
    [orphan_status] = [s for s in cli.json_lines("list", "--all") if s["id"] == orphan]
    os.kill(orphan_status["supervisor_pid"], signal.SIGKILL)
    # Waiting on /metrics itself (cheap); every figure is checked against the log below.
    wait_for(lambda: by(scrape(base), "agentledger_events_total", "type").get("FuseExpired"), timeout=60)
    os.kill(orphan_status["pid"], signal.SIGKILL)
    wait_for(lambda: by(scrape(base), "agentledger_sessions", "status").get("stopped") == 4, timeout=60)
    # 10 hooks for each endpoint: 5 started, 4 stopped, 1 unwatched.
    wait_for(lambda: by(scrape(base), "agentledger_webhook_deliveries", "endpoint", "state") == {
        ("default", "delivered"): 10, ("down", "pending"): 10}, timeout=30)

    samples = scrape(base)
    sessions = cli.json_lines("list", "--all")
    events = [json.loads(line) for line in cli("events").stdout.splitlines()]
    fuses = cli.json_lines("fuses")
    assert value(samples, "agentledger_store_up") == 1

    # Events by type, up to the position the scrape's counts describe.
    at = value(samples, "agentledger_read_models_position")
    assert at <= value(samples, "agentledger_log_head_position") <= events[-1]["position"]
    in_log = Counter(e["type"] for e in events if e["position"] <= at)
    assert by(samples, "agentledger_events_total", "type") == in_log
    assert in_log["Launched"] == 5 and in_log["Stopped"] == 4 and in_log["Heartbeat"] >= 2
    assert in_log["Host.DaemonAlive"] >= 1

    # Sessions by status, stops by reason and decider, live fuses: as list/fuses show them.
    assert {s: n for s, n in by(samples, "agentledger_sessions", "status").items() if n} == Counter(
        s["status"] for s in sessions) == {"stopped": 4, "running": 1}
    stops = Counter((s["stop_reason"], s["stopped_by"]) for s in sessions if s["status"] == "stopped")
    assert by(samples, "agentledger_stops_total", "reason", "decider") == stops == {
        ("exited", "supervisor"): 2, ("user", "supervisor"): 1, ("reconciled", "reconciler"): 1}
    assert sum(stops.values()) == in_log["Stopped"]
    assert value(samples, "agentledger_fuses_live") == sum(f["live"] for f in fuses) == 1
    assert value(samples, "agentledger_spool_depth") == 0
    deliveries = Counter((d["endpoint"], d["state"]) for d in cli.json_lines("webhooks", "--limit", "100"))
    assert by(samples, "agentledger_webhook_deliveries", "endpoint", "state") == deliveries
    assert deliveries[("default", "delivered")] == len(set(received)) == 10
    assert by(samples, "agentledger_webhook_queue_depth", "endpoint") == {"default": 0, "down": 10}

    # The daemon's own work: its passes, and what they judged (it ran before any session started).
    passes = by(samples, "agentledger_reconcile_passes_total", "result")
    assert passes["ok"] >= 5 and passes["failed"] == 0
    # A pass may end between the histogram's collection and the counter's: the counter is then one ahead.
    assert passes["ok"] - value(samples, "agentledger_reconcile_pass_seconds_count") in (0, 1)
    judged = by(samples, "agentledger_reconcile_sessions_judged_total", "outcome")
    assert judged["stopped"] == stops[("reconciled", "reconciler")]
    assert judged["fuse-expired"] == in_log["FuseExpired"] == 1
    assert judged["kept"] >= 1
    [(labels, one)] = samples["agentledger_daemon_info"].items()
    assert one == 1 and dict(labels)["host"] == sessions[0]["host"]

    status, content_type, body = get(f"{base}/healthz")
    report = json.loads(body)
    assert (status, content_type, report["status"], report["failing"]) == (200, "application/json", "ok", [])
    loops = {"reconcile", "host-heartbeat", "webhooks-enqueue", "webhooks-default", "webhooks-down"}
    assert set(report["loops"]) == loops | ({"log-follower"} if backend == "postgres" else set())
    assert get(f"{base}/nothing")[0] == 404
    assert f"Metrics          {base}/metrics and /healthz" in cli("daemon", "status").stdout
    cli("stop", running)


def test_a_scrape_measures_the_lag_catches_up_and_counts_the_spool(store, spawn, home):
    from agentledger.infrastructure.spool import Spool
    from agentledger.projections.metrics import read_figures

    spool = Spool(home)
    first = record(store, dead_identity(spawn))
    record(store, dead_identity(spawn), fuse_ttl=None)
    written = time.time()
    later = written + 100
    figures = read_figures(store, spool, later)  # nothing has caught the read models up yet
    assert figures.lag_positions == store.log_head() == 3  # Launched + FuseSet, Launched
    assert 100 <= figures.lag_seconds <= 100 + (time.time() - written) + 5
    assert figures.read_models_position == figures.log_position == 3
    assert figures.events == {"Launched": 2, "FuseSet": 1}
    assert figures.sessions["unwatched"] == 2 and figures.fuses_live == 0 and figures.spool_depth == 0

    spool.put(first.hex, {"returncode": 0, "supervisor": {"pid": None}})
    again = read_figures(store, spool, time.time())
    assert (again.lag_positions, again.lag_seconds, again.spool_depth) == (0, 0.0, 1)
    spool.take(first.hex)
    assert read_figures(store, spool, time.time()).spool_depth == 0


def test_webhook_deliveries_are_counted_and_a_store_without_their_table_has_no_such_metrics(store, home):
    from prometheus_client import CollectorRegistry, generate_latest

    from agentledger.bootstrap import store_opener
    from agentledger.infrastructure.spool import Spool
    from agentledger.projections.metrics import WEBHOOK_TABLE, LedgerCollector, read_figures

    with store.write_transaction() as cursor:
        for i, (endpoint, state) in enumerate(
                [("ops", "pending"), ("ops", "pending"), ("ops", "delivered"), ("audit", "dead")]):
            cursor.execute(
                f"INSERT INTO {WEBHOOK_TABLE} (endpoint, event_id, hook_type, position, session_id, payload, state,"
                " attempts, created_at) VALUES (?, ?, 'session.started', ?, 'abc', '{}', ?, 0, ?)",
                (endpoint, f"event-{i}", i + 1, state, time.time()))
    figures = read_figures(store, Spool(home), time.time())
    assert figures.webhook_deliveries == {("ops", "pending"): 2, ("ops", "delivered"): 1, ("audit", "dead"): 1}
    assert figures.webhook_queue == {"ops": 2, "audit": 0}
    registry = CollectorRegistry()
    registry.register(LedgerCollector(store_opener(store.location), home))
    text = generate_latest(registry).decode()
    assert 'agentledger_webhook_queue_depth{endpoint="audit"} 0.0' in text
    assert 'agentledger_webhook_deliveries{endpoint="ops",state="pending"} 2.0' in text

    with store.write_transaction() as cursor:  # a schema from before webhooks
        cursor.execute(f"DROP TABLE {WEBHOOK_TABLE}")
    figures = read_figures(store, Spool(home), time.time())
    assert figures.webhook_deliveries is None and figures.webhook_queue is None
    text = generate_latest(registry).decode()
    assert "agentledger_store_up 1.0" in text and "agentledger_webhook" not in text


def test_a_store_that_cannot_be_read_is_store_up_0_not_a_failed_scrape(tmp_path):
    from prometheus_client import CollectorRegistry, generate_latest

    from agentledger.bootstrap import store_opener
    from agentledger.infrastructure.settings import store_location
    from agentledger.projections.metrics import LedgerCollector

    garbage = tmp_path / "ledger.db"
    garbage.write_bytes(b"this is not a database" * 100)
    registry = CollectorRegistry()
    registry.register(LedgerCollector(store_opener(store_location({"AGENTLEDGER_DB": f"sqlite:///{garbage}"})), tmp_path))
    text = generate_latest(registry).decode()
    assert "agentledger_store_up 0.0" in text and "agentledger_sessions" not in text


def test_healthz_is_503_naming_the_loop_that_is_stuck_late_or_dead(store, home):
    from prometheus_client import CollectorRegistry

    from agentledger.domain.policy import DEFAULT_POLICY
    from agentledger.infrastructure.daemon_files import DaemonFiles
    from agentledger.infrastructure.metrics_server import DaemonMetrics, MetricsServer, thread_alive
    from agentledger.infrastructure.settings import MetricsAddress, load_settings, store_location
    from agentledger.infrastructure.store import open_store
    from agentledger.runtime.daemon import Daemon

    now = [time.monotonic()]
    daemon = Daemon(store, DaemonFiles.locate(store_location(), home), interval=1.0, policy=DEFAULT_POLICY,
                    settings=load_settings(), reopen=lambda: open_store(store_location()))
    daemon.pass_watch.clock = daemon.beat_watch.clock = lambda: now[0]
    registry = CollectorRegistry()
    daemon.metrics = DaemonMetrics(registry, host="here", started_at=time.time())
    server = MetricsServer(MetricsAddress("127.0.0.1", 0), registry, daemon.loops)
    server.start()
    base = f"http://127.0.0.1:{server.port}"

    def healthz() -> tuple[int, dict]:
        status, _, body = get(f"{base}/healthz")
        return status, json.loads(body)

    try:
        daemon.run_pass()
        daemon.host_alive()
        status, report = healthz()
        assert status == 200 and report["loops"]["reconcile"]["detail"].startswith("last ran 0.0s ago")

        now[0] += 35  # limit: max(3 x 1s, 1s + 30s) = 31s for passes; 40s for 10s host heartbeats
        status, report = healthz()
        assert (status, report["status"], report["failing"]) == (503, "failing", ["reconcile"])
        assert report["loops"]["reconcile"] == {"ok": False, "detail": "last ran 35.0s ago (limit 31s)"}
        daemon.run_pass()
        daemon.host_alive()
        assert healthz()[0] == 200

        # A pass that hangs: fine for a while, stuck past the limit; a failed pass is counted as one.
        entered, release = threading.Event(), threading.Event()

        def hanging_pass():
            entered.set()
            release.wait(30)
            raise RuntimeError("the store went away")

        daemon.reconciler.run_pass = hanging_pass
        passing = threading.Thread(target=daemon.run_pass)
        passing.start()
        entered.wait(10)
        assert healthz()[0] == 200
        now[0] += 32
        status, report = healthz()
        assert status == 503 and report["loops"]["reconcile"]["detail"] == "running for 32.0s (limit 31s)"
        release.set()
        passing.join(10)
        assert healthz()[0] == 200
        samples = scrape(base)
        assert by(samples, "agentledger_reconcile_passes_total", "result") == {"ok": 2, "failed": 1}
        assert value(samples, "agentledger_reconcile_pass_seconds_count") == 3

        # A thread registered as a loop: 503 once it has ended.
        worker = threading.Thread(target=lambda: None)
        worker.start()
        worker.join()
        daemon.loops["webhook:ops"] = thread_alive(worker)
        status, report = healthz()
        assert (status, report["failing"]) == (503, ["webhook:ops"])
        assert report["loops"]["webhook:ops"] == {"ok": False, "detail": "thread ended"}
    finally:
        server.close()
        daemon.reconciler.close()


def _daemon_log(home: Path) -> str:
    return (home / "daemon.log").read_text()


def passes_at_least(cli, count: int) -> dict | None:
    """The daemon's status once it has made ``count`` passes."""
    status = cli.json("daemon", "status")["daemon"] or {}
    return status if status.get("passes", 0) >= count else None


def test_metrics_off_serves_nothing_and_says_so(cli, daemon, home):
    pid = daemon("--interval", "200ms", addr="off")
    status = wait_for(lambda: passes_at_least(cli, 2))
    assert status["metrics"] == {"address": None, "serving": False, "error": None}
    assert "Metrics          off" in cli("daemon", "status").stdout
    assert "metrics: off" in _daemon_log(home)
    assert not [c for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]


def test_an_address_in_use_is_one_error_line_and_the_daemon_reconciles_on(cli, daemon, home):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        daemon("--interval", "200ms", addr=address)
        status = wait_for(lambda: passes_at_least(cli, 3))  # reconciling goes on
        lines = [line for line in _daemon_log(home).splitlines() if "metrics:" in line]
        assert len(lines) == 1 and " ERROR " in lines[0]
        assert f"cannot listen on {address}: Address already in use" in lines[0]
        assert "/metrics and /healthz are NOT served" in lines[0]
        assert (status["metrics"]["address"], status["metrics"]["serving"]) == (address, False)
        assert f"NOT SERVED: cannot listen on {address}" in cli("daemon", "status").stdout
        restarted = cli("daemon", "restart", "--interval", "200ms")  # `daemon start` says it, not only the log
        assert "daemon started" in restarted.stdout
        assert f"/metrics and /healthz are NOT served (cannot listen on {address}" in restarted.stderr
    with pytest.raises(URLError):
        urlopen(f"http://{address}/healthz", timeout=5)  # nothing answers once the port's owner is gone
