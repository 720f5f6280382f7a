"""Instructions per append, counted by valgrind's callgrind: the append path's cost without the machine's noise.

``bench_append.py`` times appends; on a shared VM its rounds vary by 2x (tmpfs
``save`` 0.19-0.39x raw in one run), and from one VM kind to another the same
code has measured 0.22x and 0.47x. Callgrind counts the instructions executed,
which are the same from run to run whatever else the machine does, so a
change to the append path can be judged here first, to the instruction.

Each mode runs in a child Python under callgrind twice, with ``N`` and ``3N``
appends to a tmpfs store; the difference divided by ``2N`` is the cost of one
append, start-up and imports cancelled out. Modes (as in ``bench_append.py``):
``raw`` (``sqlite3``: ``BEGIN``, ``INSERT``, ``COMMIT`` of a row of the same
shape), ``save`` (the aggregate in hand), ``change`` (``Ledger.change``: decided on
the cached session, compare-and-set), ``load`` (fast-forward query from the
cache, decide, save: a change whose cached copy is old). The ratio raw/mode is what the time ratio would be
if an instruction cost the same everywhere; the disk sync is not in it.

Usage: ``python scripts/bench_append_instructions.py [--appends N] [--modes raw,save,change,load]``
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from uuid import uuid4

MODES = ("raw", "save", "change", "load")


def child(mode: str, appends: int) -> None:
    """The measured loop (run under callgrind)."""
    from benchlib import LAUNCHED, open_temp_store

    from agentledger.application.clock import utc_now

    store = open_temp_store("instructions")
    ledger = store.ledger
    sid = uuid4()
    ledger.launch(session_id=sid, fuse_ttl=60, fuse_set_by="bench", **LAUNCHED)
    session = ledger.session(sid)
    if mode == "raw":
        import sqlite3

        db = sqlite3.connect(str(store.location.path.with_name("raw.db")), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE raw_events (originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB,"
                   " PRIMARY KEY (originator_id, originator_version))")
        row = store.db.execute("SELECT topic, state FROM stored_events ORDER BY rowid DESC LIMIT 1").fetchone()
        other = uuid4().hex
        for version in range(appends):
            db.execute("BEGIN")
            db.execute("INSERT INTO raw_events VALUES (?,?,?,?)", (other, version, row[0], row[1]))
            db.execute("COMMIT")
    elif mode == "save":
        for _ in range(appends):
            session.heartbeat(source="bench", now=utc_now())
            ledger.save(session)
    elif mode == "change":
        for _ in range(appends):
            ledger.change(sid, lambda s: s.heartbeat(source="bench", now=utc_now()))
    else:
        for _ in range(appends):
            ledger.compare_and_set(lambda: ledger.session(sid), lambda s: s.heartbeat(source="bench", now=utc_now()),
                                   what=str)
    store.close()


def instructions(mode: str, appends: int) -> int:
    """Instructions callgrind counted for a whole child run."""
    with tempfile.TemporaryDirectory(dir="/dev/shm") as scratch:
        env = {**os.environ, "TMPDIR": scratch}
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={scratch}/callgrind.out",
             sys.executable, __file__, "--child", mode, str(appends)],
            capture_output=True, text=True, env=env, check=True)
    found = re.search(r"refs:\s+([\d,]+)", run.stderr)
    if found is None:
        raise SystemExit(f"callgrind printed no count for {mode}: {run.stderr[-300:]}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=500, help="N: runs of N and 3N appends per mode (default 500)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--child", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian package valgrind)")
    per_append = {}
    for mode in args.modes.split(","):
        per_append[mode] = (instructions(mode, 3 * args.appends) - instructions(mode, args.appends)) / (2 * args.appends)
        print(f"{mode:6}: {per_append[mode]:10,.0f} instructions per append", flush=True)
    if "raw" in per_append:
        print("raw / mode: " + ", ".join(f"{mode} {per_append['raw'] / cost:.2f}x"
                                          for mode, cost in per_append.items() if mode != "raw"))


if __name__ == "__main__":
    main()
