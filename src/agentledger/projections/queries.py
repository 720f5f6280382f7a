"""Questions answered from the read models: which sessions, which fuses, whose id is this.

Rows come back as plain dicts in the stable shape that ``--json`` prints (see
``docs/cli.md``); times are ISO 8601 UTC strings there (``session_json`` hands
orjson UTC datetimes, which it writes so), epoch floats here.
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import orjson

from agentledger.application.errors import AmbiguousSessionId, SessionNotFound, UsageError
from agentledger.domain.fuse import fuse_live, session_status
from agentledger.domain.liveness import ProcessIdentity
from agentledger.domain.reconciliation import SessionFacts, StopRequestFacts
from agentledger.domain.vocabulary import FuseState, SessionStatus
from agentledger.projections.archived import refuse_if_archived

if TYPE_CHECKING:
    from agentledger.application.ports import Queryable, Row

_HEX = set(string.hexdigits)
_LISTED_CANDIDATES = 10


def resolve_session_id(db: Queryable, text: str) -> str:
    """Turn what a user typed into the full 32-hex id: the full id, else a session's name (``launch --name``),
    else a unique prefix of an id (like git), in that order (as ``docker`` resolves a container).

    Names need not be unique: of the sessions with the name, the one not
    stopped is meant; if all have stopped, the latest; two not stopped are
    ambiguous, and the refusal lists them.
    """
    key = text.strip()
    prefix = key.lower().replace("-", "")
    hexadecimal = bool(prefix) and set(prefix) <= _HEX and len(prefix) <= 32
    if hexadecimal and len(prefix) == 32 and db.execute("SELECT 1 FROM sessions WHERE id = ?", (prefix,)).fetchone():
        return prefix
    named = db.execute("SELECT id, name, status FROM sessions WHERE name = ? ORDER BY started_at DESC",
                       (key,)).fetchall() if key else []
    if named:
        return _by_name(named, key)
    if not hexadecimal:
        refuse_if_archived(db, text)
        raise SessionNotFound(f"no session is named {text!r} (and it is no id: ids are hexadecimal; "
                              "see 'agentledger list --all')")
    rows = db.execute(
        "SELECT id, name, status FROM sessions WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
        (prefix, prefix + "g", _LISTED_CANDIDATES + 1),
    ).fetchall()
    if not rows:
        refuse_if_archived(db, text)
        raise SessionNotFound(f"no session matches {text!r} (see 'agentledger list --all')")
    if len(rows) > 1:
        raise AmbiguousSessionId(f"session id {text!r} is ambiguous: {_candidates(rows)}; give more characters")
    return rows[0]["id"]


def _by_name(rows: list[Row], name: str) -> str:
    """Of the sessions named ``name`` (newest first): the one not stopped, else the latest."""
    live = [r for r in rows if r["status"] != SessionStatus.STOPPED.value]
    if len(live) > 1:
        raise AmbiguousSessionId(f"{len(live)} sessions named {name!r} are not stopped: {_candidates(live)}; "
                                 "give an id")
    return (live or rows)[0]["id"]


def _candidates(rows: list[Row]) -> str:
    shown = ", ".join(f"{r['id'][:12]} ({r['status']}{', ' + r['name'] if r['name'] else ''})"
                      for r in rows[:_LISTED_CANDIDATES])
    return shown + (" and more" if len(rows) > _LISTED_CANDIDATES else "")


def sessions_starting_with(db: Queryable, prefix: str, limit: int) -> list[Row]:
    """The newest ``limit`` sessions whose id or name starts with ``prefix``: what shell completion offers
    for a session argument, in words :func:`resolve_session_id` takes back.

    Filtered here, not by the shell, so that a TAB in a ledger of 100,000
    sessions reads a few rows; ``substr`` rather than ``LIKE``, whose ``%`` and
    ``_`` a name may hold, and rather than a range, which PostgreSQL's collation
    would order differently from SQLite's.
    """
    n = len(prefix)
    return db.execute(_SESSIONS + " WHERE substr(s.id, 1, ?) = ? OR substr(s.name, 1, ?) = ?"
                      " ORDER BY s.started_at DESC LIMIT ?", (n, prefix.lower(), n, prefix, limit)).fetchall()


def groups_starting_with(db: Queryable, prefix: str, limit: int) -> list[str]:
    """The names of the groups (``launch --group``) that start with ``prefix``, latest launched first."""
    rows = db.execute("SELECT group_name, MAX(started_at) AS latest FROM sessions"
                      " WHERE group_name IS NOT NULL AND substr(group_name, 1, ?) = ?"
                      " GROUP BY group_name ORDER BY latest DESC LIMIT ?", (len(prefix), prefix, limit)).fetchall()
    return [r["group_name"] for r in rows]


#: Running or unwatched is a matter of time (is the fuse live *now*?), so both
#: are derived at query time from the recorded status and the fuse.
#: A host is silent once its daemon, having said it runs, misses this many heartbeats in a row.
SILENT_AFTER_BEATS = 6
#: Sessions with, for ``current_status``, the moment their host counts as silent (null: never).
_SESSIONS_OF = (
    "SELECT {}, h.daemon_last_seen + " + str(SILENT_AFTER_BEATS) + " * h.heartbeat_every AS host_silent_from"
    " FROM sessions s LEFT JOIN hosts h ON h.host_name = s.host"
)
_SESSIONS = _SESSIONS_OF.format("s.*")


def live_fuse_sql(state: str, expires_at: str, now: str) -> str:
    """:func:`~agentledger.domain.fuse.fuse_live` as an SQL condition on the named columns and parameter."""
    return f"({state} = '{FuseState.SET.value}' AND {expires_at} > {now})"


_STOPPED = SessionStatus.STOPPED.value
#: "Not stopped" as the statuses a session can be recorded with, not ``status != 'stopped'``: an ``IN`` list
#: can use the indexes on (host, status) and the partial index of the sessions not stopped by start time
#: (revision 0015), whose condition this is, word for word; an inequality makes every query scan the table.
NOT_STOPPED = "status IN ({})".format(", ".join(
    f"'{s.value}'" for s in SessionStatus if s not in (SessionStatus.STOPPED, SessionStatus.HOST_SILENT)))
_WATCHED = live_fuse_sql("fuse_state", "fuse_expires_at", ":now")
_SILENT = f"(h.daemon_last_seen IS NOT NULL AND h.daemon_last_seen + {SILENT_AFTER_BEATS} * h.heartbeat_every < :now)"
#: Each status as a condition; those not stopped start with ``NOT_STOPPED``, so that they walk its index.
_STATUS_WHERE = {
    SessionStatus.RUNNING: f"{NOT_STOPPED} AND status IN ('running', 'unwatched') AND {_WATCHED} AND NOT {_SILENT}",
    SessionStatus.UNWATCHED: f"{NOT_STOPPED} AND status IN ('running', 'unwatched') AND NOT {_WATCHED}"
                             f" AND NOT {_SILENT}",
    SessionStatus.STOPPING: f"{NOT_STOPPED} AND status = 'stopping' AND NOT {_SILENT}",
    SessionStatus.STOPPED: "status = 'stopped'",
    SessionStatus.HOST_SILENT: f"{NOT_STOPPED} AND {_SILENT}",
}


def current_status(row: Row | Mapping[str, Any], now: float) -> str:
    """``running`` while a fuse is live, ``unwatched`` once none is, else as recorded; but
    ``host-silent`` for any session not stopped whose host's daemon went quiet."""
    status = row["status"]
    if status == _STOPPED:  # session_status's first case, before reading three more columns of 10,000 rows
        return status
    silent_from = row["host_silent_from"]
    return session_status(status, row["fuse_state"], row["fuse_expires_at"], now,
                          host_silent=silent_from is not None and now > silent_from)


