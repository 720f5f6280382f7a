"""The real opencode, Claude Code, Codex and pi CLIs under agentledger, against the stand-in model server.

Every fact agentledger records is checked against a ground truth it does not produce itself: the model
server's request log. Each agent names its own session in the requests it sends (``x-session-affinity``
for opencode and pi, ``x-claude-code-session-id`` for Claude Code, ``session_id`` for Codex), so the log
says which conversation each prompt went to, how many answers (and so tokens) it got, and which model
was asked. The CLIs are installed by ``scripts/install_agents.sh`` (``.ci/run`` does it); without them
these tests skip loudly, and fail where ``AGENTLEDGER_REQUIRE_AGENTS=1``.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from model_server import INPUT_TOKENS, OUTPUT_TOKENS, ModelServer
from real_agents import PRICE_IN, PRICE_OUT, Agents, cleanup, configure, require_agents

pytestmark = pytest.mark.sqlite_only  # about the agents' own records; the store is tested elsewhere

AGENTS = ["opencode", "claude-code", "codex", "pi"]
#: The request header in which each agent names its own session (Codex: the body's ``prompt_cache_key``).
SESSION_HEADER = {"opencode": "x-session-affinity", "claude-code": "x-claude-code-session-id",
                  "pi": "x-session-affinity"}
#: What each agent does when the model answers 401: its exit code, and the final message it prints.
ON_401 = {
    "opencode": (1, "invalid x-api-key (model-server: status 401 asked for)"),
    "claude-code": (1, "Invalid API key · Fix external API key"),
    "codex": (1, "unexpected status 401 Unauthorized: invalid x-api-key (model-server: status 401 asked for), "
                 "url: {url}/v1/responses"),
    "pi": (0, "401 invalid x-api-key (model-server: status 401 asked for)"),  # json mode exits 0 on a failed answer
}
#: Generous: the agents start in 0.5 to 3 s on an idle machine; CI machines are shared.
DEADLINE = 180.0


@pytest.fixture
def agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: Path):
    bin_dir = require_agents()
    with ModelServer() as server:
        agent_home = tmp_path / "agent-home"
        configure(bin_dir, agent_home, server, monkeypatch)
        yield Agents(server, agent_home, tmp_path / "work", bin_dir)
        cleanup(agent_home)


def stopped(cli, sid: str) -> dict[str, Any]:
    return wait_for(lambda: (s := cli.json("status", sid))["status"] == "stopped" and s, timeout=DEADLINE,
                    interval=0.2)


def named(agent: str, request: dict[str, Any]) -> str | None:
    """The native session a request says it belongs to."""
    return request["prompt_cache_key"] if agent == "codex" else request["headers"].get(SESSION_HEADER[agent])


def main_requests(server: ModelServer, agent: str, native_id: str) -> list[dict[str, Any]]:
    """The answered requests of one native session's conversation turns (not title calls, which have no tools)."""
    return [r for r in server.answered() if named(agent, r) == native_id and r["tools"]]


def session_of(server: ModelServer, agent: str, token: str) -> set[str]:
    """The native sessions the requests carrying ``token`` in their last user message named."""
    return {named(agent, r) for r in server.requests if token in (r.get("user") or "")}


def price(requests: int) -> float:
    return round(requests * (INPUT_TOKENS * PRICE_IN + OUTPUT_TOKENS * PRICE_OUT) / 1e6, 6)


@pytest.mark.parametrize("agent", AGENTS)
def test_a_run_resumed_in_a_plain_directory_records_exactly_what_the_agent_did(agent, agents, cli):
    work = agents.plain_dir("plain")
    token = uuid.uuid4().hex[:10]
    sid = cli("launch", agent, "-p", f"Reply with pong {token} [[mock:hold={token}]]", "--cwd", str(work),
              "--name", f"e2e-{agent}", "--timeout", "150s").stdout.strip()
    assert cli.json("status", sid)["status"] == "running"  # the model answers once the test releases it
    agents.server.release(token)
    status = stopped(cli, sid)
    assert (status["stop_reason"], status["exit_code"], status["stop_note"]) == ("exited", 0, None), status
    facts = status["agent"]
    native = facts["native_session_id"]
    assert session_of(agents.server, agent, token) == {native}
    assert facts["native_id_source"] == ("pinned" if agent == "claude-code" else "stream")
    turns = main_requests(agents.server, agent, native)
    assert len(turns) >= 1
    assert facts["model"].split("/")[-1] == turns[-1]["model"]
    assert (facts["tokens_in"], facts["tokens_out"]) == (INPUT_TOKENS * len(turns), OUTPUT_TOKENS * len(turns))
    assert facts["conversation"]["tokens_in"] == facts["tokens_in"]
    _check_cost(agent, facts, len(turns))
    _check_title(agent, facts, agents.server, native)
    messages = cli.json_lines("logs", sid)
    assert any(m["role"] == "user" and token in m["text"] for m in messages), messages
    assert any(m["role"] == "assistant" and m["text"] == turns[-1]["reply"] for m in messages), messages

    again = cli("resume", sid, f"And once more {token}-2", "--timeout", "150s").stdout.strip()
    resumed = stopped(cli, again)
    assert (resumed["stop_reason"], resumed["exit_code"], resumed["resumed_from"]) == ("exited", 0, sid)
    more = resumed["agent"]
    assert more["native_session_id"] == native and session_of(agents.server, agent, f"{token}-2") == {native}
    later = main_requests(agents.server, agent, native)[len(turns):]
    assert len(later) >= 1
    assert (more["tokens_in"], more["tokens_out"]) == (INPUT_TOKENS * len(later), OUTPUT_TOKENS * len(later))
    assert (more["conversation"]["tokens_in"], more["conversation"]["tokens_out"]) == (
        INPUT_TOKENS * (len(turns) + len(later)), OUTPUT_TOKENS * (len(turns) + len(later)))
    if agent != "codex":  # Codex records no cost
        assert more["conversation"]["cost"] == pytest.approx(facts["cost"] + more["cost"], abs=1e-6)
    texts = [m["text"] for m in cli.json_lines("logs", again)]
    assert any(f"{token}-2" in text for text in texts) and any(later[-1]["reply"] == text for text in texts)


