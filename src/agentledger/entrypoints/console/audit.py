"""The audit pages: replay, verify, hosts, webhook deliveries, the daemon.

Each page is its CLI command drawn as HTML: it calls the same application
service or query (``replay_log``, ``verify``, ``list_hosts``,
``list_deliveries``, ``daemon_report``) and the same wording helpers
(``host_state``, ``daemon_pairs``), so the console and the terminal cannot
disagree about what the log says. None of these pages follows the log live:
replaying and verifying read the whole log, which is not done on every event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agentledger.entrypoints.console.state import Console, on_a_thread

if TYPE_CHECKING:
    from agentledger.application.ports import Store


def routes() -> list[Route]:
    return [Route("/replay", replay_page), Route("/verify", verify_page), Route("/hosts", hosts_page),
            Route("/webhooks", webhooks_page), Route("/daemon", daemon_page)]


# -- replay ----------------------------------------------------------------------


@on_a_thread
def replay_page(console: Console, request: Request) -> Response:
    """``agentledger replay [ID]``: would today's rule make each recorded reconciler decision again?"""
    from agentledger.entrypoints.audit_commands import replay_summary, replay_verdicts

    store = console.store()
    session = (request.query_params.get("session") or "").strip() or None
    session_id = _resolve(store, session) if session else None
    verdicts = replay_verdicts(store, session_id)
    differ = sum(1 for v in verdicts if not v.agrees)
    return console.render(request, "replay.html", title="Replay", verdicts=verdicts, differ=differ,
                          summary=replay_summary(verdicts), session=session, session_id=session_id)


def _resolve(store: Store, text: str) -> str:
    """An id, a unique prefix or a name, as the CLI takes it (an unknown one is the one-line 404 page)."""
    from agentledger.projections.queries import resolve_session_id

    return resolve_session_id(store.db, text)


# -- verify ----------------------------------------------------------------------


@on_a_thread
def verify_page(console: Console, request: Request) -> Response:
    """``agentledger verify``, without its catch-up: the console's log watch keeps the read models current."""
    from agentledger.application.verifying import verify
    from agentledger.entrypoints.audit_commands import verify_counts
    from agentledger.infrastructure.store_identity import store_id_of

    store = console.store()
    report = verify(store, catch_up=False)
    return console.render(request, "verify.html", title="Verify", report=report, counts=verify_counts(report),
                          store_id=store_id_of(store))


# -- hosts -----------------------------------------------------------------------


@on_a_thread
def hosts_page(console: Console, request: Request) -> Response:
    """``agentledger hosts``: each host's daemon, when it was last heard from, and its sessions."""
    from agentledger.application.clock import now_epoch
    from agentledger.entrypoints.host_commands import host_state
    from agentledger.entrypoints.render import relative
    from agentledger.projections.queries import iso, list_hosts

    now = now_epoch()
    rows = [{"host": r["host_name"], "pid": r["daemon_pid"], "version": r["daemon_version"],
             "last_seen": relative(r["daemon_last_seen"], now), "last_seen_iso": iso(r["daemon_last_seen"]),
             "state": host_state(r, now), "running": r["sessions_not_stopped"], "sessions": r["sessions"]}
            for r in list_hosts(console.store().db)]
    for row in rows:  # "forgotten (its reason)" is of kind "forgotten": the row's class, for its highlight
        row["kind"] = row["state"].split(" (", 1)[0].replace(" ", "-")
    return console.render(request, "hosts.html", title="Hosts", hosts=rows)


# -- webhooks --------------------------------------------------------------------


@on_a_thread
def webhooks_page(console: Console, request: Request) -> Response:
    """``agentledger webhooks [--failed] [--endpoint NAME]``, newest first, with a Retry for each dead one."""
    from agentledger.application.clock import now_epoch
    from agentledger.application.webhooks import DEAD, PENDING, list_deliveries
    from agentledger.entrypoints.render import relative
    from agentledger.entrypoints.webhook_commands import DEFAULT_LIMIT

    params = request.query_params
    failed, endpoint = params.get("failed") == "1", (params.get("endpoint") or "").strip() or None
    now = now_epoch()
    rows = [{"id": r["id"], "endpoint": r["endpoint"], "hook": r["hook_type"], "session_id": r["session_id"],
             "state": r["state"], "dead": r["state"] == DEAD, "attempts": r["attempts"],
             "last": r["last_error"] or r["last_status"],
             "next": relative(r["next_attempt_at"], now) if r["state"] == PENDING else None}
            for r in list_deliveries(console.store(), failed=failed, endpoint=endpoint, limit=DEFAULT_LIMIT)]
    return console.render(request, "webhooks.html", title="Webhooks", deliveries=rows, failed=failed,
                          endpoint=endpoint, limit=DEFAULT_LIMIT, done=params.get("done"))


# -- the daemon ------------------------------------------------------------------


@on_a_thread
def daemon_page(console: Console, request: Request) -> Response:
    """``agentledger daemon status``: the same report, in the same words, as a definition list."""
    import time

    from agentledger.entrypoints.daemon_status import daemon_pairs, daemon_report

    report, elsewhere = daemon_report(console.store)
    pairs = daemon_pairs(report, time.time(), store_url=console.store().location.url, elsewhere=elsewhere)
    return console.render(request, "daemon.html", title="Daemon", report=report, pairs=pairs)