def list_sessions(
    db: Queryable, *, include_stopped: bool, status: str | None, now: float, group: str | None = None,
    adapter: str | None = None, host: str | None = None, limit: int | None = None, offset: int = 0,
) -> list[Row]:
    """Sessions newest first: not-stopped ones by default, all with ``include_stopped``; only ``group``'s,
    ``adapter``'s and ``host``'s if given; ``limit`` of them from ``offset`` (a page) if given."""
    where, params = _sessions_where(include_stopped=include_stopped, status=status, now=now, group=group,
                                    adapter=adapter, host=host)
    page = f" LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else ""
    return db.execute(f"{_SESSIONS}{where} ORDER BY started_at DESC{page}", params).fetchall()


def iter_sessions(
    db: Queryable, *, include_stopped: bool, status: str | None, now: float, group: str | None = None,
    adapter: str | None = None, host: str | None = None, undocumented: bool = False,
    columns: Sequence[str] | None = None, limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """:func:`list_sessions`' rows as they are read, each a dict: ``list --all`` streams 100,000 sessions without
    holding them, and reads each column by name in a dict (``sqlite3.Row`` compares the names one by one).
    ``undocumented``: only those without a kept document (:func:`session_json_lines`). ``columns``: only these
    of ``sessions`` (and ``host_silent_from``), not its eighty: a third of the cost of 10,000 rows. ``limit``:
    the newest so many, asked of the database (a PostgreSQL client receives the whole result of a query, however
    few of its rows are read: ``list -n 50`` of 100,000 sessions took 100 ms more than of 10,000)."""
    where, params = _sessions_where(include_stopped=include_stopped, status=status, now=now, group=group,
                                    adapter=adapter, host=host)
    if undocumented:
        where += (" AND" if where else " WHERE") + " NOT EXISTS (SELECT 1 FROM session_documents d" \
                                                   " WHERE d.session_id = s.id)"
    chosen = _SESSIONS if columns is None else _SESSIONS_OF.format(", ".join(f"s.{c}" for c in columns))
    keys: list[str] | None = None
    for row in db.execute(f"{chosen}{where} ORDER BY started_at DESC{_limit(limit)}", params):
        if keys is None:
            keys = row.keys()
        yield dict(zip(keys, row))


def session_json_lines(
    db: Queryable, *, include_stopped: bool, status: str | None, now: float, group: str | None = None,
    adapter: str | None = None, host: str | None = None, limit: int | None = None,
) -> Iterator[bytes]:
    """:func:`iter_sessions`' sessions as their ``--json`` lines (UTF-8, each ending in a newline), newest first:
    each stopped session's kept document (:func:`write_stopped_documents`) as read, any other's built from its
    row by :func:`session_json`.

    Without ``group``, ``adapter`` or ``host``, two queries merged by ``started_at``: the kept documents, one
    ordered walk of their table, and the sessions without one (those not stopped, through their partial index;
    stopped ones left without a document, only if there are any). ``list --all --json`` over 100,000 mostly
    stopped sessions is then mostly copying bytes. With those filters every row is built. ``limit``: at most
    so many lines, each query asked for no more (the newest ``limit`` of a merge are among each side's).
    """
    listed_stopped = status == _STOPPED or (include_stopped and status is None)
    if not listed_stopped or group is not None or adapter is not None or host is not None:
        yield from (line for _, line in _built_lines(iter_sessions(
            db, include_stopped=include_stopped, status=status, now=now, group=group, adapter=adapter, host=host,
            limit=limit), now))
        return
    kept = db.execute(f"SELECT started_at, document FROM session_documents ORDER BY started_at DESC{_limit(limit)}")
    if _stopped_undocumented(db):  # stopped before revision 0013 (until db rebuild): built, with the others
        rest = iter_sessions(db, include_stopped=True, status=status, now=now, undocumented=True, limit=limit)
    elif status is None:  # every session not stopped
        rest = iter_sessions(db, include_stopped=False, status=None, now=now, limit=limit)
    else:
        rest = iter(())
    built = ((row["started_at"], line) for row, line in _built_lines(rest, now))
    following = next(built, None)
    for started_at, document in kept:
        while following is not None and following[0] > started_at:
            yield following[1]
            following = next(built, None)
        yield document  # a line already
    if following is not None:
        yield following[1]
        yield from (line for _, line in built)


def _limit(limit: int | None) -> str:
    return "" if limit is None else f" LIMIT {int(limit)}"


def _built_lines(rows: Iterable[Mapping[str, Any]], now: float) -> Iterator[tuple[Mapping[str, Any], bytes]]:
    """Each row with its ``--json`` line, built by :func:`session_json`."""
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    for row in rows:
        yield row, dumps(session_json(row, now), option=newline)


def _stopped_undocumented(db: Queryable) -> bool:
    stopped = db.execute(f"SELECT count(*) FROM sessions WHERE status = '{_STOPPED}'").fetchone()[0]
    return bool(stopped != db.execute("SELECT count(*) FROM session_documents").fetchone()[0])


_DOCUMENTS_EVERY = 500


def write_stopped_documents(cursor: Queryable, session_ids: Iterable[str]) -> None:
    """Make the kept documents of those of ``session_ids`` that are stopped, from their rows as they now stand:
    the projection calls it for the sessions a catch-up touched, in the same transaction.

    A stopped session's document no longer changes (migration 0013), except where its fuse is still ``set``
    (a log from before a stop cancelled it): ``fuse.live`` then depends on the time, and no document is kept.
    """
    ids = list(session_ids)
    for start in range(0, len(ids), _DOCUMENTS_EVERY):
        chunk = ids[start:start + _DOCUMENTS_EVERY]
        rows = cursor.execute(f"{_SESSIONS} WHERE s.id IN ({','.join('?' * len(chunk))}) AND s.status = ?",
                              (*chunk, _STOPPED)).fetchall()
        settled = [row for row in rows if row["fuse_state"] != FuseState.SET.value]
        if settled:
            cursor.executemany(
                "INSERT INTO session_documents (started_at, session_id, document) VALUES (?, ?, ?)"
                " ON CONFLICT (session_id) DO UPDATE SET document = excluded.document",
                [(row["started_at"], row["id"], orjson.dumps(session_json(row, math.inf), option=orjson.OPT_APPEND_NEWLINE))
                 for row in settled])
        live = [row["id"] for row in rows if row["fuse_state"] == FuseState.SET.value]
        if live:
            cursor.execute(f"DELETE FROM session_documents WHERE session_id IN ({','.join('?' * len(live))})", live)


def count_sessions(
    db: Queryable, *, include_stopped: bool, status: str | None, now: float, group: str | None = None,
    adapter: str | None = None, host: str | None = None,
) -> int:
    """How many sessions :func:`list_sessions` would list without a limit."""
    where, params = _sessions_where(include_stopped=include_stopped, status=status, now=now, group=group,
                                    adapter=adapter, host=host)
    row = db.execute(f"SELECT count(*) AS n FROM sessions s LEFT JOIN hosts h ON h.host_name = s.host{where}",
                     params).fetchone()
    return int(row["n"])


def _sessions_where(*, include_stopped: bool, status: str | None, now: float, group: str | None,
                    adapter: str | None, host: str | None) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {"now": now, "group": group, "adapter": adapter, "host": host}
    conditions = [f"{column} = :{key}" for column, key in (("group_name", "group"), ("adapter", "adapter"),
                                                            ("s.host", "host")) if params[key] is not None]
    if status is not None:
        try:
            conditions.append(_STATUS_WHERE[SessionStatus(status)])
        except ValueError:
            known = ", ".join(s.value for s in SessionStatus)
            raise UsageError(f"unknown status {status!r} (one of: {known})") from None
    elif not include_stopped:
        conditions.append(NOT_STOPPED)
    return (f" WHERE {' AND '.join(conditions)}" if conditions else ""), params


def get_session(db: Queryable, session_id: str) -> Row:
    row = db.execute(f"{_SESSIONS} WHERE id = ?", (session_id,)).fetchone()
    if row is None:
        raise SessionNotFound(f"no session {session_id}")
    return row


def tracked_processes(db: Queryable, host: str) -> list[Row]:
    """The PIDs (with start times) and supervisor PIDs of the sessions not stopped on ``host``."""
    return db.execute(
        f"SELECT id, pid, pid_start_time, supervisor_pid FROM sessions WHERE host = ? AND {NOT_STOPPED}", (host,),
    ).fetchall()


def agent_sessions_on_host(db: Queryable, host: str) -> list[Row]:
    """The sessions not stopped on ``host`` that run an agent (any adapter but ``command``), with a PID."""
    return db.execute(
        "SELECT id, adapter, argv, cwd, log_path, pid, pid_start_time, boot_time, host, boot_id, started_at,"
        " supervisor_pid, native_session_id, native_id_source FROM sessions"
        f" WHERE host = ? AND {NOT_STOPPED} AND adapter != 'command' AND pid IS NOT NULL", (host,),
    ).fetchall()


def open_on_host(db: Queryable, host: str) -> list[str]:
    """The ids of ``host``'s sessions not stopped, oldest first."""
    rows = db.execute(f"SELECT id FROM sessions WHERE host = ? AND {NOT_STOPPED} ORDER BY started_at", (host,))
    return [row[0] for row in rows.fetchall()]


def stopped_since(db: Queryable, host: str, position: int) -> list[Row]:
    """``host``'s sessions stopped by an event after log ``position`` (id, position), in log order."""
    return db.execute("SELECT id, position FROM sessions WHERE host = ? AND status = ? AND position > ?"
                      " ORDER BY position", (host, SessionStatus.STOPPED.value, position)).fetchall()


def resumed_by(db: Queryable, session_id: str) -> list[str]:
    """The sessions that continue ``session_id``'s agent conversation (``agentledger resume``), oldest first."""
    rows = db.execute("SELECT id FROM sessions WHERE resumed_from = ? ORDER BY started_at", (session_id,))
    return [row["id"] for row in rows.fetchall()]


#: What :func:`session_facts` reads: a pass over 10,000 sessions selects only these.
_FACT_COLUMNS = (
    "id, status, pid, pid_start_time, boot_time, host, boot_id, fuse_state, fuse_ttl, fuse_expires_at,"
    " last_heartbeat_at, timeout_at, stop_request_cause, stop_request_signal, stop_request_grace,"
    " stop_requested_at, version, position"
)


def not_stopped_on_host(db: Queryable, host: str) -> list[Row]:
    """The sessions a reconciler on ``host`` looks after, with the columns their facts need."""
    return db.execute(
        f"SELECT {_FACT_COLUMNS} FROM sessions WHERE host = ? AND {NOT_STOPPED}", (host,)
    ).fetchall()


def session_facts(row: Row) -> SessionFacts:
    """What the reconciler's rule needs of a session, as the projection shows it.

    ``row`` is one of :func:`not_stopped_on_host`'s: unpacked by position (in
    the order of ``_FACT_COLUMNS``), which is what makes 10,000 of them cheap.
    """
    (sid, status, pid, pid_start_time, boot_time, host, boot_id, fuse_state, fuse_ttl, fuse_expires_at,
     last_heartbeat_at, timeout_at, stop_cause, stop_signal, stop_grace, stop_requested_at, version, position) = row
    return SessionFacts(
        session_id=sid,
        status=status,
        identity=ProcessIdentity(pid, pid_start_time, boot_time, host, boot_id),
        fuse_state=fuse_state,
        fuse_ttl=fuse_ttl,
        fuse_expires_at=_datetime(fuse_expires_at),
        last_heartbeat_at=_datetime(last_heartbeat_at),
        deadline=_datetime(timeout_at),
        last_stop_request=None if stop_signal is None else StopRequestFacts(
            stop_cause, stop_signal, stop_grace, datetime.fromtimestamp(stop_requested_at, timezone.utc)
        ),
        version=version,
        position=position,
    )


def _datetime(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc)


def list_hosts(db: Queryable) -> list[Row]:
    """Every host the log knows (from its daemon or its sessions), with its sessions not stopped."""
    return db.execute(
        "SELECT n.host AS host_name, h.daemon_pid, h.daemon_version, h.daemon_boot_id, h.heartbeat_every,"
        f" h.daemon_last_seen, h.daemon_last_seen + {SILENT_AFTER_BEATS} * h.heartbeat_every AS host_silent_from,"
        " h.forgotten_at, h.forgotten_by, h.forget_reason,"
        f" (SELECT count(*) FROM sessions s WHERE s.host = n.host AND s.{NOT_STOPPED}) AS sessions_not_stopped,"
        " (SELECT count(*) FROM sessions s WHERE s.host = n.host) AS sessions"
        " FROM (SELECT host_name AS host FROM hosts UNION SELECT host FROM sessions) n"
        " LEFT JOIN hosts h ON h.host_name = n.host ORDER BY n.host"
    ).fetchall()


def host_json(row: Row, now: float) -> dict[str, Any]:
    silent_from = row["host_silent_from"]
    return {
        "host": row["host_name"],
        "daemon": None if row["daemon_pid"] is None else {
            "pid": row["daemon_pid"], "version": row["daemon_version"], "boot_id": row["daemon_boot_id"],
            "heartbeat_every_seconds": row["heartbeat_every"],
        },
        "last_seen": iso(row["daemon_last_seen"]),
        "silent": silent_from is not None and now > silent_from,
        "forgotten": None if row["forgotten_at"] is None else {
            "at": iso(row["forgotten_at"]), "by": row["forgotten_by"], "reason": row["forget_reason"],
        },
        "sessions_not_stopped": row["sessions_not_stopped"],
        "sessions": row["sessions"],
    }


def list_fuses(db: Queryable, *, include_ended: bool) -> list[Row]:
    """Fuses set, live or lapsed (also once the lapse is recorded), or every fuse with ``include_ended``."""
    where = "" if include_ended else "WHERE f.state IN ('set', 'expired')"
    return db.execute(  # with what current_status reads of the session: its status is derived, as list's is
        "SELECT f.*, s.name AS session_name, s.status, s.fuse_state, s.fuse_expires_at,"
        f" h.daemon_last_seen + {SILENT_AFTER_BEATS} * h.heartbeat_every AS host_silent_from FROM fuses f"
        f" JOIN sessions s ON s.id = f.session_id LEFT JOIN hosts h ON h.host_name = s.host {where}"
        " ORDER BY f.set_at DESC"
    ).fetchall()


def iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).isoformat()


