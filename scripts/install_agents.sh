#!/usr/bin/env bash
# Install the real agent CLIs the end-to-end tests run (tests/test_real_agents.py), at the versions pinned in
# tests/agents/package-lock.json, into DIR (default ~/.cache/agentledger/agents), and print DIR/node_modules/.bin.
#   scripts/install_agents.sh [DIR]
#   export AGENTLEDGER_AGENTS_BIN=$(scripts/install_agents.sh)     # then: .venv/bin/pytest tests/test_real_agents.py
# Everything comes from the npm registry (the CLIs ship their native binaries as npm packages). An install whose
# lock file is unchanged is kept. `npm install` with the lock file rather than `npm ci`: registries that carry only
# this platform's optional binaries (as this machine's does) make `npm ci` refuse a lock file that names the others;
# the lock file is checked to be unchanged afterwards, so every version is still the pinned one.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-${AGENTLEDGER_AGENTS_DIR:-$HOME/.cache/agentledger/agents}}
mkdir -p "$dir"
stamp=$(sha256sum "$here/tests/agents/package-lock.json" "$here/tests/agents/package.json" | sha256sum | cut -c1-16)
if [ "$(cat "$dir/.installed" 2>/dev/null)" != "$stamp" ] || [ ! -x "$dir/node_modules/.bin/pi" ]; then
  rm -rf "$dir/node_modules" "$dir/.installed"
  cp "$here/tests/agents/package.json" "$here/tests/agents/package-lock.json" "$dir/"
  (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >&2)
  cmp -s "$dir/package-lock.json" "$here/tests/agents/package-lock.json" || {
    echo "install_agents: npm changed the lock file: the pinned versions could not be installed" >&2; exit 1; }
  echo "$stamp" > "$dir/.installed"
fi
for binary in opencode claude codex pi; do
  "$dir/node_modules/.bin/$binary" --version >/dev/null 2>&1 || {
    echo "install_agents: $binary does not run from $dir/node_modules/.bin" >&2; exit 1; }
done
echo "$dir/node_modules/.bin"
