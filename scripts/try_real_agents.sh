#!/usr/bin/env bash
# Try agentledger against the real agent CLIs found on PATH (opencode, claude, codex, pi), with real providers:
#   1. launch each with a tiny prompt, wait for it to stop, print status, history and logs;
#   2. resume that session with a second message where the agent's own session was found;
#   3. start each agent outside agentledger, then discover, adopt --all, kill them and reconcile.
# Agents not installed are skipped (npm install -g opencode-ai @anthropic-ai/claude-code @openai/codex
# @mariozechner/pi-coding-agent). tests/test_real_agents.py runs them against a stand-in model server instead.
# Without network or credentials the agents fail; what matters is that the ledger records that truthfully.
# Uses a scratch AGENTLEDGER_HOME unless one is set. TIMEOUT (default 90s) bounds each run: an agent
# waiting for a network that never comes is stopped with reason 'timeout'.
set -u
PY=${PYTHON:-$(command -v python3)}  # the Python agentledger is installed in (PYTHON=/path/to/venv/bin/python)
TIMEOUT=${TIMEOUT:-90s}
export AGENTLEDGER_HOME=${AGENTLEDGER_HOME:-$(mktemp -d)}
export AGENTLEDGER_METRICS_ADDR=off
work=$(mktemp -d)
al() { "$PY" -m agentledger "$@"; }
field() { "$PY" -c "import json,sys; v=json.load(sys.stdin); print(eval('v' + sys.argv[1]) or '')" "$1"; }
wait_stopped() {
  for _ in $(seq 1 1200); do
    [ "$(al status "$1" --json | field '["status"]')" = stopped ] && return 0
    sleep 0.5
  done
  return 1
}
show() {
  al status "$1"
  al history "$1"
  echo "-- logs (last 10)"
  al logs "$1" -n 10 | cut -c1-300
}
echo "ledger: $AGENTLEDGER_HOME   cwd: $work"
al adapters
found=()
for pair in opencode:opencode claude-code:claude codex:codex pi:pi; do
  agent=${pair%%:*} binary=${pair##*:}
  if ! command -v "$binary" >/dev/null 2>&1; then
    echo "$binary: not on PATH, skipped"
    continue
  fi
  found+=("$binary")
  echo "== launch $agent ($(command -v "$binary"), $("$binary" --version 2>&1 | head -1))"
  id=$(al launch "$agent" -p "Reply with the single word: pong" --cwd "$work" --timeout "$TIMEOUT") || {
    echo "launch failed"; continue; }
  wait_stopped "$id"
  show "$id"
  if [ -n "$(al status "$id" --json | field '["agent"]["native_session_id"]')" ]; then
    echo "== resume $agent"
    again=$(al resume "$id" "And once more: pong" --timeout "$TIMEOUT") && wait_stopped "$again" && show "$again"
    al why "$id" | grep -E "Resumed by" || true
  else
    echo "== resume $agent: no native session was found, nothing to resume"
    al resume "$id" "And once more: pong"; echo "(exit $?)"
  fi
done
if [ ${#found[@]} -gt 0 ]; then
  echo "== started outside agentledger: ${found[*]}"
  pids=()
  for binary in "${found[@]}"; do  # each in its own process group (setsid), so it can be killed whole
    case $binary in
      opencode) setsid bash -c "cd '$work' && exec opencode run 'pong?' </dev/null >/dev/null 2>&1" & ;;
      claude) setsid bash -c "cd '$work' && sleep 3600 | claude --print >/dev/null 2>&1" & ;;
      codex) setsid bash -c "cd '$work' && exec codex exec --skip-git-repo-check 'pong?' </dev/null >/dev/null 2>&1" & ;;
      pi) setsid bash -c "cd '$work' && echo 'pong?' | exec pi --mode json >/dev/null 2>&1" & ;;
    esac
    pids+=($!)
  done
  sleep 3
  al discover
  al adopt --all --group outside
  al list --group outside
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null; done
  wait 2>/dev/null
  sleep 1
  al reconcile
  al list --all --group outside
fi
