"""One aggregate's events between two versions, as SQL: the statement both lean recorders send for a load.

The library's ``select_events`` takes these bounds; ``sqlite_recorder`` and
``postgres_recorder`` send them on connections of their own, with their
driver's placeholder (``?`` or ``%s``).
"""

from __future__ import annotations

from typing import Any


def select_events_sql(base: str, originator_id: Any, *, gt: int | None, lte: int | None, desc: bool,
                      limit: int | None, mark: str) -> tuple[str, list[Any]]:
    """``base`` (``SELECT … WHERE originator_id = <mark>``) with the bounds, order and limit asked; its parameters."""
    statement, params = base, [originator_id]
    if gt is not None:
        statement += f" AND originator_version > {mark}"
        params.append(gt)
    if lte is not None:
        statement += f" AND originator_version <= {mark}"
        params.append(lte)
    statement += " ORDER BY originator_version DESC" if desc else " ORDER BY originator_version ASC"
    if limit is not None:
        statement += f" LIMIT {mark}"
        params.append(limit)
    return statement, params
