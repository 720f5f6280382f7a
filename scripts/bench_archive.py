"""Archiving the stopped sessions of a 1,000,000-event log, against a raw dump of the same rows.

Target (issue 20): ``db archive`` over a 1M-event store archives its stopped
sessions at >= 0.5x the rate of a raw ``SELECT`` + ``orjson`` dump of the same
rows, gzip'd the same way (level 6) and fsync'd; ``db archive verify`` and
``agentledger verify`` are clean after the archive and after ``db import``.

The log is ``bench_rebuild.py``'s (10,000 sessions of 100 events, the last
1,000 never stop: 900,000 events to archive), cached in the temporary
directory and built there when absent (~2 min). The archive is timed as the
service layer runs it (``application/archiving.py``: plan, write and fsync,
read back and check, remove in one transaction); the raw dump reads the same
sessions' rows with one ``SELECT`` per 500 sessions and writes one orjson line
per row (state embedded as it is), nothing checked, nothing removed. ``db archive``
compresses on a second thread (``infrastructure/archive_files.py``); the dump
is timed a second time doing the same, and the ratio against that is
reported too: what the archive's own work costs, with both using two cores.

``--coalesce`` archives with every heartbeat coalesced (``--coalesce-heartbeats``
with a time after all of them): the rate counts the events taken out of the
store, and the file's size is reported beside the uncoalesced dump's.

    .venv/bin/python scripts/bench_archive.py [--coalesce]
"""

from __future__ import annotations

import gzip
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
from bench_rebuild import big_log_store
from benchlib import AGENTLEDGER, machine

TARGET_RATIO = 0.5


def raw_dump(store, session_ids: list[str], out: Path, *, threaded: bool = False) -> tuple[int, float]:
    """SELECT the sessions' rows (their own streams and the keyed ones), one orjson line each, gzip'd, fsync'd;
    ``threaded``: gzip on a second thread, as ``db archive`` compresses, fed the same 1,500 streams at a time."""
    from agentledger.application.archiving import session_streams

    streams = [s for sid in session_ids for s in session_streams(sid)]
    started = time.perf_counter()
    count = 0
    with open(out, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as zipped:
            blocks: queue.Queue[bytes | None] = queue.Queue(maxsize=4)

            def compress() -> None:
                for block in iter(blocks.get, None):
                    zipped.write(block)

            worker = threading.Thread(target=compress)
            if threaded:
                worker.start()
            for start in range(0, len(streams), 1500):
                chunk = streams[start:start + 1500]
                rows = store.db.execute(
                    "SELECT originator_id, originator_version, topic, state FROM stored_events"
                    f" WHERE originator_id IN ({','.join('?' * len(chunk))}) ORDER BY originator_id, originator_version",
                    chunk).fetchall()
                text = b"".join(
                    orjson.dumps({"stream": r[0], "version": r[1], "topic": r[2], "state": orjson.Fragment(r[3])})
                    + b"\n" for r in rows)
                if threaded:
                    blocks.put(text)
                else:
                    zipped.write(text)
                count += len(rows)
            if threaded:
                blocks.put(None)
                worker.join()
        raw.flush()
        os.fsync(raw.fileno())
    return count, time.perf_counter() - started


def cli(*args: str) -> tuple[str, float]:
    started = time.perf_counter()
    result = subprocess.run([*AGENTLEDGER, *args], capture_output=True, text=True)
    took = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"agentledger {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout.strip().splitlines()[-1], took


def main() -> None:
    from agentledger.application.archiving import archive, plan_archive
    from agentledger.bootstrap import archive_files

    coalesce = "--coalesce" in sys.argv[1:]
    print(machine() + ("; every heartbeat coalesced" if coalesce else ""))
    store = big_log_store("archive")
    home = Path(os.environ["AGENTLEDGER_HOME"])
    plan = plan_archive(store, time.time() + 86400)
    ids = [row["id"] for row in plan.sessions]
    print(f"{len(ids):,} stopped sessions to archive (log head {store.log_head():,})")

    dumped, raw_seconds = raw_dump(store, ids, home / "raw.ndjson.gz")
    raw_rate = dumped / raw_seconds
    print(f"raw SELECT + orjson + gzip: {dumped:,} rows in {raw_seconds:.2f}s = {raw_rate:,.0f} rows/s, "
          f"{(home / 'raw.ndjson.gz').stat().st_size / 1e6:.1f} MB")
    _, threaded_seconds = raw_dump(store, ids, home / "raw2.ndjson.gz", threaded=True)
    threaded_rate = dumped / threaded_seconds
    print(f"the same, gzip on a second thread (as db archive compresses): {threaded_seconds:.2f}s = "
          f"{threaded_rate:,.0f} rows/s")

    out = home / "archive" / "bench.ndjson.gz"
    result = archive(store, archive_files(), plan, path=str(out), header={"created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                                                           "source": store.location.url}, now=time.time(),
                     coalesce_before=time.time() + 86400 if coalesce else None)
    taken = result.events + result.coalesced
    rate = taken / result.seconds
    print(f"db archive (write, fsync, read back and check, remove): {taken:,} events of {result.sessions:,} "
          f"sessions in {result.seconds:.2f}s = {rate:,.0f} events/s, {result.bytes / 1e6:.1f} MB"
          f" ({result.events:,} events in the file, {result.coalesced:,} heartbeats coalesced); "
          f"ratio {rate / raw_rate:.2f} (target >= {TARGET_RATIO}); {rate / threaded_rate:.2f} against the dump"
          " compressing on a second thread")
    store.close()

    for label, args in (("archive verify", ("db", "archive", "verify", str(out))), ("verify after archive", ("verify",)),
                        ("db import", ("db", "import", str(out))), ("verify after import", ("verify",)),
                        ("archive verify after import", ("db", "archive", "verify", str(out)))):
        line, took = cli(*args)
        print(f"{label}: {took:.1f}s: {line}")
    print("PASS" if rate / raw_rate >= TARGET_RATIO else "FAIL")


if __name__ == "__main__":
    main()
