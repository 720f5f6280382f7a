"""Codex CLI: ``codex exec``, and its rollout files under ``~/.codex/sessions``.

Launch: ``codex exec --json --skip-git-repo-check -C CWD [--model M] -`` with
the prompt on stdin (a prompt of ``-`` tells ``exec`` to read it from stdin;
without ``--skip-git-repo-check`` it refuses any directory outside a git
repository). ``--json``'s first line is ``{"type": "thread.started",
"thread_id"}``: the native id (the rollout's). Resume: ``codex exec --json
--skip-git-repo-check resume ID -`` in the session's directory; it appends to
the same rollout and keeps the id. (By ``--last`` or by name, a thread that
does not match the directory silently becomes a new one: never used.)

Storage (``$CODEX_HOME``, default ``~/.codex``):
``sessions/YYYY/MM/DD/rollout-<local time>-<session id>.jsonl``, one
``{timestamp, type, payload}`` object per line:

- ``session_meta`` (the first line): ``payload.id`` (the session id, which
  ``codex exec resume`` takes), ``payload.cwd``, ``payload.timestamp``;
- ``turn_context``: ``payload.model``;
- ``event_msg`` with ``payload.type == "token_count"``: ``payload.info.total_token_usage.
  {input_tokens, cached_input_tokens, output_tokens, reasoning_output_tokens}``,
  running totals for the thread, earlier (resumed) runs included (``info``
  is null before the first answer).

A thread has a name only when a person renames it (``session_index.jsonl``:
``{id, thread_name}``); ``codex exec`` sets none.

``recent_messages`` reads the rollout's last 2 MB: ``response_item`` lines
with ``payload.type == "message"`` and ``role`` user or assistant (text of
``input_text``/``output_text`` parts; a part that is one ``<tag>…</tag>``
block, such as ``<environment_context>``, is context Codex added and is left
out), and ``function_call``/``custom_tool_call``/``local_shell_call`` items as
``[tool: NAME]``. Rollouts without response items (older releases) are read
from ``event_msg`` ``user_message``/``agent_message`` (``payload.message``).

Codex records no cost.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentledger.adapters.base import (
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

#: A content part that is one tagged block (``<environment_context>…</environment_context>``): added by Codex.
_INJECTED = re.compile(r"^<([A-Za-z_][\w-]*)[\s>].*</\1>$", re.DOTALL)
_TOOL_ITEMS = ("function_call", "custom_tool_call", "local_shell_call")


def sessions_dir() -> Path:
    return env_dir("CODEX_HOME", home() / ".codex") / "sessions"


class CodexAdapter(Adapter):
    name = "codex"
    binary = "codex"
    observes = "~/.codex/sessions/YYYY/MM/DD/rollout-*.jsonl: session id, model, tokens, last activity"

    def build_launch(self, request: LaunchRequest) -> LaunchPlan:
        # --skip-git-repo-check: without it, codex exec refuses any directory outside a git repository.
        argv = [self.agent_argv0(), "exec", "--json", "--skip-git-repo-check", "-C", request.cwd]
        if request.model:
            argv += ["--model", request.model]
        return LaunchPlan(argv=[*argv, "-"], stdin_path=request.prompt_path)

    def resume_argv(self, native_session_id: str) -> list[str]:
        """By id (``--last`` or a name would start a new thread when none matches); in the session's cwd."""
        return [self.agent_argv0(), "exec", "--json", "--skip-git-repo-check", "resume", native_session_id, "-"]

    def streams_native_id(self, argv: Sequence[str]) -> bool:
        return has_flag(argv, "--json")

    def native_id_from_output(self, output_path: str) -> str | None:
        """``--json``'s first line, ``{"type": "thread.started", "thread_id"}`` (the rollout's id)."""
        return said_in_output(output_path,
                              lambda r: r.get("thread_id") if r.get("type") == "thread.started" else None)

    def find_native_session(self, cwd: str, started_at: float, pid: int | None,
                            hint: str | None = None) -> NativeRef | None:
        """The first rollout started in ``cwd`` since the process started, in the day directories around then.

        With a ``hint`` (``codex exec resume ID`` continues that rollout, however old), the rollout named after it.
        """
        root = sessions_dir()
        if hint:  # by its name only: never another session's rollout in its place
            named = _rollout_of(root, hint)
            return None if named is None else NativeRef(hint, named)
        days = {
            time.strftime("%Y/%m/%d", convert(moment))
            for moment in (started_at, time.time()) for convert in (time.localtime, time.gmtime)
        }

        def identify(head: Any, path: str) -> tuple[float | None, str | None] | None:
            if not isinstance(head, dict) or head.get("type") != "session_meta":
                return None
            meta = head.get("payload") or {}
            if meta.get("cwd") != cwd:
                return None
            return iso_epoch(meta.get("timestamp")) or iso_epoch(head.get("timestamp")), meta.get("id")

        return first_begun([root / day for day in sorted(days)], started_at, identify, prefix="rollout-")

    def recent_messages(self, ref: NativeRef, limit: int) -> list[NativeMessage]:
        items: list[NativeMessage] = []
        events: list[NativeMessage] = []  # the same conversation as events, for rollouts without items
        for record in read_tail(ref.path):
            payload = record.get("payload") if isinstance(record, dict) else None
            if not isinstance(payload, dict):
                continue
            at = iso_epoch(record.get("timestamp"))
            kind = payload.get("type")
            if record.get("type") == "response_item":
                if kind == "message" and payload.get("role") in ("user", "assistant"):
                    text = _content_text(payload.get("content"))
                    if text:
                        items.append(NativeMessage(at, payload["role"], text))
                elif kind in _TOOL_ITEMS:
                    tool = payload.get("name") or ("shell" if kind == "local_shell_call" else "?")
                    items.append(NativeMessage(at, "assistant", f"[tool: {tool}]"))
            elif record.get("type") == "event_msg" and kind in ("user_message", "agent_message"):
                said = payload.get("message")
                if isinstance(said, str) and said.strip():
                    events.append(NativeMessage(at, "user" if kind == "user_message" else "assistant", said.strip()))
        messages = items or events
        return messages[-limit:] if limit > 0 else []

    def read_facts(self, ref: NativeRef, cursor: Cursor) -> tuple[Facts, Cursor]:
        """Token counts are the thread's running totals (``total_token_usage``): the conversation's as they
        stand, and this run's as they stand minus the last total before the run began (``ref.run_since``)."""
        state: dict[str, Any] = dict(cursor)
        # Watching a run, from the rollout's start (8 MB a pass): the last total before a resumed run may lie
        # further back than the 256 KB a look at no run in particular reads.
        result = read_new_lines(ref.path, state.get("tail"),
                                first_read_limit=sys.maxsize if ref.run_since is not None else FIRST_READ_LIMIT)
        if result.reset:
            state.update(total=None, base=None)
        since = ref.run_since
        for record in result.records:
            if not isinstance(record, dict):
                continue
            at = iso_epoch(record.get("timestamp"))
            if at is not None:
                state["last_activity_at"] = max(at, state.get("last_activity_at") or 0)
            payload = record.get("payload")
            if not isinstance(payload, dict):
                continue
            kind = record.get("type")
            if kind == "session_meta" and payload.get("id"):
                state["native_session_id"] = str(payload["id"])
            elif kind == "turn_context" and payload.get("model"):
                state["model"] = payload["model"]
            elif kind == "event_msg" and payload.get("type") == "token_count":
                total = (payload.get("info") or {}).get("total_token_usage")
                if isinstance(total, dict):
                    figures = [whole(total.get("input_tokens")), whole(total.get("output_tokens"))]
                    state["total"] = figures
                    if since is not None and at is not None and at < since:
                        state["base"] = figures  # the conversation before this run
        state["tail"] = result.cursor
        facts: Facts = {"native_session_id": state.get("native_session_id") or ref.native_session_id}
        for key in ("model", "last_activity_at"):
            if state.get(key) is not None:
                facts[key] = state[key]
        title = _thread_name(facts["native_session_id"])
        if title:
            facts["title"] = title
        if state.get("total") is not None:
            total, base = state["total"], state.get("base") or [0, 0]
            facts["conversation_tokens_in"], facts["conversation_tokens_out"] = total
            facts["tokens_in"], facts["tokens_out"] = total[0] - base[0], total[1] - base[1]
        return facts, state


