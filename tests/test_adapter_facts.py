"""Which native session is a session's, and the facts read from it, on files in the agents' real formats.

The formats are the ones the real CLIs wrote on this machine (opencode 1.18.33, Claude Code 2.1.332,
codex-cli 0.171.0, pi 0.73.1; see docs/adapters.md); tests/test_real_agents.py runs the CLIs themselves.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from agentledger.adapters.base import Adapter, LaunchPlan, NativeRef, failure_note
from agentledger.adapters.observer import Observer
from agentledger.bootstrap import agents, this_machine

pytestmark = pytest.mark.sqlite_only


def lines(path: Path, *records: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        for record in records:
            handle.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    return path


# -- which native session: the observer -----------------------------------------------------------------------


class Stored(Adapter):
    """An agent whose storage holds ``sessions`` ({id: path}) and whose stream says ``{"sid": ID}``."""

    name, binary = "stored", "stored"

    def __init__(self, sessions: dict[str, str]) -> None:
        self.sessions = sessions

    def build_launch(self, request):  # pragma: no cover - not launched here
        return LaunchPlan(argv=[])

    def streams_native_id(self, argv):
        return "--json" in argv

    def native_id_from_output(self, output_path):
        from agentledger.adapters.base import said_in_output

        return said_in_output(output_path, lambda r: r.get("sid"))

    def find_native_session(self, cwd, started_at, pid, hint=None):
        if hint is not None:
            return NativeRef(hint, self.sessions[hint]) if hint in self.sessions else None
        first = next(iter(self.sessions), None)  # "the first one in this directory": the guess
        return NativeRef(first, self.sessions[first]) if first else None

    def read_facts(self, ref, cursor):
        return {"model": f"model of {ref.native_session_id}"}, cursor


def observer(adapter: Adapter, output: Path, argv=("stored", "--json"), **kwargs) -> Observer:
    return Observer(adapter, cwd="/w", started_at=100.0, pid=1, output_path=str(output), argv=argv, **kwargs)


def test_while_the_stream_may_still_say_it_nothing_is_guessed_from_storage(tmp_path):
    output = tmp_path / "out.log"
    output.write_text("warming up\n")
    agent = Stored({"ses_other": "p1", "ses_mine": "p2"})
    watching = observer(agent, output)
    assert watching.poll().facts == {}  # another session is in the directory: not taken for ours
    lines(output, {"type": "step_start", "sid": "ses_mine"})
    facts = watching.poll().facts
    assert (facts["native_session_id"], facts["native_id_source"], facts["model"]) == (
        "ses_mine", "stream", "model of ses_mine")


def test_the_stream_id_is_recorded_before_the_storage_has_it(tmp_path):
    output = lines(tmp_path / "out.log", {"sid": "ses_new"})
    agent = Stored({})
    watching = observer(agent, output)
    assert watching.poll().facts == {"native_session_id": "ses_new", "native_id_source": "stream"}
    agent.sessions["ses_new"] = "p"
    assert watching.poll().facts["model"] == "model of ses_new"


def test_storage_is_matched_only_when_the_stream_cannot_say(tmp_path):
    output = tmp_path / "out.log"
    output.write_text("")
    agent = Stored({"ses_guess": "p"})
    ended = observer(agent, output)
    assert ended.poll().facts == {}
    assert ended.poll(final=True).facts["native_id_source"] == "storage"  # it ended without saying
    plain = observer(agent, output, argv=("stored", "run", "text mode"))  # its stream format was not asked for
    assert plain.poll().facts["native_id_source"] == "storage"


def test_a_pinned_id_stands_and_a_resumed_one_yields_to_what_the_agent_says(tmp_path):
    from agentledger.domain.vocabulary import NativeIdSource

    output = lines(tmp_path / "out.log", {"sid": "ses_forked"})
    agent = Stored({"ses_old": "p1", "ses_forked": "p2"})
    pinned = observer(agent, output, hint="ses_old", hint_source=NativeIdSource.PINNED)
    assert pinned.poll().facts["native_session_id"] == "ses_old"
    resumed = observer(agent, output, hint="ses_old", hint_source=NativeIdSource.RESUMED)
    facts = resumed.poll().facts
    assert (facts["native_session_id"], facts["native_id_source"]) == ("ses_forked", "stream")
    same = observer(agent, lines(tmp_path / "same.log", {"sid": "ses_old"}), hint="ses_old",
                    hint_source=NativeIdSource.RESUMED)
    assert same.poll().facts["native_id_source"] == "resumed"


# -- opencode: where its database is -------------------------------------------------------------------------


def test_opencode_finds_its_database_where_opencode_would_open_it(tmp_path, monkeypatch):
    from agentledger.adapters.opencode import databases

    data = tmp_path / "data"
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    for name in ("OPENCODE_DB", "OPENCODE_DISABLE_CHANNEL_DB"):
        monkeypatch.delenv(name, raising=False)
    folder = data / "opencode"
    folder.mkdir(parents=True)
    assert databases() == []
    for name in ("opencode.db", "opencode-beta.db", "other.db"):
        (folder / name).write_bytes(b"")
    assert databases() == [folder / "opencode.db", folder / "opencode-beta.db"]  # every channel's file
    monkeypatch.setenv("OPENCODE_DISABLE_CHANNEL_DB", "1")
    assert databases() == [folder / "opencode.db"]
    monkeypatch.setenv("OPENCODE_DB", "other.db")  # relative: under the data directory, not the cwd
    assert databases() == [folder / "other.db"]
    absolute = tmp_path / "elsewhere.db"
    monkeypatch.setenv("OPENCODE_DB", str(absolute))
    assert databases() == []
    absolute.write_bytes(b"")
    assert databases() == [absolute]
    monkeypatch.setenv("OPENCODE_DB", ":memory:")
    assert databases() == []


def test_opencode_finds_a_stream_id_in_a_channel_database(tmp_path, monkeypatch):
    from agentledger.adapters.opencode import OpencodeAdapter

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("OPENCODE_DB", raising=False)
    monkeypatch.delenv("OPENCODE_DISABLE_CHANNEL_DB", raising=False)
    (tmp_path / "opencode").mkdir()
    sqlite3.connect(tmp_path / "opencode" / "opencode.db").executescript(
        "CREATE TABLE session (id text, parent_id text, directory text, time_created integer);")
    beta = sqlite3.connect(tmp_path / "opencode" / "opencode-beta.db")
    beta.executescript("CREATE TABLE session (id text, parent_id text, directory text, time_created integer);"
                       "INSERT INTO session VALUES ('ses_b', NULL, '/w', 5000);")
    beta.commit()
    ref = OpencodeAdapter().find_native_session("/w", 0.0, None, "ses_b")
    assert ref is not None and ref.path == str(tmp_path / "opencode" / "opencode-beta.db")


def test_opencode_leaves_out_its_placeholder_title(tmp_path, monkeypatch):
    from test_adapters import opencode_db

    from agentledger.adapters.opencode import OpencodeAdapter

    path = opencode_db(tmp_path, "/w", 1_000_000)
    db = sqlite3.connect(path)
    db.execute("UPDATE session SET title = 'New session - 2026-12-06T04:01:02.345Z' WHERE id = 'ses_ours'")
    db.commit()
    facts, _ = OpencodeAdapter().read_facts(NativeRef("ses_ours", str(path)), {})
    assert "title" not in facts and facts["tokens_in"] == 1305


# -- Claude Code: titles, model names, a resumed conversation's figures ------------------------------------------

SID = "11111111-2222-3333-4444-555555555555"


def claude_turn(at: str, message_id: str, tokens_in: int, tokens_out: int) -> list[dict[str, Any]]:
    return [{"type": "user", "sessionId": SID, "timestamp": at, "message": {"role": "user", "content": "go"}},
            {"type": "assistant", "sessionId": SID, "timestamp": at,
             "message": {"id": message_id, "role": "assistant", "model": "claude-opus-5-5",
                         "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out}}}]


def cost_state(cost: float, tokens_in: int, tokens_out: int) -> dict[str, Any]:
    return {"type": "cost-state", "sessionId": SID, "totalCostUSD": cost,
            "modelUsage": {"claude-opus-5-5": {"inputTokens": tokens_in, "outputTokens": tokens_out,
                                               "cacheReadInputTokens": 0, "cacheCreationInputTokens": 0}}}


def test_claude_code_splits_a_resumed_conversation_into_this_run_and_the_whole(tmp_path):
    from agentledger.adapters.base import iso_epoch
    from agentledger.adapters.claude_code import ClaudeCodeAdapter

    transcript = lines(tmp_path / "t.jsonl", *claude_turn("2026-12-06T03:54:21.000Z", "m1", 120, 12),
                       cost_state(0.00072, 120, 12))
    since = iso_epoch("2026-12-06T03:55:00Z")
    adapter = ClaudeCodeAdapter()
    ref = NativeRef(SID, str(transcript), run_since=since)
    facts, cursor = adapter.read_facts(ref, {})
    assert "tokens_in" not in facts or facts["tokens_in"] == 0  # nothing of this run yet
    lines(transcript, *claude_turn("2026-12-06T03:55:03.000Z", "m2", 120, 12))
    facts, cursor = adapter.read_facts(ref, cursor)
    assert (facts["tokens_in"], facts["conversation_tokens_in"]) == (120, 240)  # while it runs: baseline + run
    lines(transcript, cost_state(0.00144, 240, 24))
    output = lines(tmp_path / "out.log", {"type": "result", "total_cost_usd": 0.00144})
    facts, _ = adapter.read_facts(NativeRef(SID, str(transcript), str(output), since), cursor)
    assert (facts["tokens_in"], facts["tokens_out"], facts["cost"]) == (120, 12, 0.00072)
    assert (facts["conversation_tokens_in"], facts["conversation_tokens_out"], facts["conversation_cost"]) == (
        240, 24, 0.00144)


def test_claude_code_titles_a_person_gave_win_and_display_suffixes_are_dropped(tmp_path):
    from agentledger.adapters.claude_code import ClaudeCodeAdapter, model_name

    transcript = lines(tmp_path / "t.jsonl", {"type": "summary", "summary": "old style"})
    adapter = ClaudeCodeAdapter()
    assert adapter.read_facts(NativeRef(SID, str(transcript)), {})[0]["title"] == "old style"
    lines(transcript, {"type": "ai-title", "aiTitle": "Fix the parser", "sessionId": SID})
    assert adapter.read_facts(NativeRef(SID, str(transcript)), {})[0]["title"] == "Fix the parser"
    lines(transcript, {"type": "custom-title", "customTitle": "my run", "sessionId": SID},
          {"type": "ai-title", "aiTitle": "Later AI title", "sessionId": SID})
    assert adapter.read_facts(NativeRef(SID, str(transcript)), {})[0]["title"] == "my run"
    assert model_name("claude-opus-4-8[1m]") == "claude-opus-4-8" and model_name("sonnet") == "sonnet"
    output = lines(tmp_path / "out.log", {"type": "system", "subtype": "init", "session_id": SID,
                                          "model": "claude-opus-4-8[1m]"})
    facts, _ = adapter.read_facts(NativeRef(SID, str(tmp_path / "none.jsonl"), str(output)), {})
    assert facts["model"] == "claude-opus-4-8"


# -- Codex: this run against the thread's running totals -------------------------------------------------------


def test_codex_counts_this_run_against_the_threads_running_totals(tmp_path):
    from agentledger.adapters.base import iso_epoch
    from agentledger.adapters.codex import CodexAdapter

    def tokens(at: str, total_in: int, total_out: int) -> dict[str, Any]:
        return {"timestamp": at, "type": "event_msg", "payload": {"type": "token_count", "info": {
            "total_token_usage": {"input_tokens": total_in, "output_tokens": total_out},
            "last_token_usage": {"input_tokens": 120, "output_tokens": 12}}}}

    rollout = lines(tmp_path / "rollout.jsonl",
                    {"timestamp": "2026-12-06T04:11:42.000Z", "type": "session_meta", "payload": {"id": "t1"}},
                    {"timestamp": "2026-12-06T04:11:42.100Z", "type": "turn_context", "payload": {"model": "m"}},
                    tokens("2026-12-06T04:11:42.200Z", 120, 12),
                    tokens("2026-12-06T04:11:50.000Z", 240, 24))
    facts, _ = CodexAdapter().read_facts(NativeRef("t1", str(rollout), run_since=iso_epoch("2026-12-06T04:11:49Z")),
                                         {})
    assert (facts["tokens_in"], facts["tokens_out"]) == (120, 12)
    assert (facts["conversation_tokens_in"], facts["conversation_tokens_out"]) == (240, 24)


# -- failure notes: the agent's last word -------------------------------------------------------------------------


def test_the_final_report_wins_over_retries_and_earlier_errors(tmp_path):
    log = tmp_path / "out.log"
    lines(log, {"type": "system", "subtype": "api_retry", "attempt": 1, "error": "authentication_failed"},
          {"type": "assistant", "error": "authentication_failed",
           "message": {"content": [{"type": "text", "text": "Invalid API key · Fix external API key"}]}},
          {"type": "result", "is_error": True, "result": "Failed to authenticate. API Error: 401"})
    assert failure_note(str(log)) == "Failed to authenticate. API Error: 401"
    log.write_text("")
    lines(log, {"type": "error", "message": "Reconnecting... 1/5 (unexpected status 401 Unauthorized)"},
          {"type": "error", "message": "unexpected status 401 Unauthorized: bad key"},
          {"type": "turn.failed", "error": {"message": "unexpected status 401 Unauthorized: bad key"}},
          "WARNING: proceeding, even though we could not create PATH aliases")
    assert failure_note(str(log)) == "unexpected status 401 Unauthorized: bad key"
    log.write_text("Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: the real error\n")
    assert failure_note(str(log)) == "ValueError: the real error"


def test_pi_in_json_mode_exits_0_with_a_failed_answer_and_that_is_the_note(tmp_path):
    from agentledger.adapters.pi import PiAdapter

    output = lines(tmp_path / "out.log",
                   {"type": "session", "version": 3, "id": "01a2", "timestamp": "2026-12-06T03:55:59.261Z"},
                   {"type": "message_end", "message": {"role": "assistant", "content": [], "stopReason": "error",
                                                       "errorMessage": "401 invalid x-api-key"}})
    adapter = PiAdapter()
    assert adapter.exit_summary(str(output), 0) == "401 invalid x-api-key"
    assert adapter.native_id_from_output(str(output)) == "01a2"
    lines(output, {"type": "message_end", "message": {"role": "assistant", "stopReason": "stop",
                                                      "content": [{"type": "text", "text": "fine now"}]}})
    assert adapter.exit_summary(str(output), 0) is None


def test_pi_reads_its_session_file(tmp_path, monkeypatch):
    from agentledger.adapters.base import iso_epoch
    from agentledger.adapters.pi import PiAdapter, project_dir_name

    monkeypatch.setenv("PI_CODING_AGENT_DIR", str(tmp_path / "agent"))
    monkeypatch.delenv("PI_CODING_AGENT_SESSION_DIR", raising=False)
    assert project_dir_name("/tmp/a b/my.app") == "--tmp-a b-my.app--"
    sid = "01a2497e-01d1-77fe-84b0-83e8e059dd18"

    def answer(at: str, text: str) -> dict[str, Any]:
        return {"type": "message", "id": "a", "parentId": "u", "timestamp": at, "message": {
            "role": "assistant", "content": [{"type": "text", "text": text}, {"type": "toolCall", "name": "bash"}],
            "provider": "mock", "model": "test-model", "stopReason": "stop",
            "usage": {"input": 100, "output": 10, "cacheRead": 20, "cacheWrite": 0, "cost": {"total": 0.5}}}}

    path = lines(tmp_path / "agent" / "sessions" / "--w--" / f"2026-12-06T03-55-24-498Z_{sid}.jsonl",
                 {"type": "session", "version": 3, "id": sid, "timestamp": "2026-12-06T03:55:24.498Z", "cwd": "/w"},
                 {"type": "message", "id": "u", "parentId": None, "timestamp": "2026-12-06T03:55:24.540Z",
                  "message": {"role": "user", "content": [{"type": "text", "text": "hello"}]}},
                 answer("2026-12-06T03:55:24.623Z", "first"),
                 {"type": "session_info", "id": "i", "timestamp": "2026-12-06T03:56:00.000Z", "name": "Named"},
                 answer("2026-12-06T03:57:00.000Z", "second"))
    adapter = PiAdapter()
    ref = adapter.find_native_session("/w", iso_epoch("2026-12-06T03:55:24Z"), None)
    assert ref is not None and (ref.native_session_id, ref.path) == (sid, str(path))
    assert adapter.find_native_session("/elsewhere", 0, None) is None
    assert adapter.find_native_session("/x", 0, None, sid).path == str(path)  # by id, wherever it is
    facts, _ = adapter.read_facts(NativeRef(sid, str(path), run_since=iso_epoch("2026-12-06T03:56:30Z")), {})
    assert (facts["model"], facts["title"]) == ("mock/test-model", "Named")
    assert (facts["tokens_in"], facts["tokens_out"], facts["cost"]) == (120, 10, 0.5)
    assert (facts["conversation_tokens_in"], facts["conversation_tokens_out"], facts["conversation_cost"]) == (
        240, 20, 1.0)
    messages = adapter.recent_messages(ref, 10)
    assert [(m.role, m.text) for m in messages] == [
        ("user", "hello"), ("assistant", "first\n[tool: bash]"), ("assistant", "second\n[tool: bash]")]
    assert adapter.resume_argv(sid)[-2:] == ["--session", str(path)]


# -- sessions no supervisor watches: whoever reconciles them keeps their facts current ---------------------------


def test_an_unwatched_agent_sessions_facts_are_kept_current_by_the_reconcilers_side(store, spawn, tmp_path,
                                                                                   monkeypatch):
    """An adopted pi session: its file appears after the adoption and grows; each look records what changed,
    never as a heartbeat."""
    from datetime import datetime, timezone
    from uuid import UUID

    from conftest import record

    from agentledger.application.watching import AgentWatch
    from agentledger.infrastructure import processes
    from agentledger.projections.catchup import catch_up
    from agentledger.projections.queries import get_session

    monkeypatch.setenv("PI_CODING_AGENT_DIR", str(tmp_path / "agent"))
    monkeypatch.delenv("PI_CODING_AGENT_SESSION_DIR", raising=False)
    identity = processes.identity_of(spawn("sleep", "600").pid)
    work = tmp_path / "w"
    work.mkdir()
    sid = record(store, identity, fuse_ttl=None, adapter="pi", cwd=str(work), source="adopted")
    watch = AgentWatch(store, this_machine(), agents())
    assert watch.observe() == 0  # no native session yet: pi writes its file with the first answer

    def at(offset: float) -> str:
        return datetime.fromtimestamp(identity.start_time + offset, timezone.utc).isoformat().replace("+00:00", "Z")

    def answer(offset: float) -> dict[str, Any]:
        return {"type": "message", "timestamp": at(offset), "message": {
            "role": "assistant", "provider": "mock", "model": "m", "content": [{"type": "text", "text": "ok"}],
            "usage": {"input": 100, "output": 10, "cost": {"total": 0.25}}}}

    folder = tmp_path / "agent" / "sessions" / f"--{str(work).lstrip('/').replace('/', '-')}--"
    path = lines(folder / "t_s1.jsonl", {"type": "session", "version": 3, "id": "s1", "timestamp": at(0.5),
                                         "cwd": str(work)}, answer(1.0))
    assert watch.observe() == 1
    catch_up(store)
    row = get_session(store.db, sid.hex)
    assert (row["native_session_id"], row["native_id_source"], row["tokens_in"], row["cost"]) == (
        "s1", "storage", 100, 0.25)
    assert row["heartbeat_count"] == 0  # facts, never a heartbeat: nobody promised to watch it
    lines(path, answer(2.0))
    assert watch.observe() == 1 and watch.observe() == 0  # once per change
    catch_up(store)
    assert get_session(store.db, sid.hex)["tokens_in"] == 200
    assert store.ledger.repository.get(UUID(sid.hex)).agent_facts["conversation_tokens_in"] == 200


def test_codex_finds_a_named_rollout_and_never_another_in_its_place(tmp_path, monkeypatch):
    from agentledger.adapters.codex import CodexAdapter

    monkeypatch.setenv("CODEX_HOME", str(tmp_path))
    now = time.time()
    day = time.strftime("%Y/%m/%d", time.localtime(now))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now))
    lines(tmp_path / "sessions" / day / "rollout-2026-12-06T04-00-00-other.jsonl",
          {"timestamp": stamp, "type": "session_meta", "payload": {"id": "other", "cwd": "/w", "timestamp": stamp}})
    adapter = CodexAdapter()
    assert adapter.find_native_session("/w", now - 1, None).native_session_id == "other"  # the guess
    assert adapter.find_native_session("/w", now - 1, None, "mine") is None  # said by its stream: not yet written
    lines(tmp_path / "sessions" / day / "rollout-2026-12-06T04-00-01-mine.jsonl",
          {"timestamp": stamp, "type": "session_meta", "payload": {"id": "mine", "cwd": "/w", "timestamp": stamp}})
    assert adapter.find_native_session("/w", now - 1, None, "mine").native_session_id == "mine"
