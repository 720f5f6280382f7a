"""The Workspace aggregate: what became of a session's git worktree after the session stopped.

A session launched with ``--worktree`` records its repository, worktree, branch
and base commit in its ``Launched`` event. What happens to that work later (it
is merged into a branch, the worktree is removed, a check command is run in it)
happens *after* the session's ``Stopped``, which is final for the Session: so,
as for the on-stop hook (``domain/stop_hooks.py``), it lives in an aggregate of
its own, one per session, whose id is derived from the session's (``uuid5``).
Every command saves with compare-and-set on the aggregate's version, so two
people merging or cleaning one worktree at once cannot both record it.

The aggregate is created on the first thing that happens to the worktree after
the stop (``Created`` repeats the session's worktree facts, so the aggregate
reads on its own). The values below (:class:`DiffStats`, :class:`WorktreeState`)
are what the git port reports; they are pure, so ``compare`` and ``worktrees``
can share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from agentledger.domain.errors import DomainError, LedgerError

#: How much of a check command's combined output the log keeps (the end of it).
CHECK_OUTPUT_TAIL_BYTES = 2048

#: The keys of ``Launched.workspace`` (and of ``Workspace.Created``), in the order people read them.
WORKSPACE_FIELDS = ("repository", "worktree", "branch", "base_ref", "base_commit", "name", "copied")


class GitError(LedgerError):
    """git could not do what was asked (not a repository, a bad ref, git missing): one line, exit 1."""


class WorkRefused(DomainError):
    """A merge or removal refused because work would be lost or half-applied (a conflict, a dirty target)."""


class AlreadyRecorded(DomainError):
    """A worktree is merged or removed once."""


class DiffStats(NamedTuple):
    """What a worktree changed against its base: files changed, lines inserted and deleted."""

    files: int
    insertions: int
    deletions: int

    def words(self) -> str:
        return (f"{self.files} file{'s' if self.files != 1 else ''} changed, +{self.insertions} "
                f"-{self.deletions}")


class WorktreeInfo(NamedTuple):
    """One entry of ``git worktree list``: its path, its checked-out branch (None: detached) and commit."""

    path: str
    branch: str | None
    head: str | None


@dataclass(frozen=True)
class WorktreeState:
    """A worktree as git sees it now. ``dirty``: uncommitted changes (tracked or untracked, not the
    files copied into it at launch); ``unpushed``: commits of its branch in no other branch or remote
    (deleting the branch would lose them); ``ahead``/``behind``: against its base branch (or commit)."""

    exists: bool
    dirty: list[str]
    ahead: int | None
    behind: int | None
    unpushed: int
    branch_exists: bool

    @property
    def loses_work(self) -> bool:
        return bool(self.dirty) or self.unpushed > 0


def workspace_id(session_id: str) -> UUID:
    """The workspace's id, from the session's id (hex): everyone finds the same aggregate."""
    return uuid5(NAMESPACE_URL, f"agentledger:workspace:{UUID(session_id).hex}")


class Workspace(Aggregate):
    """A session's worktree after the session: merged where, removed by whom, checked how."""

    class Created(Aggregate.Created):
        """The session's worktree facts, as its ``Launched`` recorded them."""

        session_id: str
        repository: str
        worktree: str
        branch: str
        base_ref: str | None
        base_commit: str

    class Merged(Aggregate.Event):
        """The branch was merged into ``into`` by ``by``; ``commit`` is ``into``'s new tip."""

        into: str
        commit: str
        squash: bool
        by: dict[str, Any]

        def apply(self, aggregate: Workspace) -> None:
            aggregate.merged = {"into": self.into, "commit": self.commit, "squash": self.squash, "by": self.by,
                                "at": self.timestamp}

    class Removed(Aggregate.Event):
        """The worktree was removed (``forced``: work in it was given up on purpose); its branch deleted too?"""

        by: dict[str, Any]
        forced: bool
        branch_deleted: bool

        def apply(self, aggregate: Workspace) -> None:
            aggregate.removed = {"by": self.by, "forced": self.forced, "branch_deleted": self.branch_deleted,
                                 "at": self.timestamp}

    class CheckFinished(Aggregate.Event):
        """A check command (``launch --check CMD``) ran in the worktree after the stop; ``passed``: exit 0."""

        command: str
        exit_code: int | None
        passed: bool
        duration: float
        output_tail: str

        def apply(self, aggregate: Workspace) -> None:
            aggregate.check = {"command": self.command, "exit_code": self.exit_code, "passed": self.passed,
                               "duration": self.duration, "output_tail": self.output_tail, "at": self.timestamp}

    @staticmethod
    def create_id(session_id: str, **_: Any) -> UUID:
        return workspace_id(session_id)

    @event(Created)
    def __init__(self, *, session_id: str, repository: str, worktree: str, branch: str, base_ref: str | None,
                 base_commit: str) -> None:
        self.session_id = session_id
        self.repository = repository
        self.worktree = worktree
        self.branch = branch
        self.base_ref = base_ref
        self.base_commit = base_commit
        self.merged: dict[str, Any] | None = None
        self.removed: dict[str, Any] | None = None
        self.check: dict[str, Any] | None = None

    #: Defaults for attributes newer than some stored snapshots.
    check: dict[str, Any] | None = None

    def record_merge(self, *, into: str, commit: str, squash: bool, by: dict[str, Any]) -> None:
        if self.merged is not None:
            raise AlreadyRecorded(f"session {self.session_id[:12]}'s branch was merged already, into "
                                  f"{self.merged['into']} ({self.merged['commit'][:12]})")
        if self.removed is not None:
            raise AlreadyRecorded(f"session {self.session_id[:12]}'s worktree was removed already")
        self.trigger_event(self.Merged, into=into, commit=commit, squash=squash, by=by)

    def record_removal(self, *, by: dict[str, Any], forced: bool, branch_deleted: bool) -> None:
        if self.removed is not None:
            raise AlreadyRecorded(f"session {self.session_id[:12]}'s worktree was removed already")
        self.trigger_event(self.Removed, by=by, forced=forced, branch_deleted=branch_deleted)

    def record_check(self, *, command: str, exit_code: int | None, duration: float, output_tail: str) -> None:
        """A check's outcome (the last one counts; each run is in the log)."""
        self.trigger_event(self.CheckFinished, command=command, exit_code=exit_code, passed=exit_code == 0,
                           duration=duration, output_tail=output_tail[-CHECK_OUTPUT_TAIL_BYTES:])
