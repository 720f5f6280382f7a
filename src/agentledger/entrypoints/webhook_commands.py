"""``agentledger webhooks``: the delivery outbox, re-queuing dead deliveries, checking a signature.

Translation only: the rows and re-queuing come from ``application/webhooks.py``
(over the store's outbox port), signatures from ``domain/webhooks.py``. The
outbox is not a read model, so these commands do not catch up the projections
first.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from agentledger.entrypoints import args as types
from agentledger.entrypoints.args import Parser, json_flag

if TYPE_CHECKING:
    from agentledger.entrypoints.cli import Context

DEFAULT_LIMIT = 50
DEFAULT_TOLERANCE = 300.0


def add_parsers(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("webhooks", "webhook deliveries, newest first: pending, delivered, dead")
    p.add_argument("--failed", action="store_true", help="only dead-lettered deliveries")
    p.add_argument("--endpoint", metavar="NAME", default=None, help="only this endpoint's deliveries")
    p.add_argument("--limit", type=types.count, default=DEFAULT_LIMIT, metavar="N",
                   help=f"show at most N (default {DEFAULT_LIMIT})")
    json_flag(p)
    actions = p.add_subparsers(dest="webhooks_command", metavar="ACTION", parser_class=Parser)
    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        return actions.add_parser(name, help=help_text, description=help_text)

    rp = action("retry", "re-queue dead deliveries: pending again, attempts and give-up clock reset")
    rp.add_argument("ids", metavar="ID", nargs="*", type=types.delivery_id,
                    help="delivery ids, as 'agentledger webhooks' lists them (or --all-failed)")
    rp.add_argument("--all-failed", action="store_true", help="every dead delivery")
    vp = action("verify", "check a webhook body (on stdin) against its signature header")
    vp.add_argument("--secret", required=True, metavar="SECRET", help="the endpoint's secret (required)")
    vp.add_argument("--signature", required=True, metavar="sha256=HEX",
                    help="the X-Agentledger-Signature (or X-Hub-Signature-256) header (required)")
    vp.add_argument("--timestamp", type=int, default=None, metavar="T",
                    help="the X-Agentledger-Timestamp header, in epoch seconds: must equal the body's sent_at and "
                         "be within --tolerance of now (default: not checked)")
    vp.add_argument("--tolerance", type=types.duration, default=DEFAULT_TOLERANCE, metavar="DURATION",
                    help="how far from now the timestamp may be (default 5m)")
    p.set_defaults(handler=cmd_webhooks)


def cmd_webhooks(context: Context, args: argparse.Namespace) -> int:
    if args.webhooks_command == "retry":
        return _retry(context, args)
    if args.webhooks_command == "verify":
        return _verify(args)
    from agentledger.application.webhooks import list_deliveries
    from agentledger.entrypoints.render import relative, shorten, table, write_json_lines

    rows = list_deliveries(context.store, failed=args.failed, endpoint=args.endpoint, limit=args.limit)
    if args.json:
        write_json_lines({key: row[key] for key in row.keys()} for row in rows)
        return 0
    now = time.time()
    table(["ID", "ENDPOINT", "HOOK", "SESSION", "STATE", "ATTEMPTS", "LAST", "NEXT"],
          [(r["id"], r["endpoint"], r["hook_type"], r["session_id"][:12], r["state"], r["attempts"],
            shorten(r["last_error"], 48) if r["last_error"] else r["last_status"],
            relative(r["next_attempt_at"], now) if r["state"] == "pending" else None) for r in rows])
    return 0


def _retry(context: Context, args: argparse.Namespace) -> int:
    from agentledger.application.errors import UsageError
    from agentledger.application.webhooks import requeue

    if bool(args.ids) == args.all_failed:
        raise UsageError("webhooks retry needs delivery ids or --all-failed (not both)")
    rows = requeue(context.store, args.ids, all_failed=args.all_failed)
    if not rows and args.all_failed:
        print("agentledger: no dead deliveries to re-queue", file=sys.stderr)
    for r in rows:
        print(f"re-queued delivery {r['id']}: {r['hook_type']} of session {r['session_id'][:12]} to {r['endpoint']}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from agentledger.application.errors import LedgerError
    from agentledger.domain.webhooks import InvalidSignature, verify

    body = sys.stdin.buffer.read()
    try:
        verify(args.secret, body, args.signature, timestamp=args.timestamp, now=time.time(),
               tolerance=args.tolerance)
    except InvalidSignature as error:
        raise LedgerError(f"invalid: {error}") from None
    print("valid")
    return 0
