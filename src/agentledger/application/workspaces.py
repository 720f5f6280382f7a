"""After a worktree session stops: what it changed, merging its work, removing its worktree, checks.

``Stopped`` is final for a Session, so these facts go to the session's
``Workspace`` aggregate (``domain/workspace.py``), created on the first of
them and saved with compare-and-set: ``Merged``, ``Removed`` and
``CheckFinished``. ``history`` and ``why`` read them back to say where the
session's work went.

* :func:`diff_text` / :func:`diff_stats`: what the session changed against its base commit, committed or
  not (``agentledger diff``; ``compare`` takes the stats).
* :func:`merge_session`: ``agentledger merge``: the branch into its base branch (or another), then the
  worktree and branch removed unless kept. Refused with nothing changed if the session still runs, its
  worktree has uncommitted changes (they would not be merged, and removing would lose them), the target
  is dirty, or the merge conflicts.
* :func:`remove_worktree`: ``worktrees clean``: refused where uncommitted or unpushed work would be lost,
  unless forced (recorded as such).
* :func:`record_check`: a check command's outcome (``launch --check CMD``), for whoever runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from agentledger.domain.errors import LedgerError, UsageError
from agentledger.domain.workspace import DiffStats, WorkRefused, Workspace, WorktreeState, workspace_id

if TYPE_CHECKING:
    from agentledger.application.ledger import Ledger
    from agentledger.application.ports import Repositories
    from agentledger.domain.session import Session

T = TypeVar("T")


# -- reading ---------------------------------------------------------------------


def workspace_of(ledger: Ledger, session_id: str | UUID) -> Workspace | None:
    """The session's Workspace aggregate, or None while nothing has happened to its worktree since the stop."""
    hex_id = session_id.hex if isinstance(session_id, UUID) else session_id
    try:
        found: Workspace = ledger.repository.get(workspace_id(hex_id))
    except AggregateNotFoundError:
        return None
    return found


def worktree_session(ledger: Ledger, session_id: str | UUID) -> Session:
    """The session, if it was launched with a worktree; else refused (exit 2)."""
    session = ledger.session(session_id if isinstance(session_id, UUID) else UUID(session_id))
    if not session.workspace:
        raise UsageError(f"session {session.id.hex[:12]} was not launched with --worktree: it has no worktree "
                         "of its own")
    return session


def worktree_state(git: Repositories, session: Session) -> WorktreeState:
    """The session's worktree as git sees it now (dirty files other than those copied in at launch)."""
    ws = _facts(session)
    base = ws.get("base_ref")  # ahead/behind its base branch as it is now; else the commit it started from
    if not base or git.commit_of(ws["repository"], base) is None:
        base = ws["base_commit"]
    return git.state(ws["repository"], ws["worktree"], branch=ws["branch"], base=base, ignore=ws.get("copied") or ())


def diff_text(ledger: Ledger, git: Repositories, session_id: str | UUID, *, stat: bool) -> str:
    """What the session changed against its base commit: its worktree's files now (uncommitted changes and new
    files included); once the worktree is gone, its branch; once that is gone too, the commit it was merged as."""
    session = worktree_session(ledger, session_id)
    ws = _facts(session)
    return git.diff(ws["repository"], ws["worktree"], base=ws["base_commit"], branch=ws["branch"],
                    landed=_landed(ledger, git, session), stat=stat, ignore=ws.get("copied") or ())


def diff_stats(ledger: Ledger, git: Repositories, session_id: str | UUID) -> DiffStats:
    """Files changed, insertions, deletions of the session's work against its base commit (as :func:`diff_text`)."""
    session = worktree_session(ledger, session_id)
    ws = _facts(session)
    return git.diff_stats(ws["repository"], ws["worktree"], base=ws["base_commit"], branch=ws["branch"],
                          landed=_landed(ledger, git, session), ignore=ws.get("copied") or ())


