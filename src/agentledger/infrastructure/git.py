"""The ``Repositories`` port over the real ``git`` binary: worktrees, their state, diffs and safe merges.

Every call runs ``git -C DIR ...`` with an argv list (never a shell), with
``GIT_TERMINAL_PROMPT=0`` and output in the C locale, and reads the porcelain
or plumbing output meant for programs. git's own configuration (the user's
identity, hooks) applies, as it would if the user typed the command.

Two promises matter more than the rest:

* **A diff is what the agent changed, committed or not.** ``diff`` compares
  the base commit with the worktree's files as they are now, new untracked
  (not ignored) files included: it stages everything into a *temporary* index
  (a copy of the worktree's, so unchanged files are not re-read), never
  touching the worktree's own index. A worktree that is gone is diffed by its
  branch; a branch that is gone too, by the commit it was merged as.
* **A merge lands whole or not at all.** The target must be clean (no
  modified tracked files; untracked ones are left alone). When git has
  ``merge-tree --write-tree`` (2.38+), a conflict is found before anything is
  touched; either way a merge that fails is undone (``merge --abort``, or
  ``reset --merge`` after ``--squash``) and refused in one line naming the
  conflicting files. The merge runs in the checkout that has the target
  branch (normally the repository's own), else in a temporary worktree that
  is removed afterwards.
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence

from agentledger.domain.workspace import DiffStats, GitError, WorkRefused, WorktreeInfo, WorktreeState

#: How long one git command may take before it is given up on.
GIT_TIMEOUT = 120.0
#: At most this many conflicting files are named in a refusal.
_NAMED_FILES = 5


def _environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k in ("GIT_CONFIG_GLOBAL",
                                                                                  "GIT_CONFIG_NOSYSTEM",
                                                                                  "GIT_AUTHOR_NAME",
                                                                                  "GIT_AUTHOR_EMAIL",
                                                                                  "GIT_COMMITTER_NAME",
                                                                                  "GIT_COMMITTER_EMAIL")}
    env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C", LANG="C")
    if extra:
        env.update(extra)
    return env


class LocalGit:
    """Git repositories on this machine, through the ``git`` binary (``application/ports.py: Repositories``)."""

    def __init__(self, binary: str = "git") -> None:
        self.binary = binary

    # -- running git ----------------------------------------------------------------

    def _run(self, directory: str, *args: str, check: bool = True, env: dict[str, str] | None = None,
             input: str | None = None) -> subprocess.CompletedProcess[str]:
        try:
            result = subprocess.run([self.binary, "-C", directory, *args], capture_output=True, text=True,
                                    errors="replace", env=_environment(env), timeout=GIT_TIMEOUT, input=input,
                                    stdin=None if input is not None else subprocess.DEVNULL)
        except FileNotFoundError:
            raise GitError(f"cannot run {self.binary!r}: git is not installed (or not on PATH)") from None
        except subprocess.TimeoutExpired:
            raise GitError(f"git {' '.join(args[:2])} in {directory} took more than {GIT_TIMEOUT:.0f}s") from None
        if check and result.returncode != 0:
            raise GitError(f"git {' '.join(args[:3])} in {directory} failed: {_first_line(result)}")
        return result

    def _out(self, directory: str, *args: str) -> str:
        return self._run(directory, *args).stdout.strip()

    # -- facts ----------------------------------------------------------------------

    def root(self, directory: str) -> str | None:
        """The top of the checkout holding ``directory`` (a repository's or a linked worktree's); None outside one."""
        if not os.path.isdir(directory):
            return None
        result = self._run(directory, "rev-parse", "--show-toplevel", check=False)
        top = result.stdout.strip()
        return os.path.realpath(top) if result.returncode == 0 and top else None

    def commit_of(self, directory: str, ref: str) -> str | None:
        """The commit ``ref`` names (None: it names none)."""
        result = self._run(directory, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}",
                           check=False)
        return result.stdout.strip() or None if result.returncode == 0 else None

    def current_branch(self, directory: str) -> str | None:
        """The branch checked out in ``directory`` (None: a detached HEAD)."""
        result = self._run(directory, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        return result.stdout.strip() or None if result.returncode == 0 else None

    def branch_exists(self, directory: str, branch: str) -> bool:
        return self._run(directory, "show-ref", "--verify", "--quiet", f"refs/heads/{branch}",
                         check=False).returncode == 0

    def valid_branch_name(self, directory: str, name: str) -> bool:
        return not name.startswith("-") and self._run(directory, "check-ref-format", "--branch", name,
                                                      check=False).returncode == 0

    def worktrees(self, repository: str) -> list[WorktreeInfo]:
        """Every worktree of the repository (its own checkout first), from ``worktree list --porcelain``."""
        found: list[WorktreeInfo] = []
        path: str | None = None
        branch: str | None = None
        head: str | None = None
        for line in [*self._out(repository, "worktree", "list", "--porcelain").splitlines(), ""]:
            if line.startswith("worktree "):
                path = line[len("worktree "):]
            elif line.startswith("HEAD "):
                head = line[len("HEAD "):]
            elif line.startswith("branch "):
                branch = line[len("branch "):].removeprefix("refs/heads/")
            elif not line and path is not None:
                found.append(WorktreeInfo(os.path.realpath(path), branch, head))
                path = branch = head = None
        return found

    # -- creating -------------------------------------------------------------------

    def add_worktree(self, repository: str, path: str, *, branch: str, ref: str) -> None:
        """``git worktree add -b BRANCH PATH REF``: a new branch from REF, checked out at PATH.

        Git's own bookkeeping (``.git/worktrees``, the new branch) is done one
        at a time per repository, across threads and processes: it does not
        survive two ``worktree add`` racing. The checkout itself, the slow part,
        is not: each worktree has an index of its own, so a group launch checks
        its worktrees out side by side.
        """
        os.makedirs(os.path.dirname(path), exist_ok=True)
        common = self._run(repository, "rev-parse", "--path-format=absolute", "--git-common-dir").stdout.strip()
        with open(os.path.join(common, "agentledger-worktree.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
            self._run(repository, "worktree", "add", "--quiet", "--no-checkout", "-b", branch, path, ref)
        self._run(path, "reset", "--quiet", "--hard", "HEAD")  # the files and the index, as worktree add would

    def copy_untracked(self, source: str, target: str, patterns: Sequence[str], *, link: bool) -> list[str]:
        """Copy (or symlink) the files and directories of ``source`` matching ``patterns`` (globs relative to
        it, ``**`` allowed) to the same places in ``target``; what is already there (tracked files) is left
        alone. The relative paths handled, sorted."""
        done: list[str] = []
        for pattern in patterns:
            for found in sorted(glob.glob(pattern, root_dir=source, recursive=True, include_hidden=True)):
                relative = os.path.normpath(found)
                if relative == ".git" or relative.startswith((".git" + os.sep, ".." + os.sep)) or relative in done:
                    continue
                origin, copy = os.path.join(source, relative), os.path.join(target, relative)
                if os.path.lexists(copy) or not os.path.lexists(origin):
                    continue
                os.makedirs(os.path.dirname(copy), exist_ok=True)
                if link:
                    os.symlink(os.path.abspath(origin), copy)
                elif os.path.isdir(origin) and not os.path.islink(origin):
                    shutil.copytree(origin, copy, symlinks=True)
                else:
                    shutil.copy2(origin, copy, follow_symlinks=False)
                done.append(relative)
        return sorted(done)

    # -- state ----------------------------------------------------------------------

    def state(self, repository: str, worktree: str, *, branch: str, base: str, ignore: Sequence[str] = ()
              ) -> WorktreeState:
        """Dirty files (less ``ignore``: the files copied in at launch), ahead/behind ``base``, unpushed commits."""
        exists = os.path.isdir(worktree) and self.root(worktree) == os.path.realpath(worktree)
        dirty: list[str] = []
        if exists:
            skipped = set(ignore)
            for entry in self._run(worktree, "status", "--porcelain=v1", "-z", "--untracked-files=all"
                                   ).stdout.split("\0"):
                path = entry[3:]
                if entry and path not in skipped and not any(path.startswith(s.rstrip("/") + "/") for s in skipped):
                    dirty.append(path)
            dirty = [d for d in dirty if d]
        branch_exists = self.branch_exists(repository, branch)
        ahead = behind = None
        unpushed = 0
        if branch_exists:
            base_commit = self.commit_of(repository, base)
            if base_commit is not None:
                counts = self._out(repository, "rev-list", "--left-right", "--count",
                                   f"{base_commit}...refs/heads/{branch}").split()
                behind, ahead = int(counts[0]), int(counts[1])
            unpushed = len(self._out(repository, "rev-list", f"refs/heads/{branch}", "--not",
                                     f"--exclude={branch}", "--branches", "--remotes").split())  # --branches' names: below refs/heads/
        return WorktreeState(exists=exists, dirty=dirty, ahead=ahead, behind=behind, unpushed=unpushed,
                             branch_exists=branch_exists)

    # -- diffs ----------------------------------------------------------------------

    def diff(self, repository: str, worktree: str | None, *, base: str, branch: str | None,
             landed: tuple[str, str] | None = None, stat: bool = False, ignore: Sequence[str] = ()) -> str:
        """The change against ``base``: the worktree's files now (less ``ignore``: the files copied in at launch);
        else the branch; else what its merge landed (``landed``: from, to)."""
        return self._diff(repository, worktree, base, branch, landed, ["--stat"] if stat else ["--patch"], ignore)

    def diff_stats(self, repository: str, worktree: str | None, *, base: str, branch: str | None,
                   landed: tuple[str, str] | None = None, ignore: Sequence[str] = ()) -> DiffStats:
        files = insertions = deletions = 0
        for line in self._diff(repository, worktree, base, branch, landed, ["--numstat"], ignore).splitlines():
            parts = line.split("\t", 2)
            if len(parts) == 3:
                files += 1
                insertions += int(parts[0]) if parts[0].isdigit() else 0  # '-' for a binary file
                deletions += int(parts[1]) if parts[1].isdigit() else 0
        return DiffStats(files, insertions, deletions)

    def _diff(self, repository: str, worktree: str | None, base: str, branch: str | None, landed: tuple[str, str] | None,
              form: list[str], ignore: Sequence[str]) -> str:
        options = ["--no-color", "--no-ext-diff", *form]
        if worktree is not None and os.path.isdir(worktree) and self.root(worktree) == os.path.realpath(worktree):
            return self._worktree_diff(worktree, base, options, ignore)
        if branch is not None and self.branch_exists(repository, branch):
            return self._run(repository, "diff", *options, base, f"refs/heads/{branch}", "--").stdout
        if landed is not None and self.commit_of(repository, landed[1]) is not None:
            return self._run(repository, "diff", *options, landed[0], landed[1], "--").stdout
        raise GitError("nothing left to diff: the worktree and its branch are gone (and no merge was recorded)")

    def _worktree_diff(self, worktree: str, base: str, options: list[str], ignore: Sequence[str]) -> str:
        index = self._out(worktree, "rev-parse", "--path-format=absolute", "--git-path", "index")
        with tempfile.TemporaryDirectory(prefix="agentledger-diff-") as scratch:
            scratch_index = os.path.join(scratch, "index")
            if os.path.exists(index):
                shutil.copyfile(index, scratch_index)
            env = {"GIT_INDEX_FILE": scratch_index}
            excluded = [f":(exclude,literal){path}" for path in self._not_ignored(worktree, ignore)]
            self._run(worktree, "add", "--all", "--", ".", *excluded, env=env)
            return self._run(worktree, "diff", "--cached", *options, base, "--", env=env).stdout

    def _not_ignored(self, worktree: str, paths: Sequence[str]) -> list[str]:
        """``paths`` less those git ignores anyway (``.env`` usually is): naming an ignored path, even to
        exclude it, makes ``git add`` fail."""
        if not paths:
            return []
        found = self._run(worktree, "check-ignore", "--no-index", "--stdin", "-z", check=False,
                          input="\0".join(paths) + "\0")
        ignored = set(found.stdout.split("\0"))
        return [path for path in paths if path not in ignored]

    # -- merging --------------------------------------------------------------------

    def merge(self, repository: str, branch: str, *, into: str, squash: bool, message: str) -> str:
        """Merge ``branch`` into ``into``; ``into``'s new commit. Refused (``WorkRefused``), with nothing
        changed, on a conflict, a dirty target, or nothing to merge."""
        if not self.branch_exists(repository, into):
            raise GitError(f"there is no branch {into!r} to merge into in {repository}")
        if not self.branch_exists(repository, branch):
            raise GitError(f"the branch {branch!r} is gone from {repository}: nothing to merge")
        if self._count(repository, into, branch) == 0:
            raise WorkRefused(f"nothing to merge: {branch} has no commits that {into} lacks")
        conflicts = self._predicted_conflicts(repository, branch, into)
        if conflicts:
            raise WorkRefused(f"merging {branch} into {into} would conflict in {_named(conflicts)}: "
                              "nothing was changed (resolve it by hand, or merge into another branch)")
        checkout = next((w.path for w in self.worktrees(repository) if w.branch == into), None)
        if checkout is not None:
            modified = self._modified(checkout)
            if modified:
                raise WorkRefused(f"{into} is checked out in {checkout} with uncommitted changes "
                                  f"({_named(modified)}): commit or stash them first; nothing was changed")
            return self._merge_in(checkout, branch, into, squash=squash, message=message)
        scratch = tempfile.mkdtemp(prefix="agentledger-merge-")
        os.rmdir(scratch)
        self._run(repository, "worktree", "add", "--quiet", scratch, into)
        try:
            return self._merge_in(scratch, branch, into, squash=squash, message=message)
        finally:
            self._run(repository, "worktree", "remove", "--force", scratch, check=False)
            shutil.rmtree(scratch, ignore_errors=True)
            self._run(repository, "worktree", "prune", check=False)

    def _count(self, repository: str, into: str, branch: str) -> int:
        return int(self._out(repository, "rev-list", "--count", f"refs/heads/{into}..refs/heads/{branch}"))

    def _predicted_conflicts(self, repository: str, branch: str, into: str) -> list[str]:
        """The files a merge would conflict in, found without touching any checkout (git 2.38+; else [])."""
        result = self._run(repository, "merge-tree", "--write-tree", "--name-only", "--no-messages",
                           f"refs/heads/{into}", f"refs/heads/{branch}", check=False)
        if result.returncode != 1:
            return []  # 0: merges cleanly; anything else: this git cannot tell (the merge itself will)
        return [line for line in result.stdout.splitlines()[1:] if line.strip()]

    def _modified(self, checkout: str) -> list[str]:
        out = self._run(checkout, "status", "--porcelain=v1", "-z", "--untracked-files=no").stdout
        return [entry[3:] for entry in out.split("\0") if entry]

    def _merge_in(self, checkout: str, branch: str, into: str, *, squash: bool, message: str) -> str:
        before = self._out(checkout, "rev-parse", "HEAD")
        args = ["merge", "--squash"] if squash else ["merge", "--no-edit", "-m", message]
        result = self._run(checkout, *args, "--end-of-options", f"refs/heads/{branch}", check=False)
        if result.returncode == 0 and squash:
            result = self._run(checkout, "commit", "--quiet", "-m", message, check=False)
        if result.returncode != 0:
            conflicts = self._out(checkout, "diff", "--name-only", "--diff-filter=U").splitlines()
            self._undo(checkout, before, squash=squash)
            if conflicts:
                raise WorkRefused(f"merging {branch} into {into} conflicts in {_named(conflicts)}: "
                                  "nothing was changed (the merge was aborted)")
            raise WorkRefused(f"git could not merge {branch} into {into} ({_first_line(result)}): "
                              "nothing was changed")
        return self._out(checkout, "rev-parse", "HEAD")

    def _undo(self, checkout: str, before: str, *, squash: bool) -> None:
        """Put the checkout back as it was before a failed merge (it was clean, so nothing of the user's is lost)."""
        if not squash and self._run(checkout, "rev-parse", "-q", "--verify", "MERGE_HEAD", check=False).returncode == 0:
            self._run(checkout, "merge", "--abort", check=False)
        if self._out(checkout, "rev-parse", "HEAD") != before:
            self._run(checkout, "reset", "--quiet", "--keep", before, check=False)
        self._run(checkout, "reset", "--quiet", "--merge", check=False)
        for name in ("SQUASH_MSG", "MERGE_MSG"):
            path = self._out(checkout, "rev-parse", "--path-format=absolute", "--git-path", name)
            if os.path.exists(path):
                os.unlink(path)

    # -- removing -------------------------------------------------------------------

    def remove_worktree(self, repository: str, worktree: str) -> None:
        """Remove the worktree (the caller has checked that no work would be lost) and prune git's record."""
        if os.path.isdir(worktree):
            result = self._run(repository, "worktree", "remove", "--force", "--force", worktree, check=False)
            if result.returncode != 0 and os.path.isdir(worktree):
                raise GitError(f"git could not remove the worktree {worktree}: {_first_line(result)}")
        self._run(repository, "worktree", "prune", check=False)

    def delete_branch(self, repository: str, branch: str) -> bool:
        """Delete the branch (unmerged work in it too: the caller decided); False if it was not there."""
        if not self.branch_exists(repository, branch):
            return False
        self._run(repository, "branch", "--quiet", "-D", "--end-of-options", branch)
        return True


def _first_line(result: subprocess.CompletedProcess[str]) -> str:
    for text in (result.stderr, result.stdout):
        for line in text.splitlines():
            if line.strip():
                return line.strip().removeprefix("fatal: ").removeprefix("error: ")
    return f"exit status {result.returncode}"


def _named(files: Sequence[str]) -> str:
    shown = ", ".join(files[:_NAMED_FILES])
    return shown + (f" and {len(files) - _NAMED_FILES} more" if len(files) > _NAMED_FILES else "")

