"""A session's events as records for ``history``: position, time, type, fields, summary."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from agentledger.domain.durations import format_clock, format_duration

_ENVELOPE = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def event_records(events: Iterable[Any], positions: dict[int, int]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    previous: datetime | None = None
    for event in events:
        fields = {k: v for k, v in vars(event).items() if k not in _ENVELOPE}
        delta = (event.timestamp - previous).total_seconds() if previous else None
        previous = event.timestamp
        records.append({
            "position": positions.get(event.originator_version),
            "version": event.originator_version,
            "time": event.timestamp.isoformat(),
            "delta": f"+{format_duration(delta)}" if delta is not None else "",
            "type": type(event).__name__,
            "fields": fields,
            "summary": summarise(type(event).__name__, fields),
        })
    return records


def summarise(kind: str, f: dict[str, Any]) -> str:
    """The few fields a person scans for, per event type."""
    if kind == "Launched":
        where = f"pid {f['pid']}" if f["pid"] is not None else "not started"
        return f"{' '.join(f['argv'])} ({where}, {f['adapter']}, {f['host']})"
    if kind == "FuseSet":
        return f"ttl {format_duration(f['ttl'])}, expires {format_clock(f['expires_at'])}, by {f['set_by']}"
    if kind == "Heartbeat":
        extended = f"fuse to {format_clock(f['fuse_expires_at'])}" if f["fuse_expires_at"] else "no live fuse"
        return f"from {f['source']}, {extended}"
    if kind == "FuseCancelled":
        return f"by {f['by']}: {f['reason']}"
    if kind == "StopRequested":
        cause = "" if f.get("cause", "user") == "user" else f" ({f['cause']})"
        return f"by {f['requested_by']}{cause}, {f['signal']}" + (f": {f['note']}" if f["note"] else "")
    if kind == "FuseExpired":
        return f"fuse expired at {format_clock(f['expired_at'])} with {_probe(f['evidence'])}: unwatched"
    if kind == "Stopped":
        status = f"exit code {f['exit_code']}" if f["exit_code"] is not None else (f["signal"] or "exit status unknown")
        decider = f["decided_by"].get("component")
        seen = f", {_probe(f['evidence'])}" if decider == "reconciler" else ""
        return f"{f['reason']}, {status}, by {decider}{seen}"
    return ""


def _probe(evidence: dict[str, Any]) -> str:
    probe = evidence.get("pid_probe") or {}
    return f"PID {probe.get('pid')} {probe.get('detail', 'not probed')}"
