"""``agentledger hosts`` and ``agentledger host forget``: the machines that share a ledger.

Translation only: the rows come from ``projections/queries.py``, forgetting
from ``application/hosting.py``. Heavy modules are imported inside the handlers.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentledger.application.clock import now_epoch
from agentledger.entrypoints.args import Parser, json_flag

if TYPE_CHECKING:
    from agentledger.entrypoints.cli import Context


def add_parsers(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("hosts", "the hosts sharing this ledger: their daemons, when last heard from, their sessions")
    json_flag(p)
    p.set_defaults(handler=cmd_hosts)

    p = command("host", "act on a host of this ledger")
    actions = p.add_subparsers(dest="host_command", metavar="ACTION", parser_class=Parser)
    actions.required = True
    forget_help = "declare a silent host gone: stop its sessions with reason host-lost"
    fp = actions.add_parser("forget", help=forget_help, description=forget_help)
    fp.add_argument("name", metavar="HOST", help="the host's name, as 'agentledger hosts' shows it")
    fp.add_argument("--reason", required=True, metavar="TEXT",
                    help="why it is gone, in words; recorded with every stop (required)")
    json_flag(fp)
    p.set_defaults(handler=cmd_host)


def cmd_hosts(context: Context, args: argparse.Namespace) -> int:
    from agentledger.entrypoints.render import relative, table, write_json_lines
    from agentledger.projections.queries import host_json, list_hosts

    rows = list_hosts(context.fresh_db())
    now = now_epoch()
    if args.json:
        write_json_lines(host_json(r, now) for r in rows)
        return 0
    table(["HOST", "DAEMON", "VERSION", "LAST SEEN", "STATE", "RUNNING", "SESSIONS"],
          [(r["host_name"], r["daemon_pid"], r["daemon_version"], relative(r["daemon_last_seen"], now),
            host_state(r, now), r["sessions_not_stopped"], r["sessions"]) for r in rows])
    return 0


def host_state(row: Any, now: float) -> str:
    """A ``list_hosts`` row's state in a word or two: ``hosts`` and the console's hosts page say the same."""
    if row["forgotten_at"] is not None:
        return f"forgotten ({row['forget_reason']})"
    if row["daemon_pid"] is None:
        return "no daemon"
    return "silent" if now > row["host_silent_from"] else "alive"


def cmd_host(context: Context, args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from agentledger.application.errors import UsageError
    from agentledger.application.hosting import forget_host
    from agentledger.domain.vocabulary import Component
    from agentledger.entrypoints.render import write_json
    from agentledger.infrastructure.host import actor, host_name
    from agentledger.projections.queries import list_hosts

    known = {r["host_name"]: r for r in list_hosts(context.fresh_db())}
    if args.name not in known:
        raise UsageError(f"no host {args.name!r} in this ledger (see 'agentledger hosts')")
    if not args.reason.strip():
        raise UsageError("--reason must say why the host is gone")
    stopped = forget_host(
        context.store, args.name, here=host_name(), by=actor(Component.CLI.value), reason=args.reason,
        now=datetime.now(timezone.utc), silent_from=known[args.name]["host_silent_from"],
    )
    if args.json:
        write_json({"host": args.name, "reason": args.reason, "stopped": stopped})
    else:
        print(f"host {args.name} forgotten: {len(stopped)} session(s) stopped with reason host-lost")
    return 0
