"""What each console page shows, gathered from the store by the same functions the CLI's commands call.

Each function returns a plain dict for its template. Rows are read from the
read models, caught up first (the console's :mod:`live` thread usually has
done it already); with ``as_of`` they are rebuilt from the log up to that moment, exactly
as ``list --as-of`` and ``status --as-of`` do, and "now" is that moment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from agentledger.domain.durations import format_duration

if TYPE_CHECKING:
    from agentledger.application.ports import Queryable, Store

#: Rows on one page of the sessions list: the browser draws a page, not 10,000 rows.
PAGE_SIZE = 100
#: The sessions list's sortable columns and the row key each sorts by.
SORTS = {"started": "started_at", "name": "name", "status": "status", "adapter": "adapter", "host": "host",
         "stopped": "stopped_at", "ran": "ran_for", "exit": "exit_code"}
#: How many recent messages or output lines a session page shows.
TAIL = 20
#: The history table's last rows: a session with 10,000 heartbeats is a page, not a download (the CLI has them all).
HISTORY_SHOWN = 500


@dataclass(frozen=True)
class Moment:
    """The read models a page is drawn from: live, or as of a past moment (its scratch copy and its "now")."""

    db: Queryable
    now: float
    position: int  # the last log position included
    as_of: str | None = None  # what the user asked for (``@12``, an ISO time), None when live
    described: str | None = None  # "position 12 (2026-...)" when historical


def moment(store: Store, as_of: str | None) -> Moment:
    """The live read models, caught up (usually nothing to do: the log watch keeps them so, but a page must
    never show less than the log already holds), or a rebuild as of ``as_of``."""
    from agentledger.application.clock import now_epoch
    from agentledger.entrypoints.console.live import caught_up

    if not as_of:
        return Moment(store.db, now_epoch(), caught_up(store))
    from agentledger.projections.as_of import parse_moment, read_models_as_of

    scratch = read_models_as_of(store, parse_moment(as_of, datetime.now(timezone.utc)))
    return Moment(scratch.db, scratch.now, scratch.moment.position or 0, as_of, scratch.moment.describe())


# -- the sessions page ---------------------------------------------------------------


@dataclass(frozen=True)
class SessionQuery:
    """The sessions page's filters, sort and page, as the query string gives them."""

    status: str | None = None  # one of SessionStatus, "active" (not stopped) or None (all)
    group: str | None = None
    adapter: str | None = None
    host: str | None = None
    label: str | None = None  # K or K=V
    text: str | None = None  # in the id, name, command or cwd
    sort: str = "started"
    descending: bool = True
    page: int = 1