def _landed(ledger: Ledger, git: Repositories, session: Session) -> tuple[str, str] | None:
    """What the recorded merge put on its target: (from, to). A fast-forward landed the branch from the base
    commit; a merge commit or a squash, what it added to the target's previous tip."""
    workspace = workspace_of(ledger, session.id)
    if workspace is None or not workspace.merged:
        return None
    ws, commit = _facts(session), workspace.merged["commit"]
    repository = ws["repository"]
    if workspace.merged["squash"] or git.commit_of(repository, f"{commit}^2") is not None:
        return git.commit_of(repository, f"{commit}^1") or ws["base_commit"], commit
    return ws["base_commit"], commit


# -- writing ---------------------------------------------------------------------


def change_workspace(ledger: Ledger, session: Session, command: Callable[[Workspace], T]) -> T:
    """Apply ``command`` to the session's Workspace (created from the session's facts if need be) and save,
    with compare-and-set: a lost race reloads and decides again."""

    def load() -> Workspace:
        workspace = workspace_of(ledger, session.id)
        if workspace is not None:
            return workspace
        ws = _facts(session)
        return Workspace(session_id=session.id.hex, repository=ws["repository"], worktree=ws["worktree"],
                         branch=ws["branch"], base_ref=ws.get("base_ref"), base_commit=ws["base_commit"])

    return ledger.compare_and_set(load, command, what=lambda: f"session {session.id.hex[:12]}'s worktree")


def record_check(ledger: Ledger, session_id: str | UUID, *, command: str, exit_code: int | None, duration: float,
                 output_tail: str) -> Workspace:
    """Record a check command's outcome (``CheckFinished``; ``passed`` is exit code 0) for a worktree session.

    For the group launch's ``--check CMD``, run in the worktree after the session stops.
    """
    session = worktree_session(ledger, session_id)

    def check(workspace: Workspace) -> Workspace:
        workspace.record_check(command=command, exit_code=exit_code, duration=duration, output_tail=output_tail)
        return workspace

    return change_workspace(ledger, session, check)


@dataclass(frozen=True)
class MergeOutcome:
    session_id: str
    branch: str
    into: str
    commit: str
    squash: bool
    removed: bool
    branch_deleted: bool
    worktree: str


def merge_session(ledger: Ledger, git: Repositories, session_id: str | UUID, *, into: str | None, squash: bool,
                  keep: bool, by: dict[str, Any]) -> MergeOutcome:
    """Merge a stopped session's branch into its base branch (or ``into``); then remove its worktree and branch
    unless ``keep``. ``Merged`` (and ``Removed``) recorded; refused with nothing changed otherwise."""
    session = worktree_session(ledger, session_id)
    short = session.id.hex[:12]
    ws = _facts(session)
    if not session.is_stopped:
        raise LedgerError(f"session {short} is still {session.status}: merge takes a stopped session's work "
                          f"(stop it first: agentledger stop {short})")
    workspace = workspace_of(ledger, session.id)
    if workspace is not None and workspace.merged:
        raise WorkRefused(f"session {short}'s branch was merged already, into {workspace.merged['into']} "
                          f"({workspace.merged['commit'][:12]})")
    if workspace is not None and workspace.removed:
        raise WorkRefused(f"session {short}'s worktree and branch were removed already: nothing to merge")
    target = into or ws.get("base_ref")
    if not target:
        raise UsageError(f"session {short}'s worktree started from a detached HEAD ({ws['base_commit'][:12]}): "
                         "say which branch to merge into with --into BRANCH")
    state = worktree_state(git, session)
    if state.dirty:
        raise WorkRefused(f"session {short}'s worktree {ws['worktree']} has uncommitted changes "
                          f"({_listed(state.dirty)}): commit them there (or discard them) first; nothing was changed")
    commit = git.merge(ws["repository"], ws["branch"], into=target, squash=squash,
                       message=f"agentledger: merge session {short} ({ws['branch']})")
    change_workspace(ledger, session, lambda w: w.record_merge(into=target, commit=commit, squash=squash, by=by))
    removed = deleted = False
    if not keep:
        git.remove_worktree(ws["repository"], ws["worktree"])
        deleted = git.delete_branch(ws["repository"], ws["branch"])
        change_workspace(ledger, session, lambda w: w.record_removal(by=by, forced=False, branch_deleted=deleted))
        removed = True
    return MergeOutcome(session.id.hex, ws["branch"], target, commit, squash, removed, deleted, ws["worktree"])


