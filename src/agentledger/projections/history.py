"""A session's history for ``history``: each event, the status it left, and when the fuse went live or lapsed.

The status after each event is the session's as of that event's time: the
events up to it are applied to a fresh aggregate, and a set fuse counts as
live only until its expiry. A lapse has no event of its own unless a
reconciler recorded ``FuseExpired``, so a marker row is put in at the expiry
whenever the next event (or now) comes after it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agentledger.application.log import LogEntry, apply_readable
from agentledger.domain.durations import format_clock, format_duration
from agentledger.domain.evidence import Evidence
from agentledger.domain.fuse import session_status
from agentledger.domain.session import Session
from agentledger.domain.vocabulary import SessionStatus

_ENVELOPE = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def history_records(entries: list[LogEntry], now: datetime, start: Session | None = None) -> list[dict[str, Any]]:
    """One record per event in version order, with marker records where a fuse lapsed.

    ``start``: the session as it stood before the first of ``entries`` (``history --tail``: the
    aggregate at that version, from a snapshot), None when they begin with its ``Launched``.
    """
    records: list[dict[str, Any]] = []
    session: Session | None = start
    previous: datetime | None = start.modified_on if start is not None else None  # a window's first delta too
    status: str | None = None
    for index, entry in enumerate(entries):
        event = entry.event
        if event is None:
            records.append(_unreadable(entry, status))
            session = apply_readable(session, entry)  # its version passed over: the events after it apply
            continue
        at = event.timestamp
        was_live = session is not None and session.fuse_is_live(at)
        session = event.mutate(session)
        status = status_at(session, at)
        fields = {k: v for k, v in vars(event).items() if k not in _ENVELOPE}
        records.append({
            "position": entry.position,
            "version": entry.version,
            "time": at.isoformat(),
            "delta": f"+{format_duration((at - previous).total_seconds())}" if previous else None,
            "type": entry.type_name,
            "fields": fields,
            "status": status,
            "marks": ["fuse live"] if session.fuse_is_live(at) and not was_live else [],
            "summary": summarise(entry.type_name, fields),
        })
        previous = at
        lapse = _lapse_before(session, at, _next_time(entries, index, session, now))
        if lapse is not None:
            records.append(_lapse_marker(session, lapse))
    return records


def with_lock_facts(records: list[dict[str, Any]], facts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` with a marker row for each of the session's directory-lock facts (``application/locking.py``:
    took the lock on DIR, forced it from X, displaced by Y, released), put in at its time."""
    out = list(records)
    for fact in facts:
        at = fact["at"].isoformat()
        index = next((i for i, r in enumerate(out) if r["time"] is not None and r["time"] > at), len(out))
        status = out[index - 1]["status"] if index else None
        out.insert(index, {"position": None, "version": None, "time": at, "delta": None, "type": None,
                           "marker": "lock", "status": status, "marks": [], "summary": fact["summary"],
                           "lock": {k: v.isoformat() if isinstance(v, datetime) else v for k, v in fact.items()}})
    return out


def status_at(session: Session, at: datetime) -> str:
    """running while a fuse is live, unwatched once none is; stopping and stopped as recorded."""
    return session_status(session.status, session.fuse_state, session.fuse_expires_at, at)


def _next_time(entries: list[LogEntry], index: int, session: Session, now: datetime) -> datetime | None:
    """When the session's state next changes: the next readable event's time, or now if none follows."""
    for later in entries[index + 1:]:
        if later.event is not None:
            return later.event.timestamp
    return None if session.status == SessionStatus.STOPPED else now


def _lapse_before(session: Session, at: datetime, until: datetime | None) -> datetime | None:
    """The expiry of a fuse live at ``at`` that passes before ``until``."""
    if until is None or not session.fuse_is_live(at):
        return None
    expires = session.fuse_expires_at
    return expires if expires is not None and expires < until else None


def _lapse_marker(session: Session, expires: datetime) -> dict[str, Any]:
    since = session.last_heartbeat_at
    heartbeat = f"last heartbeat {format_clock(since)}" if since else "no heartbeat"
    return {"position": None, "version": None, "time": expires.isoformat(), "delta": None, "type": None,
            "marker": "fuse-lapsed", "status": status_at(session, expires), "marks": [],
            "summary": f"fuse lapsed: TTL {format_duration(session.fuse_ttl or 0)} passed, {heartbeat}"}


