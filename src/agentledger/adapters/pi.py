"""pi (``@mariozechner/pi-coding-agent``, command ``pi``): ``pi --mode json``, and its session files.

Launch: ``pi --mode json [--model [PROVIDER/]MODEL]`` with the prompt on
stdin (read to its end when stdin is not a terminal). The JSON stream's
first line is the session header, ``{"type": "session", "version": 3, "id",
"timestamp", "cwd"}``: the native id comes from there. Resume: ``pi --mode
json --session PATH`` (the session's own file; it appends to it and keeps
the id). Not ``-c``: two runs in one directory would write into one file.

In json mode pi exits 0 even when the model call failed: the failure is an
assistant message with ``stopReason: "error"`` and ``errorMessage`` in the
stream (and the file), which :meth:`PiAdapter.exit_summary` takes as the note.

Storage (``$PI_CODING_AGENT_DIR``, default ``~/.pi/agent``):
``sessions/--<cwd without its leading '/', '/' and ':' as '-'>--/<header
timestamp, ':' and '.' as '-'>_<id>.jsonl`` (or directly in
``$PI_CODING_AGENT_SESSION_DIR``), written only once the first answer (or
error) arrives. Line 1 is the header; every other line has ``type``, ``id``,
``parentId`` and ``timestamp`` (ISO):

- ``message`` lines: ``message.role`` (``user``, ``assistant``,
  ``toolResult``, ...), ``message.content`` (text parts; an assistant's
  ``toolCall`` parts name the tool); an assistant's ``provider``, ``model``,
  ``usage.{input, output, cacheRead, cacheWrite, cost.total}`` (per request,
  not running totals), ``stopReason``, ``errorMessage``;
- ``session_info`` lines: ``name``, the session's title (set by ``/name``,
  never automatically).

The conversation's figures are the sums over the whole file (read from its
start, 8 MB per pass); this run's over the lines timestamped since it began.
"""

from __future__ import annotations

import os
import re
import sys
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
    clip,
    env_dir,
    first_begun,
    has_flag,
    home,
    iso_epoch,
    output_end,
    said_in_output,
    whole,
)
from agentledger.adapters.tail import read_new_lines, read_tail

_ID = re.compile(r"[0-9A-Za-z-]+")


def agent_dir() -> Path:
    return env_dir("PI_CODING_AGENT_DIR", home() / ".pi" / "agent")


def session_dirs(cwd: str | None = None) -> list[Path]:
    """Where session files are: the flat override directory, else ``sessions/`` (the cwd's folder if given)."""
    flat = os.environ.get("PI_CODING_AGENT_SESSION_DIR")
    if flat:
        return [Path(flat)]
    root = agent_dir() / "sessions"
    return [root / project_dir_name(cwd)] if cwd is not None else [root]


def project_dir_name(cwd: str) -> str:
    """pi's folder for a working directory: '/home/a/my.app' -> '--home-a-my.app--'."""
    return "--" + re.sub(r"[/\\:]", "-", re.sub(r"^[/\\]", "", cwd)) + "--"


