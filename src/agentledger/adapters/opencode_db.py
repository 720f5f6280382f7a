"""opencode 1.x's SQLite store (``$XDG_DATA_HOME/opencode/opencode.db``), read without disturbing opencode.

opencode writes to this database while it runs (WAL mode), so every look is a
short connection opened read-only (``mode=ro``: it can neither write nor
checkpoint), one or two queries, closed at once; no transaction is held
between polls. A busy database (``database is locked``), a missing table (an
older or newer schema) or a damaged file raises :class:`sqlite3.Error`,
which callers turn into "nothing read this time".

Tables read (times are epoch milliseconds):

- ``session``: ``id``, ``parent_id`` (sub-agents), ``directory`` (the cwd),
  ``title``, ``model`` (JSON ``{"id", "providerID", ...}``), ``cost``,
  ``tokens_input``, ``tokens_output``, ``tokens_reasoning``,
  ``tokens_cache_read``, ``tokens_cache_write`` (running totals kept by
  opencode), ``time_created``, ``time_updated``;
- ``message``: ``session_id``, ``time_created``, ``time_updated``, ``data``
  (JSON: ``role``, ``error.data.message``, ...);
- ``part``: ``message_id``, ``session_id``, ``time_updated``, ``data`` (JSON:
  ``{"type": "text", "text"}``, ``{"type": "tool", "tool"}``, ...).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from agentledger.adapters.base import Facts, NativeMessage, whole

#: How long one query waits for opencode's write lock before giving up until the next poll.
BUSY_TIMEOUT = 0.2


def connect(path: Path | str) -> sqlite3.Connection:
    """A read-only connection that never creates the file and gives up quickly on a lock."""
    return sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=BUSY_TIMEOUT,
                           isolation_level=None, check_same_thread=False)


def find_session(path: Path | str, cwd: str, since: float, hint: str | None) -> str | None:
    """The hinted session's id, else the first top-level session in ``cwd`` created at or after ``since``."""
    with closing(connect(path)) as db:
        if hint:
            row = db.execute("SELECT id FROM session WHERE id = ?", (hint,)).fetchone()
        else:
            row = db.execute(
                "SELECT id FROM session WHERE parent_id IS NULL AND directory = ? AND time_created >= ? "
                "ORDER BY time_created, id LIMIT 1", (cwd, int(since * 1000))).fetchone()
    return None if row is None else str(row[0])


#: This run's figures: the session's assistant messages created since the run began (``?`` epoch ms).
_RUN_FIGURES = (
    "SELECT count(*), sum(json_extract(data, '$.tokens.input')), sum(json_extract(data, '$.tokens.cache.read')),"
    " sum(json_extract(data, '$.tokens.cache.write')), sum(json_extract(data, '$.tokens.output')),"
    " sum(json_extract(data, '$.tokens.reasoning')), sum(json_extract(data, '$.cost'))"
    " FROM message WHERE session_id = ? AND time_created >= ? AND json_extract(data, '$.role') = 'assistant'"
)


def session_facts(path: Path | str, session_id: str, run_since: float | None = None) -> Facts:
    """Title, model, tokens, cost and last activity from the session row (and its newest rows).

    The row keeps the conversation's running totals (``conversation_*``);
    this run's are summed over the assistant messages created since
    ``run_since`` (all of them without it).
    """
    since = 0 if run_since is None else int(run_since * 1000)
    with closing(connect(path)) as db:
        row = db.execute(
            "SELECT title, model, tokens_input, tokens_output, tokens_reasoning, tokens_cache_read, "
            "tokens_cache_write, cost, time_updated, "
            "(SELECT max(time_updated) FROM message WHERE session_id = s.id), "
            "(SELECT max(time_updated) FROM part WHERE session_id = s.id) "
            "FROM session AS s WHERE id = ?", (session_id,)).fetchone()
        run = db.execute(_RUN_FIGURES, (session_id, since)).fetchone() if row is not None else None
    if row is None or run is None:
        return {}
    title, model, t_in, t_out, t_reasoning, cache_read, cache_write, cost, *times = row
    count, r_in, r_read, r_write, r_out, r_reasoning, r_cost = run
    facts: Facts = {
        "native_session_id": session_id,
        "title": title or None,
        "model": _model_name(model),
        "conversation_tokens_in": whole(t_in) + whole(cache_read) + whole(cache_write),
        "conversation_tokens_out": whole(t_out) + whole(t_reasoning),
        "conversation_cost": round(float(cost), 6) if isinstance(cost, (int, float)) else None,
        "tokens_in": whole(r_in) + whole(r_read) + whole(r_write),
        "tokens_out": whole(r_out) + whole(r_reasoning),
        "cost": round(float(r_cost or 0), 6) if count else 0.0,
    }
    times = [t for t in times if isinstance(t, (int, float))]
    if times:
        facts["last_activity_at"] = max(times) / 1000.0
    return {key: value for key, value in facts.items() if value is not None}


def recent_messages(path: Path | str, session_id: str, limit: int) -> list[NativeMessage]:
    """The newest ``limit`` messages with something to show, oldest first, from their text and tool parts."""
    if limit <= 0:
        return []
    newest = "SELECT id FROM message WHERE session_id = ? ORDER BY time_created DESC, id DESC LIMIT ?"
    wanted = (session_id, limit * 2 + 10)  # room for messages with nothing to show (steps, reasoning only)
    with closing(connect(path)) as db:
        rows = db.execute(f"SELECT id, time_created, data FROM message WHERE id IN ({newest}) "
                          "ORDER BY time_created, id", wanted).fetchall()
        parts: dict[str, list[Any]] = {}
        for message_id, data in db.execute(
                f"SELECT message_id, data FROM part WHERE message_id IN ({newest}) ORDER BY message_id, id", wanted):
            parts.setdefault(message_id, []).append(_loads(data))
    messages = []
    for message_id, created, data in rows:
        info = _loads(data)
        text = message_text(info, parts.get(message_id, []))
        if text:
            at = created / 1000.0 if isinstance(created, (int, float)) else None
            messages.append(NativeMessage(at, str(info.get("role") or "?"), text))
    return messages[-limit:]


def message_text(info: dict[str, Any], parts: list[Any]) -> str:
    """A message's text parts, its tool calls as ``[tool: NAME]`` and its error, one per line (legacy format too)."""
    lines = []
    for part in parts:
        if not isinstance(part, dict) or part.get("synthetic") or part.get("ignored"):
            continue  # synthetic: text opencode added itself (attached files' contents, reminders)
        if part.get("type") == "text" and isinstance(part.get("text"), str) and part["text"].strip():
            lines.append(part["text"].strip())
        elif part.get("type") == "tool":
            lines.append(f"[tool: {part.get('tool') or '?'}]")
    error = info.get("error")
    if isinstance(error, dict):
        data = error.get("data")
        data = data if isinstance(data, dict) else {}
        lines.append(f"[error: {data.get('message') or error.get('name') or 'unknown'}]")
    return "\n".join(lines)


def _model_name(value: Any) -> str | None:
    """``{"id": "big-pickle", "providerID": "opencode"}`` (JSON text) as ``opencode/big-pickle``."""
    model = _loads(value) if isinstance(value, (str, bytes)) else value
    if not isinstance(model, dict) or not model.get("id"):
        return None
    return f"{model['providerID']}/{model['id']}" if model.get("providerID") else str(model["id"])


def _loads(value: Any) -> dict[str, Any]:
    try:
        loaded = orjson.loads(value) if isinstance(value, (str, bytes)) else value
    except orjson.JSONDecodeError:
        return {}
    return loaded if isinstance(loaded, dict) else {}
