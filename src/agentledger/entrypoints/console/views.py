"""The sessions page and a session's page: query string in, :mod:`pages` called, template out.

``?as_of=@N`` (or an ISO time, or ``-15m``) draws either page as it stood
then; ``?fragment=1`` returns only the part that changes, which the page's
script fetches each time the log moves.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from agentledger.entrypoints.console import pages
from agentledger.entrypoints.console.state import Console, on_a_thread


def as_of(request: Request) -> str | None:
    return (request.query_params.get("as_of") or "").strip() or None


def time_bar(console: Console, at: pages.Moment) -> dict[str, Any]:
    """What the time control shows: where the log ends, and where this page stands in it."""
    return {"head": console.head(), "position": at.position, "as_of": at.as_of, "described": at.described}


@on_a_thread
def sessions_page(console: Console, request: Request) -> Response:
    params = request.query_params
    query = pages.SessionQuery(
        status=params.get("status") or None, group=params.get("group") or None,
        adapter=params.get("adapter") or None, host=params.get("host") or None, label=params.get("label") or None,
        text=params.get("q") or None, sort=params.get("sort") or "started",
        descending=params.get("dir", "desc") != "asc", page=_whole(params.get("page"), 1))
    at = pages.moment(console.store(), as_of(request))
    listing = pages.sessions(at, query)
    if params.get("fragment"):  # what the live page swaps in: the rows, not the filters' choices
        return console.render(request, "sessions_live.html", at=time_bar(console, at), listing=listing,
                              params=dict(params))
    return console.render(request, "sessions.html", title="Sessions", at=time_bar(console, at), listing=listing,
                          choices=pages.choices(at.db), params=dict(params))


@on_a_thread
def session_page(console: Console, request: Request) -> Response:
    from agentledger.bootstrap import this_machine

    at = pages.moment(console.store(), as_of(request))
    page = pages.session(console.store(), at, request.path_params["session"], this_machine())
    template = "session_live.html" if request.query_params.get("fragment") else "session.html"
    title = page["row"]["name"] or page["row"]["short_id"]
    return console.render(request, template, title=title, at=time_bar(console, at), page=page,
                          done=request.query_params.get("done"))


def _whole(text: str | None, default: int) -> int:
    try:
        return max(1, int(text or default))
    except ValueError:
        return default
