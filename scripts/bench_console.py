"""The web console (`agentledger console`) over 10,000 sessions: page time, first paint, live latency, memory.

Targets:

1. The sessions page with 10,000 sessions (1,000 running), paginated: server
   time <= 300 ms (httpx on loopback, time to the whole response; median and
   p95), beside the raw ``sqlite3`` query ``SELECT * FROM sessions ORDER BY
   started_at DESC`` on the same file; where the handler's time goes (timed in
   this process on the same store); first contentful paint in Chromium.
2. An event appended -> shown in an open sessions page (the DOM, seen by a
   MutationObserver): p99 <= 500 ms, over >= 50 events (new sessions appearing
   at the top, then those sessions stopping).
3. Console memory (RSS): idle, with 100 open ``/events`` streams, and with 100
   streams while events are appended; per-stream cost, beside a bare Python
   interpreter; every stream must be told of an append.

    scripts/bench_console.py [--quick]

The console runs as ``agentledger console --addr 127.0.0.1:0`` in a process of
its own over a throw-away SQLite home; events are appended by this process
through the Ledger. The console is stopped with SIGINT on the way out.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from uuid import UUID, uuid4

import httpx
import psutil
from benchlib import (
    AGENTLEDGER,
    LAUNCHED,
    cli_env,
    machine,
    open_temp_store,
    percentile,
    populate_sessions,
    remove_temp_home,
)

SESSIONS, RUNNING = 10_000, 1_000
CHROMIUM = dict(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
STREAMS = 100
OBSERVE = """() => {
  window.seen = {}; window.told = {}; performance.setResourceTimingBufferSize(10000);
  const note = () => { const now = Date.now();
    for (const tr of document.querySelectorAll('#live tr[data-session]')) {
      for (const key of [tr.dataset.session, tr.dataset.session + ':' + tr.dataset.status]) {
        if (!(key in window.seen)) window.seen[key] = now; } } };
  new MutationObserver(note).observe(document.getElementById('live'), {childList: true, subtree: true, attributes: true});
  new MutationObserver(() => { const p = document.body.dataset.position; if (!(p in window.told)) window.told[p] = Date.now(); })
    .observe(document.body, {attributes: true, attributeFilter: ['data-position']});
  note(); }"""


def ms(values: list[float]) -> str:
    return (f"median {statistics.median(values) * 1000:6.1f} ms, p95 {percentile(values, 95) * 1000:6.1f} ms, "
            f"max {max(values) * 1000:6.1f} ms (n={len(values)})")


def verdict(value: float, target: float) -> str:
    return f"  target <= {target * 1000:.0f} ms: {'met' if value <= target else 'MISSED'}"


def timed(call: Callable[[], object], runs: int) -> list[float]:
    call()  # warm up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


@contextmanager
def console() -> Iterator[tuple[str, subprocess.Popen]]:
    """``agentledger console --addr 127.0.0.1:0`` until the block ends; its URL and process."""
    proc = subprocess.Popen([*AGENTLEDGER, "console", "--addr", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True,
                            env=cli_env())
    try:
        line = proc.stdout.readline()
        if not line.startswith("agentledger console: http://"):
            raise SystemExit(f"the console did not start: {line!r}")
        url = line.split(": ", 1)[1].strip()
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "healthz", timeout=5).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url, proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            print("console did not stop on SIGINT within 20 s: killed")
            proc.kill()
            proc.wait()


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


# -- 1. server time and first paint ------------------------------------------------------


def server_times(url: str, ids: list[str], path: str, runs: int) -> None:
    print(f"\n1. server time, httpx on loopback, {runs} requests each (taken in turn) after one warm-up:")
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    raw = statistics.median(timed(lambda: con.execute("SELECT * FROM sessions ORDER BY started_at DESC").fetchall(), runs))
    con.close()
    print(f"   {'raw sqlite3 SELECT * ... ORDER BY started_at DESC':42s} median {raw * 1000:6.1f} ms (baseline)")
    targets = {"/": 0.3, "/?fragment=1": 0.3, "/?status=stopped&sort=name": 0.3, "/?page=50": None,
               f"/s/{ids[0]}": None, "/healthz": None}  # healthz: the transport's floor
    times: dict[str, list[float]] = {path: [] for path in targets}
    with httpx.Client(timeout=30) as client:
        sizes = {path: len(client.get(url + path[1:]).raise_for_status().content) for path in targets}
        for _ in range(runs):
            for path in targets:
                started = time.perf_counter()
                client.get(url + path[1:]).raise_for_status()
                times[path].append(time.perf_counter() - started)
    for path, target in targets.items():
        median = statistics.median(times[path])
        print(f"   GET {path[:38]:38s} {ms(times[path])}  x{median / raw:.1f} raw, {sizes[path] / 1024:.0f} KB"
              + (verdict(median, target) if target else ""))


def handler_phases(location, runs: int) -> None:
    """Where the sessions page's handler spends its time: the same code, timed in this process."""
    from starlette.requests import Request

    from agentledger.bootstrap import store_opener
    from agentledger.entrypoints.console import pages, views
    from agentledger.entrypoints.console.guard import Guard
    from agentledger.entrypoints.console.state import Console, answer
    from agentledger.projections.queries import list_sessions

    con, store = Console(store_opener(location), Guard(token=None, actions=False)), store_opener(location)()
    request = Request({"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": [],
                       "scheme": "http", "server": ("127.0.0.1", 80), "root_path": ""})
    at = pages.moment(store, None)
    rows = list_sessions(at.db, include_stopped=True, status=None, now=at.now)
    listing = pages.sessions(at, pages.SessionQuery())
    bar = {"head": at.position, "position": at.position, "as_of": None, "described": None}
    phases = {
        "whole handler (views.sessions_page)": lambda: answer(views.sessions_page.__wrapped__, con, request),
        "list_sessions(): SELECT of all 10,000 rows": lambda: list_sessions(at.db, include_stopped=True,
                                                                            status=None, now=at.now),
        "pages.sessions(): the SELECT, page, 100 rows": lambda: pages.sessions(at, pages.SessionQuery()),
        "pages.choices(): 3 SELECT DISTINCT": lambda: pages.choices(at.db),
        "render sessions.html (100 rows)": lambda: con.render(request, "sessions.html", title="Sessions", at=bar,
                                                              listing=listing, choices=pages.choices(at.db),
                                                              params={}),
        "session_row() x 10,000 (formatting every row)": lambda: [pages.session_row(r, at.now) for r in rows],
        "a page in SQL: LIMIT 100 + COUNT(*) + 100 rows": lambda: (
            at.db.execute("SELECT COUNT(*) FROM sessions").fetchone(),
            [pages.session_row(r, at.now) for r in at.db.execute(
                "SELECT s.*, NULL AS host_silent_from FROM sessions s ORDER BY started_at DESC LIMIT 100")]),
    }
    print(f"   where GET / goes (in this process, same store, medians of {runs}):")
    for label, call in phases.items():
        print(f"     {label:48s} {statistics.median(timed(call, runs)) * 1000:6.1f} ms")
    con.close()
    store.close()


