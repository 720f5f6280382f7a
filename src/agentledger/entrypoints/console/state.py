"""What every route of the console shares: how to open the store, the guard, the log watch and the templates."""

from __future__ import annotations

import functools
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from agentledger import __version__
from agentledger.entrypoints.console.guard import COOKIE, Guard
from agentledger.entrypoints.console.live import LogWatch

if TYPE_CHECKING:
    from agentledger.application.ports import Store


#: The audit pages, in the navigation's order: (path, title).
NAVIGATION = (("/", "Sessions"), ("/replay", "Replay"), ("/verify", "Verify"), ("/hosts", "Hosts"),
              ("/webhooks", "Webhooks"), ("/daemon", "Daemon"))


class Console:
    """What the routes share: how to open the store, the guard, the log watch and the templates."""

    def __init__(self, open_store: Callable[[], Store], guard: Guard, *, poll_interval: float | None = None) -> None:
        self.open_store = open_store
        self.guard = guard
        self.watch = LogWatch(open_store, *(() if poll_interval is None else (poll_interval,)))
        self._local = threading.local()
        self._stores: list[Store] = []
        self._stores_lock = threading.Lock()
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("agentledger.entrypoints.console", "templates"),
            autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.templates.globals["query"] = query
        from agentledger.entrypoints.timeline_html import DRAWING_CSS

        self.templates.globals["timeline_css"] = DRAWING_CSS

    def store(self) -> Store:
        """This worker thread's store (SQLite connections belong to the thread that opened them)."""
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = self.open_store()
            with self._stores_lock:
                self._stores.append(store)
        return store

    def close(self) -> None:
        self.watch.stop()
        with self._stores_lock:
            for store in self._stores:
                try:
                    store.close()
                except Exception:  # noqa: BLE001 - closing at exit, nothing to tell
                    pass

    def head(self) -> int:
        return int(self.store().ledger.recorder.max_notification_id() or 0)

    def render(self, request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        authed = self.guard.holds_token(request.cookies.get(COOKIE), request.headers.get("authorization"))
        values.setdefault("at", None)
        page = self.templates.get_template(template).render(
            request=request, navigation=NAVIGATION, version=__version__, actions=self.guard.actions,
            authed=authed, csrf=self.guard.csrf() if authed else "", watch_error=self.watch.error,
            head=values.pop("head", None), **values)
        return HTMLResponse(page, status_code=status_code)


def query(params: dict[str, str], **changes: Any) -> str:
    """``?a=1&b=2``: the page's query string with ``changes`` (None drops a key), never its ``fragment``."""
    from urllib.parse import urlencode

    merged = {key: value for key, value in {**params, **changes}.items() if value is not None and key != "fragment"}
    return "?" + urlencode(merged)


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


Handler = Callable[[Console, Request], Response]


def on_a_thread(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Run ``handler`` on a worker thread (it reads the store); an error a user can cause becomes a one-line page."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        console = console_of(request)
        return await run_in_threadpool(answer, handler, console, request)

    return endpoint


def answer(handler: Handler, console: Console, request: Request) -> Response:
    from agentledger.domain.errors import LedgerError
    from agentledger.infrastructure.store_faults import translate

    try:
        return handler(console, request)
    except Exception as error:  # noqa: BLE001 - every error is a page; the console keeps serving
        known = translate(error)
        if not isinstance(known, LedgerError):
            import logging

            logging.getLogger("agentledger.console").exception("console: %s", request.url.path)
            message, status = f"internal error: {type(error).__name__}: {error}", 500
        else:
            message, status = str(known), _STATUS.get(type(known).__name__, 400 if known.exit_code == 2 else 500)
        try:  # a broken connection must not serve the next request
            console.store().db.rollback()
        except Exception:  # noqa: BLE001
            pass
        return console.render(request, "error.html", status_code=status, message=message, title="Error")


_STATUS = {"SessionNotFound": 404, "AmbiguousSessionId": 409}


