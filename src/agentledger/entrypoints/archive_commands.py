"""``agentledger db archive`` (and ``db archive verify FILE``, ``db archive list``) and ``db import FILE``.

Translation only: the procedure (write, read back, then remove in one
transaction; import) is ``application/archiving.py``, the file's format
``application/archive_format.py``. ``db archive verify`` does not open the
store: it checks a file anywhere.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from agentledger.entrypoints.args import json_flag

if TYPE_CHECKING:
    from agentledger.entrypoints.cli import Context

_WHEN_HELP = ("an age (30d, 12h, 1d12h: longer ago than that; 0: now) or a time (2026-01-31, "
              "2026-01-31T12:00:00Z; local time if it has no zone)")


#: An age of nothing (``0``, ``0s``, ``0.0h``): "before now". A duration elsewhere is more than zero (a TTL of
#: nothing means nothing), but a cutoff of now is a natural one, and ``-5s`` is refused as "takes a value >= 0".
_ZERO_AGE = re.compile(r"0+(?:\.0*)?|(?:0+(?:\.0*)?(?:ms|s|m|h|d))+", re.ASCII)


def cutoff(text: str) -> float:
    """``--stopped-before WHEN`` (and ``--coalesce-heartbeats WHEN``) as epoch seconds: now minus an age (0:
    now), or a time."""
    from agentledger.application.clock import now_epoch
    from agentledger.domain.durations import InvalidDuration, parse_duration

    if _ZERO_AGE.fullmatch(text.strip().lower()):
        return now_epoch()
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
                         "than WHEN (the same forms; 0: all of them), the last counting those left out; the live "
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
    if action is not None and (args.stopped_before is not None or args.out is not None or args.dry_run
                               or args.coalesce_heartbeats is not None):
        raise UsageError(f"'db archive {action}' takes no --stopped-before, --out, --coalesce-heartbeats or "
                         "--dry-run")
    if action == "verify":
        return _verify(args.file, as_json=args.json)
    if action == "list":
        return _list(context, as_json=args.json)
    if args.stopped_before is None:
        raise UsageError("db archive needs --stopped-before WHEN (e.g. 30d), or: db archive verify FILE")
    if args.out == "":
        raise UsageError("--out needs a file name (leave --out out for the default, "
                         "$AGENTLEDGER_HOME/archive/sessions-TIME.ndjson.gz)")
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
    out = None if args.out is None else os.path.abspath(args.out)  # recorded: 'db import FILE' from anywhere
    result = archiving.archive(store, archive_files(), plan, path=out, header=header, now=now_epoch(),
                               coalesce_before=coalesce)
    if result.path is None:
        _nothing_to_archive(plan, as_json=args.json)
    else:
        _held_back(plan.deferred)
    if args.json:
        _write_json({**result.as_json(), "stopped_before": _iso(plan.cutoff),
                     "sessions": [_session_json(s.session_id, s.name, s.stopped_at, s.events)
                                  for s in result.written]})
    elif result.path is not None:
        print(f"archived {result.sessions:,} session{_s(result.sessions)} ({result.events:,} events"
              f"{_coalesced_text(result)}) to {result.path}, {result.bytes:,} bytes, file sha256 "
              f"{result.file_sha256}, in {result.seconds:.2f}s")
    return 0


def _held_back(deferred: list[str]) -> None:
    """The note, on stderr, for each session left for the next archive (it holds the log's last event)."""
    for session_id in deferred:
        sys.stderr.write(f"agentledger: session {session_id[:12]} holds the log's last event, which is never "
                         "removed: it is left for the next archive\n")


def _nothing_to_archive(plan: Any, *, as_json: bool) -> None:
    """Nothing was done: a note on stderr (with ``--json`` the answer says so), naming the held-back session if
    that is why."""
    if plan.deferred and not as_json:
        sys.stderr.write(f"agentledger: nothing to archive: the only session stopped before {_iso(plan.cutoff)}, "
                         f"{plan.deferred[0][:12]}, holds the log's last event, which is never removed: it is left "
                         "for the next archive\n")
        return
    _held_back(plan.deferred)
    if not as_json:
        sys.stderr.write(f"agentledger: nothing to archive: no session stopped before {_iso(plan.cutoff)}\n")


def _coalesced_text(result: Any) -> str:
    """How many heartbeats the file leaves out, and who left them out: this archive, an earlier one, or both."""
    total, now = result.coalesced, result.coalesced_now
    if not total:
        return ""
    if not now:
        return f", {total:,} heartbeats coalesced by an earlier archive"
    earlier = f" ({total - now:,} of them by an earlier archive)" if total > now else ""
    return f", {total:,} heartbeats coalesced{earlier}"


def _dry_run(store: Any, plan: Any, *, as_json: bool) -> int:
    from agentledger.application.archiving import planned_events

    counts = planned_events(store, plan)
    events = sum(counts.values())
    _held_back(plan.deferred)
    if as_json:
        _write_json({"dry_run": True, "path": None, "stopped_before": _iso(plan.cutoff),
                     "session_count": len(plan.sessions), "events": events, "deferred": plan.deferred,
                     "sessions": [_session_json(r["id"], r["name"], r["stopped_at"], counts[r["id"]])
                                  for r in plan.sessions]})
        return 0
    from agentledger.entrypoints.render import table

    if plan.sessions:
        table(["ID", "NAME", "STOPPED", "EVENTS"], [(r["id"][:12], r["name"] or "", _iso(r["stopped_at"]),
                                                    f"{counts[r['id']]:,}") for r in plan.sessions])
    print(f"would archive {len(plan.sessions):,} session{_s(len(plan.sessions))} ({events:,} events) stopped before "
          f"{_iso(plan.cutoff)}; nothing written or removed (--dry-run)")
    return 0


def _session_json(session_id: str, name: str | None, stopped_at: float | None, events: int) -> dict[str, Any]:
    """One session of ``db archive --json`` (the dry run's and the real one's alike)."""
    return {"id": session_id, "name": name, "stopped_at": _iso(stopped_at), "events": events}


def _verify(path: str, *, as_json: bool) -> int:
    from agentledger.application.archiving import verify_archive
    from agentledger.bootstrap import archive_files, event_decoder

    started = time.perf_counter()
    files = archive_files()
    reader = verify_archive(files, path, event_decoder())
    file_sha256 = files.sha256(path)
    summary = reader.summary
    assert summary is not None, "a reader that checked the whole file"
    for problem in reader.undecodable:
        sys.stderr.write(f"agentledger: warning: this version cannot decode {problem} (archived as the log held it)\n")
    header = summary.header
    if as_json:
        _write_json({"ok": True, "file": path, "sessions": summary.sessions, "streams": summary.streams,
                     "events": summary.events, "sha256": summary.sha256, "file_sha256": file_sha256,
                     "created_at": header.get("created_at"), "source": header.get("source"),
                     "stopped_before": header.get("stopped_before"),
                     "coalesced_heartbeats_before": header.get("coalesced_heartbeats_before"),
                     "coalesced_heartbeats": summary.coalesced, "undecodable": len(reader.undecodable)})
        return 0
    print(f"{path}: ok: {summary.sessions:,} session{_s(summary.sessions)}, {summary.streams:,} stream{_s(summary.streams)}, "
          f"{summary.events:,} events, every stream complete and every checksum right; written "
          f"{header.get('created_at')} from {header.get('source')} (stopped before {header.get('stopped_before')}"
          f"{_coalesced_note(header, summary.coalesced)}); file sha256 {file_sha256}; checked in "
          f"{time.perf_counter() - started:.2f}s")
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


def _coalesced_note(header: dict[str, Any], count: int) -> str:
    """What ``verify`` says of coalescing: how many heartbeats the file leaves out (counted from its gaps), and
    the cutoff this archive coalesced at, if it did (an earlier archive's are in sessions it re-archived)."""
    before = header.get("coalesced_heartbeats_before")
    if before:
        return f"; heartbeats before {before} coalesced, {count:,} left out in all"
    return f"; {count:,} heartbeats coalesced by an earlier archive" if count else ""


def _iso(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _write_json(obj: Any) -> None:
    from agentledger.entrypoints.render import write_json

    write_json(obj)
