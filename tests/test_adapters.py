"""Agent adapters: launch command lines, prompts on stdin, facts from native storage, failed-login exits.

Each agent is played by a stand-in executable put first on PATH (``opencode``,
``claude``, ``codex``: a small Python script) that records its argv and stdin,
prints its agent's stream format, writes its agent's native files under the
test's HOME in the real on-disk layout (docs/adapters.md), and exits with the
code the test asks for.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from conftest import stand_in_agents, wait_for

FAKE_AGENT = r'''#!{python}
import json, os, sys, time, uuid, re
name = os.path.basename(sys.argv[0])
record_dir = os.environ["FAKE_RECORD_DIR"]
stdin = sys.stdin.buffer.read()
with open(os.path.join(record_dir, name + ".stdin"), "wb") as f:
    f.write(stdin)
with open(os.path.join(record_dir, name + ".argv.json"), "w") as f:
    json.dump({{"argv": sys.argv, "cwd": os.getcwd()}}, f)
if os.environ.get("FAKE_MODE") == "login":
    print("Starting up...", flush=True)
    sys.stderr.write("Error: Invalid API key - please run /login\n")
    sys.stderr.write("see the docs for help\n")
    sys.exit(1)
home = os.environ["HOME"]
cwd = os.getcwd()
now = time.time()
ms = int(now * 1000)
iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % (int(t * 1000) % 1000)
def write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)
def append(path, *objs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
        for obj in objs:
            f.write(json.dumps(obj) + "\n")
if name == "opencode":
    storage = os.path.join(home, ".local", "share", "opencode", "storage")
    sid = "ses_fake0001"
    write(os.path.join(storage, "session", "global", sid + ".json"),
          {{"id": sid, "projectID": "global", "directory": cwd, "title": "Fix the flaky test",
            "version": "0.15.0", "time": {{"created": ms, "updated": ms + 500}}}})
    write(os.path.join(storage, "message", sid, "msg_001.json"),
          {{"id": "msg_001", "sessionID": sid, "role": "user", "time": {{"created": ms}}}})
    write(os.path.join(storage, "message", sid, "msg_002.json"),
          {{"id": "msg_002", "sessionID": sid, "role": "assistant", "time": {{"created": ms + 100, "completed": ms + 900}},
            "modelID": "claude-sonnet-4", "providerID": "anthropic", "cost": 0.0123,
            "tokens": {{"input": 1200, "output": 340, "reasoning": 10, "cache": {{"read": 100, "write": 0}}}}}})
    write(os.path.join(storage, "part", "msg_002", "prt_001.json"),
          {{"id": "prt_001", "messageID": "msg_002", "sessionID": sid, "type": "text", "text": "done"}})
    print(json.dumps({{"type": "text", "sessionID": sid, "part": {{"type": "text", "text": "done"}}}}), flush=True)
elif name == "claude":
    sid = sys.argv[sys.argv.index("--session-id") + 1]
    model = sys.argv[sys.argv.index("--model") + 1] if "--model" in sys.argv else "claude-sonnet-4-5"
    path = os.path.join(home, ".claude", "projects", re.sub(r"[^A-Za-z0-9]", "-", cwd), sid + ".jsonl")
    base = {{"sessionId": sid, "cwd": cwd, "version": "2.0.0", "isSidechain": False, "userType": "external"}}
    append(path,
           dict(base, type="user", uuid="u1", timestamp=iso(now), message={{"role": "user", "content": "hi"}}),
           dict(base, type="assistant", uuid="a1", timestamp=iso(now + 0.1),
                message={{"id": "msg_A", "role": "assistant", "model": model,
                         "usage": {{"input_tokens": 10, "cache_creation_input_tokens": 200,
                                   "cache_read_input_tokens": 1000, "output_tokens": 5}}}}),
           dict(base, type="assistant", uuid="a2", timestamp=iso(now + 0.2),
                message={{"id": "msg_A", "role": "assistant", "model": model,
                         "usage": {{"input_tokens": 10, "cache_creation_input_tokens": 200,
                                   "cache_read_input_tokens": 1000, "output_tokens": 50}}}}),
           {{"type": "summary", "summary": "Refactor the parser", "leafUuid": "a2"}})
    print(json.dumps({{"type": "system", "subtype": "init", "session_id": sid, "model": model}}), flush=True)
    print(json.dumps({{"type": "result", "subtype": "success", "is_error": False, "session_id": sid,
                      "total_cost_usd": 0.0456, "result": "done"}}), flush=True)
elif name == "codex":
    sid = "0199a213-81c0-7800-8aa1-bbab2a035a53"
    day = time.strftime("%Y/%m/%d", time.localtime(now))
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.localtime(now))
    path = os.path.join(home, ".codex", "sessions", day, "rollout-%s-%s.jsonl" % (stamp, sid))
    append(path,
           {{"timestamp": iso(now), "type": "session_meta",
             "payload": {{"id": sid, "timestamp": iso(now), "cwd": cwd, "originator": "codex_exec",
                         "cli_version": "0.50.0", "instructions": None}}}},
           {{"timestamp": iso(now + 0.1), "type": "turn_context",
             "payload": {{"cwd": cwd, "approval_policy": "never", "model": "gpt-5-codex"}}}},
           {{"timestamp": iso(now + 0.2), "type": "event_msg", "payload": {{"type": "token_count", "info": None}}}},
           {{"timestamp": iso(now + 0.3), "type": "event_msg",
             "payload": {{"type": "token_count", "info": {{"total_token_usage": {{
                 "input_tokens": 5000, "cached_input_tokens": 4000, "output_tokens": 700,
                 "reasoning_output_tokens": 300, "total_tokens": 5700}}}}}}}})
    print(json.dumps({{"type": "thread.started", "thread_id": sid}}), flush=True)
time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
'''


@pytest.fixture
def agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stand-ins for opencode, claude and codex first on PATH; a private HOME; returns where they record."""
    return stand_in_agents(tmp_path, monkeypatch, FAKE_AGENT)


