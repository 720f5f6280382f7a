"""Claude Code: ``claude --print``, and its transcripts under ``~/.claude/projects``.

Launch: ``claude --print --output-format stream-json --verbose --session-id UUID
[--model M] [--name NAME]`` with the prompt on stdin (``--print`` reads the
prompt from stdin when no prompt argument is given; ``--verbose`` is required
with ``stream-json`` in print mode). ``--session-id`` pins the native session
id to the ledger's session id (as a UUID), so the transcript is found by name;
``resume`` runs ``--resume ID``, which keeps the id. The stream's first line
(``{"type": "system", "subtype": "init", "session_id"}``) says it too.

Storage (``$CLAUDE_CONFIG_DIR``, default ``~/.claude``):

- ``projects/<cwd with every non-alphanumeric character as '-'>/<sessionId>.jsonl``:
  one JSON object per line; most have ``sessionId``, ``cwd``, ``timestamp`` (ISO);
  ``type: "assistant"`` lines have ``message.id``, ``message.model`` and
  ``message.usage.{input_tokens, cache_creation_input_tokens,
  cache_read_input_tokens, output_tokens}`` (several lines of one streamed
  message repeat its id: the last one's usage counts); the title is a
  ``custom-title`` line's ``customTitle`` (``--name``, ``/rename``), else an
  ``ai-title`` line's ``aiTitle``, else a ``summary`` line's ``summary``
  (older releases); each run ends with a ``cost-state`` line holding the
  conversation's running totals (``totalCostUSD``, ``modelUsage.<model>.
  {inputTokens, outputTokens, cacheReadInputTokens, cacheCreationInputTokens}``),
  which ``--resume`` restores and carries on;
- ``history.jsonl``: ``{display, timestamp (ms), project, sessionId}`` per
  prompt typed, read from its tail to find a session whose id was not pinned.

``recent_messages`` reads the transcript's last 2 MB: ``user`` and
``assistant`` lines' ``message.content`` (a string, or parts: ``text`` shown,
``tool_use`` as ``[tool: NAME]``, ``tool_result`` and ``thinking`` left out);
the lines of one streamed message (same ``message.id``) make one message.

The captured output (stream-json) ends with a ``type: "result"`` line whose
``total_cost_usd`` is the conversation's cost so far (a resumed run's
includes the runs before it).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from agentledger.adapters.base import (
    START_SLACK,
    Adapter,
    Cursor,
    Facts,
    LaunchPlan,
    LaunchRequest,
    NativeMessage,
    NativeRef,
    env_dir,
    first_begun,
    has_flag,
    home,
    iso_epoch,
    said_in_output,
    whole,
)
from agentledger.adapters.tail import FIRST_READ_LIMIT, read_new_lines, read_tail

#: How many recent message ids the cursor remembers, to count a message streamed over several lines once.
USAGE_WINDOW = 64


def config_dir() -> Path:
    return env_dir("CLAUDE_CONFIG_DIR", home() / ".claude")


def project_dir_name(cwd: str) -> str:
    """Claude Code's directory name for a working directory: '/home/a/my.app' -> '-home-a-my-app'."""
    return re.sub(r"[^A-Za-z0-9]", "-", cwd)