def _thread_name(session_id: str) -> str | None:
    """The name a person gave the thread (``session_index.jsonl``, written on a rename); codex exec sets none."""
    path = env_dir("CODEX_HOME", home() / ".codex") / "session_index.jsonl"
    if not path.exists():
        return None
    name = None
    for record in read_tail(str(path), 256 * 1024):
        if isinstance(record, dict) and record.get("id") == session_id and isinstance(record.get("thread_name"), str):
            name = record["thread_name"].strip() or None
    return name


def _content_text(content: Any) -> str:
    """The text parts of a response item's content, without the context blocks Codex adds to user messages."""
    if not isinstance(content, list):
        return ""
    lines = []
    for part in content:
        text = part.get("text") if isinstance(part, dict) else None
        if isinstance(text, str) and text.strip() and not _INJECTED.match(text.strip()):
            lines.append(text.strip())
    return "\n".join(lines)


def _rollout_of(root: Path, session_id: str) -> str | None:
    """The newest rollout file named after ``session_id`` under ``root`` (one glob of the day directories)."""
    if not re.fullmatch(r"[0-9A-Za-z-]+", session_id):
        return None
    matches = sorted(root.glob(f"*/*/*/rollout-*-{session_id}.jsonl"))
    return str(matches[-1]) if matches else None
