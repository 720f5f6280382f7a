"""The ``agentledger`` command line: parse, call the service layer, print, exit.

Heavy modules (eventsourcing, psutil, SQLAlchemy/Alembic) are imported inside
the commands that need them, so ``agentledger list`` starts fast. Every error
a user can cause ends as one line on stderr and a non-zero exit (2 for usage
errors); set ``AGENTLEDGER_DEBUG=1`` to see tracebacks.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from agentledger import __version__
from agentledger.application.clock import now_epoch
from agentledger.domain.durations import format_duration
from agentledger.entrypoints import args as types
from agentledger.entrypoints.args import Parser, json_flag

if TYPE_CHECKING:
    from agentledger.application.ports import Machine, Queryable, ReadModelDb, Store

DEFAULT_GRACE = 10.0


# -- argument parsing -----------------------------------------------------------


#: Which module adds which commands. ``agentledger CMD`` imports only CMD's module and builds only CMD's
#: parser (``--help``, a typo and shell completion build them all); ``tests/test_cli_help.py`` holds this table
#: to the parser.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "launch_commands": ("launch", "resume"), "group_commands": ("compare",), "wait_commands": ("wait",),
    "status_commands": ("status",), "reconcile_commands": ("reconcile", "daemon"),
    "log_commands": ("events", "timeline"), "audit_commands": ("why", "replay", "verify"),
    "host_commands": ("hosts", "host"), "config_commands": ("config",), "webhook_commands": ("webhooks",),
    "adapter_commands": ("adapters",), "adopt_commands": ("discover", "adopt"),
    "worktree_commands": ("worktrees", "diff", "merge"), "lock_commands": ("lock", "unlock", "locks"),
    "completion_commands": ("completion",), "console_commands": ("console",),
}
#: The commands this module adds itself.
OWN_COMMANDS = ("stop", "heartbeat", "fuse", "fuses", "list", "logs", "history", "db")


def command_to_build(argv: list[str]) -> str | None:
    """The command ``argv`` runs, if it names one (then only its parser is built; "" for ``--version``: none),
    else None (all of them)."""
    first = argv[0] if argv else ""
    if argv == ["--version"]:
        return ""
    known = first in OWN_COMMANDS or any(first in names for names in COMMAND_MODULES.values())
    return first if known else None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line's parser; with ``only``, just that command's (the others are left out; "": none)."""
    parser = Parser(prog="agentledger", description="Launch, supervise and explain AI coding-agent sessions.")
    parser.add_argument("--version", action="version", version=f"agentledger {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True

    def command(name: str, help: str) -> argparse.ArgumentParser:
        if only is not None and name != only:
            return Parser(add_help=False)  # not this run's command: built on the side, never attached
        p = commands.add_parser(name, help=help, description=help)
        p.set_defaults(handler=_HANDLERS.get(name))
        return p

    def add(module: str) -> None:
        """Import ``module`` and add its commands, if one of them is wanted."""
        if only is None or only in COMMAND_MODULES[module]:
            import importlib

            importlib.import_module(f"agentledger.entrypoints.{module}").add_parsers(command)

    def session_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("session", metavar="ID", help=types.SESSION_HELP)

    as_of_option = types.as_of_option  # worded in args.py: status_commands.py uses it too

    add("launch_commands")
    add("group_commands")
    add("wait_commands")

    p = command("stop", "terminate a session's process group and record the stop")
    p.add_argument("session", nargs="?", metavar="ID", help=f"{types.SESSION_HELP}; or --group instead")
    p.add_argument("--group", default=None, metavar="G", help="instead of one ID: every session of group G not "
                                                               "stopped yet")
    p.add_argument("--force", action="store_true", help="send SIGKILL at once instead of SIGTERM")
    p.add_argument("--grace", type=types.duration, default=DEFAULT_GRACE, metavar="DURATION",
                   help=f"wait this long after SIGTERM before SIGKILL (default {format_duration(DEFAULT_GRACE)})")
    p.add_argument("--reason", metavar="TEXT", help="why, in words; recorded as the stop's note (default: none)")
    json_flag(p)

    from agentledger.domain.fuse import MIN_TTL

    p = command("heartbeat", "record evidence that a session is alive: its fuse, if set (even lapsed), is "
                             "extended to now + its TTL; a cancelled fuse is not")
    session_arg(p)
    p.add_argument("--source", default="cli", metavar="NAME",
                   help="who reports it, recorded with the heartbeat (default: %(default)s)")

    p = command("fuse", "set or cancel a session's fuse by hand")
    fuse_commands = p.add_subparsers(dest="fuse_command", metavar="ACTION", parser_class=Parser)
    fuse_commands.required = True
    fuse_help = "set (or replace) the session's fuse: it is live for TTL, and each heartbeat extends it"
    fp = fuse_commands.add_parser("set", help=fuse_help, description=fuse_help)
    session_arg(fp)
    fp.add_argument("--ttl", type=types.duration, required=True, metavar="DURATION",
                    help="the fuse's lifetime after it is set or extended; once it lapses without a heartbeat, "
                         f"the reconciler may stop the session if its process is gone (at least "
                         f"{format_duration(MIN_TTL)}; required)")
    fuse_help = "cancel the session's fuse (heartbeats no longer extend it; 'fuse set' re-arms it)"
    fp = fuse_commands.add_parser("cancel", help=fuse_help, description=fuse_help)
    session_arg(fp)
    fp.add_argument("--reason", default="cancelled by hand", metavar="TEXT",
                    help="why, in words; recorded with the cancellation (default: '%(default)s')")

    p = command("fuses", "list fuses that are set (live or lapsed)")
    p.add_argument("--all", action="store_true", help="include cancelled and replaced fuses")
    json_flag(p)

    p = command("list", "list sessions, newest first (default: not stopped)")
    p.add_argument("--all", action="store_true", help="include stopped sessions")
    p.add_argument("--group", default=None, metavar="G", help="only sessions launched with --group G")
    p.add_argument("--adapter", default=None, metavar="A", help="only sessions of agent adapter A (e.g. codex)")
    from agentledger.domain.vocabulary import SessionStatus

    p.add_argument("--status", metavar="STATUS",
                   help="only sessions with STATUS, one of: " + ", ".join(SessionStatus) + " (running: a fuse is "
                        "live; unwatched: not stopped, no live fuse; stopping: a stop was requested; host-silent: "
                        "not stopped, its host's daemon went quiet)")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="only sessions where KEY is VALUE (repeatable, all must hold): label=K=V (or label=K), "
                        "name, host, adapter, group, status, cwd")
    p.add_argument("-n", "--last", "--limit", type=types.count_or_all, default=None, metavar="N",
                   help=f"only the N newest (after filters), or 'all' (default: the table shows the newest "
                        f"{TABLE_ROWS} and says how many more match; -q, --format and --json give every one)")
    p.add_argument("-q", "--quiet", action="store_true", help="only the ids, one per line (for scripts)")
    p.add_argument("--format", default=None, metavar="TEMPLATE",
                   help="one line per session from TEMPLATE, e.g. '{short_id} {status} {name}' (fields: id, "
                        "short_id, name, adapter, status, pid, group, host, cwd, model, exit_code, stop_reason, "
                        "command, ran_for)")
    p.add_argument("--count", action="store_true", help="only how many sessions match")
    as_of_option(p)
    json_flag(p)

    add("status_commands")

    p = command("logs", "print an agent session's recent messages, or a session's captured output")
    session_arg(p)
    from agentledger.adapters import DEFAULT_MESSAGES as MESSAGES_SHOWN

    p.add_argument("-n", "--lines", type=int, default=None, metavar="N",
                   help=f"only the last N messages, or lines of output (default: the last {MESSAGES_SHOWN} "
                        "messages, or all the output)")
    p.add_argument("--output", action="store_true",
                   help="the captured stdout/stderr, even where the agent's own messages can be read")
    p.add_argument("-f", "--follow", action="store_true",
                   help="keep printing the captured output until the session stops (implies --output)")
    p.add_argument("--raw", action="store_true",
                   help="the captured output byte for byte (implies --output; by default control characters, "
                        "such as colour codes, are shown escaped: the output is the agent's, not for your terminal "
                        "to obey)")
    json_flag(p)

    p = command("history", "a session's events in log order")
    session_arg(p)
    p.add_argument("--tail", type=types.count, default=None, metavar="N",
                   help="only its last N events (read from its latest snapshot on: as fast for 100,000 events as "
                        "for 10)")
    p.add_argument("--since", type=types.log_position, default=None, metavar="POSITION",
                   help="only its events after this log position")
    p.add_argument("--limit", type=types.count, default=None, metavar="N",
                   help="at most N events (the first N of those --since or --tail leave)")
    json_flag(p)

    p = command("db", "manage the store")
    db_commands = p.add_subparsers(dest="db_command", metavar="ACTION", parser_class=Parser)
    db_commands.required = True
    def db_command(name: str, help: str) -> argparse.ArgumentParser:
        return db_commands.add_parser(name, help=help, description=help)

    dp = db_command("init", "create the store if it does not exist, and record it as this home's; "
                            "--force accepts a store this home does not recognise (start over)")
    dp.add_argument("--force", action="store_true",
                    help="accept the store at this location as this home's even if it is not the one it used "
                         "(an emptied or replaced store: its earlier history is not in it)")
    db_command("upgrade", "apply read-model schema migrations (first use does this too)")
    db_command("rebuild", "drop the read models and replay the whole log into them")
    dp = db_command("info", "where the store is, its schema revision, the log's last position and how far the "
                            "read models are")
    json_flag(dp)
    if only in (None, "db"):  # db copy's parser imports the copying service
        from agentledger.entrypoints.archive_commands import add_archive_parsers
        from agentledger.entrypoints.store_commands import add_copy_parser

        add_copy_parser(db_commands)
        add_archive_parsers(db_commands)

    add("reconcile_commands")
    add("log_commands")
    add("audit_commands")
    add("host_commands")
    add("config_commands")
    add("webhook_commands")
    add("adapter_commands")
    add("adopt_commands")
    add("worktree_commands")
    add("lock_commands")
    add("completion_commands")
    add("console_commands")
    return parser