def _check_cost(agent: str, facts: dict[str, Any], turns: int) -> None:
    if agent == "codex":
        assert facts["cost"] is None  # Codex keeps no cost
    elif agent == "claude-code":
        assert facts["cost"] > 0  # from Claude Code's own price list
    else:
        assert facts["cost"] == pytest.approx(price(turns), abs=1e-6)  # from the prices in the agent's config
    assert facts["conversation"]["cost"] == facts["cost"]


def _check_title(agent: str, facts: dict[str, Any], server: ModelServer, native: str) -> None:
    if agent == "claude-code":
        assert facts["title"] == "e2e-claude-code"  # launch --name becomes Claude Code's own title
    elif agent == "opencode":  # opencode asks the model for a title, in a request without tools
        titles = [r["reply"] for r in server.answered() if named(agent, r) == native and not r["tools"]]
        assert titles and facts["title"] == titles[0]
    else:
        assert facts["title"] is None  # Codex and pi keep no title unless a person names the session


@pytest.mark.parametrize("agent", AGENTS)
def test_a_model_error_gives_the_agents_own_exit_code_and_final_message(agent, agents, cli):
    work = agents.plain_dir("failing")
    sid = cli("launch", agent, "-p", "this fails [[mock:status=401]]", "--cwd", str(work),
              "--timeout", "150s").stdout.strip()
    status = stopped(cli, sid)
    code, message = ON_401[agent]
    assert (status["stop_reason"], status["exit_code"]) == ("exited", code), status
    assert status["stop_note"] == message.format(url=agents.server.url)
    assert cli("verify").returncode == 0


@pytest.mark.parametrize("agent", AGENTS)
def test_two_sessions_launched_back_to_back_in_one_directory_never_share_a_native_session(agent, agents, cli):
    work = agents.plain_dir("shared")
    for attempt in range(10):
        tokens = [f"pair{attempt}-{side}-{uuid.uuid4().hex[:8]}" for side in "ab"]
        first = cli("launch", agent, "-p", f"Reply {tokens[0]}", "--cwd", str(work), "--timeout", "150s").stdout
        time.sleep(0.3)
        second = cli("launch", agent, "-p", f"Reply {tokens[1]}", "--cwd", str(work), "--timeout", "150s").stdout
        natives = []
        for sid, token in zip((first.strip(), second.strip()), tokens):
            facts = stopped(cli, sid)["agent"]
            assert session_of(agents.server, agent, token) == {facts["native_session_id"]}, (attempt, token)
            natives.append(facts["native_session_id"])
            texts = [m["text"] for m in cli.json_lines("logs", sid)]
            assert any(token in text for text in texts), (attempt, texts)
            assert not any(other in text for text in texts for other in tokens if other != token)
        assert natives[0] != natives[1]


@pytest.mark.parametrize("agent", AGENTS)
def test_an_agent_started_by_hand_is_discovered_adopted_and_its_facts_kept_current(agent, agents, cli):
    from agentledger.adapters import registry

    work = agents.plain_dir("by-hand")
    token = uuid.uuid4().hex[:10]
    plan = registry.get(agent).build_launch(_request(work))
    prompt = work.parent / f"{token}.txt"
    prompt.write_text(f"Take your time {token} [[mock:hold={token}]]")  # it runs until the test has adopted it
    with open(prompt, "rb") as stdin:  # as a shell starts it: PWD is where it runs (opencode's project directory)
        process = subprocess.Popen(plan.argv, cwd=work, env={**os.environ, "PWD": str(work)}, stdin=stdin,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        found = wait_for(lambda: [c for c in cli.json_lines("discover", "--under", str(work))
                                  if c["pid"] == process.pid], timeout=DEADLINE)
        assert found[0]["adapter"] == agent
        sid = cli("adopt", str(process.pid)).stdout.split()[0]
        agents.server.release(token)
        assert process.wait(timeout=DEADLINE) == 0
        cli("reconcile")
        status = stopped(cli, sid)
    finally:
        if process.poll() is None:
            process.kill()
    assert status["stop_reason"] == "reconciled" and status["source"] == "adopted"
    facts = status["agent"]
    native = facts["native_session_id"]
    assert session_of(agents.server, agent, token) == {native}
    turns = main_requests(agents.server, agent, native)
    assert (facts["tokens_in"], facts["tokens_out"]) == (INPUT_TOKENS * len(turns), OUTPUT_TOKENS * len(turns))
    watched = [r for r in cli.json_lines("history", sid) if r["type"] == "AgentObserved"
               and r["fields"]["source"] == f"reconciler:adapter:{agent}"]
    assert watched, "the facts after the adoption were read by whoever reconciles the session"


def _request(work: Path) -> Any:
    from agentledger.adapters.base import LaunchRequest

    return LaunchRequest(session_id=uuid.uuid4().hex, cwd=str(work), prompt_path=None)
