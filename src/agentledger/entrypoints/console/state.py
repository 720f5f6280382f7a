"""What every route of the console shares: how to open the store, the guard, the log watch and the templates."""

from __future__ import annotations

import functools
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from agentledger import __version__
from agentledger.entrypoints.console.guard import COOKIE, Guard
from agentledger.entrypoints.console.live import LogWatch
from agentledger.entrypoints.render import escape_keeping_lines

if TYPE_CHECKING:
    from agentledger.application.ports import Store


#: The audit pages, in the navigation's order: (path, title).
NAVIGATION = (("/", "Sessions"), ("/replay", "Replay"), ("/verify", "Verify"), ("/hosts", "Hosts"),
              ("/webhooks", "Webhooks"), ("/daemon", "Daemon"))


#: Stores open at once for the pages; a request beyond waits for one. Connections stay few whatever the traffic
#: (a PostgreSQL server has a limit), and a stop that waits out its grace holds only its own.
POOL_SIZE = 4


class Console:
    """What the routes share: the stores the pages borrow, the guard, the log watch and the templates."""

    def __init__(self, open_store: Callable[[], Store], guard: Guard) -> None:
        self.guard = guard
        self.watch = LogWatch(open_store)
        self._pool = _Pool(open_store, POOL_SIZE)
        self._local = threading.local()
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("agentledger.entrypoints.console", "templates"),
            autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
            finalize=_shown)
        self.templates.globals["query"] = query
        from agentledger.entrypoints.timeline_html import DRAWING_CSS

        self.templates.globals["timeline_css"] = DRAWING_CSS

    @contextmanager
    def borrowing(self) -> Iterator[None]:
        """Lend this request's thread a store from the pool until the block ends (:meth:`store` returns it)."""
        with self._pool.borrowed() as store:
            self._local.store = store
            try:
                yield
            finally:
                self._local.store = None

    def store(self) -> Store:
        """The store this request borrowed (see :func:`answer`, which borrows one around every handler)."""
        store: Store | None = getattr(self._local, "store", None)
        if store is None:
            raise RuntimeError("the console's store is used outside a request")
        return store

    def store_broken(self) -> None:
        """The borrowed store's connection failed: close it instead of lending it again."""
        self._pool.broken.add(id(self.store()))

    def close(self) -> None:
        self.watch.stop()
        self._pool.close()

    def head(self) -> int:
        return int(self.store().ledger.recorder.max_notification_id() or 0)

    def render(self, request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        authed = self.guard.holds_token(request.cookies.get(COOKIE), request.headers.get("authorization"))
        values.setdefault("at", None)
        page = self.templates.get_template(template).render(
            request=request, navigation=NAVIGATION, version=__version__, actions=self.guard.actions,
            authed=authed, csrf=self.guard.csrf() if authed else "", watch_error=self.watch.error, **values)
        return HTMLResponse(page, status_code=status_code)


def _shown(value: Any) -> Any:
    """Every text a page prints, its control characters written out (``\\x1b``), as the CLI shows them: an escape
    sequence or a bidirectional override in a session's name is seen, never obeyed. HTML-escaped after this."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return escape_keeping_lines(value)
    return value


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
    """``handler``'s page, with a store borrowed for it; an error (the store's too) as a page of one line."""
    try:
        with console.borrowing():
            try:
                return handler(console, request)
            except Exception:
                _roll_back(console)
                raise
    except Exception as error:  # noqa: BLE001 - every error is a page; the console keeps serving
        return error_page(console, request, error)


def _roll_back(console: Console) -> None:
    """What a failed request began must not reach the next one; a connection that cannot even roll back is
    dropped by the pool."""
    try:
        console.store().db.rollback()
    except Exception:  # noqa: BLE001 - the connection is broken
        console.store_broken()


def error_page(console: Console, request: Request, error: Exception) -> Response:
    """One line saying what went wrong, with the status it deserves: the CLI's message for the CLI's errors."""
    from agentledger.domain.errors import LedgerError
    from agentledger.infrastructure.store_faults import translate

    known = translate(error)
    if isinstance(known, LedgerError):
        message, status = str(known), _STATUS.get(type(known).__name__, 400 if known.exit_code == 2 else 500)
    else:
        import logging

        logging.getLogger("agentledger.console").exception("console: %s", request.url.path)
        message, status = f"internal error: {type(error).__name__}: {error}", 500
    return console.render(request, "error.html", status_code=status, message=message, title="Error")


_STATUS = {"SessionNotFound": 404, "AmbiguousSessionId": 409}


class _Pool:
    """At most ``size`` stores, opened when first needed, each lent to one request at a time.

    A store is used by one thread at a time, never two at once: its SQLite
    connection allows a different thread each time, its PostgreSQL connection
    is one session.
    """

    def __init__(self, open_store: Callable[[], Store], size: int) -> None:
        self._open = open_store
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[Store] = []
        self._open_stores: list[Store] = []
        self.broken: set[int] = set()

    @contextmanager
    def borrowed(self) -> Iterator[Store]:
        with self._slots:
            with self._lock:
                store = self._idle.pop() if self._idle else None
            if store is None:
                store = self._open()
                with self._lock:
                    self._open_stores.append(store)
            try:
                yield store
            finally:
                self._give_back(store)

    def _give_back(self, store: Store) -> None:
        with self._lock:
            if id(store) not in self.broken:
                self._idle.append(store)
                return
            self.broken.discard(id(store))
            self._open_stores.remove(store)
        _close_quietly(store)

    def close(self) -> None:
        with self._lock:
            stores, self._open_stores, self._idle = self._open_stores, [], []
        for store in stores:
            _close_quietly(store)


def _close_quietly(store: Store) -> None:
    try:
        store.close()
    except Exception:  # noqa: BLE001 - closing a broken or finished store: nothing to tell
        pass
