"""The ``sessions`` and ``fuses`` read models, as a projection of Session events.

``SessionsProjection.process(event, position)`` turns one domain event into
row changes. The catch-up runner calls it inside the same transaction that
advances the tracking position, so a row never reflects an event the tracking
does not, and replaying the whole log reproduces the same rows.

Heartbeats are most of the log, so a run of many events (catch-up, rebuild)
goes through ``defer`` and ``flush`` instead: a session's heartbeats are held
back (however many other sessions' events come between them) and written as
one ``UPDATE`` per table with their final values and their count, just before
that session's next other event or at ``flush``. The rows come out exactly as
``process`` makes them one event at a time: a heartbeat touches only its own
session's rows (the ``sessions`` row, and the set or expired ``fuses`` rows,
which stay the same rows for the whole run of heartbeats); each value it
writes is overwritten by the next heartbeat's or is a count; and every other
event of the session is applied after the heartbeats before it. No
``INSERT`` is reordered, so even rowids are the same.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from agentledger.domain.hosts import Host
from agentledger.domain.session import Session, coalesced_before, heartbeat_expiry
from agentledger.domain.vocabulary import FuseState, SessionStatus

if TYPE_CHECKING:
    from agentledger.application.ports import Cursor


_Handler = Callable[["SessionsProjection", Any, int], None]


class SessionsProjection:
    """Applies Session and Host events to the read-model tables through a DB-API cursor."""

    #: Event class -> handler; filled in below the class, and with subclasses as they are first met.
    _handlers: dict[type, _Handler | None] = {}  # noqa: RUF012 - built once, below

    def __init__(self, cursor: Cursor) -> None:
        self.cursor = cursor
        #: Held-back heartbeats by session id (``UUID.int``, the cheapest key to get):
        #: [count, how many extended the fuse, the last one, the last that extended the fuse, its position].
        self._beats: dict[int, list[Any]] = {}
        #: The originators of the events applied (``UUID.int``): whose stopped sessions' documents to remake.
        self._touched: set[int] = set()

    def process(self, event: Any, position: int) -> None:
        """Apply one event now. Events this projection does not know leave the tables unchanged."""
        self._touched.add(event.originator_id.int)
        if self._beats:
            pending = self._beats.pop(event.originator_id.int, None)
            if pending is not None:
                self._write_beats(pending)
        handler = self._handler(type(event))
        if handler is not None:
            handler(self, event, position)

    def defer(self, event: Any, position: int) -> None:
        """Apply one event, or hold it back if it is a heartbeat (see the module's docstring).

        The rows are what ``process`` would make only after :meth:`flush`.
        """
        if type(event) is not _HEARTBEAT:
            self.process(event, position)
            return
        key = event.originator_id.int
        self._touched.add(key)
        pending = self._beats.get(key)
        beats = 1 + coalesced_before(event)
        if pending is None:
            self._beats[key] = [beats, 0, event, None, position] if event.fuse_expires_at is None else [
                beats, beats, event, event, position]
            return
        pending[0] += beats
        pending[2] = event
        pending[4] = position
        if event.fuse_expires_at is not None:
            pending[1] += beats
            pending[3] = event

    def flush(self) -> None:
        """Write every held-back heartbeat."""
        if not self._beats:
            return
        fuses, armed, unarmed = [], [], []
        for count, extended, last, last_extended, position in self._beats.values():
            sid = last.originator_id.hex
            at = last.timestamp.timestamp()
            if extended:
                expires = _extended_to(last_extended)
                fuses.append((expires, extended, sid))
                armed.append((at, count, last.originator_version, position, expires, sid))
            else:
                unarmed.append((at, count, last.originator_version, position, sid))
        self._beats.clear()
        self.cursor.executemany(_EXTEND_FUSES, fuses)
        self.cursor.executemany(_BEATS_ARMED, armed)
        self.cursor.executemany(_BEATS, unarmed)

    def settle(self) -> None:
        """Write held-back heartbeats, then remake the kept ``--json`` documents of the stopped sessions any
        applied event touched (``queries.write_stopped_documents``; migration 0013 says why)."""
        from agentledger.projections.queries import write_stopped_documents

        self.flush()
        touched, self._touched = self._touched, set()
        write_stopped_documents(self.cursor, (f"{key:032x}" for key in touched))

    def _write_beats(self, pending: list[Any]) -> None:
        count, extended, last, last_extended, position = pending
        sid = last.originator_id.hex
        at = last.timestamp.timestamp()
        if extended:
            expires = _extended_to(last_extended)
            self.cursor.execute(_EXTEND_FUSES, (expires, extended, sid))
            self.cursor.execute(_BEATS_ARMED, (at, count, last.originator_version, position, expires, sid))
        else:
            self.cursor.execute(_BEATS, (at, count, last.originator_version, position, sid))

    @classmethod
    def _handler(cls, event_class: type) -> _Handler | None:
        """The handler for an event class: its own, else its nearest registered base's (as singledispatch)."""
        try:
            return cls._handlers[event_class]
        except KeyError:
            extension = _EXTENSIONS.get(event_class.__module__)
            if extension is not None:  # the first event of a kind these rows also project: load its handlers
                cls._handlers.update(importlib.import_module(extension).HANDLERS)
                if event_class in cls._handlers:
                    return cls._handlers[event_class]
            handler = next((cls._handlers[base] for base in event_class.__mro__ if base in cls._handlers), None)
            cls._handlers[event_class] = handler
            return handler

    def _launched(self, event: Session.Launched, position: int) -> None:
        started_at = event.timestamp.timestamp()
        self.cursor.execute(
            "INSERT INTO sessions (id, name, adapter, status, argv, cwd, host, boot_id, pid,"
            " pid_start_time, boot_time, supervisor_pid, model, prompt, group_name, labels, log_path,"
            " launched_by, started_at, timeout_at, fuse_state, heartbeat_count, version, position, source,"
            " resumed_from)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,?,?,?,?)",
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
                event.source,
                event.resumed_from,
            ),
        )
        if getattr(event, "workspace", None):  # a session's own worktree (projections/workspaces.py)
            from agentledger.projections import workspaces

            workspaces.launched(self.cursor, event)

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

    def _heartbeat(self, event: Session.Heartbeat, position: int) -> None:
        """Counted with the heartbeats before it that an archive coalesced (``Heartbeat.coalesced``), which
        extended the fuse as it does (a run of heartbeats has no other event in it)."""
        extended = event.fuse_expires_at is not None
        beats = 1 + coalesced_before(event)
        self._write_beats([beats, beats if extended else 0, event, event if extended else None, position])

    def _arm(self, sid: str, expires_at: float) -> None:
        """A fuse set or extended: live until ``expires_at``; an unwatched session is watched again."""
        self.cursor.execute(
            "UPDATE sessions SET fuse_state = ?, fuse_expires_at = ?,"
            " status = CASE WHEN status = ? THEN ? ELSE status END WHERE id = ?",
            (FuseState.SET.value, expires_at, SessionStatus.UNWATCHED.value, SessionStatus.RUNNING.value, sid),
        )

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

    def _fuse_cancelled(self, event: Session.FuseCancelled, position: int) -> None:
        self.cursor.execute(
            "UPDATE fuses SET state = 'cancelled', ended_at = ?, ended_by = ?"
            " WHERE session_id = ? AND state IN ('set', 'expired')",
            (event.timestamp.timestamp(), event.by, event.originator_id.hex),
        )
        self._update(event, position, fuse_state=FuseState.CANCELLED.value)

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

    def _stopped(self, event: Session.Stopped, position: int) -> None:
        self._update(
            event,
            position,
            status=SessionStatus.STOPPED.value,
            stopped_at=event.timestamp.timestamp(),
            exited_at=event.exited_at.timestamp() if event.exited_at is not None else None,
            stop_reason=event.reason,
            exit_code=event.exit_code,
            signal=event.signal,
            stopped_by=event.decided_by.get("component"),
            stop_note=event.note,
        )

    def _agent_observed(self, event: Session.AgentObserved, position: int) -> None:
        """The facts that changed; with fresh activity, also what a heartbeat does (see ``_heartbeat``)."""
        columns = {column: getattr(event, name) for name, column in _AGENT_COLUMNS
                   if getattr(event, name) is not None}
        if event.last_activity_at is not None:
            columns["last_activity_at"] = event.last_activity_at.timestamp()
        if event.heartbeat:
            sid = event.originator_id.hex
            columns.update(last_heartbeat_at=event.timestamp.timestamp(), heartbeat_count=("+", 1))
            if event.fuse_expires_at is not None:
                expires = event.fuse_expires_at.timestamp()
                self.cursor.execute(_EXTEND_FUSES, (expires, 1, sid))
                self._arm(sid, expires)
        self._update(event, position, **columns)

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

    # -- hosts -------------------------------------------------------------------

    def _host_registered(self, event: Host.Registered, position: int) -> None:
        self.cursor.execute("INSERT INTO hosts (host_id, host_name) VALUES (?, ?)",
                            (event.originator_id.hex, event.name))

    def _daemon_alive(self, event: Host.DaemonAlive, position: int) -> None:
        self.cursor.execute(
            "UPDATE hosts SET daemon_pid = ?, daemon_version = ?, daemon_boot_id = ?, heartbeat_every = ?,"
            " daemon_last_seen = ?, forgotten_at = NULL, forgotten_by = NULL, forget_reason = NULL"
            " WHERE host_id = ?",
            (event.pid, event.version, event.boot_id, event.every, event.timestamp.timestamp(),
             event.originator_id.hex),
        )

    def _daemon_stopped(self, event: Host.DaemonStopped, position: int) -> None:
        self.cursor.execute("UPDATE hosts SET daemon_pid = NULL, daemon_last_seen = NULL WHERE host_id = ?",
                            (event.originator_id.hex,))

    def _host_forgotten(self, event: Host.Forgotten, position: int) -> None:
        self.cursor.execute(
            "UPDATE hosts SET daemon_pid = NULL, daemon_last_seen = NULL, forgotten_at = ?, forgotten_by = ?,"
            " forget_reason = ? WHERE host_id = ?",
            (event.timestamp.timestamp(), event.by.get("user") or event.by.get("component"), event.reason,
             event.originator_id.hex),
        )


