"""Agents started elsewhere (``discover``, ``adopt``) and conversations continued (``resume``).

The agents are stand-ins first on PATH (``claude``, ``codex``, ``opencode``: one
small Python script) that log each call's argv, stdin and cwd, write their
agent's native files under the test's HOME in the real layout
(docs/adapters.md), continue a native session when given the agent's own
resume flag, and then sleep for ``FAKE_SLEEP`` seconds. With ``FAKE_CHILD=1`` the
agent runs as a wrapper around a second copy of itself, as ``node
/usr/bin/codex`` runs the native ``codex``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import stand_in_agents, wait_for
from console_server import console_client

STAND_IN = r'''#!{python}
import glob, json, os, re, subprocess, sys, time, uuid
name = os.path.basename(sys.argv[0])
if os.environ.get("FAKE_CHILD") == "1":
    child = subprocess.Popen(sys.argv, env=dict(os.environ, FAKE_CHILD="0"))
    sys.exit(child.wait())
stdin = sys.stdin.read() if not sys.stdin.isatty() else ""
with open(os.path.join(os.environ["FAKE_RECORD_DIR"], name + ".calls.jsonl"), "a") as f:
    f.write(json.dumps({{"argv": sys.argv, "stdin": stdin, "cwd": os.getcwd()}}) + "\n")
home, cwd, now = os.environ["HOME"], os.getcwd(), time.time()
iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % (int(t * 1000) % 1000)
def append(path, *objs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
        for obj in objs:
            f.write(json.dumps(obj) + "\n")
def after(flag):
    return sys.argv[sys.argv.index(flag) + 1] if flag in sys.argv else None
if name == "claude":
    sid = after("--session-id") or after("--resume")
    path = os.path.join(home, ".claude", "projects", re.sub(r"[^A-Za-z0-9]", "-", cwd), sid + ".jsonl")
    base = {{"sessionId": sid, "cwd": cwd, "version": "2.1.0"}}
    turn = uuid.uuid4().hex[:8]
    append(path,
           dict(base, type="user", uuid="u" + turn, timestamp=iso(now), message={{"role": "user", "content": stdin}}),
           dict(base, type="assistant", uuid="a" + turn, timestamp=iso(now + 0.1),
                message={{"id": "msg_" + turn, "role": "assistant", "model": "claude-sonnet-4-5",
                         "usage": {{"input_tokens": 100, "output_tokens": 10}},
                         "content": [{{"type": "text", "text": "ok"}}]}}))
elif name == "codex":
    if "resume" in sys.argv:
        sid = after("resume")
        [path] = glob.glob(os.path.join(home, ".codex", "sessions", "*", "*", "*", "rollout-*-%s.jsonl" % sid))
        total = 2
    else:
        sid = str(uuid.uuid4())
        path = os.path.join(home, ".codex", "sessions", time.strftime("%Y/%m/%d", time.localtime(now)),
                            "rollout-%s-%s.jsonl" % (time.strftime("%Y-%m-%dT%H-%M-%S", time.localtime(now)), sid))
        append(path, {{"timestamp": iso(now), "type": "session_meta",
                      "payload": {{"id": sid, "timestamp": iso(now), "cwd": cwd}}}},
               {{"timestamp": iso(now), "type": "turn_context", "payload": {{"cwd": cwd, "model": "gpt-5-codex"}}}})
        total = 1
    append(path, {{"timestamp": iso(now + 0.1), "type": "event_msg", "payload": {{"type": "token_count", "info": {{
        "total_token_usage": {{"input_tokens": 1000 * total, "output_tokens": 100 * total}}}}}}}})
elif name == "opencode":  # the legacy JSON tree: one file per session and per message
    storage = os.path.join(home, ".local", "share", "opencode", "storage")
    sid = after("--session") or "ses_" + uuid.uuid4().hex[:12]
    ms = int(now * 1000)
    def write(path, obj):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(obj, f)
    if "--session" not in sys.argv:
        write(os.path.join(storage, "session", "global", sid + ".json"),
              {{"id": sid, "directory": cwd, "title": "t", "time": {{"created": ms, "updated": ms}}}})
    turn = "msg_" + uuid.uuid4().hex[:8]
    write(os.path.join(storage, "message", sid, turn + ".json"),
          {{"id": turn, "sessionID": sid, "role": "assistant", "modelID": "m", "providerID": "p", "cost": 0.5,
            "tokens": {{"input": 100, "output": 10}}, "time": {{"created": ms, "completed": ms + 1}}}})
time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
'''

FAST = ("--fuse-ttl", "1.5")


@pytest.fixture
def agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stand-ins first on PATH and a private HOME; returns the directory their calls are logged in."""
    return stand_in_agents(tmp_path, monkeypatch, STAND_IN)


