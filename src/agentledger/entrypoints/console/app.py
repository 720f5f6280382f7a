"""The console's ASGI application: routes that translate HTTP into the pages and actions, nothing more.

Handlers are thin: they read the query string, call :mod:`pages` (or an
application service, for an action) on a worker thread with that thread's
own store, and render a template. Jinja2 escapes every value, so a session
name like ``<script>`` is shown, never run. Errors a user can cause (an
unknown session, a bad ``as_of``) are a page with one line, never a traceback.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from agentledger.entrypoints.console import actions, audit, views
from agentledger.entrypoints.console.guard import COOKIE, Guard
from agentledger.entrypoints.console.state import Console, console_of


def create_app(console: Console) -> Starlette:
    """The application over ``console``; its log watch runs while the application does."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        console.watch.start()
        try:
            yield
        finally:
            await run_in_threadpool(console.close)

    routes = [
        Route("/", views.sessions_page),
        Route("/s/{session}", views.session_page),
        Route("/events", events),
        Route("/healthz", healthz),
        Route("/login", login),
        *audit.routes(),
        *actions.routes(),
        Mount("/static", StaticFiles(packages=[("agentledger.entrypoints.console", "static")]), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.console = console
    app.add_middleware(_ReadGuard, guard=console.guard)
    return app


async def events(request: Request) -> Response:
    """Server-Sent Events: ``event: log`` with the log's position each time it moves."""
    watch = console_of(request).watch

    async def stream() -> Any:
        yield "retry: 1000\n\n"
        async for position in watch.positions():
            yield ": keepalive\n\n" if position is None else f"event: log\ndata: {position}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def healthz(request: Request) -> Response:
    console = console_of(request)
    body = {"ok": console.watch.error is None, "position": console.watch.position, "error": console.watch.error,
            "listeners": console.watch.listeners}
    return JSONResponse(body, status_code=200 if body["ok"] else 503)


async def login(request: Request) -> Response:
    """``/login?token=T``: keep the token in a cookie and go to the sessions page (the URL forgets it)."""
    guard = console_of(request).guard
    token = request.query_params.get("token", "")
    if not guard.holds_token(token, None):
        return PlainTextResponse("agentledger console: that is not this run's token\n", status_code=403)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
    return response


class _ReadGuard:
    """A console reachable from other machines answers only those who hold the token (``/login`` aside)."""

    def __init__(self, app: Any, guard: Guard) -> None:
        self.app, self.guard = app, guard

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.guard.reads_need_token and scope["path"] not in ("/login", "/healthz"):
            request = Request(scope)
            if not self.guard.may_read(request.cookies.get(COOKIE), request.headers.get("authorization")):
                response = PlainTextResponse("agentledger console: this console needs its token: open the address "
                                             "'agentledger console' printed\n", status_code=401)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