_HEARTBEAT = Session.Heartbeat
#: AgentObserved field -> sessions column (``model`` is taken by the model asked for at launch).
_AGENT_COLUMNS = (("native_session_id", "native_session_id"), ("native_id_source", "native_id_source"),
                  ("model", "agent_model"), ("title", "agent_title"),
                  ("tokens_in", "tokens_in"), ("tokens_out", "tokens_out"), ("cost", "cost"),
                  ("conversation_tokens_in", "conversation_tokens_in"),
                  ("conversation_tokens_out", "conversation_tokens_out"), ("conversation_cost", "conversation_cost"))
SessionsProjection._handlers.update({  # noqa: SLF001
    Session.Launched: SessionsProjection._launched,  # noqa: SLF001
    Session.FuseSet: SessionsProjection._fuse_set,  # noqa: SLF001
    Session.Heartbeat: SessionsProjection._heartbeat,  # noqa: SLF001
    Session.FuseExpired: SessionsProjection._fuse_expired,  # noqa: SLF001
    Session.FuseCancelled: SessionsProjection._fuse_cancelled,  # noqa: SLF001
    Session.StopRequested: SessionsProjection._stop_requested,  # noqa: SLF001
    Session.Stopped: SessionsProjection._stopped,  # noqa: SLF001
    Session.AgentObserved: SessionsProjection._agent_observed,  # noqa: SLF001
    Host.Registered: SessionsProjection._host_registered,  # noqa: SLF001
    Host.DaemonAlive: SessionsProjection._daemon_alive,  # noqa: SLF001
    Host.DaemonStopped: SessionsProjection._daemon_stopped,  # noqa: SLF001
    Host.Forgotten: SessionsProjection._host_forgotten,  # noqa: SLF001
})

