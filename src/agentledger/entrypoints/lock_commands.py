"""``agentledger lock DIR``, ``unlock DIR`` and ``locks``: directory locks by hand, and who holds which.

A launch takes its directory's lock by itself (``launch --no-lock`` or
``auto_lock = false`` to not); these commands are for people: keep agents out
of a directory for a while (``lock``), give a lock back (``unlock``: a manual
one; one a live session holds only with ``--force``, since its ``Stopped``
releases it anyway), and see every lock with its holder's status (``locks``).

Translation only: the use cases are ``application/locking.py``'s
``DirectoryLocks`` (built by ``bootstrap.directory_locks``). Heavy modules
are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentledger.application.clock import now_epoch
from agentledger.entrypoints.args import json_flag

if TYPE_CHECKING:
    from agentledger.application.locking import DirectoryLocks
    from agentledger.entrypoints.cli import Context


def add_parsers(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("lock", "lock a directory by hand: launches into it are refused (without --force) until unlock")
    p.add_argument("directory", metavar="DIR", help="the directory (symlinks resolved: every route to it is one lock)")
    p.add_argument("--reason", default=None, metavar="TEXT",
                   help="why, in words; shown to whoever is refused (default: none)")
    p.add_argument("--force", action="store_true",
                   help="take the lock over even while a session (or a person) holds it; the session is left "
                        "running, fuse and all")
    json_flag(p)
    p.set_defaults(handler=cmd_lock)

    p = command("unlock", "release a directory's lock taken by hand (one a live session holds: with --force)")
    p.add_argument("directory", metavar="DIR", help="the locked directory (it need not exist any more)")
    p.add_argument("--force", action="store_true",
                   help="release it even while the session holding it runs (the session is left running)")
    p.add_argument("--reason", default=None, metavar="TEXT",
                   help="why, in words; recorded with the release (default: none)")
    json_flag(p)
    p.set_defaults(handler=cmd_unlock)

    p = command("locks", "directory locks held now, with their holders' status")
    p.add_argument("--all", action="store_true",
                   help="every directory ever locked, with its last claim (free ones too, and why they are free)")
    json_flag(p)
    p.set_defaults(handler=cmd_locks)


def _locks(context: Context) -> DirectoryLocks:
    from agentledger.bootstrap import directory_locks

    return directory_locks(lambda: context.store)


def _directory(text: str, *, must_exist: bool) -> str:
    from agentledger.application.errors import UsageError
    from agentledger.application.locking import real_directory

    if not text.strip():
        raise UsageError("DIR is empty: give the directory to lock")
    directory = real_directory(text)
    if must_exist and not os.path.isdir(directory):
        raise UsageError(f"{text!r} is not a directory")
    return directory


def cmd_lock(context: Context, args: argparse.Namespace) -> int:
    locks = _locks(context)
    directory = _directory(args.directory, must_exist=True)
    tenure = locks.lock(directory, reason=args.reason, force=args.force)
    if args.json:
        from agentledger.entrypoints.render import write_json

        write_json({"directory": directory, "locked": True, "by": tenure.by, "reason": tenure.reason,
                    "forced": tenure.forced, "displaced": tenure.displaced, "taken_at": tenure.taken_at})
        return 0
    over = ""
    if tenure.forced:
        over = f", taken over from session {tenure.displaced[:12]}" if tenure.displaced else ", taken over (--force)"
    print(f"locked {directory}{over}; 'agentledger unlock {directory}' releases it")
    return 0


def cmd_unlock(context: Context, args: argparse.Namespace) -> int:
    locks = _locks(context)
    directory = _directory(args.directory, must_exist=False)
    view = locks.unlock(directory, force=args.force, reason=args.reason)
    tenure = view.tenure
    assert tenure is not None
    if args.json:
        from agentledger.entrypoints.render import write_json

        write_json({"directory": directory, "unlocked": True, "was_manual": tenure.manual,
                    "holder_session": tenure.holder_session})
        return 0
    if tenure.manual:
        print(f"unlocked {directory} (locked by hand by {tenure.by})")
    else:
        print(f"unlocked {directory}; session {(tenure.holder_session or '')[:12]} keeps running")
    return 0


def cmd_locks(context: Context, args: argparse.Namespace) -> int:
    context.fresh_db()  # caught up, with a word about any event it had to skip
    rows = _locks(context).current(include_free=args.all)
    now = now_epoch()
    if args.json:
        from agentledger.entrypoints.render import write_json_lines

        write_json_lines(lock_json(r) for r in rows)
        return 0
    from agentledger.entrypoints.render import relative, table

    table(["DIRECTORY", "HOLDER", "STATUS", "SINCE", "BY", "REASON", "FORCED"],
          [(r["directory"], _holder(r), _status(r), relative(r["taken_at"], now), r["taken_by"], r["reason"],
            _forced(r)) for r in rows])
    if not rows:
        print("no directory is locked" if not args.all else "no directory was ever locked", file=sys.stderr)
    return 0


def _holder(row: dict[str, Any]) -> str:
    if row["manual"]:
        return "(by hand)"
    name = f" ({row['holder_name']})" if row["holder_name"] else ""
    return f"{(row['holder_session'] or '')[:12]}{name}"


def _status(row: dict[str, Any]) -> str:
    """The holder's status while held (``launching`` before it is recorded); ``free: why`` otherwise."""
    if not row["held"]:
        return f"free: {row['why']}"
    if row["manual"]:
        return "locked"
    return row["holder_status"] or "launching"


def _forced(row: dict[str, Any]) -> str:
    if not row["forced"]:
        return ""
    return f"yes, from {row['displaced'][:12]}" if row["displaced"] else "yes"


def lock_json(row: dict[str, Any]) -> dict[str, Any]:
    """The documented, stable JSON shape of one lock (``docs/cli.md``)."""
    from agentledger.projections.queries import iso

    return {
        "directory": row["directory"],
        "lock_id": row["lock_id"],
        "held": row["held"],
        "why": row["why"],
        "manual": row["manual"],
        "holder_session": row["holder_session"],
        "holder_name": row["holder_name"],
        "holder_adapter": row["holder_adapter"],
        "holder_status": row["holder_status"],
        "holder_started_at": iso(row["holder_started_at"]),
        "taken_at": iso(row["taken_at"]),
        "taken_by": row["taken_by"],
        "reason": row["reason"],
        "forced": row["forced"],
        "displaced": row["displaced"],
        "taker": {"pid": row["taker_pid"], "start_time": row["taker_start_time"], "host": row["taker_host"],
                  "boot_id": row["taker_boot_id"]},
        "released_at": iso(row["released_at"]),
        "released_by": row["released_by"],
        "release_reason": row["release_reason"],
        "version": row["version"],
        "position": row["position"],
    }