class PiAdapter(Adapter):
    name = "pi"
    binary = "pi"
    observes = "~/.pi/agent/sessions/--<dir>--/<time>_<id>.jsonl: model, tokens, cost, title, last activity"

    def build_launch(self, request: LaunchRequest) -> LaunchPlan:
        argv = [self.agent_argv0(), "--mode", "json"]
        if request.model:
            argv += ["--model", request.model]
        return LaunchPlan(argv=argv, stdin_path=request.prompt_path)

    def resume_argv(self, native_session_id: str) -> list[str]:
        """``--session`` with the session's file where it is found: by id, pi would ask on stdin (the message)
        whether to fork a session it finds in another directory's folder."""
        path = _file_of(native_session_id)
        return [self.agent_argv0(), "--mode", "json", "--session", path or native_session_id]

    def streams_native_id(self, argv: Sequence[str]) -> bool:
        return has_flag(argv, "--mode", "json")

    def native_id_from_output(self, output_path: str) -> str | None:
        return said_in_output(output_path, lambda r: r.get("id") if r.get("type") == "session" else None)

    def find_native_session(self, cwd: str, started_at: float, pid: int | None,
                            hint: str | None = None) -> NativeRef | None:
        if hint:
            path = _file_of(hint)
            return NativeRef(hint, path) if path else None

        def identify(head: Any, path: str) -> tuple[float | None, str | None] | None:
            if not isinstance(head, dict) or head.get("type") != "session" or head.get("cwd") != cwd:
                return None
            return iso_epoch(head.get("timestamp")), head.get("id")

        return first_begun(session_dirs(cwd), started_at, identify)

    def read_facts(self, ref: NativeRef, cursor: Cursor) -> tuple[Facts, Cursor]:
        state: dict[str, Any] = {"run": [0, 0, 0.0], "all": [0, 0, 0.0], **cursor}
        # From the file's start (8 MB a pass): the conversation's figures are sums over every message.
        result = read_new_lines(ref.path, state.get("tail"), first_read_limit=sys.maxsize)
        if result.reset:
            state.update(run=[0, 0, 0.0], all=[0, 0, 0.0], counted=False)
        since = ref.run_since
        for record in result.records:
            if isinstance(record, dict):
                _take(record, state, since)
        state["tail"] = result.cursor
        facts: Facts = {"native_session_id": state.get("native_session_id") or ref.native_session_id}
        for key in ("model", "title", "last_activity_at"):
            if state.get(key) is not None:
                facts[key] = state[key]
        if state.get("counted"):
            facts["tokens_in"], facts["tokens_out"], cost = state["run"]
            facts["cost"] = round(cost, 6)
            facts["conversation_tokens_in"], facts["conversation_tokens_out"], cost = state["all"]
            facts["conversation_cost"] = round(cost, 6)
        return facts, state

    def recent_messages(self, ref: NativeRef, limit: int) -> list[NativeMessage]:
        messages = []
        for record in read_tail(ref.path):
            if not isinstance(record, dict) or record.get("type") != "message":
                continue
            message = record.get("message")
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                continue
            text = _content_text(message)
            if text:
                messages.append(NativeMessage(iso_epoch(record.get("timestamp")), message["role"], text))
        return messages[-limit:] if limit > 0 else []

    def exit_summary(self, output_path: str | None, exit_code: int | None) -> str | None:
        """The stream's last assistant message, if it failed (json mode exits 0 then); else any exit's note."""
        failed = _failed_answer(output_path) if output_path else None
        if failed:
            return failed
        return super().exit_summary(output_path, exit_code)


def _take(record: dict[str, Any], state: dict[str, Any], since: float | None) -> None:
    kind = record.get("type")
    at = iso_epoch(record.get("timestamp"))
    if at is not None:
        state["last_activity_at"] = max(at, state.get("last_activity_at") or 0)
    if kind == "session" and record.get("id"):
        state["native_session_id"] = str(record["id"])
    elif kind == "session_info" and isinstance(record.get("name"), str):
        state["title"] = record["name"].strip() or None  # an empty name clears it
    elif kind == "message" and isinstance(record.get("message"), dict):
        message = record["message"]
        if message.get("role") != "assistant":
            return
        if message.get("model"):
            provider = message.get("provider")
            state["model"] = f"{provider}/{message['model']}" if provider else str(message["model"])
        usage = message.get("usage")
        if not isinstance(usage, dict):
            return
        cost = (usage.get("cost") or {}).get("total") if isinstance(usage.get("cost"), dict) else None
        figures = [whole(usage.get("input")) + whole(usage.get("cacheRead")) + whole(usage.get("cacheWrite")),
                   whole(usage.get("output")), float(cost) if isinstance(cost, (int, float)) else 0.0]
        state["all"] = [a + b for a, b in zip(state["all"], figures)]
        if since is None or (at is not None and at >= since):
            state["run"] = [a + b for a, b in zip(state["run"], figures)]
        state["counted"] = True


def _content_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    lines = []
    if isinstance(content, str) and content.strip():
        lines.append(content.strip())
    elif isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text" and isinstance(part.get("text"), str) and part["text"].strip():
                lines.append(part["text"].strip())
            elif part.get("type") == "toolCall":
                lines.append(f"[tool: {part.get('name') or '?'}]")
    if message.get("stopReason") in ("error", "aborted") and message.get("errorMessage"):
        lines.append(f"[error: {message['errorMessage']}]")
    return "\n".join(lines)


def _failed_answer(output_path: str) -> str | None:
    """The ``errorMessage`` of the stream's last assistant ``message_end``, when it ended in an error."""
    import orjson

    last = None
    for line in (output_end(output_path) or b"").splitlines():
        if b'"message_end"' not in line:
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        message = record.get("message") if isinstance(record, dict) else None
        if isinstance(message, dict) and message.get("role") == "assistant":
            last = message
    if last is None or last.get("stopReason") not in ("error", "aborted"):
        return None
    text = str(last.get("errorMessage") or f"the answer ended: {last['stopReason']}").strip()
    return clip(text.splitlines()[0]) if text else None


def _file_of(session_id: str) -> str | None:
    """The session file named after ``session_id``, in any project's folder (or the flat override)."""
    if not _ID.fullmatch(session_id):
        return None
    for directory in session_dirs():
        matches = sorted(directory.glob(f"*_{session_id}.jsonl")) or sorted(directory.glob(f"*/*_{session_id}.jsonl"))
        if matches:
            return str(matches[-1])
    return None
