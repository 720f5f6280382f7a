#!/usr/bin/env bash
# Launch each real agent CLI found on PATH through agentledger with a tiny prompt,
# wait for it to stop, and print what the ledger recorded (status and history).
# Agents not installed are skipped. Uses a scratch AGENTLEDGER_HOME unless one is set.
# Needs the agents' own login/API keys and network; a failure is recorded, which is the point.
set -u
PY=${PYTHON:-$(command -v python3)}  # the Python agentledger is installed in (PYTHON=/path/to/venv/bin/python)
export AGENTLEDGER_HOME=${AGENTLEDGER_HOME:-$(mktemp -d)}
work=$(mktemp -d)
git -C "$work" init -q 2>/dev/null || true   # codex exec wants a git repository
al() { "$PY" -m agentledger "$@"; }
echo "ledger: $AGENTLEDGER_HOME   cwd: $work"
al adapters
for pair in opencode:opencode claude-code:claude codex:codex; do
  agent=${pair%%:*} binary=${pair##*:}
  if ! command -v "$binary" >/dev/null 2>&1; then
    echo "$binary: not on PATH, skipped"
    continue
  fi
  echo "== $agent ($(command -v "$binary"))"
  id=$(al launch "$agent" -p "Reply with the single word: pong" --cwd "$work" --timeout 5m) || { echo "launch failed"; continue; }
  for _ in $(seq 1 600); do
    [ "$(al status "$id" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["status"])')" = stopped ] && break
    sleep 0.5
  done
  al status "$id"
  al history "$id"
  echo "-- output (last 20 lines)"
  al logs "$id" -n 20
done
