"""The daemon's ``/metrics`` and ``/healthz``: a small HTTP server on threads of its own.

``/metrics`` is the Prometheus text format (OpenMetrics if the scraper asks)
of a private ``CollectorRegistry``: the ledger's figures, read from the store
at each scrape (:mod:`agentledger.projections.metrics`), and the daemon's own
work, counted here as it happens (:class:`DaemonMetrics`; these start from
zero with each daemon, as Prometheus counters may).

``/healthz`` asks each of the daemon's loops whether it is alive and current:
a loop is a name and a check returning ``(ok, detail)``. A periodic job is
current when it ran within ``max(3 × its interval, its interval + 30 s)``, or
is running and has been for less than that (:class:`LoopWatch`); a thread is
alive while it runs (:func:`thread_alive`). 200 when all are, else 503; the
JSON body names the failing ones either way.

``prometheus_client`` is imported only here and only when a server starts,
so no CLI command pays for it.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from agentledger import __version__

log = logging.getLogger("agentledger.daemon")

Check = Callable[[], tuple[bool, str]]
#: The shortest slack a periodic job gets before /healthz calls it stuck: a slow store is not a dead loop.
MIN_SLACK_SECONDS = 30.0
PASS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class LoopWatch:
    """When a periodic job last ran and whether it is running now, for its health check."""

    def __init__(self, every: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.limit = max(3 * every, every + MIN_SLACK_SECONDS)
        self.clock = clock
        self.runs = 0
        self._last = clock()  # the start counts as a run: the first one is due within the limit
        self._running_since: float | None = None

    @contextmanager
    def running(self) -> Iterator[None]:
        self._running_since = self.clock()
        try:
            yield
        finally:
            self._last = self.clock()
            self._running_since = None
            self.runs += 1

    def check(self) -> tuple[bool, str]:
        now = self.clock()
        since = self._running_since
        if since is not None:
            return now - since <= self.limit, f"running for {now - since:.1f}s (limit {self.limit:g}s)"
        age = now - self._last
        what = f"last ran {age:.1f}s ago" if self.runs else f"not run yet, {age:.1f}s after start"
        return age <= self.limit, f"{what} (limit {self.limit:g}s)"


def thread_alive(thread: threading.Thread) -> Check:
    """A loop check for a thread: ok while it runs."""
    return lambda: (True, "alive") if thread.is_alive() else (False, "thread ended")


def health(loops: Mapping[str, Check]) -> tuple[bool, dict[str, Any]]:
    """Every loop's check; all ok or not, and the JSON body of ``/healthz``."""
    results = {}
    for name, check in list(loops.items()):
        try:
            ok, detail = check()
        except Exception as error:  # a check that breaks says nothing good about its loop
            ok, detail = False, f"its check failed: {error}"
        results[name] = {"ok": bool(ok), "detail": detail}
    failing = [name for name, result in results.items() if not result["ok"]]
    return not failing, {"status": "failing" if failing else "ok", "failing": failing, "loops": results}


class DaemonMetrics:
    """The daemon's own work: reconcile passes (how long, how they went) and the sessions they judged."""

    def __init__(self, registry: Any, *, host: str, started_at: float) -> None:
        from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # no ``_created`` series beside each counter: the start time is one gauge
        self.pass_seconds = Histogram("agentledger_reconcile_pass_seconds", "Reconcile pass duration",
                                      registry=registry, buckets=PASS_BUCKETS)
        self.passes = Counter("agentledger_reconcile_passes", "Reconcile passes by result (ok, failed)",
                              ["result"], registry=registry)
        self.judged = Counter("agentledger_reconcile_sessions_judged",
                              "Sessions judged by this daemon's passes, by outcome", ["outcome"], registry=registry)
        for result in ("ok", "failed"):
            self.passes.labels(result)  # both series exist from the start, at 0
        info = Gauge("agentledger_daemon_info", "This daemon: always 1, with its version and host",
                     ["version", "host"], registry=registry)
        info.labels(__version__, host).set(1)
        Gauge("agentledger_daemon_start_time_seconds", "When this daemon started (epoch seconds)",
              registry=registry).set(started_at)
        from agentledger.application import clock

        Gauge("agentledger_clock_offset_seconds", "This daemon's clock minus the store's (0 within 1.5 s); the "
              "daemon judges on the store's clock", registry=registry).set_function(lambda: -clock.offset())

    def record_pass(self, report: Any | None, seconds: float) -> None:
        """One pass: its report, or None if it failed."""
        self.pass_seconds.observe(seconds)
        self.passes.labels("failed" if report is None else "ok").inc()
        if report is not None:
            for outcome, count in report.counts.items():
                self.judged.labels(outcome).inc(count)


class MetricsServer:
    """``/metrics`` and ``/healthz`` on ``address``; constructing it binds (OSError if the address is taken)."""

    def __init__(self, address: Any, registry: Any, loops: Mapping[str, Check]) -> None:
        from http.server import ThreadingHTTPServer

        class Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
            daemon_threads = True

        self.address = address
        self.httpd = Server((address.host, address.port), _handler(registry, loops))
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics-server", daemon=True)
        self.closing: list[Callable[[], None]] = []  # what else to release on close (the collector's store)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()
        for close in self.closing:
            close()


def _handler(registry: Any, loops: Mapping[str, Check]) -> type:
    from http.server import BaseHTTPRequestHandler

    from prometheus_client.exposition import choose_encoder

    class Handler(BaseHTTPRequestHandler):
        server_version = f"agentledger/{__version__}"

        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                try:
                    body = encoder(registry)
                except Exception as error:  # a collector bug: say so to the scraper and in the log
                    log.error("metrics: scrape failed: %s", error)
                    self._send(500, "text/plain; charset=utf-8", f"scrape failed: {error}\n".encode())
                    return
                self._send(200, content_type, body)
            elif path == "/healthz":
                ok, report = health(loops)
                self._send(200 if ok else 503, "application/json", json.dumps(report).encode() + b"\n")
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: this daemon serves /metrics and /healthz\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            log.debug("metrics: %s %s", self.address_string(), format % args)

    return Handler
