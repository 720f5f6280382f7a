"""Supervisor memory per session, and exit detection latency.

Targets: supervisor resident memory <= 30 MB per session; process end ->
`Stopped` visible in `status`: p99 <= 100 ms over 100 sessions.

Exit detection: each session's command writes its own end time just before it
exits; we then poll the read path in-process (catch-up + the status query, as
`agentledger status` does) every 2 ms and note when `Stopped` first shows.
Sessions run in waves of 10 so the 2-core machine is not swamped by start-up.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path

import psutil
from benchlib import cli, machine, percentile, summary, temp_home

MEMORY_SESSIONS = 10
EXIT_SESSIONS = 100
WAVE = 10
#: "steady": a whole wave is launched before its first session ends.
#: "while launching": sessions end while the rest of their wave is still starting up.
SCENARIOS = {"steady": 4.0, "while launching": 1.5}


def supervisor_memory() -> None:
    ids = [cli("launch", "--", "sleep", "60").strip() for _ in range(MEMORY_SESSIONS)]
    time.sleep(1.0)  # let each supervisor reach its steady state (first heartbeat pending)
    import json

    rss, uss = [], []
    for sid in ids:
        process = psutil.Process(json.loads(cli("status", sid, "--json"))["supervisor_pid"])
        info = process.memory_full_info()
        rss.append(info.rss / 2**20)
        uss.append(info.uss / 2**20)
    for sid in ids:
        cli("stop", sid, "--force")
    print(f"supervisor RSS over {len(rss)} sessions: median {statistics.median(rss):.1f} MB, max {max(rss):.1f} MB; "
          f"USS (memory unique to it) median {statistics.median(uss):.1f} MB  target RSS <= 30 MB: "
          f"{'met' if max(rss) <= 30 else 'MISSED'}")


def exit_detection(home: Path, scenario: str, sleep: float) -> None:
    from agentledger.infrastructure.settings import store_location
    from agentledger.infrastructure.store import open_store
    from agentledger.projections.catchup import catch_up
    from agentledger.projections.queries import get_session

    store = open_store(store_location())
    marks = home.parent / f"marks-{sleep}"
    marks.mkdir()
    visible_lag, recorded_lag, poll_gaps = [], [], []
    for wave in range(EXIT_SESSIONS // WAVE):
        # Launch from another thread, so this one never stops polling.
        pending: dict[str, Path] = {}
        lock = threading.Lock()

        def launch_wave(wave: int = wave, pending: dict[str, Path] = pending, lock: threading.Lock = lock) -> None:
            for i in range(WAVE):
                mark = marks / f"{wave}-{i}"
                script = f"import time; time.sleep({sleep}); open({str(mark)!r}, 'w').write(repr(time.time()))"
                sid = cli("launch", "--", sys.executable, "-c", script).strip()
                with lock:
                    pending[sid] = mark

        launcher = threading.Thread(target=launch_wave)
        launcher.start()
        last_poll = time.time()
        while launcher.is_alive() or pending:
            catch_up(store)
            now = time.time()
            poll_gaps.append(now - last_poll)
            last_poll = now
            with lock:
                watched = list(pending.items())
            for sid, mark in watched:
                row = get_session(store.db, sid)
                if row["status"] == "stopped":
                    ended = float(mark.read_text())
                    visible_lag.append(now - ended)
                    recorded_lag.append(row["stopped_at"] - ended)
                    with lock:
                        del pending[sid]
            time.sleep(0.002)
        launcher.join()
    store.close()
    print(f"[{scenario}] process end -> Stopped visible in status: {summary(visible_lag)}  target p99 <= 100 ms: "
          f"{'met' if percentile(visible_lag, 99) <= 0.1 else 'MISSED'}")
    print(f"[{scenario}] process end -> Stopped event's timestamp:  {summary(recorded_lag)}")
    print(f"[{scenario}] gaps between this poller's own polls (its CPU share): {summary(poll_gaps)}")


def main() -> None:
    home = temp_home("supervisors")
    print(f"machine: {machine()}")
    supervisor_memory()
    for scenario, sleep in SCENARIOS.items():
        exit_detection(home, scenario, sleep)


if __name__ == "__main__":
    main()
