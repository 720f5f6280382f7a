"""``agentledger discover`` and ``agentledger adopt``: agents started elsewhere, found and recorded.

Translation only: the finding and the recording are
:mod:`agentledger.application.adopting`'s. Heavy modules are imported inside
the handlers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from agentledger.domain.durations import format_duration
from agentledger.domain.fuse import MIN_TTL
from agentledger.entrypoints import args as types
from agentledger.entrypoints.args import json_flag

if TYPE_CHECKING:
    from agentledger.entrypoints.cli import Context


def add_parsers(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("discover", "list agent processes on this host (yours) that the ledger does not know")
    under_option(p)
    json_flag(p)
    p.set_defaults(handler=cmd_discover)

    p = command("adopt", "record agent processes started elsewhere as sessions (no supervisor; the reconciler "
                         "stops them once their PID is dead)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("pid", nargs="?", type=types.pid, metavar="PID", help="the process to adopt, by its process id (or --all)")
    target.add_argument("--all", action="store_true", help="adopt every process 'discover' lists")
    under_option(p)
    p.add_argument("--adapter", default=None, metavar="NAME",
                   help="the adapter to record (default: the agent recognised from the command line; "
                        "'command' adopts any process)")
    p.add_argument("--fuse-ttl", type=types.duration, default=None, metavar="DURATION",
                   help=f"also set a fuse, at least {format_duration(MIN_TTL)}; then something must heartbeat "
                        "('agentledger heartbeat ID') or it lapses (default: no fuse)")
    p.add_argument("--name", type=types.name, metavar="NAME",
                   help="a name for people; commands taking an ID accept it too (default: none)")
    p.add_argument("--group", type=types.name, metavar="G",
                   help="group the sessions belong to ('list --group G' shows them; default: none)")
    p.add_argument("--label", type=types.label, action="append", default=[], metavar="KEY=VALUE",
                   help="label the sessions (repeatable); 'list --filter label=KEY=VALUE' selects by it")
    json_flag(p)
    p.set_defaults(handler=cmd_adopt)


def under_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--under", metavar="DIR", default=None,
                   help="only agents working in DIR or below it (with adopt: only with --all)")


def _under(args: argparse.Namespace) -> str | None:
    import os

    from agentledger.application.errors import UsageError

    if args.under is None:
        return None
    if not os.path.isdir(args.under):
        raise UsageError(f"--under {args.under!r} is not a directory")
    return os.path.realpath(args.under)


def cmd_discover(context: Context, args: argparse.Namespace) -> int:
    import time

    from agentledger.application.adopting import discover
    from agentledger.bootstrap import agents
    from agentledger.entrypoints.render import relative, shorten, table, write_json_lines

    context.fresh_db()  # the read models level with the log
    found = discover(context.store.read_models, context.machine, agents(), under=_under(args))
    if args.json:
        write_json_lines(c.as_json() for c in found)
        return 0
    if not found:
        print("agentledger: no agent processes the ledger does not know", file=sys.stderr)
        return 0
    now = time.time()
    table(["PID", "AGENT", "STARTED", "CWD", "NATIVE SESSION", "COMMAND"],
          [(c.pid, c.adapter, relative(c.started_at, now), c.cwd or "?", c.native_session_id or "-",
            shorten(" ".join(c.cmdline), 60)) for c in found])
    return 0


def cmd_adopt(context: Context, args: argparse.Namespace) -> int:
    from agentledger.application.adopting import adopt, discover
    from agentledger.application.errors import UsageError
    from agentledger.bootstrap import agents
    from agentledger.domain.fuse import check_ttl
    from agentledger.entrypoints.render import write_json_lines

    if args.adapter is not None:
        from agentledger.adapters import registry

        if args.adapter not in registry.names():
            raise UsageError(f"unknown adapter {args.adapter!r} (one of: {', '.join(registry.names())})")
    if args.under is not None and not args.all:
        raise UsageError("--under chooses among the processes 'adopt --all' would take; give it with --all")
    if args.fuse_ttl is not None:
        check_ttl(args.fuse_ttl)  # adopt checks it too; here also when --all finds nothing to adopt
    store, machine, known = context.store, context.machine, agents()
    if args.all:
        context.fresh_db()  # the read models level with the log
        pids = [c.pid for c in discover(store.read_models, machine, known, under=_under(args))]
    else:
        pids = [args.pid]
    if args.all and not pids:
        sys.stderr.write("agentledger: no agent processes to adopt\n")
        return 0
    adopted = []
    for pid in pids:
        session_id, candidate = adopt(store, machine, known, pid, adapter_name=args.adapter, fuse_ttl=args.fuse_ttl,
                                      name=args.name, group=args.group, labels=dict(args.label),
                                      launched_by=machine.user())
        adopted.append({"id": session_id, **candidate.as_json()})
        if not args.json:
            print(session_id)
    if args.json:
        write_json_lines(adopted)
    return 0
