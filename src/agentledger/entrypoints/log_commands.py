"""``agentledger events`` and ``agentledger timeline``: the log itself, as a stream and as a picture.

Translation only: the log is read through ``application/log.py`` (which never
raises on an event it cannot decode), turned into JSON by
``projections/export.py`` or into lanes by ``projections/timeline.py``, and
drawn by ``entrypoints/timeline_html.py``. Heavy modules are imported inside
the handlers.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentledger.entrypoints import args as types

if TYPE_CHECKING:
    from agentledger.entrypoints.cli import Context

#: SQLite cannot push new events to a reader, so ``events --follow`` asks this often.
POLL_INTERVAL = 0.2


def add_parsers(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("events", "print the log as JSON lines, one event per line, in log order")
    p.add_argument("--since", type=types.log_position, default=0, metavar="POSITION",
                   help="only events after this log position (default 0: from the start)")
    p.add_argument("--session", metavar="ID",
                   help="only this session's events: its id, a unique prefix of its id, or its name "
                        "(default: every session's)")
    p.add_argument("-n", "--limit", type=types.count, default=None, metavar="N",
                   help="stop after N events (with --follow too); reads no further than it prints (default: all)")
    p.add_argument("-f", "--follow", action="store_true",
                   help=f"keep printing new events as they are appended (polled every {POLL_INTERVAL * 1000:.0f}ms) "
                        "until interrupted")
    p.add_argument("--json", action="store_true",
                   help="accepted as every query takes it: the output is always JSON lines")
    p.set_defaults(handler=cmd_events)

    p = command("timeline", "draw a session's process, fuse, heartbeats and stop on one time axis (an HTML file)")
    p.add_argument("session", metavar="ID", help=types.SESSION_HELP)
    p.add_argument("-o", "--out", required=True, type=types.file_name, metavar="FILE.html",
                   help="where to write the page (self-contained: no scripts, nothing fetched)")
    p.set_defaults(handler=cmd_timeline)


# -- events -----------------------------------------------------------------------


def cmd_events(context: Context, args: argparse.Namespace) -> int:
    import signal
    from uuid import UUID

    from agentledger.application.log import read_log, session_log

    store = context.store
    session = UUID(context.resolve(args.session)) if args.session else None
    if args.limit == 0:
        return 0
    emit = _emitter(flush_each=args.follow, limit=args.limit)
    if args.follow:  # SIGTERM ends the stream as Ctrl-C does: quietly, exit 0
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        last = args.since
        if session is None:
            for entry in read_log(store.ledger, after=last):
                emit(entry)
                last = entry.position
        else:  # the session's own events, not a scan of the whole log
            head = store.ledger.recorder.max_notification_id() or 0  # read first: later events are followed
            for entry in session_log(store.ledger, session, store.event_positions(session.hex)):
                if entry.position is not None and last < entry.position <= head:
                    emit(entry)
            last = max(last, head)
        sys.stdout.flush()
        while args.follow and not _reader_gone():
            time.sleep(POLL_INTERVAL)
            for entry in read_log(store.ledger, after=last):
                if session is None or entry.originator_id == session:
                    emit(entry)
                last = entry.position
    except _Enough:  # --limit reached
        sys.stdout.flush()
    except KeyboardInterrupt:
        if not args.follow:
            raise
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, with nothing left to flush at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _reader_gone() -> bool:
    """Has the reader of our stdout pipe gone away? Asked while idle, so `--follow | head` ends without new events."""
    import select

    poller = select.poll()
    poller.register(sys.stdout.fileno(), 0)  # errors and hang-ups are always reported
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


class _Enough(Exception):
    """``--limit`` events are out: the reading stops where it is."""


def _emitter(*, flush_each: bool, limit: int | None) -> Callable[[Any], None]:
    """Writes one entry as a JSON line; flushed at once when following, so a reader sees it now; raises
    :class:`_Enough` once ``limit`` entries are written."""
    import orjson

    from agentledger.projections.export import entry_json

    out = sys.stdout.buffer
    written = 0

    def emit(entry: Any) -> None:
        nonlocal written
        out.write(orjson.dumps(entry_json(entry)) + b"\n")
        if flush_each:
            out.flush()
        written += 1
        if limit is not None and written >= limit:
            raise _Enough

    return emit


# -- timeline ---------------------------------------------------------------------


def cmd_timeline(context: Context, args: argparse.Namespace) -> int:
    from pathlib import Path
    from uuid import UUID

    from agentledger import __version__
    from agentledger.application.clock import utc_now
    from agentledger.application.errors import LedgerError
    from agentledger.application.log import session_log
    from agentledger.entrypoints.timeline_html import render
    from agentledger.projections.timeline import NoReadableEvents, build_timeline

    session_id = context.resolve(args.session)
    store = context.store
    entries = session_log(store.ledger, UUID(session_id), store.event_positions(session_id))
    try:
        timeline = build_timeline(session_id, entries, utc_now())
    except NoReadableEvents as error:
        raise LedgerError(str(error)) from None
    page = render(timeline, generated_by=f"agentledger {__version__}")
    path = Path(args.out).absolute()
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as error:
        raise LedgerError(f"cannot write {args.out}: {error.strerror or error}") from None
    print(path)
    return 0