def session_json(row: Row | Mapping[str, Any], now: float) -> dict[str, Any]:
    """The documented, stable JSON shape of one session.

    ``argv`` and ``labels`` are stored as JSON text and passed through as
    ``orjson.Fragment``s, unparsed: ``list --all --json`` over 10,000 rows
    would otherwise spend a fifth of its time re-encoding them. Times are
    UTC ``datetime``s, which orjson writes as ISO 8601 in C, the very string
    ``isoformat`` makes (``iso``), at a third of the cost: for ``list --all``
    they were half of the work per row.
    """
    at = _datetime
    live = fuse_live(row["fuse_state"], row["fuse_expires_at"], now)
    return {
        "id": row["id"],
        "name": row["name"],
        "adapter": row["adapter"],
        "status": current_status(row, now),
        "argv": orjson.Fragment(row["argv"]),
        "cwd": row["cwd"],
        "host": row["host"],
        "boot_id": row["boot_id"],
        "pid": row["pid"],
        "pid_start_time": row["pid_start_time"],
        "boot_time": row["boot_time"],
        "supervisor_pid": row["supervisor_pid"],
        "model": row["model"],
        "prompt": row["prompt"],
        "group": row["group_name"],
        "labels": orjson.Fragment(row["labels"]),
        "log_path": row["log_path"],
        "launched_by": row["launched_by"],
        "source": row["source"],
        "resumed_from": row["resumed_from"],
        "started_at": at(row["started_at"]),
        "timeout_at": at(row["timeout_at"]),
        "stop_requested_at": at(row["stop_requested_at"]),
        "stopped_at": at(row["stopped_at"]),
        "exited_at": at(row["exited_at"]),  # when the process was seen to end (a supervisor saw it), if known
        "stop_reason": row["stop_reason"],
        "exit_code": row["exit_code"],
        "signal": row["signal"],
        "stopped_by": row["stopped_by"],
        "stop_note": row["stop_note"],
        "agent": {
            "native_session_id": row["native_session_id"],
            "native_id_source": row["native_id_source"],
            "model": row["agent_model"],
            "title": row["agent_title"],
            "tokens_in": row["tokens_in"],  # this run's
            "tokens_out": row["tokens_out"],
            "cost": row["cost"],
            "conversation": {  # the agent's conversation so far, earlier (resumed) runs included
                "tokens_in": row["conversation_tokens_in"],
                "tokens_out": row["conversation_tokens_out"],
                "cost": row["conversation_cost"],
            },
            "last_activity_at": at(row["last_activity_at"]),
        },
        "fuse": {
            "state": row["fuse_state"],
            "live": live,
            "ttl_seconds": row["fuse_ttl"],
            "expires_at": at(row["fuse_expires_at"]),
        },
        "last_heartbeat_at": at(row["last_heartbeat_at"]),
        "heartbeat_count": row["heartbeat_count"],
        "version": row["version"],
        "position": row["position"],
    }


def fuse_json(row: Row, now: float) -> dict[str, Any]:
    return {
        "session_id": row["session_id"],
        "session_name": row["session_name"],
        "session_status": current_status(row, now),
        "state": row["state"],
        "live": fuse_live(row["state"], row["expires_at"], now),
        "ttl_seconds": row["ttl"],
        "set_at": iso(row["set_at"]),
        "set_by": row["set_by"],
        "expires_at": iso(row["expires_at"]),
        "extensions": row["extensions"],
        "ended_at": iso(row["ended_at"]),
        "ended_by": row["ended_by"],
    }
