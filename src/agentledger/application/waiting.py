"""``agentledger wait`` and ``launch --wait``: block until sessions have stopped, as the log says.

A script or a CI job waits on the record, not on a process of its own: the
session may run under a supervisor started by another shell, or be stopped
by the reconciler after its supervisor died, and its ``Stopped`` says how it
ended either way. The read models are caught up and looked at every
:data:`POLL` seconds until every session asked for is stopped, or until the
deadline passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from agentledger.domain.vocabulary import SessionStatus

if TYPE_CHECKING:
    from agentledger.application.ports import ReadModels, Row

#: How often the log is looked at while waiting.
POLL = 0.2


def wait_until_stopped(read_models: ReadModels, session_ids: Sequence[str], *, timeout: float | None,
                       sleep: Callable[[float], None] = time.sleep,
                       clock: Callable[[], float] = time.monotonic) -> tuple[list[Row], list[str]]:
    """The rows of the sessions that have stopped, and the ids of those still not stopped when ``timeout``
    seconds passed (none without a timeout: it waits as long as it takes)."""
    deadline = None if timeout is None else clock() + timeout
    waiting = list(session_ids)
    done: dict[str, Row] = {}
    while True:
        read_models.catch_up()
        for sid in list(waiting):
            row = read_models.session(sid)
            if row["status"] == SessionStatus.STOPPED.value:
                done[sid] = row
                waiting.remove(sid)
        if not waiting or (deadline is not None and clock() >= deadline):
            return [done[sid] for sid in session_ids if sid in done], waiting
        sleep(POLL if deadline is None else max(0.0, min(POLL, deadline - clock())))
