"""``agentledger logs``: a session's recent messages from its agent's own storage.

The captured stdout of an agent is mostly stream-format JSON, unreadable for a
person; the agent's own transcript holds the conversation. This finds the
native session from the read model's row (adapter, native id, cwd, start
time) and asks the adapter for its last messages. The text comes from the
agent (and so from the model and from whatever the model read): the CLI prints
it through ``entrypoints/render.py``'s escaping (``message_lines``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from agentledger.adapters.base import NativeMessage


def native_messages(row: Any, limit: int) -> tuple[list[NativeMessage], str | None]:
    """An agent session's last ``limit`` messages, or ([], why not) when its agent's storage has none to give.

    For agent adapters only: a plain command's output is all there is of it (``logs`` shows that).
    """
    from agentledger.adapters import registry

    adapter = registry.for_session(row["adapter"])
    try:
        ref = adapter.find_native_session(row["cwd"], row["started_at"], row["pid"], row["native_session_id"])
    except Exception as error:  # a foreign format: the captured output still answers
        return [], f"reading {adapter.name}'s storage failed ({type(error).__name__}: {error})"
    if ref is None:
        return [], f"{adapter.name}'s own session was not found"
    try:
        messages = adapter.recent_messages(ref, limit)
    except Exception as error:
        return [], f"reading {ref.path} failed ({type(error).__name__}: {error})"
    if not messages and limit > 0:
        return [], f"{adapter.name}'s session {ref.native_session_id} has no messages yet"
    return messages, None


def as_json(message: NativeMessage) -> dict[str, Any]:
    """The ``--json`` record: ``at`` as ISO 8601 UTC (None if unknown), ``role``, ``text`` unescaped (JSON is safe)."""
    at = None if message.at is None else datetime.fromtimestamp(message.at, timezone.utc).isoformat()
    return {"at": at, "role": message.role, "text": message.text}