@dataclass(frozen=True)
class Removal:
    """What ``worktrees clean`` did with one session's worktree: removed, or kept and why."""

    session_id: str
    worktree: str
    removed: bool
    forced: bool = False
    branch_deleted: bool = False
    refusal: str | None = None


def remove_worktree(ledger: Ledger, git: Repositories, session_id: str | UUID, *, force: bool,
                    by: dict[str, Any]) -> Removal:
    """Remove a stopped session's worktree and branch, unless uncommitted or unpushed work would be lost (then
    kept, and said why) or ``force`` (then recorded as forced)."""
    session = worktree_session(ledger, session_id)
    short = session.id.hex[:12]
    ws = _facts(session)
    if not session.is_stopped:
        return Removal(session.id.hex, ws["worktree"], False, refusal=f"session {short} is still {session.status}")
    workspace = workspace_of(ledger, session.id)
    if workspace is not None and workspace.removed:
        return Removal(session.id.hex, ws["worktree"], False, refusal=f"session {short}'s worktree was removed already")
    state = worktree_state(git, session)
    merged = workspace is not None and workspace.merged is not None
    losses = []
    if state.dirty:
        losses.append(f"{len(state.dirty)} uncommitted change{'s' if len(state.dirty) != 1 else ''} "
                      f"({_listed(state.dirty)})")
    if state.unpushed and not merged:  # a squash merge leaves the branch's commits in no other branch
        losses.append(f"{state.unpushed} commit{'s' if state.unpushed != 1 else ''} on {ws['branch']} in no other "
                      "branch or remote")
    if losses and not force:
        return Removal(session.id.hex, ws["worktree"], False,
                       refusal=f"kept {short} ({ws['worktree']}): {' and '.join(losses)} would be lost; "
                               f"merge it (agentledger merge {short}) or use --force")
    git.remove_worktree(ws["repository"], ws["worktree"])
    deleted = git.delete_branch(ws["repository"], ws["branch"])
    forced = bool(losses)
    change_workspace(ledger, session, lambda w: w.record_removal(by=by, forced=forced, branch_deleted=deleted))
    return Removal(session.id.hex, ws["worktree"], True, forced=forced, branch_deleted=deleted)


# -- words -----------------------------------------------------------------------


def workspace_facts(ledger: Ledger, session: Session) -> dict[str, Any] | None:
    """For ``why``: the worktree's launch facts, and where its work went (merged, removed, checked)."""
    if not session.workspace:
        return None
    workspace = workspace_of(ledger, session.id)
    facts = dict(session.workspace)
    facts.update(merged=workspace.merged if workspace else None, removed=workspace.removed if workspace else None,
                 check=workspace.check if workspace else None)
    facts["summary"] = where_work_went(facts)
    return facts


def where_work_went(facts: dict[str, Any]) -> str:
    """'merged into main as 1a2b3c4d5e6f (squash) by ann; worktree removed', 'still in its worktree PATH', …"""
    merged, removed = facts.get("merged"), facts.get("removed")
    parts = []
    if merged:
        who = (merged.get("by") or {}).get("user") or (merged.get("by") or {}).get("component")
        parts.append(f"merged into {merged['into']} as {merged['commit'][:12]}"
                     f"{' (squash)' if merged.get('squash') else ''} by {who}")
    if removed:
        who = (removed.get("by") or {}).get("user") or (removed.get("by") or {}).get("component")
        gone = "worktree and branch removed" if removed.get("branch_deleted") else "worktree removed"
        parts.append(f"{gone}{' (forced: unmerged work given up)' if removed.get('forced') else ''} by {who}")
    elif not merged:
        parts.append(f"in its worktree {facts['worktree']} on branch {facts['branch']} (not merged)")
    else:
        parts.append(f"worktree kept at {facts['worktree']}")
    return "; ".join(parts)


def _facts(session: Session) -> dict[str, Any]:
    ws = session.workspace
    assert ws is not None
    return ws


def _listed(paths: list[str], shown: int = 5) -> str:
    return ", ".join(paths[:shown]) + (f" and {len(paths) - shown} more" if len(paths) > shown else "")
