"""Worktree sessions on the read side: their columns of ``sessions``, and the queries ``worktrees`` asks.

A session launched with ``--worktree`` gets its worktree facts (from
``Launched.workspace``) on its ``sessions`` row, and what its Workspace
aggregate records later (``Merged``, ``Removed``, ``CheckFinished``) on the
same row, found by ``workspace_id``. These writes never touch the row's
``version`` and ``position``, which are the Session's own.

Its handlers are an extension of the sessions projection (``extension.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from agentledger.domain.workspace import Workspace, workspace_id
from agentledger.projections.extension import Projecting

if TYPE_CHECKING:
    from agentledger.application.ports import Cursor, Row


def launched(cursor: Cursor, event: Any) -> None:
    """The worktree facts of a ``Launched`` that has them (called by the sessions projection's own handler)."""
    ws = getattr(event, "workspace", None)
    if not ws:
        return
    sid = event.originator_id.hex
    cursor.execute(
        "UPDATE sessions SET repository = ?, worktree = ?, branch = ?, base_ref = ?, base_commit = ?,"
        " worktree_copied = ?, workspace_id = ? WHERE id = ?",
        (ws.get("repository"), ws.get("worktree"), ws.get("branch"), ws.get("base_ref"), ws.get("base_commit"),
         orjson.dumps(ws.get("copied") or []).decode(), workspace_id(sid).hex, sid),
    )


def _who(by: dict[str, Any] | None) -> str | None:
    by = by or {}
    return by.get("user") or by.get("component")


def merged(projection: Projecting, event: Workspace.Merged, position: int) -> None:
    projection.cursor.execute(
        "UPDATE sessions SET merged_into = ?, merge_commit = ?, merge_squash = ?, merged_at = ?, merged_by = ?"
        " WHERE workspace_id = ?",
        (event.into, event.commit, int(event.squash), event.timestamp.timestamp(), _who(event.by),
         event.originator_id.hex),
    )


def removed(projection: Projecting, event: Workspace.Removed, position: int) -> None:
    projection.cursor.execute(
        "UPDATE sessions SET worktree_removed_at = ?, worktree_removed_forced = ?, branch_deleted = ?"
        " WHERE workspace_id = ?",
        (event.timestamp.timestamp(), int(event.forced), int(event.branch_deleted), event.originator_id.hex),
    )


def check_finished(projection: Projecting, event: Workspace.CheckFinished, position: int) -> None:
    projection.cursor.execute(
        "UPDATE sessions SET check_command = ?, check_exit_code = ?, check_passed = ?, check_duration = ?,"
        " checked_at = ? WHERE workspace_id = ?",
        (event.command, event.exit_code, int(event.passed), event.duration, event.timestamp.timestamp(),
         event.originator_id.hex),
    )


HANDLERS: dict[type, Any] = {Workspace.Merged: merged, Workspace.Removed: removed, Workspace.CheckFinished: check_finished}


# -- queries ---------------------------------------------------------------------


def workspace_json(row: Row) -> dict[str, Any]:
    """A session's worktree columns as JSON (``worktrees --json`` adds what git says now)."""
    return {
        "repository": row["repository"],
        "worktree": row["worktree"],
        "branch": row["branch"],
        "base_ref": row["base_ref"],
        "base_commit": row["base_commit"],
        "copied": orjson.loads(row["worktree_copied"] or "[]"),
        "merged": None if row["merged_at"] is None else {
            "into": row["merged_into"], "commit": row["merge_commit"], "squash": bool(row["merge_squash"]),
            "at": row["merged_at"], "by": row["merged_by"]},
        "removed": None if row["worktree_removed_at"] is None else {
            "at": row["worktree_removed_at"], "forced": bool(row["worktree_removed_forced"]),
            "branch_deleted": bool(row["branch_deleted"])},
        "check": None if row["checked_at"] is None else {
            "command": row["check_command"], "exit_code": row["check_exit_code"], "passed": bool(row["check_passed"]),
            "duration": row["check_duration"], "at": row["checked_at"]},
    }
