"""``list -n 50`` and ``list --count`` on a PostgreSQL ledger with 10,000 and 100,000 sessions running.

The scale simulation (``bench_scale.py``) found ``list -n 50`` growing with the fleet on PostgreSQL. Here the
rows are copies of one real session's, written straight into the ``sessions`` read model (new ids, older start
times, all running, as in the simulation) and analysed, with the tracking position left at the log's head, so
the commands read the read models as they are. Each size is timed twice: with migration 0015's partial index of
the sessions not stopped, and with it dropped. Wall time of whole commands (the server's work is part of the
answer), medians; the CLI keeps its bytecode (``benchlib.cli_env``).

    scripts/bench_pg_list.py [--sizes 10000,100000] [--runs 7]

Everything happens in a fresh schema ``bench_<random>`` of the ``test`` database, dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import time
import uuid

import psycopg
from benchlib import AGENTLEDGER, cli_env, machine, temp_home

SERVER = "postgresql://postgres@127.0.0.1:5432/test"
LIVE_INDEX = ("CREATE INDEX sessions_live_started ON sessions (started_at)"
              " WHERE status IN ('running', 'unwatched', 'stopping')")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    env = cli_env(AGENTLEDGER_HOME=str(temp_home("pglist")), AGENTLEDGER_DB=f"{SERVER}?schema={schema}",
                  AGENTLEDGER_AUTOSTART_DAEMON="false")

    def run(*argv: str) -> str:
        return subprocess.run([*AGENTLEDGER, *argv], env=env, check=True, capture_output=True, text=True).stdout

    def timed(*argv: str) -> float:
        each = []
        for _ in range(args.runs):
            started = time.perf_counter()
            run(*argv)
            each.append(time.perf_counter() - started)
        return statistics.median(each) * 1e3

    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
    sid = run("launch", "--no-lock", "--fuse-ttl", "1h", "--", "sleep", "3600").strip()
    status = json.loads(run("status", sid, "--json"))
    admin = psycopg.connect(SERVER, autocommit=True)
    try:
        run("list")  # read models level with the log
        admin.execute(f"SET search_path = {schema}")
        columns = [name for (name,) in admin.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = 'sessions'"
            " ORDER BY ordinal_position", (schema,))]
        copied = ", ".join("md5(i::text || random()::text)" if c == "id" else "started_at - i" if c == "started_at"
                           else c for c in columns)
        total = 1
        for size in (int(s) for s in args.sizes.split(",")):
            admin.execute(f"INSERT INTO sessions ({', '.join(columns)}) SELECT {copied}"
                          f" FROM sessions, generate_series(1, {size - total}) i WHERE id = %s", (sid,))
            total = size
            admin.execute("ANALYZE sessions")
            for variant in ("with the partial index", "without it"):
                if variant == "without it":
                    admin.execute("DROP INDEX sessions_live_started")
                print(f"{size:,} running, {variant}: list -n 50 {timed('list', '-n', '50'):.0f} ms;"
                      f" list --count {timed('list', '--count'):.0f} ms (median of {args.runs})", flush=True)
            admin.execute(LIVE_INDEX)
    finally:
        for pid in (status["supervisor_pid"], status["pid"]):  # the copies' rows name them too: no stop
            os.kill(pid, signal.SIGKILL)
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()


if __name__ == "__main__":
    main()
