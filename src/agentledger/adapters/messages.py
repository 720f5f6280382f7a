"""``agentledger logs``: a session's recent messages from its agent's own storage, printed safely.

The captured stdout of an agent is mostly stream-format JSON, unreadable for a
person; the agent's own transcript holds the conversation. This finds the
native session from the read model's row (adapter, native id, cwd, start
time) and asks the adapter for its last messages. The text comes from the
agent (and so from the model and from whatever the model read): it is printed
with control characters escaped, so it cannot move the cursor, retitle the
terminal or hide text.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from agentledger.adapters.base import NativeMessage

#: How many messages ``logs`` shows without ``-n``.
DEFAULT_LIMIT = 50
ROLE_WIDTH = 9  # "assistant"
TIME_WIDTH = 20  # 2026-01-01T00:00:00Z
#: Bidirectional overrides and isolates (category Cf) can reorder what a terminal shows; escaped too.
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def native_messages(row: Any, limit: int) -> tuple[list[NativeMessage], str | None]:
    """The session's last ``limit`` messages, or ([], why not) when its agent's storage has none to give."""
    from agentledger.adapters import registry

    adapter = registry.for_session(row["adapter"])
    if adapter.name == registry.DEFAULT:
        return [], f"a plain command (adapter {row['adapter'] or registry.DEFAULT}) keeps no messages"
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


def render(messages: list[NativeMessage]) -> Iterator[str]:
    """``TIME  ROLE  text`` per message; further lines of a text indented under its first, blank ones dropped.

    So every line either starts a message (with its time) or continues one
    (with spaces): ``grep``, ``cut`` and a reader's eye all find the messages.
    """
    indent = " " * (TIME_WIDTH + 2 + ROLE_WIDTH + 2)
    for message in messages:
        lines = [line.rstrip() for line in safe(message.text).split("\n") if line.strip()] or [""]
        yield f"{_time(message.at):<{TIME_WIDTH}}  {safe(message.role):<{ROLE_WIDTH}}  {lines[0]}".rstrip()
        yield from (indent + line for line in lines[1:])


def as_json(message: NativeMessage) -> dict[str, Any]:
    """The ``--json`` record: ``at`` as ISO 8601 UTC (None if unknown), ``role``, ``text`` unescaped (JSON is safe)."""
    at = None if message.at is None else datetime.fromtimestamp(message.at, timezone.utc).isoformat()
    return {"at": at, "role": message.role, "text": message.text}


def safe(text: str) -> str:
    """``text`` with every control character but newline and tab escaped (``\\x1b``, ``\\r``, ``\\u202e``)."""
    return "".join(map(_escape, text.replace("\r\n", "\n")))


def _escape(char: str) -> str:
    if char in "\n\t" or (char not in _BIDI and unicodedata.category(char) != "Cc"):
        return char
    return "\\r" if char == "\r" else f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def _time(at: float | None) -> str:
    return "-" if at is None else datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
