"""``agentledger compare GROUP``: a group's sessions side by side, from the log and their worktrees.

One :class:`Comparison` per session: which agent and model, how it ended and
after how long, what it spent (the adapter's token and cost facts), what it
changed in its worktree against its base commit (``workspaces.diff_stats``:
committed or not, or what a merge landed), and how its ``--check`` command
ended. Everything but the change comes from the read models; the change is
read from git when asked, since the worktree may still be changing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentledger.domain.errors import LedgerError
from agentledger.domain.vocabulary import SessionStatus

if TYPE_CHECKING:
    from agentledger.application.ports import Row
    from agentledger.domain.workspace import DiffStats


@dataclass(frozen=True)
class Comparison:
    """One session of the group, as ``compare`` shows it."""

    id: str
    name: str | None
    agent: str
    model: str | None
    status: str
    outcome: str | None  # 'exit 0', 'SIGTERM', 'setup-failed'; None while it runs
    duration: float  # seconds: to its end, or so far
    tokens_in: int | None
    tokens_out: int | None
    cost: float | None
    changes: DiffStats | None  # None: no worktree, or it could not be read (``changes_error`` says why)
    changes_error: str | None
    check_passed: bool | None  # None: no check ran (yet)
    check_exit_code: int | None

    def as_json(self) -> dict[str, Any]:
        changes = None if self.changes is None else self.changes._asdict()
        return {"id": self.id, "name": self.name, "agent": self.agent, "model": self.model, "status": self.status,
                "outcome": self.outcome, "duration_seconds": self.duration, "tokens_in": self.tokens_in,
                "tokens_out": self.tokens_out, "cost": self.cost, "changes": changes,
                "changes_error": self.changes_error, "check_passed": self.check_passed,
                "check_exit_code": self.check_exit_code}


def compare(rows: Sequence[Row], *, now: float, status_of: Callable[[Row], str],
            changes_of: Callable[[str], DiffStats]) -> list[Comparison]:
    """The group's sessions (``rows``, oldest first), each with its change read by ``changes_of(session id)``."""
    return [_compare(row, now, status_of(row), changes_of) for row in rows]


def _compare(row: Row, now: float, status: str, changes_of: Callable[[str], DiffStats]) -> Comparison:
    changes, error = None, None
    if row["worktree"]:
        try:
            changes = changes_of(row["id"])
        except LedgerError as failure:  # a worktree removed unmerged, a repository moved: say so in its row
            error = str(failure)
    end = row["exited_at"] or row["stopped_at"] or now
    passed = row["check_passed"]
    return Comparison(
        id=row["id"], name=row["name"], agent=row["adapter"], model=row["agent_model"] or row["model"], status=status,
        outcome=_outcome(row) if status == SessionStatus.STOPPED.value else None,
        duration=max(0.0, end - row["started_at"]), tokens_in=row["tokens_in"], tokens_out=row["tokens_out"],
        cost=row["cost"], changes=changes, changes_error=error,
        check_passed=None if passed is None else bool(passed), check_exit_code=row["check_exit_code"],
    )


def _outcome(row: Row) -> str:
    if row["exit_code"] is not None:
        return f"exit {row['exit_code']}"
    return row["signal"] or row["stop_reason"] or "stopped"
