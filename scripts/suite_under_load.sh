#!/usr/bin/env bash
# The whole test suite, N times in a row (default 3), beside CPU hogs (default 2): the proof that no test
# guesses how fast the machine is (docs/RELIABILITY.md). Run after the README's test command has made .venv.
# The hogs are Debian's stress-ng when present, else busy Python loops; they stop when this script does.
# Each run's log is kept in $LOGS (default /tmp/agentledger-load); the script stops at the first red run.
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
hogs=${HOGS:-2}
logs=${LOGS:-/tmp/agentledger-load}
mkdir -p "$logs"
hog_pids=()
stop_hogs() { [ ${#hog_pids[@]} -eq 0 ] || kill "${hog_pids[@]}" 2>/dev/null; }
trap stop_hogs EXIT
if command -v stress-ng >/dev/null; then
    stress-ng --cpu "$hogs" --quiet & hog_pids+=($!)
else
    for _ in $(seq "$hogs"); do python3 -c 'while 1: pass' & hog_pids+=($!); done
fi
echo "machine: $(nproc) CPUs, load before: $(cut -d' ' -f1-3 /proc/loadavg); hogs: $hogs ($(command -v stress-ng || echo python loops))"
for run in $(seq "$runs"); do
    started=$(date +%s)
    .venv/bin/pytest -n 2 -q -p no:cacheprovider "${@:2}" > "$logs/run$run.log" 2>&1
    rc=$?
    echo "run $run: exit $rc in $(( $(date +%s) - started )) s, load $(cut -d' ' -f1-3 /proc/loadavg): $(tail -1 "$logs/run$run.log")"
    [ $rc -eq 0 ] || exit $rc
done