def summarise(kind: str, f: dict[str, Any]) -> str:
    """The few fields a person scans for, per event type."""
    if kind == "Launched":
        where = f"pid {f['pid']}" if f["pid"] is not None else "not started"
        origin = ", adopted" if f.get("source") == "adopted" else ""
        resumed = f", resumed from {f['resumed_from'][:12]}" if f.get("resumed_from") else ""
        return f"{' '.join(f['argv'])} ({where}, {f['adapter']}, {f['host']}{origin}{resumed})"
    if kind == "FuseSet":
        return f"ttl {format_duration(f['ttl'])}, expires {format_clock(f['expires_at'])}, by {f['set_by']}"
    if kind == "Heartbeat":
        extended = f"fuse to {format_clock(f['fuse_expires_at'])}" if f["fuse_expires_at"] else "no live fuse"
        coalesced = f"; the {f['coalesced']} before it coalesced by an archive" if f.get("coalesced") else ""
        window = f.get("window_expires_at")
        if isinstance(window, datetime):  # the first of a run an archive coalesced (Heartbeat.window_expires_at)
            coalesced += f"; the heartbeats after it, coalesced by an archive, kept the fuse live to {format_clock(window)}"
        return f"from {f['source']}, {extended}{coalesced}"
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
    if kind == "AgentObserved":
        return _agent_facts(f)
    return ""


def _agent_facts(f: dict[str, Any]) -> str:
    """The facts that changed, briefly; and whether the agent's activity counted as a heartbeat."""
    parts = [f"{label} {f[key]}" for key, label in (("native_session_id", "session"), ("model", "model"),
                                                   ("title", "title")) if f.get(key) is not None]
    if f.get("native_id_source") and f.get("native_session_id"):
        parts[0] += f" ({f['native_id_source']})"
    if f.get("tokens_in") is not None or f.get("tokens_out") is not None:
        parts.append(f"tokens {f.get('tokens_in') or 0}/{f.get('tokens_out') or 0}")
    if f.get("cost") is not None:
        parts.append(f"cost ${f['cost']:.4f}")
    if f.get("conversation_tokens_in") is not None or f.get("conversation_tokens_out") is not None:
        parts.append(f"conversation {f.get('conversation_tokens_in') or 0}/{f.get('conversation_tokens_out') or 0}")
    if f.get("heartbeat"):
        extended = f", fuse to {format_clock(f['fuse_expires_at'])}" if f.get("fuse_expires_at") else ""
        parts.append(f"activity (heartbeat{extended})")
    return f"from {f['source']}: " + ", ".join(parts) if parts else f"from {f['source']}"


def _probe(evidence: dict[str, Any]) -> str:
    probe = Evidence.from_dict(evidence).pid_probe
    return "PID None not probed" if probe is None else f"PID {probe.pid} {probe.liveness.value}"


def workspace_records(entries: list[LogEntry], status: str | None) -> list[dict[str, Any]]:
    """The session's Workspace events (``domain/workspace.py``), after its own: where its work went.

    They follow the ``Stopped`` (which is final for the session), so the status they show is the session's last.
    """
    records: list[dict[str, Any]] = []
    for entry in entries:
        event = entry.event
        if event is None:
            records.append(_unreadable(entry, status))
            continue
        fields = {k: v for k, v in vars(event).items() if k not in _ENVELOPE}
        records.append({"position": entry.position, "version": entry.version, "time": event.timestamp.isoformat(),
                        "delta": None, "type": f"Workspace.{entry.type_name}", "fields": fields, "status": status,
                        "marks": [], "summary": _workspace_summary(entry.type_name, fields)})
    return records


def _workspace_summary(kind: str, f: dict[str, Any]) -> str:
    def who(by: dict[str, Any] | None) -> str:
        by = by or {}
        return f"{by.get('user') or by.get('component')} on {by.get('host')}"

    if kind == "Created":
        return f"worktree {f['worktree']}, branch {f['branch']} from {f.get('base_ref') or f['base_commit'][:12]}"
    if kind == "Merged":
        return (f"work merged into {f['into']} as {f['commit'][:12]}{' (squash)' if f['squash'] else ''}, "
                f"by {who(f['by'])}")
    if kind == "Removed":
        gone = "worktree and branch removed" if f["branch_deleted"] else "worktree removed"
        return f"{gone}{' (forced: unmerged work given up)' if f['forced'] else ''}, by {who(f['by'])}"
    if kind == "CheckFinished":
        return (f"check `{f['command']}` {'passed' if f['passed'] else 'failed'} (exit {f['exit_code']}) "
                f"after {format_duration(f['duration'])}")
    return ""


def _unreadable(entry: Any, status: str | None) -> dict[str, Any]:
    """The record of an event this version cannot decode: shown, never skipped in silence."""
    return {"position": entry.position, "version": entry.version, "time": None, "delta": None, "type": entry.type_name,
            "error": entry.error, "status": status, "marks": [], "summary": f"UNREADABLE: {entry.error}"}