# -- running --------------------------------------------------------------------


class Context:
    """The store, opened on first use, with the read models caught up on request."""

    def __init__(self) -> None:
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            from agentledger.bootstrap import configured_location, open_store
            from agentledger.infrastructure.config import privacy_warnings

            location = configured_location()
            self._store = open_store(location)
            for warning in privacy_warnings(location):
                sys.stderr.write(f"agentledger: warning: {warning}\n")
        return self._store

    @property
    def machine(self) -> Machine:
        """This host (its processes, who acts here), for the commands that look at processes."""
        from agentledger.bootstrap import this_machine

        return this_machine()

    def fresh_db(self) -> ReadModelDb:
        """The read-model connection, after applying every event already in the log.

        A store that refuses writes (full, read-only) can still be read: the
        read models are then as far as they got, and one line says so.
        """
        from agentledger.projections.catchup import catch_up_if_writable

        applied, fault = catch_up_if_writable(self.store)
        if applied is not None:
            warn_skipped(applied.skipped)
        elif fault is not None:
            sys.stderr.write(f"agentledger: warning: the store is {fault.state}: what follows may be behind the "
                             "log (its read models cannot be brought up to date)\n")
        return self.store.db

    def resolve(self, text: str, db: Queryable | None = None) -> str:
        from agentledger.projections.queries import resolve_session_id

        return resolve_session_id(self.fresh_db() if db is None else db, text)

    def read_models(self, as_of: str | None) -> tuple[Any, float]:
        """The read models and the "now" to judge them at: live, or replayed up to ``as_of``."""
        if as_of is None:
            return self.fresh_db(), now_epoch()
        from datetime import datetime, timezone

        from agentledger.projections.as_of import parse_moment, read_models_as_of

        scratch = read_models_as_of(self.store, parse_moment(as_of, datetime.now(timezone.utc)))
        warn_skipped(scratch.applied.skipped)
        sys.stderr.write(f"agentledger: as of {scratch.moment.describe()}: history, not the present\n")
        return scratch.db, scratch.now

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def warn_skipped(skipped: list[Any]) -> None:
    """One line per event the read models had to skip: the command goes on, the user is told."""
    for entry in skipped:
        sys.stderr.write(f"agentledger: warning: skipped {entry.describe_error()}; see 'agentledger verify'\n")


