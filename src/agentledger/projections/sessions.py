"""The ``sessions`` and ``fuses`` read models, as a projection of Session events.

``SessionsProjection.process(event, position)`` turns one domain event into
row changes. The catch-up runner calls it inside the same transaction that
advances the tracking position, so a row never reflects an event the tracking
does not, and replaying the whole log reproduces the same rows.
"""

from __future__ import annotations

import sqlite3
from functools import singledispatchmethod
from typing import Any

import orjson

from agentledger.domain.session import Session
from agentledger.domain.vocabulary import FuseState, SessionStatus

PROJECTION_NAME = "sessions"


class SessionsProjection:
    """Applies Session events to the read-model tables through a DB-API cursor."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self.cursor = cursor

    @singledispatchmethod
    def process(self, event: Any, position: int) -> None:
        """Events this projection does not know leave the tables unchanged."""

    @process.register
    def _launched(self, event: Session.Launched, position: int) -> None:
        started_at = event.timestamp.timestamp()
        self.cursor.execute(
            "INSERT INTO sessions (id, name, adapter, status, argv, cwd, host, boot_id, pid,"
            " pid_start_time, boot_time, supervisor_pid, model, prompt, group_name, labels, log_path,"
            " launched_by, started_at, timeout_at, fuse_state, heartbeat_count, version, position)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,?,?)",
            (
                event.originator_id.hex,
                event.name,
                event.adapter,
                SessionStatus.RUNNING.value,
                orjson.dumps(event.argv).decode(),
                event.cwd,
                event.host,
                event.boot_id,
                event.pid,
                event.pid_start_time,
                event.boot_time,
                event.supervisor_pid,
                event.model,
                event.prompt,
                event.group,
                orjson.dumps(event.labels).decode(),
                event.log_path,
                event.launched_by,
                started_at,
                started_at + event.timeout if event.timeout else None,
                FuseState.NONE.value,
                event.originator_version,
                position,
            ),
        )

    @process.register
    def _fuse_set(self, event: Session.FuseSet, position: int) -> None:
        sid = event.originator_id.hex
        at = event.timestamp.timestamp()
        # The fuse before it ends here, unless it already ended when its lapse was recorded.
        self.cursor.execute(
            "UPDATE fuses SET state = 'replaced', ended_at = COALESCE(ended_at, ?), ended_by = COALESCE(ended_by, ?)"
            " WHERE session_id = ? AND state IN ('set', 'expired')",
            (at, event.set_by, sid),
        )
        self.cursor.execute(
            "INSERT INTO fuses (session_id, set_version, set_at, set_by, ttl, expires_at,"
            " extensions, state) VALUES (?,?,?,?,?,?,0,'set')",
            (sid, event.originator_version, at, event.set_by, event.ttl, event.expires_at.timestamp()),
        )
        self._update(event, position, fuse_ttl=event.ttl)
        self._arm(sid, event.expires_at.timestamp())

    @process.register
    def _heartbeat(self, event: Session.Heartbeat, position: int) -> None:
        sid = event.originator_id.hex
        at = event.timestamp.timestamp()
        if event.fuse_expires_at is None:
            self._update(event, position, last_heartbeat_at=at, heartbeat_count=("+", 1))
            return
        expires = event.fuse_expires_at.timestamp()
        self.cursor.execute(
            "UPDATE fuses SET expires_at = ?, extensions = extensions + 1, state = 'set', ended_at = NULL,"
            " ended_by = NULL WHERE session_id = ? AND state IN ('set', 'expired')",
            (expires, sid),
        )
        self._update(event, position, last_heartbeat_at=at, heartbeat_count=("+", 1))
        self._arm(sid, expires)

    def _arm(self, sid: str, expires_at: float) -> None:
        """A fuse set or extended: live until ``expires_at``; an unwatched session is watched again."""
        self.cursor.execute(
            "UPDATE sessions SET fuse_state = ?, fuse_expires_at = ?,"
            " status = CASE WHEN status = ? THEN ? ELSE status END WHERE id = ?",
            (FuseState.SET.value, expires_at, SessionStatus.UNWATCHED.value, SessionStatus.RUNNING.value, sid),
        )

    @process.register
    def _fuse_expired(self, event: Session.FuseExpired, position: int) -> None:
        sid = event.originator_id.hex
        self.cursor.execute(
            "UPDATE fuses SET state = 'expired', ended_at = ?, ended_by = ? WHERE session_id = ? AND state = 'set'",
            (event.expired_at.timestamp(), event.decided_by.get("component"), sid),
        )
        self._update(event, position, fuse_state=FuseState.EXPIRED.value)
        self.cursor.execute(
            "UPDATE sessions SET status = ? WHERE id = ? AND status = ?",
            (SessionStatus.UNWATCHED.value, sid, SessionStatus.RUNNING.value),
        )

    @process.register
    def _fuse_cancelled(self, event: Session.FuseCancelled, position: int) -> None:
        self.cursor.execute(
            "UPDATE fuses SET state = 'cancelled', ended_at = ?, ended_by = ?"
            " WHERE session_id = ? AND state IN ('set', 'expired')",
            (event.timestamp.timestamp(), event.by, event.originator_id.hex),
        )
        self._update(event, position, fuse_state=FuseState.CANCELLED.value)

    @process.register
    def _stop_requested(self, event: Session.StopRequested, position: int) -> None:
        self._update(
            event,
            position,
            status=SessionStatus.STOPPING.value,
            stop_requested_at=event.timestamp.timestamp(),
            stop_request_cause=event.cause,
            stop_request_signal=event.signal,
            stop_request_grace=event.grace,
        )

    @process.register
    def _stopped(self, event: Session.Stopped, position: int) -> None:
        self._update(
            event,
            position,
            status=SessionStatus.STOPPED.value,
            stopped_at=event.timestamp.timestamp(),
            stop_reason=event.reason,
            exit_code=event.exit_code,
            signal=event.signal,
            stopped_by=event.decided_by.get("component"),
        )

    def _update(self, event: Any, position: int, **columns: Any) -> None:
        """Set ``columns`` (a ``("+", n)`` value increments) plus version and position."""
        assignments, values = [], []
        for column, value in columns.items():
            if isinstance(value, tuple):
                assignments.append(f"{column} = {column} + ?")
                values.append(value[1])
            else:
                assignments.append(f"{column} = ?")
                values.append(value)
        assignments += ["version = ?", "position = ?"]
        values += [event.originator_version, position, event.originator_id.hex]
        self.cursor.execute(f"UPDATE sessions SET {', '.join(assignments)} WHERE id = ?", values)
