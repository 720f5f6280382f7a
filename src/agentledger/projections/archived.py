"""Sessions that ``db archive`` moved out of the live store: finding one by what a user typed.

``archived_sessions`` is not a projection of the log (the archived events are
no longer in it): ``infrastructure/retention.py`` writes it in the archive's
own transaction and ``db import`` deletes a row when it puts the events back.
``resolve_session_id`` (``queries.py``) asks here when no live session
matches, so that ``why``, ``history``, ``status`` and every other command
given an archived session's id or name says where it went, in one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentledger.application.errors import SessionArchived

if TYPE_CHECKING:
    from agentledger.application.ports import Queryable, Row

_COLUMNS = "session_id, name, archive_path, archived_at, stopped_at, events, checksum"


def find_archived(db: Queryable, text: str) -> Row | None:
    """The archived session ``text`` names: its full id, its name (the latest archived), or a unique id prefix."""
    key = text.strip()
    prefix = key.lower().replace("-", "")
    if key:
        row = db.execute(f"SELECT {_COLUMNS} FROM archived_sessions WHERE name = ? ORDER BY archived_at DESC",
                         (key,)).fetchone()
        if row is not None:
            return row
    if not prefix or len(prefix) > 32 or set(prefix) - set("0123456789abcdef"):
        return None
    rows = db.execute(f"SELECT {_COLUMNS} FROM archived_sessions WHERE session_id >= ? AND session_id < ?"
                      " ORDER BY session_id LIMIT 2", (prefix, prefix + "g")).fetchall()
    return rows[0] if len(rows) == 1 else None


def refuse_if_archived(db: Queryable, text: str) -> None:
    """Raise :class:`SessionArchived` (one line: when, which file, how to import it) if ``text`` names one."""
    row = find_archived(db, text)
    if row is not None:
        from agentledger.application.archiving import describe_archived

        raise SessionArchived(describe_archived(row))


def is_archived(db: Queryable, session_id: str) -> bool:
    return db.execute("SELECT 1 FROM archived_sessions WHERE session_id = ?", (session_id,)).fetchone() is not None
