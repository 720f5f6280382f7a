"""A session's own git worktree: ``launch --worktree [NAME] [--branch B] [--base-branch REF]``.

Several agents set on one repository at once must not write into one
checkout. So a launch may ask for a worktree of its own: :meth:`Worktrees.create`
finds the repository of the requested directory, creates a worktree on a new
branch from REF (default: the current ``HEAD``), copies (or links) the
untracked files a checkout needs (``.env`` and the like, from the
configuration) into it, and returns the directory the session runs in, with
the facts ``Launched.workspace`` records: the repository, the worktree, the
branch, the base ref and the base commit, the files copied in.

``Launching`` calls it in one place (``_directory``), before the agent's plan
is built, so every kind of launch (an agent, ``-- ARGV``, each agent of a
group) gets a worktree the same way: pass ``worktree=WorktreeRequest(...)``.

Where worktrees go: ``worktree_dir`` in the configuration (or in the
repository's own ``[repositories."PATH"]`` table) names a directory under
which each repository's worktrees are kept as ``<dir>/<repository name>/<NAME>``
(a relative one is the repository's own: ``<repo>/<dir>/<NAME>``); by default they go
beside the repository, in ``<repo>/../<repo name>.worktrees/<NAME>``, where
neither the repository's ``git status`` nor the ledger home sees them. The
branch is ``agentledger/<NAME>``, NAME being the session id's first 12 digits
unless given.

What happens to the work after the session stops (diff, merge, removal) is
``application/workspaces.py``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentledger.domain.errors import LedgerError, UsageError

if TYPE_CHECKING:
    from agentledger.application.ports import Repositories

#: A worktree's name becomes a directory and part of a branch: letters, digits, '.', '_' and '-'.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
#: The branch a worktree gets when none is asked for.
BRANCH_PREFIX = "agentledger/"
COPY_MODES = ("copy", "link")


@dataclass(frozen=True)
class WorktreeRequest:
    """A launch's wish for a worktree of its own. None: the defaults (the session id's first 12 digits as
    the name, ``agentledger/<name>`` as the branch, the current ``HEAD`` as the base)."""

    name: str | None = None
    branch: str | None = None
    base: str | None = None


@dataclass(frozen=True)
class RepositoryRules:
    """One repository's own worktree settings (``[repositories."PATH"]``); None: the global one."""

    copy: tuple[str, ...] = ()  # added to the global list
    copy_mode: str | None = None
    directory: str | None = None


@dataclass(frozen=True)
class WorktreeSettings:
    """What the configuration says about worktrees (``infrastructure/settings.py``)."""

    directory: str | None = None  # None: beside the repository
    copy: tuple[str, ...] = ()  # glob patterns, relative to the repository's top
    copy_mode: str = "copy"  # or "link"
    repositories: Mapping[str, RepositoryRules] = field(default_factory=dict)  # by the repository's real path

    def rules_for(self, repository: str, checkout: str) -> tuple[str | None, tuple[str, ...], str]:
        """(directory, copy patterns, copy mode) for a repository, seen from one of its checkouts."""
        own = self.repositories.get(os.path.realpath(repository)) or self.repositories.get(
            os.path.realpath(checkout)) or RepositoryRules()
        patterns = tuple(dict.fromkeys([*self.copy, *own.copy]))
        return own.directory or self.directory, patterns, own.copy_mode or self.copy_mode


class Worktrees:
    """Creates a launch's worktree through the ``Repositories`` port, as the configuration says."""

    def __init__(self, git: Repositories, settings: WorktreeSettings) -> None:
        self.git = git
        self.settings = settings

    def discard(self, workspace: dict[str, Any]) -> None:
        """Remove a just-made worktree and its branch (a launch that failed before it was recorded); best effort."""
        try:
            self.git.remove_worktree(workspace["repository"], workspace["worktree"])
            self.git.delete_branch(workspace["repository"], workspace["branch"])
        except LedgerError:  # what is left is an ordinary worktree: 'git worktree remove' takes it away
            pass

    def create(self, request: WorktreeRequest, *, cwd: str, session_id: str) -> tuple[str, dict[str, Any]]:
        """Create the worktree the session runs in: (its directory, the facts ``Launched.workspace`` records).

        ``cwd`` below the top of its checkout maps to the same place in the new worktree. Refused
        (``UsageError``, nothing created) outside a repository, for a bad name, branch or ref, or a
        worktree path or branch that exists already.
        """
        git = self.git
        checkout = git.root(cwd)
        if checkout is None:
            raise UsageError(f"--worktree: {cwd} is not in a git repository (run it in one, or give --cwd)")
        listed = git.worktrees(checkout)
        repository = listed[0].path if listed else checkout  # the main checkout, whichever one we are in
        name = request.name or session_id[:12]
        if not _NAME.fullmatch(name) or name.endswith(".lock"):
            raise UsageError(f"--worktree {name!r}: a worktree's name may hold only letters, digits, '.', '_' "
                             "and '-' (and start with a letter or digit)")
        branch = request.branch or f"{BRANCH_PREFIX}{name}"
        if not git.valid_branch_name(checkout, branch):
            raise UsageError(f"--branch {branch!r} is not a valid git branch name")
        if git.branch_exists(checkout, branch):
            raise UsageError(f"the branch {branch!r} exists already in {repository}: choose another "
                             "(--branch B, or another worktree name)")
        base_ref = request.base or git.current_branch(checkout)
        base_commit = git.commit_of(checkout, request.base or "HEAD")
        if base_commit is None:
            raise UsageError(f"--base-branch {request.base!r} names no commit in {repository}" if request.base
                             else f"--worktree: {repository} has no commit yet to start a worktree from")
        directory, patterns, mode = self.settings.rules_for(repository, checkout)
        path = self._path(directory, repository, name)
        if os.path.lexists(path):
            raise UsageError(f"--worktree {name}: {path} exists already (choose another name, or remove it)")
        git.add_worktree(checkout, path, branch=branch, ref=base_commit)
        copied = git.copy_untracked(checkout, path, patterns, link=mode == "link") if patterns else []
        below = os.path.relpath(os.path.realpath(cwd), checkout)
        runs_in = os.path.join(path, below) if below != "." and os.path.isdir(os.path.join(path, below)) else path
        return runs_in, {"repository": repository, "worktree": path, "branch": branch, "base_ref": base_ref,
                         "base_commit": base_commit, "name": name, "copied": copied}

    @staticmethod
    def _path(directory: str | None, repository: str, name: str) -> str:
        repo_name = os.path.basename(repository.rstrip(os.sep)) or "repository"
        if directory is None:
            return os.path.join(os.path.dirname(repository.rstrip(os.sep)), f"{repo_name}.worktrees", name)
        base = os.path.expanduser(directory)
        if not os.path.isabs(base):  # the repository's own: one repository's worktrees only
            return os.path.normpath(os.path.join(repository, base, name))
        return os.path.normpath(os.path.join(base, repo_name, name))
