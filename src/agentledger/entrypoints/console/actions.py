"""The console's actions: stop a session, set or cancel its fuse, re-queue a dead webhook delivery.

Each is a POST of a form, refused (403, one line) unless the console runs
with ``--actions``, the request holds this run's token, the form carries the
CSRF field of a page this console served, and it comes from this console's
own origin. Each calls the application service the CLI's command calls.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from agentledger.entrypoints.console.guard import COOKIE
from agentledger.entrypoints.console.state import Console, answer, console_of

if TYPE_CHECKING:
    from agentledger.application.ports import Store

Form = dict[str, str]
Action = Callable[[Console, Request, Form], Response]
#: A form bigger than this is not one of ours.
MAX_FORM = 16 * 1024


def routes() -> list[Route]:
    return [Route("/s/{session}/stop", stop, methods=["POST"]),
            Route("/s/{session}/fuse", fuse, methods=["POST"]),
            Route("/webhooks/{delivery}/retry", retry, methods=["POST"])]


def guarded(action: Action) -> Callable[[Request], Awaitable[Response]]:
    """Check the guard, then run ``action`` on a worker thread, as a page is."""

    @functools.wraps(action)
    async def endpoint(request: Request) -> Response:
        console = console_of(request)
        body = await request.body()
        form = dict(parse_qsl(body.decode("utf-8", "replace"))) if len(body) <= MAX_FORM else {}
        refusal = _foreign_origin(request) or console.guard.refusal(
            request.cookies.get(COOKIE), request.headers.get("authorization"), form.get("csrf"))
        if refusal is not None:
            return console.render(request, "error.html", status_code=403, message=refusal, title="Refused")
        return await run_in_threadpool(answer, lambda c, r: action(c, r, form), console, request)

    return endpoint


def _foreign_origin(request: Request) -> str | None:
    """A browser says where a form came from; one from another site is refused whatever it carries."""
    origin = request.headers.get("origin")
    if origin is None:  # not a browser's cross-site form (a script with the token, or an older browser)
        return None
    if urlsplit(origin).netloc != request.headers.get("host"):
        return f"refused: the form came from {origin}, not from this console"
    return None


def _session_id(store: Store, text: str) -> str:
    """The session ``text`` names, in read models caught up first (it may have been launched a moment ago)."""
    from agentledger.entrypoints.console.live import caught_up
    from agentledger.projections.queries import resolve_session_id

    caught_up(store)
    return resolve_session_id(store.db, text)


def _back(session_id: str, done: str) -> Response:
    return RedirectResponse(f"/s/{session_id}?done={quote(done)}", status_code=303)


@guarded
def stop(console: Console, request: Request, form: Form) -> Response:
    from uuid import UUID

    from agentledger.application.stopping import stop_session
    from agentledger.bootstrap import this_machine
    store = console.store()
    session_id = _session_id(store, request.path_params["session"])
    outcome = stop_session(store.ledger, UUID(session_id), machine=this_machine(), force=form.get("force") == "1",
                           grace=10.0, note=(form.get("reason") or "").strip() or "stopped from the console")
    stopped = outcome.session.stop or {}
    done = ("was already stopped" if outcome.already_stopped else
            f"stopped: {', then '.join(outcome.signals_sent) or 'its process was gone'}; {stopped.get('reason')}")
    return _back(session_id, done)


@guarded
def fuse(console: Console, request: Request, form: Form) -> Response:
    from uuid import UUID

    from agentledger.application.fusing import cancel_fuse, set_fuse
    from agentledger.bootstrap import this_machine
    from agentledger.domain.durations import InvalidDuration, format_duration, parse_duration
    from agentledger.domain.errors import UsageError
    store = console.store()
    session_id = _session_id(store, request.path_params["session"])
    by = f"user:{this_machine().user()} (console)"
    if form.get("do") == "cancel":
        cancel_fuse(store.ledger, UUID(session_id), by=by, reason=(form.get("reason") or "").strip() or
                    "cancelled from the console")
        return _back(session_id, "fuse cancelled")
    try:
        ttl = parse_duration(form.get("ttl") or "")
    except InvalidDuration as error:
        raise UsageError(f"fuse TTL: {error}") from None
    expires = set_fuse(store.ledger, UUID(session_id), ttl=ttl, by=by, option="the fuse's TTL").fuse_expires_at
    assert expires is not None  # just set
    return _back(session_id, f"fuse set: live until {expires.isoformat()} (ttl {format_duration(ttl)})")


@guarded
def retry(console: Console, request: Request, form: Form) -> Response:
    from agentledger.application.webhooks import requeue
    from agentledger.domain.errors import UsageError

    text = request.path_params["delivery"]
    if not text.isdigit():
        raise UsageError(f"{text!r} is not a delivery id")
    rows = requeue(console.store(), [int(text)])
    return RedirectResponse(f"/webhooks?done={quote(f'delivery {text} re-queued' if rows else 'nothing re-queued')}",
                            status_code=303)