#: Aggregates whose events the read models project too, and the module with their handlers: imported when
#: the first such event is projected, so that a command with nothing of theirs to catch up never loads them.
_EXTENSIONS = {
    "agentledger.domain.locks": "agentledger.projections.locks",  # the directory locks
    "agentledger.domain.workspace": "agentledger.projections.workspaces",  # where worktree sessions' work went
}

# ``count`` heartbeats of one session, the last at ``at``. A heartbeat that extends the fuse moves the
# expiry of the session's set or expired fuse rows, counts an extension on them, makes them set again
# (a lapse is over), and arms the session (an unwatched one is watched again); ``extended`` of them did.
_EXTEND_FUSES = (
    "UPDATE fuses SET expires_at = ?, extensions = extensions + ?, state = 'set', ended_at = NULL,"
    " ended_by = NULL WHERE session_id = ? AND state IN ('set', 'expired')"
)
_BEATS_ARMED = (
    "UPDATE sessions SET last_heartbeat_at = ?, heartbeat_count = heartbeat_count + ?, version = ?, position = ?,"
    f" fuse_state = '{FuseState.SET.value}', fuse_expires_at = ?,"
    f" status = CASE WHEN status = '{SessionStatus.UNWATCHED.value}' THEN '{SessionStatus.RUNNING.value}'"
    " ELSE status END WHERE id = ?"
)
_BEATS = (
    "UPDATE sessions SET last_heartbeat_at = ?, heartbeat_count = heartbeat_count + ?, version = ?, position = ?"
    " WHERE id = ?"
)


def _extended_to(heartbeat: Session.Heartbeat) -> float:
    """Where a heartbeat that extended the fuse took it, in epoch seconds (``session.heartbeat_expiry``)."""
    expiry = heartbeat_expiry(heartbeat)
    assert expiry is not None  # held as the last that extended the fuse only if it did
    return expiry.timestamp()