@pytest.fixture
def outside(tmp_path: Path, agents: Path):
    """Start stand-in agents as a user would in a terminal, not through agentledger; all killed at the end."""
    started: list[subprocess.Popen] = []

    def start(binary: str, *args: str, cwd: Path, child: bool = False) -> subprocess.Popen:
        cwd.mkdir(exist_ok=True)
        env = dict(os.environ, FAKE_SLEEP="60", FAKE_CHILD="1" if child else "0")
        process = subprocess.Popen([str(tmp_path / "bin" / binary), *args], cwd=cwd, env=env,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        started.append(process)
        wait_for(lambda: any(call["cwd"] == str(cwd) for call in calls(agents, binary)), timeout=60)
        return process

    yield start
    for process in started:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def calls(records: Path, binary: str) -> list[dict]:
    path = records / f"{binary}.calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def stopped(cli, sid: str) -> dict:
    return wait_for(lambda: (s := cli.json("status", sid))["status"] == "stopped" and s, timeout=30)


def as_uuid(hex_id: str) -> str:
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"


# -- discover and adopt ----------------------------------------------------------------------------------


def test_an_agent_started_elsewhere_is_discovered_adopted_and_stopped_by_the_reconciler(cli, agents, outside,
                                                                                           tmp_path):
    native = "6f1e2d3c-0000-4000-8000-000000000001"
    work = tmp_path / "work"
    agent = outside("claude", "--print", "--session-id", native, cwd=work)
    monkeypatch_sleep = dict(os.environ, FAKE_SLEEP="60")
    launched = subprocess.run([sys.executable, "-m", "agentledger", "launch", "claude-code", "-p", "mine",
                               "--cwd", str(work), *FAST], capture_output=True, text=True, check=True,
                              env=monkeypatch_sleep).stdout.strip()
    wait_for(lambda: cli.json("status", launched)["agent"]["native_session_id"], timeout=60)

    found = cli.json_lines("discover", "--under", str(tmp_path))  # other tests' agents may be running
    assert [(c["pid"], c["adapter"], c["cwd"], c["native_session_id"]) for c in found] == [
        (agent.pid, "claude-code", str(work), native)]  # not the session agentledger launched
    assert str(agent.pid) in cli("discover").stdout
    assert cli.json_lines("discover", "--under", str(tmp_path / "bin")) == []

    sid = cli("adopt", str(agent.pid), "--name", "from-a-terminal").stdout.strip()
    status = cli.json("status", sid)
    assert (status["source"], status["pid"], status["supervisor_pid"], status["name"]) == (
        "adopted", agent.pid, None, "from-a-terminal")
    assert (status["status"], status["fuse"]["state"]) == ("unwatched", "none")  # no fuse unless asked for
    assert status["agent"]["native_session_id"] == native and status["agent"]["tokens_in"] == 100
    assert status["argv"][-3:] == ["--print", "--session-id", native]
    assert "adopted" in cli("status", sid).stdout

    again = cli("adopt", str(agent.pid), check=False)
    assert again.returncode == 1 and f"already tracked, by session {sid}" in again.stderr
    assert cli.json_lines("discover", "--under", str(tmp_path)) == []

    cli("reconcile")
    assert cli.json("status", sid)["status"] == "unwatched"  # alive: nothing to decide
    os.killpg(agent.pid, signal.SIGKILL)
    agent.wait()
    cli("reconcile")
    status = cli.json("status", sid)
    assert (status["status"], status["stop_reason"], status["exit_code"]) == ("stopped", "reconciled", None)
    why = cli.json("why", sid)
    assert why["source"] == "adopted"
    assert "adopted" in cli("why", sid).stdout
    assert "adopted" in cli.json_lines("history", sid)[0]["summary"]
    assert "ok: every check passed" in cli("verify").stdout
    cli("stop", launched, "--force")


@pytest.mark.sqlite_only
def test_adopt_all_takes_each_agent_once_and_a_wrapper_with_its_child_is_one_agent(cli, agents, outside, tmp_path):
    wrapper = outside("codex", "exec", "--json", "-", cwd=tmp_path / "a", child=True)
    claude = outside("claude", "--print", "--session-id", "6f1e2d3c-0000-4000-8000-000000000002",
                     cwd=tmp_path / "b")
    found = cli.json_lines("discover", "--under", str(tmp_path))
    assert sorted((c["pid"], c["adapter"]) for c in found) == sorted(
        [(wrapper.pid, "codex"), (claude.pid, "claude-code")])
    codex = next(c for c in found if c["adapter"] == "codex")
    assert codex["native_session_id"] and codex["cwd"] == str(tmp_path / "a")

    adopted = cli.json_lines("adopt", "--all", "--under", str(tmp_path), "--group", "night", "--fuse-ttl", "1h")
    assert sorted(a["pid"] for a in adopted) == sorted([wrapper.pid, claude.pid])
    listed = cli.json_lines("list", "--group", "night")
    assert sorted(s["pid"] for s in listed) == sorted([wrapper.pid, claude.pid])
    assert all(s["fuse"]["state"] == "set" and s["status"] == "running" for s in listed)
    assert cli.json_lines("discover", "--under", str(tmp_path)) == []
    result = cli("adopt", "--all", "--under", str(tmp_path))
    assert result.returncode == 0 and "no agent processes to adopt" in result.stderr


@pytest.mark.sqlite_only
@pytest.mark.parametrize("args, message", [
    (["999999999"], "invalid PID '999999999' (a whole number from 1 to 4194304)"),
    (["4194303"], "no process 4194303"),
    (["0"], "invalid PID"),
    (["abc"], "invalid PID"),
    ([], "one of the arguments"),
    (["1", "--all"], "not allowed with"),
    (["--adapter", "nope", "1"], "unknown adapter 'nope'"),
    (["--fuse-ttl", "soon", "1"], "invalid duration"),
    (["--fuse-ttl", "30ms", "1"], "--fuse-ttl 30ms is below the 250ms floor"),
    (["--all", "--fuse-ttl", "0.1"], "--fuse-ttl 100ms is below the 250ms floor"),
    (["--under", "/", "1"], "give it with --all"),
    (["--all", "--under", "/no/such/dir"], "is not a directory"),
])
def test_adopt_refuses_bad_input_with_one_line(cli, args, message):
    result = cli("adopt", *args, check=False)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.sqlite_only
def test_a_process_that_is_not_an_agent_is_adopted_only_when_asked(cli, spawn):
    process = spawn("sleep", "60")
    refused = cli("adopt", str(process.pid), check=False)
    assert refused.returncode == 2 and "(sleep) is not an agent" in refused.stderr
    sid = cli("adopt", str(process.pid), "--adapter", "command").stdout.strip()
    assert cli.json("status", sid)["adapter"] == "command"


# -- resume ----------------------------------------------------------------------------------------------------


def test_resume_continues_the_claude_conversation_in_a_new_linked_session(cli, agents, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    first = cli("launch", "claude-code", "-p", "start the refactor", "--cwd", str(work), "--group", "g",
                *FAST).stdout.strip()
    stopped(cli, first)
    native = as_uuid(first)

    second = cli("resume", first[:10], "-now finish it", *FAST).stdout.strip()
    status = stopped(cli, second)
    call = calls(agents, "claude")[-1]
    assert call["argv"][1:] == ["--print", "--output-format", "stream-json", "--verbose", "--resume", native]
    assert (call["stdin"], call["cwd"]) == ("-now finish it", str(work))
    assert (status["resumed_from"], status["adapter"], status["cwd"], status["group"]) == (
        first, "claude-code", str(work), "g")
    assert status["agent"]["native_session_id"] == native
    agent = status["agent"]
    assert (agent["tokens_in"], agent["tokens_out"]) == (100, 10)  # this run's turn
    assert (agent["conversation"]["tokens_in"], agent["conversation"]["tokens_out"]) == (200, 20)  # both turns
    assert agent["native_id_source"] == "resumed"
    assert status["stop_reason"] == "exited" and status["exit_code"] == 0
    assert f"Resumed from    {first}" in cli("status", second).stdout

    assert f"resumed from {first[:12]}" in cli.json_lines("history", second)[0]["summary"]
    assert cli.json("why", second)["resumed_from"] == first
    assert cli.json("why", first)["resumed_by"] == [second]
    assert "Resumed by" in cli("why", first).stdout and second in cli("why", first).stdout
    with console_client() as console:  # the web console links the two both ways
        assert f'Resumed by <a href="/s/{second}">' in console.get(f"/s/{first}").text
        assert f'Resumes <a href="/s/{first}">' in console.get(f"/s/{second}").text


@pytest.mark.sqlite_only
@pytest.mark.parametrize("agent, binary, resume_argv, tokens", [
    ("codex", "codex", ["exec", "--json", "--skip-git-repo-check", "resume", "{native}", "-"], (1000, 100)),
    ("opencode", "opencode", ["run", "--session", "{native}", "--format", "json"], (100, 10)),
])
def test_resume_continues_codex_and_opencode_sessions_in_place(cli, agents, tmp_path, agent, binary, resume_argv,
                                                               tokens):
    work = tmp_path / "work"
    work.mkdir()
    first = cli("launch", agent, "-p", "one", "--cwd", str(work), *FAST).stdout.strip()
    native = stopped(cli, first)["agent"]["native_session_id"]
    assert native
    second = cli("resume", first, "two", *FAST).stdout.strip()
    status = stopped(cli, second)
    call = calls(agents, binary)[-1]
    assert call["argv"][1:] == [arg.format(native=native) for arg in resume_argv]
    assert (call["stdin"], call["cwd"]) == ("two", str(work))
    assert status["resumed_from"] == first and status["agent"]["native_session_id"] == native
    agent = status["agent"]
    assert (agent["tokens_in"], agent["tokens_out"]) == tokens  # this run's turn
    assert (agent["conversation"]["tokens_in"], agent["conversation"]["tokens_out"]) == (2 * tokens[0], 2 * tokens[1])


@pytest.mark.sqlite_only
def test_resume_refuses_what_cannot_be_resumed(cli, agents, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    plain = cli.launch("true")
    stopped(cli, plain)
    result = cli("resume", plain, "more", check=False)
    assert result.returncode == 2 and "ran a plain command" in result.stderr

    monkeypatch.setenv("FAKE_SLEEP", "30")
    running = cli("launch", "claude-code", "-p", "go", "--cwd", str(work), *FAST).stdout.strip()
    wait_for(lambda: cli.json("status", running)["agent"]["native_session_id"], timeout=60)
    result = cli("resume", running, "more", check=False)
    assert result.returncode == 1 and "is still running" in result.stderr and "stop it first" in result.stderr
    cli("stop", running, "--force")
    stopped(cli, running)
    for args, message in [((running,), "needs one message"), ((running, ""), "the message is empty"),
                          (("0123456789abcdef", "x"), "no session"),
                          ((running, "x", "--message-file", str(tmp_path / "missing")), "needs one message"),
                          ((running, "--message-file", str(tmp_path / "missing")), "No such file")]:
        result = cli("resume", *args, check=False)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1

    monkeypatch.setenv("FAKE_SLEEP", "0")
    monkeypatch.setenv("PATH", os.environ["PATH"].split(os.pathsep, 1)[1])  # no stand-ins: nothing native written
    never = cli("launch", "--adapter", "claude-code", "--", "true").stdout.strip()
    stopped(cli, never)
    result = cli("resume", never, "more", check=False)
    assert result.returncode == 2 and "never found the agent's own session" in result.stderr
