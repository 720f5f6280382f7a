"""``list``'s controls: ``--filter KEY=VALUE`` (repeatable, all must hold), ``--last N``, ``--format TEMPLATE``.

Applied to the rows ``queries.list_sessions`` returns (newest first). A filter
or a template field this module does not know is a usage error naming the ones
it does, so a typo never silently lists everything or nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from string import Formatter
from typing import Any

import orjson

from agentledger.domain.durations import format_duration
from agentledger.domain.errors import UsageError
from agentledger.domain.vocabulary import SessionStatus
from agentledger.projections.queries import current_status

#: ``--filter`` keys and what each compares (``label`` takes ``KEY`` or ``KEY=VALUE``).
FILTER_KEYS = ("label", "name", "host", "adapter", "group", "status", "cwd")
#: What ``--filter status=`` may name (as ``--status``).
STATUSES = tuple(s.value for s in SessionStatus)


def parse_filters(texts: Sequence[str]) -> list[tuple[str, str]]:
    """``["label=team=a", "host=vm"]`` → ``[("label", "team=a"), ("host", "vm")]``; refuses what it cannot read."""
    filters = []
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or key not in FILTER_KEYS:
            raise UsageError(f"--filter {text!r}: expected KEY=VALUE with KEY one of {', '.join(FILTER_KEYS)} "
                             "(label=K or label=K=V)")
        if key == "status" and value not in STATUSES:
            raise UsageError(f"--filter {text!r}: unknown status (one of: {', '.join(STATUSES)})")
        filters.append((key, value))
    return filters


#: Filters that are one column's equality, which the query can apply through an index instead of every row read.
_QUERY_FILTERS = ("host", "group", "adapter")


def lifted(filters: Sequence[tuple[str, str]], where: dict[str, Any]) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """The filters left to :func:`select`, and ``where`` with the ``host``, ``group`` and ``adapter`` filters
    given once moved into it: ``list --filter host=H`` then reads H's sessions by the (host, status) index, not
    every session not stopped of every host. One given twice, or beside ``--group``/``--adapter``, stays a
    filter, which holds for both. A ``status`` filter given once is ``--status`` (so ``status=stopped`` lists
    stopped sessions without ``--all``); beside another, the rows read include the stopped ones."""
    left, where = list(filters), dict(where)
    for key in _QUERY_FILTERS:
        given = [value for k, value in left if k == key]
        if len(given) == 1 and where.get(key) is None:
            where[key] = given[0]
            left.remove((key, given[0]))
    statuses = [value for k, value in left if k == "status"]
    if len(statuses) == 1 and where.get("status") is None:  # the same as --status: stopped ones are listed
        where["status"] = statuses[0]
        left.remove(("status", statuses[0]))
    elif statuses:  # any status named, the stopped one too: the filters say which, not the default's "not stopped"
        where["include_stopped"] = True
    return left, where


def select(rows: Iterable[Any], filters: Sequence[tuple[str, str]], *, now: float, last: int | None) -> Iterator[Any]:
    """The rows every filter holds for, the ``last`` newest of them if given, as they come (no more is read)."""
    chosen = (row for row in rows if all(_holds(row, key, value, now) for key, value in filters)) if filters else iter(rows)
    return chosen if last is None else islice(chosen, last)


def _holds(row: Any, key: str, value: str, now: float) -> bool:
    if key == "label":
        labels = orjson.loads(row["labels"] or "{}")
        name, sep, wanted = value.partition("=")
        return name in labels and (not sep or labels[name] == wanted)
    if key == "status":
        return current_status(row, now) == value
    return (row["group_name"] if key == "group" else row[key]) == value


def ran_for(row: Any, now: float) -> float:
    """How long the session ran: to its exit as seen (else to its recorded stop), or so far if not stopped."""
    if row["stopped_at"] is None:
        return max(0.0, now - row["started_at"])
    return max(0.0, (row["exited_at"] or row["stopped_at"]) - row["started_at"])


#: ``--format`` fields: what each shows of a row (the same words as the table's columns).
FIELDS: dict[str, Callable[[Any, float], Any]] = {
    "id": lambda r, now: r["id"],
    "short_id": lambda r, now: r["id"][:12],
    "name": lambda r, now: r["name"] or "",
    "adapter": lambda r, now: r["adapter"],
    "status": lambda r, now: current_status(r, now),
    "pid": lambda r, now: "" if r["pid"] is None else r["pid"],
    "group": lambda r, now: r["group_name"] or "",
    "host": lambda r, now: r["host"],
    "cwd": lambda r, now: r["cwd"],
    "model": lambda r, now: r["agent_model"] or r["model"] or "",
    "exit_code": lambda r, now: "" if r["exit_code"] is None else r["exit_code"],
    "stop_reason": lambda r, now: r["stop_reason"] or "",
    "command": lambda r, now: " ".join(orjson.loads(r["argv"])),
    "ran_for": lambda r, now: format_duration(ran_for(r, now)),
}


def formatter(template: str) -> Callable[[Any, float], str]:
    """A function printing one row by ``template`` (``'{id} {status}'``); refuses unknown fields up front."""
    try:
        names = [field for _, field, _, _ in Formatter().parse(template) if field is not None]
    except ValueError as error:
        raise UsageError(f"--format {template!r}: {error}") from None
    unknown = [name for name in names if name not in FIELDS]
    if unknown or not names:
        raise UsageError(f"--format {template!r}: {'unknown field ' + repr(unknown[0]) if unknown else 'no field'}"
                         f" (fields: {', '.join('{' + name + '}' for name in FIELDS)})")
    return lambda row, now: template.format_map({name: FIELDS[name](row, now) for name in names})
