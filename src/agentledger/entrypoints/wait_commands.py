"""``agentledger wait ID|NAME… [--timeout D]``, and the waiting of ``launch --wait``.

Translation only: the sessions are waited on through ``application/waiting.py``;
each one's exit status is printed (as ``docker wait`` prints it) and the
command exits with it, as a shell would (``domain/exits.py: shell_status``),
so ``agentledger wait fix-login && deploy`` does what it says.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from agentledger.entrypoints import args as types
from agentledger.entrypoints.args import json_flag

if TYPE_CHECKING:
    from agentledger.entrypoints.cli import Context

#: ``wait``'s exit status when its ``--timeout`` passed first (as ``timeout(1)``'s).
TIMED_OUT = 124
#: ... when interrupted (Ctrl-C), as a shell's for SIGINT; the sessions go on.
INTERRUPTED = 130


def add_parsers(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("wait", "block until sessions stop; print each one's exit status and exit with it")
    p.add_argument("sessions", nargs="+", metavar="ID|NAME", help="the sessions: ids, unique prefixes of ids, or names")
    add_timeout(p)
    json_flag(p)
    p.set_defaults(handler=cmd_wait)


def add_timeout(p: argparse.ArgumentParser, flag: str = "--timeout") -> None:
    p.add_argument(flag, dest="wait_timeout", type=types.duration, default=None, metavar="DURATION",
                   help=f"give up waiting after DURATION and exit {TIMED_OUT}; the sessions go on (default: wait as "
                        "long as they run)")


def cmd_wait(context: Context, args: argparse.Namespace) -> int:
    db = context.fresh_db()
    ids = list(dict.fromkeys(context.resolve(text, db) for text in args.sessions))
    return wait_and_report(context, ids, timeout=args.wait_timeout, json=args.json)


def wait_and_report(context: Context, session_ids: Sequence[str], *, timeout: float | None, json: bool) -> int:
    """Wait for the sessions to stop; print each one's exit status; the first non-zero one (else 0)."""
    from agentledger.application.waiting import wait_until_stopped
    from agentledger.domain.durations import format_duration
    from agentledger.domain.exits import shell_status

    try:
        stopped, waiting = wait_until_stopped(context.store.read_models, session_ids, timeout=timeout)
    except KeyboardInterrupt:
        print(f"agentledger: stopped waiting; {_still(session_ids)} not stopped by this "
              f"(agentledger stop ID stops one)", file=sys.stderr)
        return INTERRUPTED
    statuses = []
    for row in stopped:
        status = shell_status(row["stop_reason"], row["exit_code"], row["signal"])
        statuses.append(status)
        if json:
            from agentledger.entrypoints.render import write_json

            write_json({"id": row["id"], "name": row["name"], "status": status, "stop_reason": row["stop_reason"],
                        "exit_code": row["exit_code"], "signal": row["signal"]})
        else:
            print(status)
    if waiting:
        print(f"agentledger: {format_duration(timeout or 0)} passed; {_still(waiting)} still not stopped",
              file=sys.stderr)
        return TIMED_OUT
    return next((s for s in statuses if s != 0), 0)


def _still(session_ids: Sequence[str]) -> str:
    shown = ", ".join(sid[:12] for sid in session_ids)
    return f"session{'s' if len(session_ids) > 1 else ''} {shown}"
