"""A log entry as a plain JSON object: the shape ``agentledger events`` streams.

Pure (no store, no clock), so the stream's contract is tested without a
process and any other exporter (a file dump, a webhook later) can reuse it.
Only JSON types come out (datetimes as ISO 8601 strings), so any JSON
library serialises the result the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from agentledger.application.log import LogEntry

#: The library's envelope attributes: shown once as position/time/session_id/version, not again in ``fields``.
ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})


def event_type(topic: str) -> str:
    """``Heartbeat`` for a session event; ``StopGuard.Tripped`` for another aggregate's, so names never clash."""
    qualname = topic.rsplit(":", 1)[-1]
    return qualname.removeprefix("Session.")


def entry_json(entry: LogEntry) -> dict[str, Any]:
    """One entry: ``position``, ``time``, ``session_id``, ``version``, ``type``, ``fields``.

    An event that could not be decoded keeps its place in the stream, with
    ``time`` and ``fields`` null, its ``topic`` (``type`` is only what the
    topic says), and ``error``: a reader is told, and reads on.
    """
    record: dict[str, Any] = {
        "position": entry.position,
        "time": None,
        "session_id": entry.originator_id.hex,
        "version": entry.version,
        "type": event_type(entry.topic),
        "fields": None,
    }
    if entry.event is None:
        record.update(topic=entry.topic, error=entry.error)
        return record
    record["time"] = entry.event.timestamp.isoformat()
    record["fields"] = {k: plain(v) for k, v in vars(entry.event).items() if k not in ENVELOPE}
    return record


def plain(value: Any) -> Any:
    """``value`` with datetimes as ISO strings and UUIDs as hex, through dicts and lists."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return value.hex
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
