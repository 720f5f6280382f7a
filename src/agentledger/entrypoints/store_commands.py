"""``agentledger db copy``: move this ledger's whole history into another store.

Translation only: the copying (resuming, refusing a foreign target) is
``application/copying.py``. Progress goes to stderr, so that ``--json`` leaves
stdout to the one summary object. Only ``url`` is ever printed, never the
target's password.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from agentledger.entrypoints import args as types
from agentledger.entrypoints.args import json_flag

if TYPE_CHECKING:
    from agentledger.entrypoints.cli import Context

#: Seconds between progress lines (the last batch is always reported).
PROGRESS_EVERY = 1.0


def add_copy_parser(db_commands: Any) -> None:
    """``db copy`` under ``db_commands`` (the ``db`` command's sub-parsers)."""
    from agentledger.application.copying import DEFAULT_BATCH_SIZE

    copy_help = "copy this ledger's whole history into the empty ledger at URL (re-run to resume)"
    dp = db_commands.add_parser("copy", help=copy_help, description=copy_help)
    dp.add_argument("--to", required=True, metavar="URL",
                    help="the target ledger: postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME[?schema=NAME] "
                         "or sqlite:///PATH; empty, or holding an interrupted copy of this ledger")
    dp.add_argument("--batch-size", type=types.count, default=DEFAULT_BATCH_SIZE, metavar="N",
                    help=f"events per atomic insert (default {DEFAULT_BATCH_SIZE})")
    json_flag(dp)


def cmd_db_copy(context: Context, args: argparse.Namespace) -> int:
    from agentledger.application.copying import copy_ledger, same_store
    from agentledger.application.errors import UsageError
    from agentledger.bootstrap import configured_location, open_store

    target_location = _target_location(args.to)
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if same_store(configured_location(), target_location):
        raise UsageError(f"--to names this very ledger ({target_location.url}): copy into another store")
    _refuse_foreign_file(target_location)
    source = context.store
    target = open_store(target_location)
    try:
        _refuse_same_ledger(source, target)
        summary = copy_ledger(source, target, batch_size=args.batch_size, progress=_reporter())
    finally:
        target.close()
    for entry in summary.skipped:
        sys.stderr.write(f"agentledger: warning: the target's read models skipped {entry.describe_error()}\n")
    if args.json:
        from agentledger.entrypoints.render import write_json

        write_json(summary.as_json())
        return 0
    from agentledger.domain.durations import format_duration

    resumed = f" ({summary.already_present:,} already there from an earlier copy)" if summary.already_present else ""
    print(f"copied {summary.copied:,} of {summary.events:,} events{resumed} from {summary.source} to "
          f"{summary.target} in {summary.batches} batch{'' if summary.batches == 1 else 'es'}, "
          f"{format_duration(summary.copy_seconds)} ({summary.rate:,.0f} events/s)")
    print(f"snapshots: {summary.snapshots_copied} copied, {summary.snapshots_present} already there")
    print(f"target: log head {summary.target_log_head}, read models at {summary.read_models_at} "
          "(log positions on the target may be numbered differently)")
    print(f"done in {format_duration(summary.seconds)}")
    return 0


def _refuse_foreign_file(location: Any) -> None:
    """A SQLite file of another database is refused before a ledger's tables are made in it (a copy goes into
    an empty store, or resumes one it left)."""
    import sqlite3

    from agentledger.application.errors import LedgerError
    from agentledger.bootstrap import foreign_tables

    try:
        tables = foreign_tables(location)
    except sqlite3.DatabaseError as error:
        raise LedgerError(f"the target {location.path} is not an SQLite database ({error}): copy into an empty "
                          "store") from None
    if tables:
        raise LedgerError(f"the target {location.path} holds tables of another database ({', '.join(tables[:3])}"
                          f"{', ...' if len(tables) > 3 else ''}): copy into an empty store")


def _refuse_same_ledger(source: Any, target: Any) -> None:
    """The target is this very ledger under another spelling of its location (``localhost`` for
    ``127.0.0.1``, a symbolic link to the file): the same store id."""
    from agentledger.application.errors import UsageError
    from agentledger.infrastructure.store_identity import store_id_of

    mine = store_id_of(source)
    if mine is not None and mine == store_id_of(target):
        raise UsageError(f"--to names this very ledger ({target.location.url}, the same store as "
                         f"{source.location.url}): copy into another store")


def _target_location(url: str) -> Any:
    """``--to URL`` as a store location; a URL we cannot use is a usage error naming ``--to``."""
    from agentledger.application.errors import UsageError
    from agentledger.infrastructure.config import ConfigError
    from agentledger.infrastructure.settings import store_location

    if not url.strip():
        raise UsageError("--to needs a URL: postgresql://USER@HOST/DBNAME or sqlite:///PATH")
    try:
        return store_location({"AGENTLEDGER_DB": url})
    except ConfigError as error:
        raise UsageError(str(error).replace("AGENTLEDGER_DB=", "--to ").replace("AGENTLEDGER_DB", "--to")) from None


def _reporter() -> Any:
    """A progress callback printing events copied and the rate to stderr, at most every PROGRESS_EVERY."""
    last = [0.0]

    def report(progress: Any) -> None:
        now = time.monotonic()
        if progress.copied < progress.remaining and now - last[0] < PROGRESS_EVERY:
            return
        last[0] = now
        share = f" ({100 * progress.copied / progress.remaining:.0f}%)" if progress.remaining else ""
        sys.stderr.write(f"copied {progress.copied:,} of {progress.remaining:,} events{share}, "
                         f"{progress.rate:,.0f} events/s\n")
        sys.stderr.flush()

    return report