def first_paint(browser, url: str, loads: int) -> None:
    """First contentful paint of GET / in a new tab, beside a one-line page's (what a tab costs by itself)."""
    for label, address in (("GET /", url), ("a one-line data: page (baseline)", "data:text/html,<p>agentledger</p>")):
        fcp, response = [], []
        for i in range(loads + 1):  # the first load warms the browser up, untimed
            page = browser.new_page()
            page.goto(address, wait_until="load")
            page.wait_for_function("performance.getEntriesByName('first-contentful-paint').length")
            if i:
                fcp.append(page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime") / 1000)
                response.append(page.evaluate("(n => n.responseEnd - n.requestStart)"
                                              "(performance.getEntriesByType('navigation')[0])") / 1000)
            page.close()
        print(f"   Chromium, {label}, a new tab each: first contentful paint {ms(fcp)}")
        if address == url:
            print(f"     (the same loads' request -> response end {ms(response)})")


# -- 2. event -> browser -------------------------------------------------------------------


def latency(browser, url: str, store, samples: int) -> None:
    import random

    from agentledger.domain.session import Session

    page = browser.new_page()
    page.goto(url)
    page.wait_for_function("document.body.dataset.stream === 'open' && document.body.dataset.position")
    page.evaluate(OBSERVE)
    shown, told = [], []
    launched: list[str] = []
    for i in range(samples):
        if i % 2 == 0:  # a new session: its row appears at the top of page 1
            session = Session.launch(session_id=uuid4(), **{**LAUNCHED, "name": f"b{i}"})
            store.ledger.save(session)
            committed = time.time()
            key = session.id.hex
            launched.append(key)
        else:  # that session stops: its row's data-status turns "stopped"
            store.ledger.change(UUID(launched[-1]), lambda s: s.record_stop(
                reason="exited", exit_code=0, decided_by={"component": "bench"}, evidence={}))
            committed = time.time()
            key = launched[-1] + ":stopped"
        position = store.ledger.recorder.max_notification_id()
        page.wait_for_function("k => k in window.seen", arg=key, timeout=30_000)
        shown.append(page.evaluate("k => window.seen[k]", key) / 1000 - committed)
        at = page.evaluate("p => window.told[p]", str(position))
        if at is not None:
            told.append(at / 1000 - committed)
        time.sleep(random.uniform(0.1, 0.4))  # land at any moment of the console's 0.1 s poll
    fetches = page.evaluate("performance.getEntriesByType('resource').filter(e => e.name.includes('fragment=1'))"
                            ".map(e => (e.responseEnd - e.requestStart) / 1000)")
    page.close()
    print(f"\n2. append committed -> shown in the open sessions page ({samples // 2 + samples % 2} sessions appearing, "
          f"{samples // 2} stopping):")
    print(f"   -> row in the DOM:         {ms(shown)}, p99 {percentile(shown, 99) * 1000:.1f} ms"
          + verdict(percentile(shown, 99), 0.5))
    print(f"   -> SSE 'log' in the page:  {ms(told)}, p99 {percentile(told, 99) * 1000:.1f} ms")
    print(f"   the page's GET ?fragment=1 (request -> response end): {ms(fetches)}")


# -- 3. memory with 100 event streams ----------------------------------------------------------


def drain(socks: list[socket.socket], bufs: list[bytes], needle: bytes, timeout: float) -> int:
    """Read every stream until each holds ``needle`` (or ``timeout``); how many do."""
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        sel.register(s, selectors.EVENT_READ, i)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(needle in b for b in bufs):
        for key, _ in sel.select(0.05):
            bufs[key.data] += key.fileobj.recv(65536)
    sel.close()
    return sum(needle in b for b in bufs)


def memory(url: str, proc: subprocess.Popen, store, beat_id: str, seconds: float) -> None:
    """On a console just started (the pages' garbage would blur a per-stream figure)."""
    from agentledger.application.clock import utc_now

    def append() -> bytes:
        store.ledger.change(UUID(beat_id), lambda s: s.heartbeat(source="bench", now=utc_now()))
        return f"data: {store.ledger.recorder.max_notification_id()}\n".encode()

    bare = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    time.sleep(1)
    bare_mb = rss_mb(bare.pid)
    bare.kill()
    bare.wait()
    time.sleep(1)
    before = rss_mb(proc.pid)
    host, port = httpx.URL(url).host, httpx.URL(url).port
    socks = [socket.create_connection((host, port)) for _ in range(STREAMS)]
    for s in socks:
        s.sendall(b"GET /events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
    bufs = [b""] * STREAMS
    opened = drain(socks, bufs, b"event: log", 10)
    time.sleep(1)
    listeners = httpx.get(url + "healthz").json()["listeners"]
    streams = rss_mb(proc.pid)
    told = drain(socks, bufs, append(), 10)
    peak, appended, started = streams, 0, time.monotonic()
    while time.monotonic() - started < seconds:  # 20 events a second, every stream read
        needle = append()
        appended += 1
        drain(socks, bufs, needle, 0.05)
        peak = max(peak, rss_mb(proc.pid))
    last = drain(socks, bufs, needle, 10)
    during = rss_mb(proc.pid)
    for s in socks:
        s.close()
    time.sleep(1)
    after = httpx.get(url + "healthz").json()["listeners"]
    print(f"\n3. console memory (RSS), {STREAMS} /events streams over raw sockets:")
    print(f"   bare `python -c` interpreter            {bare_mb:6.1f} MB (baseline)")
    print(f"   a new console, idle after start         {before:6.1f} MB")
    print(f"   ... {opened} streams open ({listeners} listeners)  {streams:6.1f} MB: "
          f"{(streams - before) * 1024 / STREAMS:.1f} KB a stream")
    print(f"   ... while {appended} events appended in {seconds:.0f} s  {during:6.1f} MB at the end, peak {peak:.1f} MB")
    print(f"   streams told of one append: {told}/{STREAMS}; of the last of the {appended}: {last}/{STREAMS}; "
          f"listeners 1 s after closing them: {after}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    quick = parser.parse_args().quick
    runs, loads, samples, seconds = (5, 2, 10, 2) if quick else (20, 5, 100, 5)
    from playwright.sync_api import sync_playwright

    from agentledger.infrastructure.settings import store_location

    started = time.monotonic()
    store = open_temp_store("console")
    home = os.environ["AGENTLEDGER_HOME"]
    try:
        print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
        ids, took = populate_sessions(store, SESSIONS, RUNNING, fuse_ttl=3600)
        print(f"populated {SESSIONS:,} sessions ({RUNNING:,} running); catch-up of "
              f"{store.ledger.recorder.max_notification_id():,} events took {took:.1f}s")
        with console() as (url, proc):
            time.sleep(1)
            idle = rss_mb(proc.pid)
            print(f"console at {url}: RSS {idle:.1f} MB idle after start")
            server_times(url, ids, str(store_location().path), runs)
            handler_phases(store_location(), runs)
            with sync_playwright() as p:
                browser = p.chromium.launch(**CHROMIUM)
                first_paint(browser, url, loads)
                latency(browser, url, store, samples)
                browser.close()
            print(f"\nconsole RSS after the page and browser benchmarks: {rss_mb(proc.pid):.1f} MB")
        with console() as (url, proc):
            memory(url, proc, store, ids[0], seconds)
    finally:
        store.close()
        remove_temp_home(home)
    print(f"\nwhole run {time.monotonic() - started:.0f}s; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
