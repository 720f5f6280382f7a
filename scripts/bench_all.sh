#!/usr/bin/env bash
# Run every benchmark with the project's Python; figures go to docs/BENCHMARKS.md by hand.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-../.venv/bin/python}
[ -x "$python" ] || python=python3
for bench in bench_append.py bench_queries.py bench_supervisors.py bench_reconcile.py bench_daemon.py \
    bench_rebuild.py bench_load.py bench_why.py bench_postgres.py bench_webhooks.py bench_transcripts.py; do
  echo "== $bench"
  "$python" "$bench"
done
