"""`agentledger why ID` with 1,000,000 events in the log.

Target (issue 4): <= 200 ms wall for the whole command (fresh process: start-up,
imports, catch-up check, id resolution, loading the session, output), median of
`RUNS`. Measured on the log of `bench_rebuild.py` (10,000 sessions x 100 events,
cached between runs), read models caught up first, for a session stopped by
its supervisor, one stopped on a user's request, and one still running; with
and without `--json`, and with a 12-character id prefix.

The commands run with a bytecode cache (`PYTHONPYCACHEPREFIX` in the temporary
directory, `PYTHONDONTWRITEBYTECODE` unset, one warm-up run each), as an
installed package has; one row shows the same command compiling every module
from source on every run, as it does where `PYTHONDONTWRITEBYTECODE=1`.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from bench_rebuild import LOG_KEY, big_log_store
from benchlib import AGENTLEDGER, PYCACHE, cli_env, machine, time_command

RUNS = 15
TARGET = 0.200


def main() -> None:
    from agentledger.projections.catchup import catch_up

    whole = time.perf_counter()
    print(f"machine: {machine()}")
    print(f"bytecode: PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r} here; the CLI runs "
          f"below with PYTHONPYCACHEPREFIX={PYCACHE} unless a row says otherwise")
    store = big_log_store("why")
    started = time.perf_counter()
    catch_up(store)
    head = store.ledger.recorder.max_notification_id()
    print(f"log {LOG_KEY}: {head:,} events; read models caught up in {time.perf_counter() - started:.1f}s")

    def pick(where: str) -> tuple[str, int]:
        row = store.db.execute(f"SELECT id, version FROM sessions WHERE {where} ORDER BY position DESC LIMIT 1"
                               ).fetchone()
        return row[0], row[1]

    exited, exited_v = pick("status = 'stopped' AND stop_reason = 'exited'")
    user, user_v = pick("status = 'stopped' AND stop_reason = 'user'")
    running, running_v = pick("status = 'running'")
    store.close()
    print(f"sessions: stopped/exited {exited[:12]} (v{exited_v}), stopped/user {user[:12]} (v{user_v}), "
          f"running {running[:12]} (v{running_v})")
    rows = [
        ("why ID (stopped, exited)", ["why", exited], TARGET),
        ("why ID --json (stopped, exited)", ["why", exited, "--json"], TARGET),
        ("why ID (stopped, user request)", ["why", user], TARGET),
        ("why ID (running)", ["why", running], TARGET),
        ("why ID --json (running)", ["why", running, "--json"], TARGET),
        ("why PREFIX (12 chars, stopped)", ["why", exited[:12]], TARGET),
        ("status ID (for comparison)", ["status", exited], None),
        ("--version (interpreter start-up floor)", ["--version"], None),
        ("why ID (stopped), no bytecode cache", ["why", exited], None),
        ("--version, no bytecode cache", ["--version"], None),
    ]
    for label, args, target in rows:
        times = time_command(args, runs=RUNS, env=cli_env(bytecode="no bytecode" not in label))
        median = statistics.median(times)
        verdict = "" if target is None else f"  target <= {target * 1000:.0f} ms: {'met' if median <= target else 'MISSED'}"
        print(f"{label:40s} median {median * 1000:6.1f} ms, min {min(times) * 1000:6.1f}, max "
              f"{max(times) * 1000:6.1f} over {RUNS} runs{verdict}", flush=True)
    print(subprocess.run([*AGENTLEDGER, "why", exited], check=True, capture_output=True, text=True, env=cli_env()).stdout)
    shutil.rmtree(Path(os.environ["AGENTLEDGER_HOME"]).parent, ignore_errors=True)
    print(f"whole run {time.perf_counter() - whole:.0f}s")


if __name__ == "__main__":
    main()