class ClaudeCodeAdapter(Adapter):
    name = "claude-code"
    binary = "claude"
    observes = "~/.claude/projects/<dir>/<session>.jsonl (+ history.jsonl): model, tokens, title, " \
               "last activity; cost from the stream-json result"

    def build_launch(self, request: LaunchRequest) -> LaunchPlan:
        native = str(UUID(hex=request.session_id))
        argv = [self.agent_argv0(), "--print", "--output-format", "stream-json", "--verbose", "--session-id", native]
        if request.model:
            argv += ["--model", request.model]
        if request.name:
            argv += ["--name", request.name]  # Claude Code's own title for the session (a custom-title line)
        return LaunchPlan(argv=argv, stdin_path=request.prompt_path, native_session_id=native)

    def streams_native_id(self, argv: Sequence[str]) -> bool:
        return has_flag(argv, "--output-format", "stream-json")

    def native_id_from_output(self, output_path: str) -> str | None:
        """stream-json's first line, ``{"type": "system", "subtype": "init", "session_id": ...}``."""
        return said_in_output(output_path, lambda r: r.get("session_id") if r.get("type") == "system" else None)

    def resume_argv(self, native_session_id: str) -> list[str]:
        return [self.agent_argv0(), "--print", "--output-format", "stream-json", "--verbose",
                "--resume", native_session_id]

    def find_native_session(self, cwd: str, started_at: float, pid: int | None,
                            hint: str | None = None) -> NativeRef | None:
        projects = config_dir() / "projects"
        session_id = hint or self._from_history(cwd, started_at)
        if session_id:
            path = projects / project_dir_name(cwd) / f"{session_id}.jsonl"
            if path.is_file():
                return NativeRef(session_id, str(path))
            try:  # an encoding we did not predict: look for the file by name in every project
                for project in os.scandir(projects):
                    candidate = Path(project.path) / f"{session_id}.jsonl"
                    if candidate.is_file():
                        return NativeRef(session_id, str(candidate))
            except OSError:
                pass
            if hint:
                return None
        return self._newest_in(projects / project_dir_name(cwd), cwd, started_at)

    def _from_history(self, cwd: str, started_at: float) -> str | None:
        """The session of the first prompt for ``cwd`` in ``history.jsonl`` since ``started_at`` (tail only)."""
        result = read_new_lines(str(config_dir() / "history.jsonl"), None)
        for record in result.records:
            if isinstance(record, dict) and record.get("project") == cwd and record.get("sessionId"):
                at = iso_epoch(record.get("timestamp"))
                if at is not None and at >= started_at - START_SLACK:
                    return str(record["sessionId"])
        return None

    def _newest_in(self, directory: Path, cwd: str, started_at: float) -> NativeRef | None:
        def identify(head: Any, path: str) -> tuple[float | None, str | None] | None:
            if not isinstance(head, dict) or head.get("cwd", cwd) != cwd:
                return None
            return iso_epoch(head.get("timestamp")), head.get("sessionId") or Path(path).stem

        return first_begun([directory], started_at, identify)

    def recent_messages(self, ref: NativeRef, limit: int) -> list[NativeMessage]:
        messages: list[NativeMessage] = []
        last_id = None
        for record in read_tail(ref.path):
            if not isinstance(record, dict) or record.get("type") not in ("user", "assistant"):
                continue
            if record.get("isSidechain") or record.get("isMeta"):
                continue  # a sub-agent's conversation, or text Claude Code injected itself
            message = record.get("message")
            if not isinstance(message, dict):
                continue
            text = _content_text(message.get("content"))
            if not text:
                continue
            message_id = message.get("id") if record["type"] == "assistant" else None
            if message_id and message_id == last_id and messages:  # the next block of one streamed message
                previous = messages[-1]
                if text not in previous.text.split("\n"):
                    messages[-1] = NativeMessage(previous.at, previous.role, f"{previous.text}\n{text}")
                continue
            last_id = message_id
            messages.append(NativeMessage(iso_epoch(record.get("timestamp")),
                                          str(message.get("role") or record["type"]), text))
        return messages[-limit:] if limit > 0 else []

    def read_facts(self, ref: NativeRef, cursor: Cursor) -> tuple[Facts, Cursor]:
        """This run's and the conversation's figures; a resumed conversation's earlier runs are in the same file.

        ``cost-state`` lines (written at the end of each run) carry the
        conversation's running totals: the last one before this run began
        (``ref.run_since``) is the baseline, the one this run wrote the
        conversation so far, and their difference this run. Until this run
        writes its own, assistant lines timestamped since it began are summed
        (on top of the baseline for the conversation); the cost then comes
        from the stream's ``result`` (the conversation's) minus the baseline's.
        """
        state: dict[str, Any] = {"usage": {}, "run": [0, 0], "all": [0, 0], "titles": {}, **cursor}
        usage: dict[str, list[int]] = dict(state["usage"])
        # Watching a run (``run_since``), the transcript is read from its start, 8 MB a pass, not from its
        # last 256 KB: this run's first messages and the baseline before a resumed run are often further back
        # (one short turn writes ~100 KB of context lines). A look at no run in particular reads the end only.
        whole_file = ref.run_since is not None
        result = read_new_lines(ref.path, state.get("tail"),
                                first_read_limit=sys.maxsize if whole_file else FIRST_READ_LIMIT)
        if result.reset:
            usage = {}
            state.update(run=[0, 0], all=[0, 0], base=None, latest=None, in_run=False)
        since = ref.run_since
        for record in result.records:
            if isinstance(record, dict):
                self._take(record, state, usage, since)
        # The lines of one streamed message come together: only the latest ids can repeat, so the
        # cursor keeps those, not every id of a transcript that may reach hundreds of megabytes.
        state["usage"] = dict(list(usage.items())[-USAGE_WINDOW:]) if len(usage) > USAGE_WINDOW else usage
        state["tail"] = result.cursor
        if ref.output_path:
            out = read_new_lines(ref.output_path, state.get("out_tail"))
            for record in out.records:
                if isinstance(record, dict) and record.get("type") == "result":
                    cost = record.get("total_cost_usd", record.get("cost_usd"))
                    if isinstance(cost, (int, float)):
                        state["stream_cost"] = float(cost)  # the conversation's, as Claude Code restores it
                elif isinstance(record, dict) and record.get("type") == "system" and record.get("model"):
                    state.setdefault("model", model_name(record["model"]))
            state["out_tail"] = out.cursor
        return _facts(ref, state), state

    def _take(self, record: dict[str, Any], state: dict[str, Any], usage: dict[str, list[int]],
              since: float | None) -> None:
        """Fold one transcript line into ``state``."""
        if record.get("sessionId"):
            state["native_session_id"] = record["sessionId"]
        at = iso_epoch(record.get("timestamp"))
        if at is not None:
            state["last_activity_at"] = max(at, state.get("last_activity_at") or 0)
            if since is None or at >= since:
                state["in_run"] = True
        kind = record.get("type")
        title = record.get(_TITLE_FIELDS.get(kind or "", ""))
        if isinstance(title, str) and title.strip():
            state["titles"] = {**state["titles"], kind: title.strip()}
        elif kind == "cost-state":
            figures = _cost_state(record)
            if figures is not None:
                state["latest" if state.get("in_run") else "base"] = figures
        elif kind == "assistant" and isinstance(record.get("message"), dict):
            message = record["message"]
            if message.get("model") and not str(message["model"]).startswith("<"):  # "<synthetic>"
                state["model"] = model_name(message["model"])
            counted = _usage(message.get("usage"))
            if counted is not None:
                key = str(message.get("id") or record.get("uuid") or len(usage))
                before = usage.get(key, [0, 0])
                delta = [counted[0] - before[0], counted[1] - before[1]]
                state["all"] = [state["all"][0] + delta[0], state["all"][1] + delta[1]]
                if since is None or (at is not None and at >= since):
                    state["run"] = [state["run"][0] + delta[0], state["run"][1] + delta[1]]
                usage[key] = counted
                state["counted"] = True


