"""The real agent CLIs under agentledger: exit -> `Stopped` latency, and native-id mix-ups of back-to-back launches.

Targets (issue 14): the extra time from an agent's exit to its `Stopped` (with the agent's facts read
one last time) p99 <= 100 ms, as for plain commands; two sessions of one agent launched back to back
in one directory never share a native id (20 tries per agent, 0 mix-ups).

Needs the CLIs (`export AGENTLEDGER_AGENTS_BIN=$(scripts/install_agents.sh)`) and runs them against
the stand-in model server of the tests (tests/model_server.py), in a private HOME.

Latency: the agent's PID is watched through a pidfd (readable the moment it ends) from a thread of
this process; another loop polls the read path (catch-up + the status query, as `agentledger
status` does) every 2 ms and notes when `Stopped` shows. A plain command (`python -c`, the same
interpreter start-up) is measured the same way in the same run, as the baseline.

Mix-ups: two launches 0.3 s apart in one directory, each prompt carrying its own token; the model
server's request log says which native session each token's request named (the agents' own
headers, Codex's prompt_cache_key), and that must be the session's recorded native id.

    .venv/bin/python scripts/bench_agents.py [--runs 30] [--pairs 20] [--agents opencode,claude-code,codex,pi]
"""

from __future__ import annotations

import argparse
import os
import select
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson
from benchlib import cli, machine, percentile, summary, temp_home

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from model_server import ModelServer  # noqa: E402
from real_agents import agents_bin, configure  # noqa: E402

#: How each agent names its session in its requests (see tests/test_real_agents.py).
HEADERS = {"opencode": "x-session-affinity", "claude-code": "x-claude-code-session-id", "pi": "x-session-affinity"}


class Env:
    """``configure`` sets variables through a pytest MonkeyPatch; here they simply go into os.environ."""

    def setenv(self, name: str, value: str) -> None:
        os.environ[name] = value

    def delenv(self, name: str, raising: bool = True) -> None:
        os.environ.pop(name, None)


def exit_to_stopped(argv: list[str], runs: int, work: Path) -> tuple[list[float], list[float], int]:
    """Launch ``argv`` (``launch ... ARGS``) ``runs`` times, one at a time; (visible lags, recorded lags, missed)."""
    from agentledger.infrastructure.settings import store_location
    from agentledger.infrastructure.store import open_store
    from agentledger.projections.catchup import catch_up
    from agentledger.projections.queries import get_session

    store = open_store(store_location())
    visible, recorded, missed = [], [], 0
    for run in range(runs):
        answer = orjson.loads(cli("launch", "--json", "--cwd", str(work), *[a.format(run=run) for a in argv]))
        sid, pid = answer["id"], answer["pid"]
        ended: list[float] = []
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            missed += 1  # it ended before we could watch it
            fd = None
        if fd is not None:
            def watch(fd: int = fd, ended: list[float] = ended) -> None:
                select.select([fd], [], [])
                ended.append(time.time())
                os.close(fd)

            threading.Thread(target=watch, daemon=True).start()
        while True:
            catch_up(store)
            row = get_session(store.db, sid)
            if row["status"] == "stopped":
                now = time.time()
                if ended:
                    visible.append(now - ended[0])
                    recorded.append(row["stopped_at"] - ended[0])
                if row["exit_code"] != 0:
                    print(f"  run {run}: exit {row['exit_code']} {row['stop_note']}", file=sys.stderr)
                break
            time.sleep(0.002)
    store.close()
    return visible, recorded, missed


def pairs(agent: str, count: int, server: ModelServer, work: Path) -> tuple[int, int]:
    """``count`` pairs launched 0.3 s apart in ``work``: (sessions checked, mix-ups)."""
    checked = mixups = 0
    for attempt in range(count):
        tokens = [f"pair{attempt}{side}-{uuid.uuid4().hex[:8]}" for side in "ab"]
        sids = []
        for token in tokens:
            sids.append(cli("launch", agent, "-p", f"Reply {token}", "--cwd", str(work)).strip())
            time.sleep(0.3)
        for sid, token in zip(sids, tokens):
            while (status := orjson.loads(cli("status", sid, "--json")))["status"] != "stopped":
                time.sleep(0.1)
            named = {r["prompt_cache_key"] if agent == "codex" else r["headers"].get(HEADERS[agent])
                     for r in server.requests if token in (r.get("user") or "")}
            checked += 1
            if named != {status["agent"]["native_session_id"]}:
                mixups += 1
                print(f"  MIX-UP {agent} pair {attempt}: recorded {status['agent']['native_session_id']}, "
                      f"its requests named {named}", file=sys.stderr)
    return checked, mixups


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--agents", default="opencode,claude-code,codex,pi")
    parser.add_argument("--git", action="store_true",
                        help="run the pairs in git repositories (agentledger before 2026-12-06 ran Codex only there)")
    args = parser.parse_args()
    bin_dir = agents_bin()
    if bin_dir is None:
        sys.exit("bench_agents: the agent CLIs are not installed (export AGENTLEDGER_AGENTS_BIN=$(scripts/install_agents.sh))")
    home = temp_home("agents")
    os.environ["AGENTLEDGER_METRICS_ADDR"] = "off"
    print(f"machine: {machine()}")
    with ModelServer() as server:
        configure(bin_dir, home.parent / "agent-home", server, Env())
        work = home.parent / "work"
        work.mkdir()
        baseline = exit_to_stopped(["--", sys.executable, "-c", "import time; time.sleep(0.5)"], args.runs, work)
        print(f"[plain command] agent end -> Stopped visible in status: {summary(baseline[0])}; "
              f"-> Stopped event's timestamp: {summary(baseline[1])}")
        for agent in args.agents.split(","):
            visible, recorded, missed = exit_to_stopped([agent, "-p", "Reply pong {run}"], args.runs, work)
            print(f"[{agent}] agent end -> Stopped visible in status: {summary(visible)}; -> Stopped event's "
                  f"timestamp: {summary(recorded)}; {missed} ended before they could be watched  target p99 <= "
                  f"100 ms: {'met' if percentile(visible, 99) <= 0.1 else 'MISSED'}")
        for agent in args.agents.split(","):
            shared = home.parent / f"pairs-{agent}"
            shared.mkdir()
            if args.git:
                subprocess.run(["git", "init", "-q", str(shared)], check=True)
            checked, mixups = pairs(agent, args.pairs, server, shared)
            print(f"[{agent}] {args.pairs} pairs launched 0.3 s apart in one directory: {checked} sessions, "
                  f"{mixups} native-id mix-ups  target 0: {'met' if mixups == 0 else 'MISSED'}")


if __name__ == "__main__":
    main()
