"""``agentledger db archive`` (and ``db archive verify FILE``, ``db archive list``) and ``db import FILE``.

Translation only: the procedure (write, read back, then remove in one
transaction; import) is ``application/archiving.py``, the file's format
``application/archive_format.py``. ``db archive verify`` does not open the
store: it checks a file anywhere.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from agentledger.entrypoints.args import json_flag

if TYPE_CHECKING:
    from agentledger.entrypoints.cli import Context

_WHEN_HELP = ("an age (30d, 12h, 1d12h: longer ago than that) or a time (2026-01-31, "
              "2026-01-31T12:00:00Z; local time if it has no zone)")


def cutoff(text: str) -> float:
    """``--stopped-before WHEN`` as epoch seconds: now minus an age, or a time."""
    from agentledger.application.clock import now_epoch
    from agentledger.domain.durations import InvalidDuration, parse_duration

    try:
        return now_epoch() - parse_duration(text)
    except InvalidDuration:
        pass
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid time {text!r}: give {_WHEN_HELP}") from None
    return (when if when.tzinfo else when.astimezone()).timestamp()


def add_archive_parsers(db_commands: Any) -> None:
    """``db archive [verify FILE | list]`` and ``db import FILE`` under ``db_commands``."""
    archive_help = ("move the event streams of sessions stopped before WHEN into a compressed, checksummed archive "
                    "file, and out of the live store and read models")
    ap = db_commands.add_parser("archive", help=archive_help, description=archive_help)
    ap.add_argument("--stopped-before", type=cutoff, metavar="WHEN", help=f"archive sessions stopped before WHEN: "
                                                                          f"{_WHEN_HELP}; required")
    ap.add_argument("--out", metavar="FILE", help="the archive to write (default: "
                                                  "$AGENTLEDGER_HOME/archive/sessions-TIME.ndjson.gz); must not exist")
    ap.add_argument("--coalesce-heartbeats", type=cutoff, metavar="WHEN",
                    help="in the file, keep only the first and the last heartbeat of each run of heartbeats older "
                         "than WHEN (the same forms; 1s: all of them), the last counting those left out; the live "
                         "log is never coalesced")
    ap.add_argument("--dry-run", action="store_true", help="list what would be archived; write and remove nothing")
    json_flag(ap)
    actions = ap.add_subparsers(dest="archive_command", metavar="ACTION", parser_class=type(ap))
    verify_help = "check an archive file: its checksums, every stream complete, every event decodable"
    vp = actions.add_parser("verify", help=verify_help, description=verify_help)
    vp.add_argument("file", metavar="FILE", help="the archive (.ndjson.gz)")
    json_flag(vp)
    list_help = "the sessions archived from this store: when, and into which file"
    json_flag(actions.add_parser("list", help=list_help, description=list_help))
    import_help = "put the sessions of an archive file back into the live store (those not there already)"
    ip = db_commands.add_parser("import", help=import_help, description=import_help)
    ip.add_argument("file", metavar="FILE", help="an archive written by 'agentledger db archive'")
    json_flag(ip)


def cmd_db_archive(context: Context, args: argparse.Namespace) -> int:
    from agentledger.application.errors import UsageError

    action = args.archive_command
    if action is not None and (args.stopped_before is not None or args.out or args.dry_run
                               or args.coalesce_heartbeats is not None):
        raise UsageError(f"'db archive {action}' takes no --stopped-before, --out, --coalesce-heartbeats or "
                         "--dry-run")
    if action == "verify":
        return _verify(args.file, as_json=args.json)
    if action == "list":
        return _list(context, as_json=args.json)
    if args.stopped_before is None:
        raise UsageError("db archive needs --stopped-before WHEN (e.g. 30d), or: db archive verify FILE")
    return _archive(context, args)


def _archive(context: Context, args: argparse.Namespace) -> int:
    from agentledger import __version__
    from agentledger.application import archiving
    from agentledger.application.clock import now_epoch
    from agentledger.bootstrap import archive_files

    store = context.store
    plan = archiving.plan_archive(store, args.stopped_before)
    if args.dry_run:
        return _dry_run(store, plan, as_json=args.json)
    header = {"created_at": _iso(now_epoch()), "source": store.location.url, "stopped_before": _iso(plan.cutoff),
              "agentledger": __version__}
    coalesce = args.coalesce_heartbeats
    if coalesce is not None:
        header["coalesced_heartbeats_before"] = _iso(coalesce)
    result = archiving.archive(store, archive_files(), plan, path=args.out, header=header, now=now_epoch(),
                               coalesce_before=coalesce)
    for session_id in result.deferred:
        sys.stderr.write(f"agentledger: session {session_id[:12]} holds the log's last event, which is never "
                         "removed: it is left for the next archive\n")
    if args.json:
        _write_json(result.as_json())
    elif result.path is None:
        print(f"nothing to archive: no session stopped before {_iso(plan.cutoff)}")
    else:
        coalesced = f", {result.coalesced:,} heartbeats coalesced" if result.coalesced else ""
        print(f"archived {result.sessions:,} session{_s(result.sessions)} ({result.events:,} events{coalesced}) to "
              f"{result.path}, {result.bytes:,} bytes, sha256 {result.sha256[:16]}, in {result.seconds:.2f}s")
    return 0


def _dry_run(store: Any, plan: Any, *, as_json: bool) -> int:
    from agentledger.application.archiving import session_streams

    streams = [s for row in plan.sessions for s in session_streams(row["id"])]
    events = sum(store.retention.stream_lengths(streams).values())
    if as_json:
        _write_json({"dry_run": True, "sessions": [dict(id=r["id"], name=r["name"], stopped_at=_iso(r["stopped_at"]))
                                                   for r in plan.sessions], "events": events,
                     "deferred": plan.deferred})
        return 0
    from agentledger.entrypoints.render import table

    if plan.sessions:
        table(["ID", "NAME", "STOPPED"], [(r["id"][:12], r["name"] or "", _iso(r["stopped_at"]))
                                          for r in plan.sessions])
    print(f"would archive {len(plan.sessions):,} session{_s(len(plan.sessions))} ({events:,} events) stopped before "
          f"{_iso(plan.cutoff)}; nothing written or removed (--dry-run)")
    return 0


def _verify(path: str, *, as_json: bool) -> int:
    from agentledger.application.archiving import verify_archive
    from agentledger.bootstrap import archive_files, event_decoder

    started = time.perf_counter()
    reader = verify_archive(archive_files(), path, event_decoder())
    summary = reader.summary
    assert summary is not None, "a reader that checked the whole file"
    for problem in reader.undecodable:
        sys.stderr.write(f"agentledger: warning: this version cannot decode {problem} (archived as the log held it)\n")
    header = summary.header
    if as_json:
        _write_json({"ok": True, "file": path, "sessions": summary.sessions, "streams": summary.streams,
                     "events": summary.events, "sha256": summary.sha256, "created_at": header.get("created_at"),
                     "source": header.get("source"), "stopped_before": header.get("stopped_before"),
                     "coalesced_heartbeats_before": header.get("coalesced_heartbeats_before"),
                     "undecodable": len(reader.undecodable)})
        return 0
    print(f"{path}: ok: {summary.sessions:,} session{_s(summary.sessions)}, {summary.streams:,} stream{_s(summary.streams)}, "
          f"{summary.events:,} events, every stream complete and every checksum right; written "
          f"{header.get('created_at')} from {header.get('source')} (stopped before {header.get('stopped_before')}"
          f"{_coalesced_note(header)}); checked in {time.perf_counter() - started:.2f}s")
    return 0


def _list(context: Context, *, as_json: bool) -> int:
    rows = context.store.retention.archived()
    if as_json:
        from agentledger.entrypoints.render import write_json_lines

        write_json_lines({**dict(zip(row.keys(), tuple(row), strict=True)), "archived_at": _iso(row["archived_at"]),
                          "stopped_at": _iso(row["stopped_at"])} for row in rows)
        return 0
    from agentledger.entrypoints.render import table

    table(["ID", "NAME", "STOPPED", "ARCHIVED", "EVENTS", "FILE"],
          [(r["session_id"][:12], r["name"] or "", _iso(r["stopped_at"]), _iso(r["archived_at"]), r["events"],
            r["archive_path"]) for r in rows])
    return 0


def cmd_db_import(context: Context, args: argparse.Namespace) -> int:
    from agentledger.application.archiving import import_archive
    from agentledger.bootstrap import archive_files

    result = import_archive(context.store, archive_files(), args.file)
    for conflict in result.conflicts:
        sys.stderr.write(f"agentledger: {conflict}\n")
    if args.json:
        _write_json(result.as_json())
    else:
        print(f"imported {result.imported:,} session{_s(result.imported)} ({result.events:,} events) from "
              f"{result.path}; {result.present:,} already in the store; in {result.seconds:.2f}s "
              "(the events have new log positions)")
    return 1 if result.conflicts else 0


def _coalesced_note(header: dict[str, Any]) -> str:
    before = header.get("coalesced_heartbeats_before")
    return f"; heartbeats before {before} coalesced" if before else ""


def _iso(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _write_json(obj: Any) -> None:
    from agentledger.entrypoints.render import write_json

    write_json(obj)
