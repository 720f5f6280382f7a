#!/usr/bin/env bash
# The main job: launch a supervised session on the embedded SQLite store, watch it
# run, end, and explain itself. Uses ./.venv/bin/agentledger if present, else PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
agentledger=agentledger
[ -x .venv/bin/agentledger ] && agentledger=.venv/bin/agentledger

id=$($agentledger launch --name demo --fuse-ttl 3s -- sh -c 'echo "agent working in $PWD"; sleep 4; echo done; exit 7')
echo "launched session $id"
echo; echo "== status while it runs"; $agentledger status "${id:0:8}"
echo; echo "== list"; $agentledger list
echo; echo "== the reconciler daemon launch started (it stops a session whose supervisor dies)"; $agentledger daemon status
while [ "$($agentledger status "$id" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')" != stopped ]; do sleep 0.5; done
echo; echo "== status after it ended by itself"; $agentledger status "${id:0:8}"
echo; echo "== its history: every event in the log"; $agentledger history "${id:0:8}"
echo; echo "== its output"; $agentledger logs "${id:0:8}"
echo; echo "== why it stopped: the decider and the evidence"; $agentledger why "${id:0:8}"
echo; echo "== the whole log checked"; $agentledger verify
echo; echo "== the same, and every session, live in a browser: $agentledger console --open (Ctrl-C ends it)"