#: Options whose value may start with "-" (``--as-of -15m``), which argparse would take for an option.
_DASHED_VALUES = ("--as-of",)


def _attach_dashed_values(argv: list[str]) -> list[str]:
    """``--as-of -15m`` -> ``--as-of=-15m``, so that a relative time parses as a value."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in _DASHED_VALUES and arg.startswith("-") and arg != "--" and "--" not in out[:-1]:
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    from agentledger.entrypoints.render import escape

    if "_ARGCOMPLETE" in os.environ:  # a shell's TAB (see 'agentledger completion'): answer it and exit
        from agentledger.entrypoints import completion

        completion.autocomplete(build_parser())
    argv = sys.argv[1:] if argv is None else argv
    for arg in argv:
        if any("\ud800" <= c <= "\udfff" for c in arg):  # bytes that are not UTF-8: the log could not hold them
            sys.stderr.write(f"agentledger: argument '{escape(arg)}' is not valid UTF-8 text\n")
            return 2
    if not argv:  # a bare `agentledger`: what it can do, not an error
        build_parser().print_help()
        return 0
    args = _parse(build_parser(command_to_build(argv)), types.remember(_attach_dashed_values(argv)))
    context = Context()
    try:
        return args.handler(context, args) or 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error
        return 0
    except Exception as error:  # translated to one line; see _describe_error
        from agentledger.infrastructure.config import mask_secrets

        message, code = _describe_error(error)
        sys.stderr.write(f"agentledger: {escape(mask_secrets(message))}\n")  # one line, no secret it quotes
        if os.environ.get("AGENTLEDGER_DEBUG"):
            raise
        return code
    finally:
        try:
            context.close()
        except Exception:
            pass


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``argv`` parsed; an argument no parser took is refused by the command's own parser (``agentledger list:
    error: unrecognized arguments: --bogus``, pointing at ``list --help``), as argparse's other errors are, not by
    the top one; an unknown option before any command is called that, not "COMMAND is required"."""
    if argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        parser.error(f"unrecognized arguments: {argv[0]}")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _command_parser(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost parser ``args`` went through (``db archive verify``'s for ``agentledger db archive verify``)."""
    for action in parser._actions:  # noqa: SLF001 - argparse keeps its subcommands nowhere public
        if isinstance(action, argparse._SubParsersAction) and getattr(args, action.dest, None) in action.choices:  # noqa: SLF001
            return _command_parser(action.choices[getattr(args, action.dest)], args)
    return parser


def _describe_error(error: Exception) -> tuple[str, int]:
    """One line and an exit status: the error's own, in the one hierarchy; anything else is a bug."""
    from agentledger.domain.errors import LedgerError
    from agentledger.infrastructure.store_faults import translate

    known = translate(error)
    if isinstance(known, LedgerError):
        return str(known), known.exit_code
    return f"internal error: {type(error).__name__}: {error} (AGENTLEDGER_DEBUG=1 shows the traceback)", 1


# -- commands -------------------------------------------------------------------


def cmd_stop(context: Context, args: argparse.Namespace) -> int:
    from agentledger.application.errors import UsageError

    if (args.session is None) == (args.group is None):
        raise UsageError("stop needs a session ID or --group G (not both)")
    if args.group is None:
        return _stop_one(context, args, context.resolve(args.session))
    from agentledger.projections.queries import count_sessions, list_sessions

    db = context.fresh_db()
    rows = list_sessions(db, include_stopped=False, status=None, now=now_epoch(), group=args.group)
    if not rows and not count_sessions(db, include_stopped=True, status=None, now=now_epoch(), group=args.group):
        raise UsageError(f"no session was ever launched with --group {args.group!r} (a typo? 'agentledger list "
                         "--all' shows the groups)")
    if not rows:
        print(f"no session of group {args.group!r} is running; nothing to do", file=sys.stderr)
    return _stop_group(context, args, [row["id"] for row in reversed(rows)])  # oldest first


def _stop_group(context: Context, args: argparse.Namespace, session_hexes: list[str]) -> int:
    """Every session signalled, then all waited for together (``stopping.stop_sessions``); each reported; exit 1
    if the stop of one could not be made sure of (the others are stopped all the same)."""
    from uuid import UUID

    from agentledger.application.errors import LedgerError
    from agentledger.application.stopping import stop_sessions
    from agentledger.entrypoints.render import escape

    session_ids = [UUID(hex_id) for hex_id in session_hexes]
    try:
        outcomes = stop_sessions(context.store.ledger, session_ids, machine=context.machine, force=args.force,
                                 grace=args.grace, note=args.reason)
    except KeyboardInterrupt:
        for session_id in session_ids:
            _stop_interrupted(context, session_id)
        return 130
    failed = 0
    for session_id, outcome in zip(session_ids, outcomes, strict=True):
        if isinstance(outcome, LedgerError):
            sys.stderr.write(f"agentledger: {escape(str(outcome))}\n")
            failed = 1
        else:
            _report_stop(args, session_id, outcome)
    return failed


def _stop_interrupted(context: Context, session_id: Any) -> int:
    """Ctrl-C while ``stop`` waited: say what state the session is in and how to finish, exit 130."""
    session = context.store.ledger.session(session_id)
    short = session_id.hex[:12]
    if session.stop is not None:
        print(f"agentledger: interrupted, but the stop of {short} is already recorded ({session.stop['reason']})",
              file=sys.stderr)
        return 130
    sent = [r["signal"] for r in session.stop_requests]
    what = f"{', then '.join(sent)} was sent" if sent else "no signal was sent yet"
    print(f"agentledger: interrupted: session {short} is {session.status} ({what}); its supervisor records the stop "
          f"when the process ends; 'agentledger stop {short} --force' sends SIGKILL now", file=sys.stderr)
    return 130


def _stop_one(context: Context, args: argparse.Namespace, session_hex: str) -> int:
    from uuid import UUID

    from agentledger.application.stopping import stop_session

    session_id = UUID(session_hex)
    try:
        outcome = stop_session(
            context.store.ledger, session_id, machine=context.machine, force=args.force, grace=args.grace,
            note=args.reason,
        )
    except KeyboardInterrupt:
        return _stop_interrupted(context, session_id)
    _report_stop(args, session_id, outcome)
    return 0


def _report_stop(args: argparse.Namespace, session_id: Any, outcome: Any) -> None:
    """One stop as ``stop`` prints it: a JSON object, or a line (on stderr if there was nothing to do)."""
    stop = outcome.session.stop
    assert stop is not None  # stop_session returns once the stop is in the log
    if args.json:
        from agentledger.entrypoints.render import write_json

        write_json({
            "id": session_id.hex,
            "already_stopped": outcome.already_stopped,
            "signals_sent": outcome.signals_sent,
            "recorded_by": outcome.recorded_by,
            "stop_reason": stop["reason"],
            "exit_code": stop["exit_code"],
            "signal": stop["signal"],
            "stopped_at": stop["at"],
        })
    elif outcome.already_stopped and outcome.signals_sent:
        print(f"session {session_id.hex[:12]} was already stopped ({stop['reason']} at {stop['at']}); its process "
              f"group had left processes running: sent {', then '.join(outcome.signals_sent)}")
    elif outcome.already_stopped:
        print(f"agentledger: session {session_id.hex[:12]} was already stopped ({stop['reason']} at {stop['at']}); "
              "nothing to do", file=sys.stderr)
    else:
        sent = "sent " + ", then ".join(outcome.signals_sent) if outcome.signals_sent else "its process was gone"
        ended = (f"it exited with code {stop['exit_code']}" if stop["exit_code"] is not None else
                 f"it was ended by {stop['signal']}" if stop["signal"] else "its exit status is unknown")
        recorder = {"supervisor": "its supervisor", "cli": "this command"}.get(outcome.recorded_by or "",
                                                                               outcome.recorded_by or "someone")
        print(f"stopped {session_id.hex[:12]}: {sent}; {ended}; recorded by {recorder}")


def cmd_heartbeat(context: Context, args: argparse.Namespace) -> int:
    from uuid import UUID

    from agentledger.application.clock import reported_offset, utc_now

    session_id = UUID(context.resolve(args.session))
    def beat(session: Any) -> Any:
        session.heartbeat(source=args.source, now=utc_now(), clock_offset=reported_offset())
        return session

    session = context.store.ledger.change(session_id, beat)
    if session.fuse_is_live(utc_now()):
        print(f"heartbeat recorded; fuse live until {session.fuse_expires_at.isoformat()}")
    else:
        print("agentledger: heartbeat recorded; no live fuse to extend (use 'agentledger fuse set')", file=sys.stderr)
    return 0


def cmd_fuse(context: Context, args: argparse.Namespace) -> int:
    from uuid import UUID

    from agentledger.application.fusing import cancel_fuse, set_fuse
    from agentledger.infrastructure.host import os_user

    session_id = UUID(context.resolve(args.session))
    if args.fuse_command == "set":
        expires = set_fuse(context.store.ledger, session_id, ttl=args.ttl, by=f"user:{os_user()}").fuse_expires_at
        assert expires is not None  # just set
        print(f"fuse set on {session_id.hex[:12]}: live until {expires.isoformat()} "
              f"(ttl {format_duration(args.ttl)}; heartbeats extend it)")
    else:
        cancel_fuse(context.store.ledger, session_id, by=f"user:{os_user()}", reason=args.reason)
        print(f"fuse cancelled on {session_id.hex[:12]}")
    return 0


def cmd_fuses(context: Context, args: argparse.Namespace) -> int:
    from agentledger.entrypoints.render import relative, table, write_json_lines
    from agentledger.projections.queries import fuse_json, list_fuses

    rows = list_fuses(context.fresh_db(), include_ended=args.all)
    now = now_epoch()
    if args.json:
        write_json_lines(fuse_json(r, now) for r in rows)
        return 0

    def state(r: Any) -> str:
        if r["state"] != "set":
            return r["state"]  # expired (lapse recorded by the reconciler), cancelled, replaced
        return "live" if r["expires_at"] > now else "lapsed"

    def ends(r: Any) -> str:
        """When it expires (or expired); for one cancelled or replaced, when that ended it: never a future
        expiry that will not happen."""
        if r["state"] in ("cancelled", "replaced"):
            return f"{r['state']} {relative(r['ended_at'], now)}"
        return relative(r["expires_at"], now)
    table(
        ["SESSION", "NAME", "STATE", "TTL", "ENDS", "EXTENDED", "SET BY", "SET"],
        [
            (r["session_id"][:12], r["session_name"], state(r), format_duration(r["ttl"]),
             ends(r), r["extensions"], r["set_by"], relative(r["set_at"], now))
            for r in rows
        ],
    )
    return 0


def cmd_list(context: Context, args: argparse.Namespace) -> int:
    """Sessions newest first. ``--json``, ``-q`` and ``--format`` stream them as they are read; the table,
    which sizes its columns to every row, holds them."""
    from agentledger.entrypoints.render import escape, table, write_byte_lines, write_json_lines, write_lines
    from agentledger.projections.listing import formatter, lifted, parse_filters, select
    from agentledger.projections.queries import count_sessions, iter_sessions, session_json, session_json_lines

    line = formatter(args.format) if args.format else None  # refused before anything is read
    given = parse_filters(args.filter)
    db, now = context.read_models(args.as_of)
    filters, where = lifted(given, dict(include_stopped=args.all, status=args.status, now=now, group=args.group,
                                        adapter=args.adapter))
    as_table = not (args.count or args.json or args.quiet or line is not None)
    last = _rows_wanted(args.last, as_table)
    if args.count and not filters:
        count = count_sessions(db, **where)
        print(count if last is None else min(count, last))
        return 0
    if args.json and not filters:  # stopped sessions' documents as kept, the others' built (session_json_lines)
        write_byte_lines(select(session_json_lines(db, **where, limit=last), (), now=now, last=last))
        return 0
    capped = last is not None and args.last is None  # the table's default: one row more tells if there are more
    read = None if last is None else last + capped
    rows = select(iter_sessions(db, **where, columns=None if filters or not as_table else _LIST_COLUMNS,
                                limit=None if filters else read),
                  filters, now=now, last=read)  # -n N: N rows read, not all
    if args.count:
        print(sum(1 for _ in rows))
        return 0
    if args.quiet or line is not None:
        write_lines(f"{row['id'] if line is None else escape(line(row, now))}\n" for row in rows)  # one line each
        return 0
    if args.json:
        write_json_lines(session_json(r, now) for r in rows)
        return 0
    ended = ["STOPPED", "RAN"] if args.all else []  # with stopped sessions: when each ended, how long it ran
    shown = [_list_row(r, now, ended=bool(ended)) for r in rows]
    table(["ID", "NAME", "ADAPTER", "STATUS", "PID", "STARTED", *ended, "FUSE", "EXIT", "COMMAND"],
          shown[:last], flexible=("COMMAND", "NAME"))
    if capped and len(shown) > TABLE_ROWS:
        of = "sessions; more match" if filters else f"of {count_sessions(db, **where):,} sessions"
        sys.stderr.write(f"agentledger: showing the newest {TABLE_ROWS} {of} ('-n N' shows N, '-n all' every one)\n")
    return 0


def _rows_wanted(given: int | str | None, as_table: bool) -> int | None:
    """``list``'s limit: ``-n N``; none for ``-n all``; without ``-n``, :data:`TABLE_ROWS` for the table and none
    for the forms scripts read."""
    if given == "all":
        return None
    if given is None:
        return TABLE_ROWS if as_table else None
    return int(given)


#: How many sessions ``list``'s table shows unless ``-n`` says otherwise: a fleet's newest, a screenful or two.
#: The rest are counted on stderr (``-q``, ``--format``, ``--json`` and ``--count`` are not limited).
TABLE_ROWS = 100


#: What the table's columns read (``_list_row`` and the helpers it calls).
_LIST_COLUMNS = ("id", "name", "adapter", "status", "pid", "started_at", "stopped_at", "exited_at", "fuse_state",
                 "fuse_expires_at", "exit_code", "signal", "stop_reason", "argv")


def _list_row(r: Any, now: float, *, ended: bool) -> tuple[Any, ...]:
    import orjson

    from agentledger.entrypoints.render import relative, shorten
    from agentledger.entrypoints.status_commands import fuse_text, outcome_text
    from agentledger.projections.listing import ran_for
    from agentledger.projections.queries import current_status

    stop_columns = (relative(r["stopped_at"], now), format_duration(ran_for(r, now))) if ended else ()
    return (
        r["id"][:12], r["name"], r["adapter"], current_status(r, now), r["pid"], relative(r["started_at"], now),
        *stop_columns, fuse_text(r, now), outcome_text(r), shorten(" ".join(orjson.loads(r["argv"])), 48),
    )


def cmd_logs(context: Context, args: argparse.Namespace) -> int:
    from agentledger.application.errors import UsageError
    from agentledger.entrypoints import session_output
    from agentledger.projections.queries import get_session

    if args.lines is not None and args.lines < 0:
        raise UsageError("-n takes a number of lines >= 0")
    if args.json and args.follow:
        raise UsageError("--json does not go with --follow")
    session_id = context.resolve(args.session)
    row = get_session(context.store.db, session_id)
    out = sys.stdout.buffer
    if not (args.output or args.follow or args.raw):
        found, why_not = session_output.agent_messages(row, args.lines)
        if found is not None:
            if args.json:
                from agentledger.entrypoints.render import write_json_lines

                write_json_lines(session_output.message_records(found))
            else:
                from agentledger.entrypoints.render import message_lines

                out.writelines(f"{line}\n".encode() for line in message_lines(found))
            return 0
        if why_not is not None:
            print(f"agentledger: {why_not}; showing the captured output", file=sys.stderr)
    with session_output.open_output(row) as handle:
        if args.json:  # the captured lines as the same records as messages: role "output", no time
            from agentledger.entrypoints.render import write_json_lines

            lines = session_output.last_lines(handle, args.lines) if args.lines is not None else handle
            write_json_lines(session_output.output_record(line) for line in lines)
            return 0
        if args.raw:
            def shown(data: bytes, final: bool = False) -> bytes:
                return data
        else:
            from agentledger.entrypoints.render import OutputEscaper

            shown = OutputEscaper().feed
        if args.lines is not None:
            out.write(shown(b"".join(session_output.last_lines(handle, args.lines))))
        else:
            out.write(shown(handle.read()))
        out.flush()
        while args.follow:
            chunk = handle.read()
            if chunk:
                out.write(shown(chunk))
                out.flush()
                continue
            if get_session(context.fresh_db(), session_id)["status"] == "stopped":
                out.write(shown(handle.read(), final=True))
                break
            time.sleep(0.2)
    return 0


def cmd_history(context: Context, args: argparse.Namespace) -> int:
    from datetime import datetime, timezone
    from uuid import UUID

    from agentledger.bootstrap import directory_locks
    from agentledger.entrypoints.render import table, write_json_lines
    from agentledger.projections.history import history_records, with_lock_facts

    session_id = context.resolve(args.session)
    store = context.store
    start, entries = _history_window(store, UUID(session_id), tail=args.tail, since=args.since)
    records = history_records(entries, datetime.now(timezone.utc), start=start)
    if args.limit is not None:
        records = _first_events(records, args.limit)
    whole = start is None and args.limit is None  # from its Launched to its latest: the rows that follow it too
    launched = start if start is not None else entries[0].event if entries and entries[0].event else None
    if whole or (args.limit is None and records):
        records += [r for r in _workspace_history(store, session_id, launched, records)
                    if args.since is None or (r["position"] or 0) > args.since]
    facts = directory_locks(lambda: store).facts_of_session(session_id)
    if not whole:  # a window: the lock rows within it
        facts = [f for f in facts if records and _within(f["at"].isoformat(), records, open_end=args.limit is None)]
    records = with_lock_facts(records, facts)
    for entry in entries:
        if entry.error is not None:
            sys.stderr.write(f"agentledger: warning: {entry.describe_error()}\n")
    if args.json:
        write_json_lines(records)
        return 0
    table(
        ["POS", "VER", "TIME", "+DELTA", "EVENT", "STATUS", "DETAILS"],
        [(r["position"], r["version"], (r["time"] or "?")[:23].replace("T", " "), r["delta"] or "",
          r["type"] or f"· {r['marker']}", r["status"], "; ".join([*r["marks"], r["summary"]]))
         for r in records],
    )
    return 0


def _history_window(store: Store, session_id: Any, *, tail: int | None, since: int | None) -> tuple[Any, list[Any]]:
    """The session as it stood before the events ``history`` shows (None: from its start), and those events.

    ``--tail N`` reads the last N events and the state before them from the
    latest snapshot on (the event store's), never the whole stream.
    """
    from agentledger.application.log import replay_state, session_log

    hex_id = session_id.hex
    after = 0
    if since is not None:
        after = max((v for v, p in store.event_positions(hex_id).items() if p <= since), default=0)
    if tail is not None:
        after = max(after, _last_version(store, session_id) - tail)
    entries = session_log(store.ledger, session_id, store.event_positions(hex_id, after), after_version=after or None)
    if not after:
        return None, entries
    try:
        return store.ledger.session_at(session_id, after), entries
    except Exception:  # noqa: BLE001 - an event it cannot read before the window: the readable ones, replayed
        return replay_state(session_log(store.ledger, session_id, {}, upto_version=after)), entries


def _last_version(store: Store, session_id: Any) -> int:
    """The session's last version: the aggregate's (from its snapshot on), or, where an event of it cannot be
    read (the aggregate cannot be made), the last stored version."""
    try:
        return int(store.ledger.session(session_id).version)
    except Exception:  # noqa: BLE001 - an unreadable event: history shows it as such, from the stored versions
        return max(store.event_positions(session_id.hex), default=0)


def _within(at: str, records: list[dict[str, Any]], *, open_end: bool) -> bool:
    """Is ``at`` (ISO) at or after the first record's time, and before the last's unless the window runs to now?"""
    return (records[0]["time"] or "") <= at and (open_end or at <= (records[-1]["time"] or ""))


def _first_events(records: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """``records`` up to and including the ``count``-th event's (the markers between them kept)."""
    seen = 0
    for index, record in enumerate(records):
        if record["type"] is not None:
            seen += 1
            if seen > count:
                return records[:index]
    return records


def _workspace_history(store: Store, session_id: str, launched: Any, records: list[dict[str, Any]]
                       ) -> list[dict[str, Any]]:
    """A worktree session's Workspace events (merged, removed, checked), which follow its own in the log."""
    if not getattr(launched, "workspace", None):
        return []
    from agentledger.application.log import session_log
    from agentledger.domain.workspace import workspace_id
    from agentledger.projections.history import workspace_records

    ws_id = workspace_id(session_id)
    found = session_log(store.ledger, ws_id, store.event_positions(ws_id.hex))
    for entry in found:
        if entry.error is not None:
            sys.stderr.write(f"agentledger: warning: {entry.describe_error()}\n")
    return workspace_records(found, records[-1]["status"] if records else None)


def cmd_db(context: Context, args: argparse.Namespace) -> int:
    if args.db_command == "copy":
        from agentledger.entrypoints.store_commands import cmd_db_copy

        return cmd_db_copy(context, args)
    if args.db_command in ("archive", "import"):
        from agentledger.entrypoints import archive_commands

        handler = archive_commands.cmd_db_archive if args.db_command == "archive" else archive_commands.cmd_db_import
        return handler(context, args)
    if args.db_command == "init":
        return _db_init(force=args.force)
    if args.db_command == "upgrade":
        from agentledger.bootstrap import configured_location, upgrade_store
        from agentledger.infrastructure.schema import SCHEMA_HEAD

        location = configured_location()
        before = upgrade_store(location)
        change = "already current" if before == SCHEMA_HEAD else f"was {before or 'absent'}"
        print(f"{location.url}: read-model schema at {SCHEMA_HEAD} ({change})")
        return 0
    if args.db_command == "rebuild":
        from agentledger.projections.catchup import rebuild

        started = time.perf_counter()
        result = rebuild(context.store)
        warn_skipped(result.skipped)
        print(f"rebuilt read models from {result.applied} events in {format_duration(time.perf_counter() - started)}")
        return 0
    from agentledger.bootstrap import configured_location, schema_revision
    from agentledger.projections.catchup import tracked_position

    store = context.store
    info = {
        "url": store.location.url,
        "schema_revision": schema_revision(configured_location()),
        "log_head": store.ledger.recorder.max_notification_id() or 0,
        "read_models_at": tracked_position(store.db),
    }
    if args.json:
        from agentledger.entrypoints.render import write_json

        write_json(info)
    else:
        from agentledger.entrypoints.render import key_values

        key_values(list(info.items()))
    return 0


def _db_init(*, force: bool) -> int:
    """Create (or open) the store; with ``force``, make it this home's whatever this home used before there."""
    from agentledger.bootstrap import configured_location, open_store
    from agentledger.infrastructure import store_identity
    from agentledger.infrastructure.config import home_dir

    location = configured_location()
    store = open_store(location, check_identity=not force)
    try:
        store_id = store_identity.store_id_of(store)
        if force and store_id is not None:
            store_identity.remember(home_dir(), location, store_id)
    finally:
        store.close()
    print(f"{location.url}: store {store_id or '(no identity: an older schema)'}"
          + (", now this home's" if force else ""))
    return 0


_HANDLERS = {
    "stop": cmd_stop,
    "heartbeat": cmd_heartbeat,
    "fuse": cmd_fuse,
    "fuses": cmd_fuses,
    "list": cmd_list,
    "logs": cmd_logs,
    "history": cmd_history,
    "db": cmd_db,
}