def stopped(cli, sid: str) -> dict:
    return wait_for(lambda: (s := cli.json("status", sid))["status"] == "stopped" and s, timeout=30)


def recorded(records: Path, binary: str) -> tuple[list[str], bytes]:
    argv = json.loads((records / f"{binary}.argv.json").read_text())["argv"]
    return argv, (records / f"{binary}.stdin").read_bytes()


FAST = ("--fuse-ttl", "1.5")  # heartbeats (and native-storage reads) every 0.5 s


# -- launch, observe, stop: one test per agent ----------------------------------------------------------


@pytest.mark.sqlite_only
def test_opencode_runs_with_the_prompt_on_stdin_and_its_facts_are_recorded(cli, agents, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    prompt = "-rf is not a flag here: fix the flaky test"
    sid = cli("launch", "opencode", "-p", prompt, "--model", "anthropic/claude-sonnet-4", "--cwd", str(work),
              "--group", "batch-1", *FAST).stdout.strip()
    status = stopped(cli, sid)
    argv, stdin = recorded(agents, "opencode")
    assert argv[1:] == ["run", "--format", "json", "--model", "anthropic/claude-sonnet-4"]
    assert stdin == prompt.encode()
    assert not any(prompt in arg for arg in argv)
    assert status["stop_reason"] == "exited" and status["exit_code"] == 0 and status["stop_note"] is None
    assert status["adapter"] == "opencode" and status["group"] == "batch-1"
    assert status["agent"] == {
        "native_session_id": "ses_fake0001", "native_id_source": "stream", "model": "anthropic/claude-sonnet-4",
        "title": "Fix the flaky test", "tokens_in": 1300, "tokens_out": 350, "cost": 0.0123,
        "conversation": {"tokens_in": 1300, "tokens_out": 350, "cost": 0.0123},
        "last_activity_at": status["agent"]["last_activity_at"],
    }
    assert status["agent"]["last_activity_at"] is not None
    text = cli("status", sid).stdout
    assert "ses_fake0001" in text and "1300 in, 350 out" in text and "$0.0123" in text and "Fix the flaky test" in text


def test_claude_code_pins_its_session_id_and_reports_tokens_and_cost(cli, agents, tmp_path):
    work = tmp_path / "my.project"
    work.mkdir()
    sid = cli("launch", "claude-code", "-p", "--help me", "--model", "opus", "--cwd", str(work), *FAST).stdout.strip()
    status = stopped(cli, sid)
    argv, stdin = recorded(agents, "claude")
    native = f"{sid[:8]}-{sid[8:12]}-{sid[12:16]}-{sid[16:20]}-{sid[20:]}"
    assert argv[1:] == ["--print", "--output-format", "stream-json", "--verbose", "--session-id", native,
                        "--model", "opus"]
    assert stdin == b"--help me"
    agent = status["agent"]
    # msg_A appears twice (streamed): its last usage counts once; input = input + cache creation + cache read
    assert (agent["native_session_id"], agent["model"], agent["title"]) == (native, "opus", "Refactor the parser")
    assert (agent["tokens_in"], agent["tokens_out"], agent["cost"]) == (1210, 50, 0.0456)
    assert status["exit_code"] == 0


@pytest.mark.sqlite_only
def test_codex_gets_a_one_megabyte_prompt_on_stdin(cli, agents, tmp_path):
    big = tmp_path / "prompt.txt"
    prompt = ("-" + "x" * 1023 + "\n") * 1024  # 1 MB, starting with '-': argv could carry neither
    big.write_text(prompt)
    sid = cli("launch", "codex", "--prompt-file", str(big), "--cwd", str(tmp_path), *FAST).stdout.strip()
    status = stopped(cli, sid)
    argv, stdin = recorded(agents, "codex")
    assert argv[1:] == ["exec", "--json", "--skip-git-repo-check", "-C", str(tmp_path), "-"]
    assert stdin == prompt.encode()
    assert sum(len(a) for a in argv) < 1000
    agent = status["agent"]
    assert agent["native_session_id"] == "0199a213-81c0-7800-8aa1-bbab2a035a53"
    assert (agent["model"], agent["tokens_in"], agent["tokens_out"], agent["cost"]) == ("gpt-5-codex", 5000, 700, None)
    assert status["prompt"].startswith("-xxx") and "bytes in all" in status["prompt"]  # the event keeps a preview
    prompt_file = Path(os.environ["AGENTLEDGER_HOME"]) / "prompts" / f"{sid}.txt"
    assert stat.S_IMODE(prompt_file.stat().st_mode) == 0o600


@pytest.mark.parametrize("agent,binary", [("opencode", "opencode"), ("claude-code", "claude"), ("codex", "codex")])
@pytest.mark.sqlite_only
def test_a_login_failure_is_recorded_as_a_failed_exit_with_its_error_line(cli, agents, monkeypatch, agent, binary):
    monkeypatch.setenv("FAKE_MODE", "login")
    sid = cli("launch", agent, "-p", "hello", *FAST).stdout.strip()
    status = stopped(cli, sid)
    assert (status["stop_reason"], status["exit_code"]) == ("exited", 1)
    assert status["stop_note"] == "Error: Invalid API key - please run /login"
    assert "Note" in cli("status", sid).stdout and "Invalid API key" in cli("status", sid).stdout
    assert "Invalid API key" in cli("why", sid).stdout


def test_a_login_failure_on_both_backends(cli, agents, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "login")
    sid = cli("launch", "codex", "-p", "hello", *FAST).stdout.strip()
    status = stopped(cli, sid)
    assert (status["stop_reason"], status["exit_code"], status["stop_note"]) == (
        "exited", 1, "Error: Invalid API key - please run /login")
    assert cli("verify", check=False).returncode == 0


@pytest.mark.sqlite_only
def test_a_plain_command_failing_gets_its_failure_note_as_the_note(cli):
    sid = cli.launch("sh", "-c", "echo working; echo 'fatal: repository not found' >&2; echo bye; exit 3")
    status = stopped(cli, sid)
    assert (status["exit_code"], status["stop_note"]) == (3, "fatal: repository not found")
    ok = cli.launch("sh", "-c", "echo 'error: ignored, it succeeded'")
    assert stopped(cli, ok)["stop_note"] is None


@pytest.mark.sqlite_only
def test_activity_in_native_storage_is_recorded_once_and_counts_as_a_heartbeat(cli, agents, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_SLEEP", "2.5")
    sid = cli("launch", "opencode", "-p", "go", "--cwd", str(tmp_path), *FAST).stdout.strip()
    stopped(cli, sid)
    history = cli.json_lines("history", sid)
    observed = [r for r in history if r["type"] == "AgentObserved"]
    assert len(observed) == 1  # the facts did not change again while it ran for 2.5 s more
    beats = [r for r in history if r["type"] == "Heartbeat"]
    assert len(beats) >= 2  # and the supervisor's own heartbeats went on
    assert cli.json("status", sid)["heartbeat_count"] == len(beats) + 1  # the activity counted as one


@pytest.mark.sqlite_only
def test_list_group_filters(cli, agents, tmp_path):
    a = cli("launch", "--group", "g1", "--", "sleep", "30").stdout.strip()
    b = cli("launch", "codex", "-p", "x", "--group", "g2", "--cwd", str(tmp_path)).stdout.strip()
    c = cli("launch", "--", "sleep", "30").stdout.strip()
    try:
        assert [r["id"] for r in cli.json_lines("list", "--all", "--group", "g1")] == [a]
        assert [r["id"] for r in cli.json_lines("list", "--all", "--group", "g2")] == [b]
        assert c in [r["id"] for r in cli.json_lines("list", "--all")]
        assert cli.json_lines("list", "--all", "--group", "none") == []
    finally:
        for sid in (a, c):
            cli("stop", sid, "--force")


@pytest.mark.sqlite_only
def test_files_are_attached_to_the_prompt_within_their_caps(cli, agents, tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("line one\n")
    sid = cli("launch", "opencode", "-p", "read this", "--file", str(notes), "--cwd", str(tmp_path)).stdout.strip()
    stopped(cli, sid)
    _, stdin = recorded(agents, "opencode")
    assert stdin.startswith(b"read this\n\n--- file: ") and b"line one\n--- end of file: " in stdin
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (128 * 1024 + 1))
    result = cli("launch", "opencode", "-p", "x", "--file", str(big), check=False)
    assert result.returncode == 2 and "limit per file" in result.stderr
    parts = []
    for i in range(3):
        part = tmp_path / f"part{i}.txt"
        part.write_bytes(b"y" * (100 * 1024))
        parts += ["--file", str(part)]
    result = cli("launch", "codex", "-p", "x", *parts, check=False)
    assert result.returncode == 2 and "limit for all of them" in result.stderr
    assert cli("launch", "codex", check=False).returncode == 2  # no prompt
    assert cli("launch", "codex", "-p", "x", "stray", check=False).returncode == 2


@pytest.mark.sqlite_only
def test_an_agent_not_installed_is_a_spawn_failure(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    result = cli("launch", "claude-code", "-p", "hi", check=False)
    assert result.returncode == 2 and "cannot launch 'claude'" in result.stderr


@pytest.mark.sqlite_only
def test_adapters_lists_each_agent_and_whether_it_is_on_path(cli, agents, tmp_path, monkeypatch):
    (tmp_path / "bin" / "codex").unlink()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # only the stand-ins, whatever this machine has installed
    rows = {r["name"]: r for r in cli.json_lines("adapters")}
    assert list(rows) == ["command", "opencode", "claude-code", "codex", "pi"]
    assert rows["command"]["default"] and rows["command"]["binary"] is None
    assert rows["opencode"]["found"] and rows["opencode"]["path"] == str(tmp_path / "bin" / "opencode")
    assert rows["claude-code"]["binary"] == "claude" and rows["claude-code"]["found"]
    assert rows["codex"]["found"] is False and rows["codex"]["path"] is None
    assert "not found on PATH" in cli("adapters").stdout


# -- the tail reader --------------------------------------------------------------------------------------


def test_the_tail_reader_reads_only_new_bytes_of_a_200_mb_file(tmp_path):
    from agentledger.adapters.tail import FIRST_READ_LIMIT, read_new_lines

    path = tmp_path / "transcript.jsonl"
    with open(path, "wb") as f:
        f.write(b'{"n": 0}\n')
        f.truncate(200 * 1024 * 1024)  # 200 MB (sparse: instant to make, read like any other bytes)
        f.seek(0, os.SEEK_END)
        f.write(b'\n{"n": 1}\n')
    first = read_new_lines(str(path), None)
    assert first.records == [{"n": 1}] and first.bytes_read <= FIRST_READ_LIMIT
    assert first.cursor["offset"] == path.stat().st_size
    with open(path, "ab") as f:
        f.write(b'{"n": 2}\n{"n": 3')  # the last line is still being written
    second = read_new_lines(str(path), first.cursor)  # only the new bytes: bytes_read says so, not a stopwatch
    assert second.records == [{"n": 2}] and second.bytes_read == len(b'{"n": 2}\n{"n": 3')
    with open(path, "ab") as f:
        f.write(b'}\n')
    third = read_new_lines(str(path), second.cursor)
    assert third.records == [{"n": 3}] and third.bytes_read == len(b'{"n": 3}\n')
    assert read_new_lines(str(path), third.cursor).bytes_read == 0


def test_the_tail_reader_starts_again_on_a_truncated_or_replaced_file(tmp_path):
    from agentledger.adapters.tail import read_new_lines

    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": 2}\nnot json\n')
    first = read_new_lines(str(path), None)
    assert first.records == [{"a": 1}, {"a": 2}] and first.bad_lines == 1 and not first.reset
    path.write_bytes(b'{"b": 1}\n')  # truncated in place, shorter
    second = read_new_lines(str(path), first.cursor)
    assert second.reset and second.records == [{"b": 1}]
    replacement = tmp_path / "new.jsonl"
    replacement.write_bytes(b'{"c": 1}\n{"c": 2}\n{"c": 3}\n')
    os.replace(replacement, path)  # rotated: another inode, even if longer
    third = read_new_lines(str(path), second.cursor)
    assert third.reset and third.records == [{"c": 1}, {"c": 2}, {"c": 3}]
    assert read_new_lines(str(tmp_path / "missing"), None).records == []


def test_a_pass_over_a_200_mb_claude_transcript_reads_only_what_was_appended(tmp_path, monkeypatch):
    from agentledger.adapters.claude_code import ClaudeCodeAdapter, project_dir_name

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    native = "5c0a4a4e-1f7e-4a59-9a39-0c5b7f7f9f01"
    path = tmp_path / ".claude" / "projects" / project_dir_name("/w") / f"{native}.jsonl"
    path.parent.mkdir(parents=True)
    line = json.dumps({"type": "assistant", "sessionId": native, "timestamp": "2026-01-01T00:00:00Z",
                       "message": {"id": "m1", "model": "sonnet", "usage": {"input_tokens": 1, "output_tokens": 2}}})
    with open(path, "wb") as f:
        f.write(b"{}\n")
        f.truncate(200 * 1024 * 1024)
        f.seek(0, os.SEEK_END)
        f.write(b"\n" + line.encode() + b"\n")
    adapter = ClaudeCodeAdapter()
    ref = adapter.find_native_session("/w", 0.0, None, native)
    assert ref is not None and ref.path == str(path)
    facts, cursor = adapter.read_facts(ref, {})
    assert (facts["tokens_in"], facts["tokens_out"], facts["model"]) == (1, 2, "sonnet")
    with open(path, "a") as f:
        f.write(json.dumps({"type": "assistant", "sessionId": native, "timestamp": "2026-01-01T00:00:05Z",
                            "message": {"id": "m2", "model": "sonnet",
                                        "usage": {"input_tokens": 10, "output_tokens": 20}}}) + "\n")
    facts, cursor = adapter.read_facts(ref, cursor)  # from the cursor on: the totals carried, the new line added
    assert (facts["tokens_in"], facts["tokens_out"]) == (11, 22)
    assert facts["last_activity_at"] == 1767225605.0
    assert cursor["tail"]["offset"] == path.stat().st_size


def test_exit_summaries_prefer_an_error_line_and_read_json_errors(tmp_path):
    from agentledger.adapters.base import failure_note

    log = tmp_path / "out.log"
    log.write_text("booting\nwarming up\n")
    assert failure_note(str(log)) == "warming up"  # no error-looking line: the last one
    log.write_text('{"type":"system","subtype":"init"}\n'
                   '{"type":"result","is_error":true,"result":"Invalid API key \\u00b7 Please run /login"}\n')
    assert failure_note(str(log)) == "Invalid API key · Please run /login"
    log.write_text('{"type":"error","message":"stream disconnected: 401 Unauthorized"}\n')
    assert failure_note(str(log)) == "stream disconnected: 401 Unauthorized"
    assert failure_note(str(tmp_path / "none")) is None


# -- the domain event -----------------------------------------------------------------------------------------


def test_agent_observed_records_only_changes_and_activity_extends_the_fuse():
    from datetime import datetime, timedelta, timezone
    from uuid import uuid4

    from agentledger.domain.session import Session

    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    session = Session.launch(
        session_id=uuid4(), argv=["codex"], cwd="/", adapter="codex", name=None, model=None, prompt=None,
        group=None, labels={}, host="h", boot_id="b", pid=1, pid_start_time=1.0, boot_time=0.0,
        supervisor_pid=None, log_path=None, launched_by="t")
    session.set_fuse(ttl=30, set_by="supervisor", now=now)
    assert session.observe_agent(facts={"model": "m", "tokens_in": 5}, heartbeat=False, source="adapter:codex",
                                 now=now)
    assert not session.observe_agent(facts={"model": "m", "tokens_in": 5}, heartbeat=False, source="s", now=now)
    assert session.observe_agent(facts={"model": "m", "tokens_in": 9}, heartbeat=True, source="s",
                                 now=now + timedelta(seconds=20))
    event = session.collect_events()[-1]
    assert (event.model, event.tokens_in, event.heartbeat) == (None, 9, True)
    assert session.fuse_expires_at == now + timedelta(seconds=50)
    assert session.agent_facts == {"model": "m", "tokens_in": 9}
    with pytest.raises(ValueError):
        session.observe_agent(facts={"exit_code": 1}, heartbeat=False, source="s", now=now)


# -- exit summaries from the real agents' failed runs ------------------------------------------------------

#: Lines of real failed runs (opencode 1.18.33, claude 2.1.197, codex-cli 0.169.0; no network, not logged in).
REAL_CLAUDE_OUTPUT = (
    '{"type":"system","subtype":"init","cwd":"/w","session_id":"c1569a57-4785-4fcc-b85a-3aeb4b6a2e8b",'
    '"model":"claude-opus-4-8[1m]","apiKeySource":"none","claude_code_version":"2.1.197"}\n'
    '{"type":"assistant","message":{"id":"0cc3169e-6d81-4bdc-b930-ff212af0569b","model":"<synthetic>",'
    '"role":"assistant","stop_reason":"stop_sequence","type":"message","usage":{"input_tokens":0,"output_tokens":0},'
    '"content":[{"type":"text","text":"Not logged in \u00b7 Please run /login"}]},"parent_tool_use_id":null,'
    '"session_id":"c1569a57-4785-4fcc-b85a-3aeb4b6a2e8b","error":"authentication_failed"}\n'
    '{"type":"result","subtype":"success","is_error":true,"duration_ms":136,"num_turns":1,'
    '"result":"Not logged in \u00b7 Please run /login","session_id":"c1569a57-4785-4fcc-b85a-3aeb4b6a2e8b",'
    '"total_cost_usd":0}\n'
)
REAL_OPENCODE_ERROR = (
    '{"type":"error","timestamp":1795667325667,"sessionID":"ses_de9e40ad6ffeerQnZdua3crXfq","error":'
    '{"name":"APIError","data":{"message":"Cannot connect to API: Unable to connect. Is the computer able to access '
    'the url?","isRetryable":true,"metadata":{"url":"https://opencode.ai/zen/v1/chat/completions"}}}}\n'
)
REAL_CODEX_ERROR = ('{"type":"error","message":"Reconnecting... 2/5 (stream disconnected before completion: '
                    'failed to lookup address information: Name does not resolve)"}\n')


def test_exit_summaries_prefer_the_human_text_of_the_real_agents_failures(tmp_path):
    from agentledger.adapters.base import failure_note

    log = tmp_path / "out.log"
    log.write_text(REAL_CLAUDE_OUTPUT, encoding="utf-8")
    assert failure_note(str(log)) == "Not logged in · Please run /login"  # not "authentication_failed"
    log.write_text(REAL_CLAUDE_OUTPUT.splitlines(keepends=True)[1], encoding="utf-8")  # the assistant line alone
    assert failure_note(str(log)) == "Not logged in · Please run /login"
    log.write_text(REAL_OPENCODE_ERROR)
    assert failure_note(str(log)) == (
        "Cannot connect to API: Unable to connect. Is the computer able to access the url?")
    log.write_text(REAL_CODEX_ERROR)
    assert failure_note(str(log)) == ("Reconnecting... 2/5 (stream disconnected before completion: "
                                          "failed to lookup address information: Name does not resolve)")
    log.write_text('{"type":"turn.failed","error":{"message":"401 Unauthorized"}}\n'
                   '{"type":"error","error":"rate_limited","msg":"slow down"}\n')
    assert failure_note(str(log)) == "401 Unauthorized"
    log.write_text('{"type":"error","error":"rate_limited","msg":"slow down"}\n')
    assert failure_note(str(log)) == "rate_limited"  # a code, when there is no text before it


# -- opencode 1.x: the SQLite store ----------------------------------------------------------------------------

#: opencode 1.18.33's own CREATE TABLE statements for the three tables the adapter reads.
OPENCODE_DDL = """
CREATE TABLE `session` (
          `id` text PRIMARY KEY,
          `project_id` text NOT NULL,
          `workspace_id` text,
          `parent_id` text,
          `slug` text NOT NULL,
          `directory` text NOT NULL,
          `path` text,
          `title` text NOT NULL,
          `version` text NOT NULL,
          `share_url` text,
          `summary_additions` integer,
          `summary_deletions` integer,
          `summary_files` integer,
          `summary_diffs` text,
          `metadata` text,
          `cost` real DEFAULT 0 NOT NULL,
          `tokens_input` integer DEFAULT 0 NOT NULL,
          `tokens_output` integer DEFAULT 0 NOT NULL,
          `tokens_reasoning` integer DEFAULT 0 NOT NULL,
          `tokens_cache_read` integer DEFAULT 0 NOT NULL,
          `tokens_cache_write` integer DEFAULT 0 NOT NULL,
          `revert` text,
          `permission` text,
          `agent` text,
          `model` text,
          `time_created` integer NOT NULL,
          `time_updated` integer NOT NULL,
          `time_compacting` integer,
          `time_archived` integer,
          CONSTRAINT `fk_session_project_id_project_id_fk` FOREIGN KEY (`project_id`) REFERENCES `project`(`id`) ON DELETE CASCADE
        );
CREATE TABLE `message` (
          `id` text PRIMARY KEY,
          `session_id` text NOT NULL,
          `time_created` integer NOT NULL,
          `time_updated` integer NOT NULL,
          `data` text NOT NULL,
          CONSTRAINT `fk_message_session_id_session_id_fk` FOREIGN KEY (`session_id`) REFERENCES `session`(`id`) ON DELETE CASCADE
        );
CREATE TABLE `part` (
          `id` text PRIMARY KEY,
          `message_id` text NOT NULL,
          `session_id` text NOT NULL,
          `time_created` integer NOT NULL,
          `time_updated` integer NOT NULL,
          `data` text NOT NULL,
          CONSTRAINT `fk_part_message_id_message_id_fk` FOREIGN KEY (`message_id`) REFERENCES `message`(`id`) ON DELETE CASCADE
        );
CREATE INDEX `message_session_time_created_id_idx` ON `message` (`session_id`,`time_created`,`id`);
CREATE INDEX `part_message_id_id_idx` ON `part` (`message_id`,`id`);
CREATE INDEX `part_session_idx` ON `part` (`session_id`);
"""
MODEL = '{"id":"big-pickle","providerID":"opencode","variant":"default"}'


def opencode_db(data_home: Path, cwd: str, t0_ms: int, *, wal: bool = True) -> Path:
    """An opencode.db as opencode 1.x writes it: an older session, ours, a sub-agent's, another directory's."""
    import sqlite3

    path = data_home / "opencode" / "opencode.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    if wal:
        db.execute("PRAGMA journal_mode=WAL")
    db.executescript(OPENCODE_DDL)

    def session(sid, directory, created, parent=None, **values):
        row = {"id": sid, "project_id": "global", "parent_id": parent, "slug": "s", "directory": directory,
               "title": f"title of {sid}", "version": "1.18.33", "model": MODEL, "time_created": created,
               "time_updated": created + 10, **values}
        db.execute(f"INSERT INTO session ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))

    session("ses_old", cwd, t0_ms - 60_000)
    session("ses_ours", cwd, t0_ms + 100, title="Fix the flaky test", cost=0.0123, tokens_input=1200,
            tokens_output=340, tokens_reasoning=10, tokens_cache_read=100, tokens_cache_write=5,
            time_updated=t0_ms + 900)
    session("ses_child", cwd, t0_ms + 50, parent="ses_ours")
    session("ses_elsewhere", "/elsewhere", t0_ms + 20)
    messages = [
        ("msg_1", t0_ms + 200, {"role": "user", "time": {"created": t0_ms + 200}},
         [{"type": "text", "text": "Fix the \x1b]0;pwned\x07flaky test\nin tests/"},
          {"type": "text", "text": "<file contents>", "synthetic": True}]),
        ("msg_2", t0_ms + 300, {"role": "assistant", "modelID": "big-pickle", "providerID": "opencode",
                                "cost": 0.0123, "tokens": {"input": 1200, "output": 340, "reasoning": 10,
                                                           "cache": {"read": 100, "write": 5}}},
         [{"type": "reasoning", "text": "hmm"}, {"type": "text", "text": "Running the tests."},
          {"type": "tool", "tool": "bash", "callID": "c1", "state": {"status": "completed"}}]),
        ("msg_3", t0_ms + 400, {"role": "assistant", "error": {"name": "APIError", "data": {
            "message": "Cannot connect to API: Unable to connect."}}}, [{"type": "step-start"}]),
    ]
    for mid, at, data, parts in messages:
        db.execute("INSERT INTO message VALUES (?, 'ses_ours', ?, ?, ?)", (mid, at, at + 5, json.dumps(data)))
        for i, part in enumerate(parts):
            db.execute("INSERT INTO part VALUES (?, ?, 'ses_ours', ?, ?, ?)",
                       (f"prt_{mid}_{i}", mid, at, at + 700 + i, json.dumps(part)))
    db.commit()
    db.close()
    return path


def test_opencode_reads_its_sqlite_store_with_one_read_only_query(tmp_path, monkeypatch):
    from dataclasses import replace

    from agentledger.adapters.opencode import OpencodeAdapter

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    t0 = 1_795_667_260.0
    path = opencode_db(tmp_path / "data", "/w", int(t0 * 1000))
    legacy = tmp_path / "data" / "opencode" / "storage" / "session" / "global"
    legacy.mkdir(parents=True)  # a legacy tree next to the database is ignored
    (legacy / "ses_legacy.json").write_text(json.dumps({"id": "ses_legacy", "directory": "/w", "time": {
        "created": int(t0 * 1000) + 1, "updated": int(t0 * 1000) + 1}}))
    adapter = OpencodeAdapter()
    ref = adapter.find_native_session("/w", t0, None)
    assert ref is not None and (ref.native_session_id, ref.path) == ("ses_ours", str(path))
    assert adapter.find_native_session("/w", t0 + 2.2, None) is None  # ours was created before that (2 s slack)
    assert adapter.find_native_session("/other", 0.0, None, "ses_old").native_session_id == "ses_old"
    before = {p.name: p.read_bytes() for p in path.parent.glob("opencode.db*")}
    facts, cursor = adapter.read_facts(ref, {})
    assert facts == {"native_session_id": "ses_ours", "title": "Fix the flaky test", "model": "opencode/big-pickle",
                     "tokens_in": 1305, "tokens_out": 350, "cost": 0.0123,  # this run: its messages' sums
                     "conversation_tokens_in": 1305, "conversation_tokens_out": 350,  # the row's running totals
                     "conversation_cost": 0.0123,
                     "last_activity_at": (t0 * 1000 + 1100) / 1000}  # the newest part's time_updated
    later = adapter.read_facts(replace(ref, run_since=t0 + 0.35), {})[0]  # a resumed run began after msg_2
    assert (later["tokens_in"], later["tokens_out"], later["cost"]) == (0, 0, 0.0)
    assert later["conversation_tokens_in"] == 1305
    assert json.loads(json.dumps(cursor)) == cursor
    assert {p.name: p.read_bytes() for p in path.parent.glob("opencode.db*")} == before  # nothing written or made


def test_opencode_gives_no_facts_from_a_locked_or_foreign_database(tmp_path, monkeypatch):
    import sqlite3

    from agentledger.adapters.base import NativeRef
    from agentledger.adapters.opencode import OpencodeAdapter

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    path = opencode_db(tmp_path / "data", "/w", 1_000_000, wal=False)
    adapter = OpencodeAdapter()
    ref = NativeRef("ses_ours", str(path))
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")  # opencode in the middle of a write: readers get "database is locked"
    try:
        started = time.perf_counter()
        assert adapter.read_facts(ref, {"kept": 1}) == ({}, {"kept": 1})
        assert adapter.find_native_session("/w", 0.0, None) is None
        assert adapter.recent_messages(ref, 5) == []
        assert time.perf_counter() - started < 3
    finally:
        writer.execute("ROLLBACK")
    assert adapter.read_facts(ref, {})[0]["title"] == "Fix the flaky test"
    writer.execute("DROP TABLE part")  # another schema
    writer.close()
    assert adapter.read_facts(ref, {}) == ({}, {})
    path.write_bytes(b"not a database at all" * 100)
    assert adapter.read_facts(ref, {}) == ({}, {})


def test_opencode_without_a_database_reads_the_legacy_tree(tmp_path, monkeypatch):
    from agentledger.adapters.opencode import OpencodeAdapter

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    storage = tmp_path / "data" / "opencode" / "storage"
    t0 = 1_795_667_260_000

    def write(relative, obj):
        (storage / relative).parent.mkdir(parents=True, exist_ok=True)
        (storage / relative).write_text(json.dumps(obj))

    write("session/global/ses_1.json", {"id": "ses_1", "directory": "/w", "title": "T",
                                        "time": {"created": t0, "updated": t0 + 5}})
    write("message/ses_1/msg_1.json", {"id": "msg_1", "role": "user", "time": {"created": t0 + 1000}})
    write("message/ses_1/msg_2.json", {"id": "msg_2", "role": "assistant", "time": {"created": t0 + 2000},
                                       "modelID": "m", "providerID": "p", "cost": 0.5,
                                       "tokens": {"input": 1, "output": 2, "reasoning": 0, "cache": {}}})
    write("part/msg_1/prt_1.json", {"id": "prt_1", "type": "text", "text": "hello"})
    write("part/msg_2/prt_1.json", {"id": "prt_1", "type": "text", "text": "hi there"})
    write("part/msg_2/prt_2.json", {"id": "prt_2", "type": "tool", "tool": "edit"})
    adapter = OpencodeAdapter()
    ref = adapter.find_native_session("/w", t0 / 1000, None)
    assert ref is not None and ref.native_session_id == "ses_1" and ref.path.endswith("ses_1.json")
    assert adapter.find_native_session("/w", t0 / 1000, None, "ses_other") is None
    facts, _ = adapter.read_facts(ref, {})
    assert (facts["model"], facts["tokens_in"], facts["tokens_out"], facts["cost"]) == ("p/m", 1, 2, 0.5)
    from agentledger.adapters.base import NativeMessage

    assert adapter.recent_messages(ref, 5) == [
        NativeMessage(t0 / 1000 + 1, "user", "hello"), NativeMessage(t0 / 1000 + 2, "assistant", "hi there\n[tool: edit]")]
    assert adapter.recent_messages(ref, 1) == [NativeMessage(t0 / 1000 + 2, "assistant", "hi there\n[tool: edit]")]


# -- agentledger logs: the agent's own messages -----------------------------------------------------------------


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % (round(t * 1000) % 1000)


def _jsonl(path: Path, *records: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


INDENT = " " * 33  # under the text: time (20), two spaces, role (9), two spaces


def native_opencode(user_home: Path, cwd: str, t0: float) -> list[str]:
    opencode_db(user_home / ".local" / "share", cwd, int(t0 * 1000))
    t = _utc(t0)
    return [f"{t}  user       Fix the \\x1b]0;pwned\\x07flaky test", f"{INDENT}in tests/",
            f"{t}  assistant  Running the tests.", f"{INDENT}[tool: bash]",
            f"{t}  assistant  [error: Cannot connect to API: Unable to connect.]"]


def native_claude(user_home: Path, cwd: str, t0: float) -> list[str]:
    from agentledger.adapters.claude_code import project_dir_name

    sid = "5c0a4a4e-1f7e-4a59-9a39-0c5b7f7f9f01"
    base = {"sessionId": sid, "cwd": cwd, "isSidechain": False}

    def line(kind, offset, message, **extra):
        return {**base, "type": kind, "timestamp": _iso(t0 + offset), "message": message, **extra}

    _jsonl(user_home / ".claude" / "projects" / project_dir_name(cwd) / f"{sid}.jsonl",
           {"type": "queue-operation", "operation": "enqueue", "timestamp": _iso(t0), "sessionId": sid},
           line("user", 0.1, {"role": "user", "content": "Fix the \x1b[31mflaky\x1b[0m test\r\nplease"}),
           line("user", 0.15, {"role": "user", "content": "<local-command-caveat>x</local-command-caveat>"},
                isMeta=True),
           line("assistant", 0.2, {"id": "msg_1", "role": "assistant", "model": "claude-opus-4-8",
                                   "content": [{"type": "thinking", "thinking": "hmm"}]}),
           line("assistant", 0.3, {"id": "msg_1", "role": "assistant",
                                   "content": [{"type": "text", "text": "Looking at it.\n\nFirst, the logs."}]}),
           line("assistant", 0.4, {"id": "msg_1", "role": "assistant",
                                   "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]}),
           line("user", 0.5, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                                           "content": "ok"}]}),
           line("assistant", 0.6, {"id": "msg_2", "role": "assistant",
                                   "content": [{"type": "text", "text": "sub-agent chatter"}]}, isSidechain=True),
           line("assistant", 0.7, {"id": "msg_3", "role": "assistant", "content": [{"type": "text", "text": "Done."}]}),
           {"type": "summary", "summary": "Fix the flaky test", "leafUuid": "x"})
    t = _utc(t0)
    return [f"{t}  user       Fix the \\x1b[31mflaky\\x1b[0m test", f"{INDENT}please",
            f"{t}  assistant  Looking at it.", f"{INDENT}First, the logs.", f"{INDENT}[tool: Bash]",
            f"{t}  assistant  Done."]


def native_codex(user_home: Path, cwd: str, t0: float) -> list[str]:
    sid = "01a2161c-fcd2-73e3-a6db-83f7c7321d09"
    day, stamp = time.strftime("%Y/%m/%d", time.localtime(t0)), time.strftime("%Y-%m-%dT%H-%M-%S", time.localtime(t0))

    def item(offset, payload, kind="response_item"):
        return {"timestamp": _iso(t0 + offset), "type": kind, "payload": payload}

    def message(role, *texts, kind="input_text"):
        return {"type": "message", "role": role, "content": [{"type": kind, "text": t} for t in texts]}

    _jsonl(user_home / ".codex" / "sessions" / day / f"rollout-{stamp}-{sid}.jsonl",
           item(0, {"id": sid, "timestamp": _iso(t0), "cwd": cwd, "originator": "codex_exec"}, "session_meta"),
           item(0.1, message("developer", "You are Codex.")),
           item(0.1, message("user", "<environment_context>\n  <cwd>/w</cwd>\n</environment_context>")),
           item(0.2, message("user", "Add a test")),
           item(0.2, {"type": "user_message", "message": "Add a test"}, "event_msg"),
           item(0.3, {"type": "reasoning", "summary": []}),
           item(0.4, {"type": "function_call", "name": "shell", "arguments": "{}", "call_id": "c1"}),
           item(0.5, {"type": "function_call_output", "call_id": "c1", "output": "ok"}),
           item(0.6, message("assistant", "Added tests/test_x.py.", kind="output_text")),
           item(0.6, {"type": "agent_message", "message": "Added tests/test_x.py."}, "event_msg"))
    t = _utc(t0)
    return [f"{t}  user       Add a test", f"{t}  assistant  [tool: shell]", f"{t}  assistant  Added tests/test_x.py."]


@pytest.fixture
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "userhome"
    path.mkdir()
    monkeypatch.setenv("HOME", str(path))
    for variable in ("XDG_DATA_HOME", "CLAUDE_CONFIG_DIR", "CODEX_HOME"):
        monkeypatch.delenv(variable, raising=False)
    return path


@pytest.mark.parametrize("adapter,write", [("opencode", native_opencode), ("claude-code", native_claude),
                                           ("codex", native_codex)])
@pytest.mark.sqlite_only
def test_logs_shows_the_agents_own_recent_messages(cli, user_home, tmp_path, adapter, write):
    work = tmp_path / "work"
    work.mkdir()
    # Whole seconds: every message below is in the same second. The transcripts begin (and were last written,
    # as their mtimes say) 10 s from now: after the launch, however long a busy machine takes to start it.
    t0 = float(int(time.time()) + 10)
    expected = write(user_home, str(work), t0)
    for transcript in user_home.rglob("*.jsonl"):
        os.utime(transcript, (t0, t0))
    sid = cli("launch", "--adapter", adapter, "--cwd", str(work), "--", "sh", "-c", "echo captured").stdout.strip()
    stopped(cli, sid)
    shown = cli("logs", sid)
    assert shown.stdout.splitlines() == expected and shown.stderr == ""
    last = cli("logs", sid, "-n", "1").stdout.splitlines()
    assert last == expected[-1:]
    records = cli.json_lines("logs", sid, "-n", "2")
    assert [r["role"] for r in records] == ["assistant", "assistant"]
    assert [r["at"][:19] for r in records] == [_utc(t0)[:19]] * 2 and records[-1]["text"] == expected[-1][33:]
    assert cli("logs", sid, "--output").stdout == "captured\n"
    assert cli("logs", sid, "-n", "0").stdout == ""


@pytest.mark.sqlite_only
def test_logs_falls_back_to_the_captured_output_and_says_why(cli, user_home, tmp_path):
    plain = cli.launch("sh", "-c", "echo one; echo two; echo three")
    stopped(cli, plain)
    shown = cli("logs", plain, "-n", "2")
    assert shown.stdout == "two\nthree\n"
    assert shown.stderr == ""  # a plain command has nothing but its output: nothing to explain
    assert cli.json_lines("logs", plain, "-n", "1") == [{"at": None, "role": "output", "text": "three"}]
    assert cli("logs", plain, "--output").stderr == ""
    lost = cli("launch", "--adapter", "codex", "--cwd", str(tmp_path), "--", "sh", "-c", "echo x").stdout.strip()
    stopped(cli, lost)
    shown = cli("logs", lost)
    assert shown.stdout == "x\n" and shown.stderr.count("\n") == 1 and "codex's own session was not found" in shown.stderr
    assert cli("logs", lost, "--json", "--follow", check=False).returncode == 2


def test_the_claude_code_cursor_stays_small_however_long_the_transcript(tmp_path):
    """Only the latest message ids can repeat (one streamed message's lines come together): the cursor
    keeps a window of them, so a supervisor following a huge transcript does not grow with it."""
    from agentledger.adapters.base import NativeRef
    from agentledger.adapters.claude_code import USAGE_WINDOW, ClaudeCodeAdapter

    path = tmp_path / "t.jsonl"

    def line(message_id: str, out: int) -> str:
        return json.dumps({"type": "assistant", "sessionId": "s", "timestamp": "2026-11-26T00:00:00Z",
                           "message": {"id": message_id, "model": "m",
                                       "usage": {"input_tokens": 1, "output_tokens": out}}}) + "\n"

    path.write_text("".join(line(f"msg_{i}", 2) for i in range(500)))
    adapter, ref = ClaudeCodeAdapter(), NativeRef("s", str(path))
    facts, cursor = adapter.read_facts(ref, {})
    assert (facts["tokens_in"], facts["tokens_out"]) == (500, 1000)
    assert len(cursor["usage"]) == USAGE_WINDOW
    cursor = json.loads(json.dumps(cursor))  # the supervisor keeps it as JSON
    with path.open("a") as handle:
        handle.write(line("msg_499", 7))  # the last message, streamed on: counted once, at its latest usage
        handle.write(line("msg_500", 3))
    facts, cursor = adapter.read_facts(ref, cursor)
    assert (facts["tokens_in"], facts["tokens_out"]) == (501, 1000 + 5 + 3)
    assert len(cursor["usage"]) == USAGE_WINDOW