def sessions(at: Moment, query: SessionQuery) -> dict[str, Any]:
    """``list``'s rows (``list --all`` by default), filtered, sorted, and one page of them drawn.

    In the read models' own order (newest first, filtered by status, group,
    adapter or host) only the page's rows are read. Otherwise filtering and
    sorting read the rows as they come, and only the page's rows are turned
    into what the table shows: 10,000 sessions cost a query and a sort, not
    10,000 rows of formatting.
    """
    from agentledger.projections.listing import select
    from agentledger.projections.queries import count_sessions, list_sessions

    status = None if query.status in (None, "active") else query.status
    where: dict[str, Any] = dict(include_stopped=query.status != "active", status=status, now=at.now, group=query.group,
                 adapter=query.adapter, host=query.host)
    if not (query.text or query.label) and query.sort == "started" and query.descending:
        total = count_sessions(at.db, **where)  # the newest first, as the read models keep them: one page's rows
        page, pages = _page(query.page, total)
        rows = list_sessions(at.db, **where, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        return {"rows": [session_row(r, at.now) for r in rows], "total": total, "page": page, "pages": pages,
                "query": query}
    rows = list_sessions(at.db, **where)
    rows = list(select(rows, [("label", query.label)] if query.label else [], now=at.now, last=None))
    if query.text:
        needle = query.text.casefold()
        rows = [r for r in rows if needle in _haystack(r)]
    if query.sort != "started" or not query.descending:
        rows = _sorted(rows, query.sort, descending=query.descending, now=at.now)
    page, pages = _page(query.page, len(rows))
    shown = [session_row(r, at.now) for r in rows[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]]
    return {"rows": shown, "total": len(rows), "page": page, "pages": pages, "query": query}


def _page(asked: int, total: int) -> tuple[int, int]:
    """The page to show (the last one if asked past it) and how many there are."""
    pages = max(1, -(-total // PAGE_SIZE))
    return min(max(1, asked), pages), pages


def _haystack(r: Any) -> str:
    """What the text filter looks in: the id, the name, the command and the working directory."""
    import orjson

    return " ".join(str(v) for v in (r["id"], r["name"], " ".join(orjson.loads(r["argv"])), r["cwd"]) if v).casefold()


def _sorted(rows: list[Any], column: str, *, descending: bool, now: float) -> list[Any]:
    """``rows`` by a column of the table (an unknown one: by start); rows without a value last either way."""
    from agentledger.projections.listing import ran_for
    from agentledger.projections.queries import current_status

    computed: dict[str, Callable[[Any], Any]] = {"status": lambda r: current_status(r, now),
                                                 "ran_for": lambda r: ran_for(r, now)}
    key = SORTS.get(column, "started_at")
    value = computed.get(key) or (lambda r: r[key])
    present = [(v, r) for r in rows if (v := value(r)) is not None]
    absent = [r for r in rows if value(r) is None]
    present.sort(key=lambda pair: pair[0], reverse=descending)
    return [r for _, r in present] + absent


def session_row(r: Any, now: float) -> dict[str, Any]:
    """One session as the list shows it: ``list``'s columns, in ``list``'s words."""
    import orjson

    from agentledger.entrypoints.render import relative
    from agentledger.entrypoints.status_commands import fuse_text, outcome_text
    from agentledger.projections.listing import ran_for
    from agentledger.projections.queries import current_status, iso

    command = " ".join(orjson.loads(r["argv"]))
    status = current_status(r, now)
    return {
        "id": r["id"], "short_id": r["id"][:12], "name": r["name"], "adapter": r["adapter"], "status": status,
        "failed": status == "stopped" and (r["exit_code"] not in (0, None) or r["stop_reason"] != "exited"),
        "host": r["host"], "group": r["group_name"], "pid": r["pid"],
        "started_at": r["started_at"], "started_iso": iso(r["started_at"]), "started": relative(r["started_at"], now),
        "stopped_at": r["stopped_at"], "stopped": relative(r["stopped_at"], now) if r["stopped_at"] else "",
        "ran_for": ran_for(r, now), "ran": format_duration(ran_for(r, now)),
        "fuse": fuse_text(r, now), "outcome": outcome_text(r) or "", "exit_code": r["exit_code"],
        "reason": r["stop_reason"] or "", "command": command,
    }


def choices(db: Queryable) -> dict[str, list[str]]:
    """The values the filters offer: the groups, adapters and hosts the read models know."""
    def distinct(column: str) -> list[str]:
        rows = db.execute(f"SELECT DISTINCT {column} AS v FROM sessions WHERE {column} IS NOT NULL ORDER BY 1")
        return [row["v"] for row in rows.fetchall()]

    from agentledger.domain.vocabulary import SessionStatus

    return {"status": [s.value for s in SessionStatus], "group": distinct("group_name"),
            "adapter": distinct("adapter"), "host": distinct("host")}


# -- a session's page ----------------------------------------------------------------


def session(store: Store, at: Moment, text: str, machine: Any) -> dict[str, Any]:
    """``status``, ``why``, ``history`` and ``timeline`` of one session, as of ``at``."""
    from uuid import UUID

    from agentledger.application.errors import SessionNotFound
    from agentledger.application.log import session_log
    from agentledger.entrypoints.status_commands import session_pairs
    from agentledger.projections.queries import get_session, resolve_session_id, resumed_by

    try:
        session_id = resolve_session_id(at.db, text)
    except SessionNotFound as error:
        if at.as_of is None:
            raise
        raise SessionNotFound(f"{error} as of {at.described}: it did not exist yet") from None
    row = get_session(at.db, session_id)
    entries = session_log(store.ledger, UUID(session_id), store.event_positions(session_id))
    if at.as_of is not None:
        entries = [e for e in entries if e.position is None or e.position <= at.position]
    moment_at = datetime.fromtimestamp(at.now, timezone.utc)
    page: dict[str, Any] = {
        "row": session_row(row, at.now), "facts": [(k, v) for k, v in session_pairs(row, at.now) if v is not None],
        **_history(store, entries, moment_at, session_id), "timeline": _timeline(session_id, entries, moment_at),
        "resumed_from": row["resumed_from"], "resumed_by": resumed_by(at.db, session_id),
        "why": None, "tail": None,
    }
    if at.as_of is None:
        page["why"] = _why(store, session_id, machine)
        page["tail"] = _tail(row)
    return page


def _history(store: Store, entries: list[Any], now: datetime, session_id: str) -> dict[str, Any]:
    """``history``'s records (its last :data:`HISTORY_SHOWN`), and how many there are in all."""
    from agentledger.bootstrap import directory_locks
    from agentledger.projections.history import history_records, with_lock_facts

    records = history_records(entries, now)
    records = with_lock_facts(records, directory_locks(lambda: store).facts_of_session(session_id))
    return {"history": records[-HISTORY_SHOWN:], "history_total": len(records)}


def _timeline(session_id: str, entries: list[Any], now: datetime) -> str | None:
    """The timeline's SVG (escaped where it quotes the log), or None if no event could be read."""
    from agentledger.entrypoints.timeline_html import drawing
    from agentledger.projections.timeline import NoReadableEvents, build_timeline

    try:
        return drawing(build_timeline(session_id, entries, now))
    except NoReadableEvents:
        return None


def _why(store: Store, session_id: str, machine: Any) -> dict[str, Any]:
    from agentledger.application.explaining import explain
    from agentledger.entrypoints.audit_commands import spooled, why_pairs

    facts = explain(store, session_id, datetime.now(timezone.utc), machine)
    facts.update(spooled(session_id))
    return {"headline": facts["headline"], "status": facts["status"],
            "pairs": [(k, v) for k, v in why_pairs(facts) if v is not None]}


def _tail(row: Any) -> dict[str, Any]:
    """The agent's last messages, else the last lines of the captured output (``status``'s source); their control
    characters are written out when the page is drawn, as every text's are."""
    from agentledger.entrypoints import session_output

    try:
        found, why_not = session_output.agent_messages(row, TAIL)
        if found is not None:
            return {"kind": "messages", "lines": [(m.role, m.text) for m in found], "note": None}
        with session_output.open_output(row) as handle:
            lines = session_output.last_lines(handle, TAIL)
        return {"kind": "output", "note": why_not,
                "lines": [("", line.decode("utf-8", "replace").rstrip("\r\n")) for line in lines]}
    except Exception as error:  # noqa: BLE001 - no output to show is not an error of the page
        return {"kind": "none", "lines": [], "note": str(error)}
