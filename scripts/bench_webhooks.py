"""Webhook delivery: how fast the daemon drains a queue of 10,000 deliveries, and the memory it takes.

Targets (issue 6): >= 500 deliveries/s sustained to one endpoint with a local
receiver; a 10,000-delivery queue drains with the daemon's RSS <= 120 MB.

A throw-away ledger gets 10,000 stopped sessions (Launched, FuseSet,
Heartbeat, FuseCancelled, Stopped: 50,000 events, saved 500 sessions to a
save). One endpoint subscribes to ``session.stopped`` with a secret (every
attempt is signed), so the queue is 10,000 deliveries. The receiver is a
``ThreadingHTTPServer`` in this process (HTTP/1.1 keep-alive) answering 200.
The real daemon is started (``agentledger daemon start``); every 50 ms this
script samples the receiver's count and the daemon's RSS. Reported: the time
to enqueue (rows in ``webhook_deliveries``), the first delivery's latency,
the sustained rate (deliveries between 10% and 90% of the queue, over the time
between them), the whole drain, the outbox's states at the end, and the peak
RSS.

``--db URL`` runs it on a PostgreSQL ledger instead (a fresh schema in it).
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from uuid import uuid4

import psutil
from benchlib import cli, machine, populate_sessions, remove_temp_home, temp_home

DELIVERIES = 10_000
TARGET_RATE = 500.0
TARGET_RSS_MB = 120.0
SAMPLE = 0.05


class Receiver:
    def __init__(self) -> None:
        self.count = 0
        self.keys: set[str] = set()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.count += 1
                    receiver.keys.add(self.headers["Idempotency-Key"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=None, help="a postgresql:// URL (default: the SQLite file)")
    options = parser.parse_args()
    print(f"machine: {machine()}")
    home = temp_home("webhooks")
    if options.db:
        os.environ["AGENTLEDGER_DB"] = f"{options.db}{'&' if '?' in options.db else '?'}schema=bench_{uuid4().hex[:8]}"
    from agentledger.infrastructure.settings import store_location
    from agentledger.infrastructure.store import open_store

    store = open_store(store_location())
    daemon_pid = None
    try:
        started = time.perf_counter()
        populate_sessions(store, DELIVERIES, 0, fuse_ttl=3600.0)
        print(f"ledger: {DELIVERIES:,} stopped sessions, {store.log_head():,} events "
              f"({time.perf_counter() - started:.1f}s to record)", flush=True)
        receiver = Receiver()
        _configure(home, receiver.url)

        began = time.perf_counter()
        out = cli("daemon", "start", "--interval", "5s")
        daemon_pid = int(out.split("(pid ")[1].split(")")[0])
        daemon = psutil.Process(daemon_pid)
        samples: list[tuple[float, int]] = []
        peak_rss = 0
        enqueued_at = None
        while receiver.count < DELIVERIES:
            now = time.perf_counter() - began
            samples.append((now, receiver.count))
            peak_rss = max(peak_rss, daemon.memory_info().rss)
            if enqueued_at is None and _rows(store) >= DELIVERIES:
                enqueued_at = now
            if now > 600:
                raise SystemExit(f"gave up: {receiver.count} deliveries after 600 s")
            time.sleep(SAMPLE)
        drained = time.perf_counter() - began
        samples.append((drained, receiver.count))
        while _states(store).get("pending", 0):  # the last batch of marks
            peak_rss = max(peak_rss, daemon.memory_info().rss)
            time.sleep(SAMPLE)
        marked = time.perf_counter() - began
        peak_rss = max(peak_rss, daemon.memory_info().rss)
        states = _states(store)
    finally:
        try:
            cli("daemon", "stop")
        except Exception as error:  # noqa: BLE001 - report, then make sure it is gone
            print(f"'agentledger daemon stop' failed ({error}); killing the daemon")
            if daemon_pid:
                psutil.Process(daemon_pid).kill()
        store.close()
        remove_temp_home(home)
        if options.db:
            _drop_schema(store.location)

    first = next(t for t, n in samples if n > 0)
    low = next(t for t, n in samples if n >= DELIVERIES * 0.1)
    high = next(t for t, n in samples if n >= DELIVERIES * 0.9)
    rate = DELIVERIES * 0.8 / (high - low)
    rss = peak_rss / 2**20
    after = [(t, n) for t, n in samples if enqueued_at is not None and t >= enqueued_at and n <= DELIVERIES * 0.9]
    alone = (after[-1][1] - after[0][1]) / (after[-1][0] - after[0][0]) if len(after) > 1 else float("nan")
    print(f"queue: {DELIVERIES:,} deliveries enqueued {enqueued_at or float('nan'):.2f}s after 'daemon start'; "
          f"first delivered at {first:.2f}s")
    print(f"sustained: {rate:,.0f} deliveries/s (10%..90% of the queue); whole drain {drained:.2f}s "
          f"(all marked delivered at {marked:.2f}s); {len(receiver.keys):,} distinct idempotency keys received, "
          f"{receiver.count:,} requests; outbox {states}")
    print(f"once the whole queue was enqueued (the enqueuer no longer sharing the daemon's GIL): {alone:,.0f} "
          "deliveries/s")
    print(f"daemon peak RSS {rss:.1f} MB")
    print(f"targets: >= {TARGET_RATE:.0f}/s {'met' if rate >= TARGET_RATE else 'MISSED'}; "
          f"RSS <= {TARGET_RSS_MB:.0f} MB {'met' if rss <= TARGET_RSS_MB else 'MISSED'}")


def _configure(home: Path, url: str) -> None:
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = home / "config.toml"
    path.write_text(f'metrics_addr = "off"\n[webhooks.bench]\nurl = "{url}"\nsecret = "bench-secret"\n'
                    f'events = ["session.stopped"]\n')
    path.chmod(0o600)


def _drop_schema(location) -> None:
    from agentledger.infrastructure.postgres_store import connect

    connection = connect(location)
    connection.execute(f"DROP SCHEMA IF EXISTS {location.schema} CASCADE")
    connection.close()


def _rows(store) -> int:
    return store.db.execute("SELECT count(*) FROM webhook_deliveries").fetchone()[0]


def _states(store) -> dict[str, int]:
    return dict(store.db.execute("SELECT state, count(*) FROM webhook_deliveries GROUP BY state").fetchall())


if __name__ == "__main__":
    main()