def _facts(ref: NativeRef, state: dict[str, Any]) -> Facts:
    facts: Facts = {"native_session_id": state.get("native_session_id") or ref.native_session_id}
    for key in ("model", "last_activity_at"):
        if state.get(key) is not None:
            facts[key] = state[key]
    titles = state["titles"]
    title = next((titles[kind] for kind in ("custom-title", "ai-title", "summary") if titles.get(kind)), None)
    if title:
        facts["title"] = title
    base, latest = state.get("base"), state.get("latest")
    if latest:  # the run has ended: Claude Code's own totals (sub-agents' and side calls' usage included)
        before = base or [0, 0, 0.0]
        facts["tokens_in"], facts["tokens_out"] = latest[0] - before[0], latest[1] - before[1]
        facts["conversation_tokens_in"], facts["conversation_tokens_out"] = latest[:2]
    elif state.get("counted"):  # while it runs: this run's messages, on top of the totals before it
        facts["tokens_in"], facts["tokens_out"] = state["run"]
        conversation = [base[0] + state["run"][0], base[1] + state["run"][1]] if base else state["all"]
        facts["conversation_tokens_in"], facts["conversation_tokens_out"] = conversation
    total = latest[2] if latest else state.get("stream_cost")
    if total is not None:
        facts["conversation_cost"] = round(total, 6)
        facts["cost"] = round(max(0.0, total - (base[2] if base else 0.0)), 6)
    return facts


#: Title lines, by type, and the field holding the title: a title the user gave wins over Claude's own.
_TITLE_FIELDS = {"custom-title": "customTitle", "ai-title": "aiTitle", "summary": "summary"}


def model_name(value: Any) -> str:
    """A model id without a display suffix: ``claude-opus-4-8[1m]`` (the 1M context window) is ``claude-opus-4-8``."""
    return re.sub(r"\[[^\]]*\]$", "", str(value))


def _cost_state(record: dict[str, Any]) -> list[Any] | None:
    """[tokens in, tokens out, cost] of a ``cost-state`` line: the conversation's running totals."""
    cost = record.get("totalCostUSD")
    models = record.get("modelUsage")
    if not isinstance(cost, (int, float)) or not isinstance(models, dict):
        return None
    tokens_in = tokens_out = 0
    for figures in models.values():
        if isinstance(figures, dict):
            tokens_in += whole(figures.get("inputTokens")) + whole(figures.get("cacheReadInputTokens")) + whole(
                figures.get("cacheCreationInputTokens"))
            tokens_out += whole(figures.get("outputTokens"))
    return [tokens_in, tokens_out, float(cost)]


def _usage(value: Any) -> list[int] | None:
    if not isinstance(value, dict):
        return None

    def n(key: str) -> int:
        return whole(value.get(key))

    return [n("input_tokens") + n("cache_creation_input_tokens") + n("cache_read_input_tokens"), n("output_tokens")]


def _content_text(content: Any) -> str:
    """A message's text: a plain string, or its text parts and tool calls, one per line."""
    if isinstance(content, str):
        return content.strip()
    if not isinstance(content, list):
        return ""
    lines = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str) and part["text"].strip():
            lines.append(part["text"].strip())
        elif part.get("type") == "tool_use":
            lines.append(f"[tool: {part.get('name') or '?'}]")
    return "\n".join(lines)
