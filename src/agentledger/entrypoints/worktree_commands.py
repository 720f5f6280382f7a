"""``agentledger worktrees [clean]``, ``diff ID`` and ``merge ID``: the worktrees of ``launch --worktree`` sessions.

Translation only: the rows come from the read models
(``projections/workspaces.py``), what git says now from the ``Repositories``
port (``bootstrap.repositories()``, the real ``git``), and every change (a
merge, a removal) goes through ``application/workspaces.py``, which records
it on the session's Workspace aggregate. Heavy modules are imported inside
the handlers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentledger.application.clock import now_epoch
from agentledger.entrypoints.args import SESSION_HELP, Parser, json_flag
from agentledger.entrypoints.render import counted

if TYPE_CHECKING:
    from agentledger.entrypoints.cli import Context


def add_parsers(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("worktrees", "the git worktrees of sessions launched with --worktree: session, status, branch, "
                             "ahead/behind, uncommitted changes")
    p.add_argument("--all", action="store_true", help="also worktrees already removed (merged or cleaned)")
    json_flag(p)
    actions = p.add_subparsers(dest="worktrees_command", metavar="ACTION", parser_class=Parser)
    clean_help = ("remove the worktrees (and branches) of stopped sessions; refuses, one line each, where "
                  "uncommitted or unpushed work would be lost")
    cp = actions.add_parser("clean", help=clean_help, description=clean_help)
    cp.add_argument("--stopped", action="store_true",
                    help="only worktrees of stopped sessions (always the case: a running session's is never removed)")
    cp.add_argument("--force", action="store_true", help="remove them even where work would be lost (recorded)")
    json_flag(cp)
    p.set_defaults(handler=cmd_worktrees)

    p = command("diff", "what a worktree session changed against its base commit (committed or not)")
    p.add_argument("session", metavar="ID", help=SESSION_HELP)
    p.add_argument("--stat", action="store_true", help="a diffstat instead of the full diff")
    p.set_defaults(handler=cmd_diff)

    p = command("merge", "merge a stopped worktree session's branch into its base branch, then remove its "
                         "worktree and branch")
    p.add_argument("session", metavar="ID", help=SESSION_HELP)
    p.add_argument("--into", default=None, metavar="BRANCH",
                   help="merge into BRANCH (default: the branch the worktree started from)")
    p.add_argument("--squash", action="store_true", help="one new commit on the target instead of a merge")
    p.add_argument("--keep", action="store_true", help="keep the worktree and branch after merging")
    json_flag(p)
    p.set_defaults(handler=cmd_merge)


def _git() -> Any:
    from agentledger.bootstrap import repositories

    return repositories()


def cmd_worktrees(context: Context, args: argparse.Namespace) -> int:
    if args.worktrees_command == "clean":
        return _clean(context, args)
    from agentledger.entrypoints.render import relative, table, write_json_lines
    from agentledger.projections.queries import current_status, list_sessions
    from agentledger.projections.workspaces import workspace_json

    now = now_epoch()
    git = _git()
    rows = [r for r in list_sessions(context.fresh_db(), include_stopped=True, status=None, now=now)
            if r["worktree"] is not None and (args.all or r["worktree_removed_at"] is None)]
    rows.reverse()  # oldest first
    entries = []
    for row in rows:
        entry: dict[str, Any] = {"id": row["id"], "name": row["name"], "adapter": row["adapter"],
                                 "status": current_status(row, now), "host": row["host"],
                                 "started_at": row["started_at"], **workspace_json(row)}
        entry.update(_git_state(git, row))
        entries.append(entry)
    if args.json:
        write_json_lines(entries)
        return 0
    table(["SESSION", "STATUS", "BRANCH", "AHEAD/BEHIND", "DIRTY", "WHERE", "STARTED"],
          [(e["id"][:12], e["status"], e["branch"], _ahead_behind(e), _dirty(e), _where(e),
            relative(e["started_at"], now)) for e in entries])
    return 0


def _git_state(git: Any, row: Any) -> dict[str, Any]:
    """What git says of the worktree now: exists, dirty files, ahead/behind, unpushed (None: cannot tell here)."""
    import os

    from agentledger.domain.errors import LedgerError

    if row["worktree_removed_at"] is not None or not os.path.isdir(row["repository"]):
        return {"exists": False, "dirty": None, "ahead": None, "behind": None, "unpushed": None}
    import orjson

    base = row["base_ref"] if row["base_ref"] and git.commit_of(row["repository"], row["base_ref"]) else \
        row["base_commit"]
    try:
        state = git.state(row["repository"], row["worktree"], branch=row["branch"], base=base,
                          ignore=orjson.loads(row["worktree_copied"] or "[]"))
    except LedgerError as error:
        return {"exists": None, "dirty": None, "ahead": None, "behind": None, "unpushed": None, "error": str(error)}
    return {"exists": state.exists, "dirty": state.dirty if state.exists else None, "ahead": state.ahead,
            "behind": state.behind, "unpushed": state.unpushed}


def _ahead_behind(entry: dict[str, Any]) -> str:
    if entry["ahead"] is None:
        return "-"
    return f"+{entry['ahead']}/-{entry['behind']}"


def _dirty(entry: dict[str, Any]) -> str:
    if entry["dirty"] is None:
        return "-"
    return counted(len(entry["dirty"]), "file") if entry["dirty"] else "clean"


def _where(entry: dict[str, Any]) -> str:
    if entry["merged"]:
        kept = f", kept at {entry['worktree']}" if not entry["removed"] else ""
        return f"merged into {entry['merged']['into']}{kept}"
    if entry["removed"]:
        return "removed" + (" (forced)" if entry["removed"]["forced"] else "")
    if entry["exists"] is False:
        return f"{entry['worktree']} (gone)"
    return entry["worktree"]


def _clean(context: Context, args: argparse.Namespace) -> int:
    from agentledger.application.workspaces import remove_worktree
    from agentledger.entrypoints.render import escape, write_json_lines

    rows = [r for r in _stopped_worktree_rows(context)]
    git = _git()
    by = context.machine.actor("cli")
    results = []
    for row in rows:
        removal = remove_worktree(context.store.ledger, git, row["id"], force=args.force, by=by)
        results.append(removal)
        if not args.json:
            if removal.removed:
                print(escape(f"removed {removal.session_id[:12]} {removal.worktree}"
                             f"{' and its branch' if removal.branch_deleted else ''}"
                             f"{' (forced: its unmerged work is gone)' if removal.forced else ''}"))
            else:
                sys.stderr.write(f"agentledger: {escape(removal.refusal or 'kept')}\n")
    if args.json:
        write_json_lines({"id": r.session_id, "worktree": r.worktree, "removed": r.removed, "forced": r.forced,
                          "branch_deleted": r.branch_deleted, "refusal": r.refusal} for r in results)
    elif not results:
        print("agentledger: no worktree of a stopped session to remove", file=sys.stderr)
    return 1 if any(not r.removed for r in results) else 0


def _stopped_worktree_rows(context: Context) -> list[Any]:
    from agentledger.projections.queries import list_sessions

    now = now_epoch()
    return [r for r in reversed(list_sessions(context.fresh_db(), include_stopped=True, status="stopped", now=now))
            if r["worktree"] is not None and r["worktree_removed_at"] is None]


def cmd_diff(context: Context, args: argparse.Namespace) -> int:
    from agentledger.application.workspaces import diff_text

    session_id = context.resolve(args.session)
    text = diff_text(context.store.ledger, _git(), session_id, stat=args.stat)
    sys.stdout.write(text)
    return 0


def cmd_merge(context: Context, args: argparse.Namespace) -> int:
    from agentledger.application.workspaces import merge_session

    session_id = context.resolve(args.session)
    outcome = merge_session(context.store.ledger, _git(), session_id, into=args.into, squash=args.squash,
                            keep=args.keep, by=context.machine.actor("cli"))
    if args.json:
        from agentledger.entrypoints.render import write_json

        write_json({"id": outcome.session_id, "branch": outcome.branch, "into": outcome.into,
                    "commit": outcome.commit, "squash": outcome.squash, "removed": outcome.removed,
                    "branch_deleted": outcome.branch_deleted, "worktree": outcome.worktree})
        return 0
    from agentledger.entrypoints.render import escape

    after = (f"; removed {outcome.worktree}{' and branch ' + outcome.branch if outcome.branch_deleted else ''}"
             if outcome.removed else f"; kept {outcome.worktree}")
    print(escape(f"merged {outcome.branch} into {outcome.into}{' (squash)' if outcome.squash else ''}: "
                 f"{outcome.commit[:12]}{after}"))
    return 0
