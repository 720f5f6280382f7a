"""Shell completion (bash, zsh, fish) through argcomplete: commands, options, and sessions from the read models.

Imported only when a shell asks for completions (``_ARGCOMPLETE`` in the
environment, see ``cli.main``) or for its script (``agentledger completion``),
so that an ordinary run never pays for argcomplete.

A session argument completes to names and 12-character id prefixes, the
words ``resolve_session_id`` takes back, rather than 32-character ids no one
reads. The read models are peeked at without creating or migrating anything
(caught up only if the log has gone on past them), within
:data:`DEADLINE_SECONDS`: a missing store, an unreachable server or a locked
file completes to nothing, never to a traceback or a shell that hangs on TAB.
"""

from __future__ import annotations

import argparse
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from agentledger.application.ports import Queryable, Row

#: How long a TAB may wait for the read models; past it, no session is offered (the shell still completes the rest).
DEADLINE_SECONDS = 1.5
#: Sessions (newest first) offered for one TAB: a screenful to choose from, not the whole ledger.
LIMIT = 200
#: The length of the id prefixes offered, as ``list`` shows ids.
SHORT = 12

T = TypeVar("T")


def autocomplete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request and exit; returns only if there is none."""
    import argcomplete

    attach_completers(parser)
    argcomplete.autocomplete(parser, always_complete_options=False)  # options once a "-" is typed, as git does


def script(shell: str) -> str:
    """The code that, sourced by ``shell``, makes TAB ask ``agentledger`` itself what may follow."""
    import argcomplete

    return argcomplete.shellcode(["agentledger"], shell=shell)


def attach_completers(parser: argparse.ArgumentParser) -> None:
    """Give every session, group and adapter argument of every command its completer, by what it holds.

    By ``dest`` rather than by ``metavar``: ``webhooks retry ID`` takes delivery
    ids, not sessions, and ``wait ID|NAME`` takes several sessions.
    """
    for action in _actions(parser):
        completer = _COMPLETERS.get(action.dest)
        if completer is not None:
            action.completer = completer  # type: ignore[attr-defined]  # argcomplete's protocol


def _actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    """Every argument of ``parser`` and of its subcommands, however deep."""
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for subparser in set(action.choices.values()):
                yield from _actions(subparser)


# -- completers: called by argcomplete with the word typed so far ------------------


def sessions(prefix: str, **_: Any) -> dict[str, str]:
    """Names and id prefixes of the newest sessions that start with ``prefix``, each with what it is."""
    from agentledger.application.clock import now_epoch
    from agentledger.projections.queries import sessions_starting_with

    rows = _peek(lambda db: sessions_starting_with(db, prefix, LIMIT))
    return session_words(rows or [], prefix, now_epoch())


def groups(prefix: str, **_: Any) -> list[str]:
    """The groups launched so far whose name starts with ``prefix``."""
    from agentledger.projections.queries import groups_starting_with

    return _peek(lambda db: groups_starting_with(db, prefix, LIMIT)) or []


def adapters(**_: Any) -> list[str]:
    """Every adapter's name (``--adapter``): from the code, no store needed."""
    from agentledger.adapters import registry

    return registry.names()


def agents(**_: Any) -> list[str]:
    """The adapters that launch an agent (``launch --agent``)."""
    from agentledger.adapters import registry

    return registry.agent_names()


_COMPLETERS: dict[str, Callable[..., Any]] = {
    "session": sessions, "sessions": sessions, "group": groups, "adapter": adapters, "agent": agents,
}


def session_words(rows: list[Row], prefix: str, now: float) -> dict[str, str]:
    """The words to offer for ``rows`` (newest first), each described for zsh and fish.

    An id is offered as its 12-character prefix unless that is not unique among
    the rows or more was typed; a name shared by several sessions once, as
    ``resolve_session_id`` resolves it (the live one, else the latest).
    """
    from agentledger.projections.queries import current_status

    shorts = Counter(r["id"][:SHORT] for r in rows)
    names = Counter(r["name"] for r in rows if r["name"])
    words: dict[str, str] = {}
    for row in rows:
        short, name = row["id"][:SHORT], row["name"]
        what = f"{current_status(row, now)} {row['adapter']} session"
        if name and name.startswith(prefix) and name not in words:
            words[name] = f"{what} {short}" if names[name] == 1 else f"name of {names[name]} sessions"
        if row["id"].startswith(prefix.lower()):
            words[row["id"] if len(prefix) > SHORT or shorts[short] > 1 else short] = (
                f"{what} {name}" if name else what)
    return words


def _peek(read: Callable[[Queryable], T]) -> T | None:
    """``read`` over the read models, or None if they cannot be read within the deadline.

    The read models are read as they stand, then, if the log has gone on past
    them (no daemon follows it, and no command has caught up since a launch),
    once more after catching up, as every reading command does, so that a
    session launched a moment ago is offered. A store that cannot be caught up
    (read-only, full, locked) keeps the first answer.

    On a thread of its own, so that a connection stuck in C (a server that
    accepts and never answers) cannot hold the TAB: the process exits after
    answering, and the thread with it.
    """
    found: list[T] = []

    def run() -> None:
        from agentledger.bootstrap import peek_read_models

        try:
            with peek_read_models() as peek:
                found.append(read(peek.db))
                behind = peek.behind()
            if behind:
                found.append(_caught_up(read))
        except Exception:  # noqa: BLE001 - no store, no server, no such table: nothing (more) to offer
            pass

    thread = threading.Thread(target=run, name="completion-peek", daemon=True)
    thread.start()
    thread.join(DEADLINE_SECONDS)
    return found[-1] if found else None


def _caught_up(read: Callable[[Queryable], T]) -> T:
    """``read`` after applying the events the read models lack (the store exists: it was just peeked at)."""
    from agentledger.bootstrap import open_store
    from agentledger.projections.catchup import catch_up

    store = open_store()
    try:
        catch_up(store)
        return read(store.db)
    finally:
        store.close()
