"""The StopHook aggregate: one session's on-stop command, who ran it and how it ended.

``Stopped`` is final for a Session (nothing may follow it), so what happens
after the stop lives in an aggregate of its own, one per session, whose id is
derived from the session's (``uuid5``). Creating it *is* the claim: the store
refuses a second event at version 1, so of any number of claimants racing
(the supervisor, a daemon) exactly one saves ``Claimed`` and runs the command.
``Finished`` records the outcome. A hook claimed and never finished was being
run by a claimant that died: it is not run again (at most once, never twice).
"""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from agentledger.domain.errors import DomainError

#: How much of the command's combined stdout and stderr the log keeps (the end of it).
OUTPUT_TAIL_BYTES = 2048


class HookAlreadyFinished(DomainError):
    """A hook's outcome is recorded once."""


class StopHook(Aggregate):
    class Claimed(Aggregate.Created):
        """``claimed_by`` runs ``command`` for session ``session_id`` (hex) on ``host``; nobody else will."""

        session_id: str
        command: str
        host: str
        claimed_by: dict[str, Any]

    class Finished(Aggregate.Event):
        """How the command ended: an exit code, or the signal that killed it (``timed_out``: ours)."""

        exit_code: int | None
        signal: str | None
        timed_out: bool
        duration_seconds: float
        output_tail: str
        error: str | None = None  # the command could not be started (e.g. its cwd is gone)

        def apply(self, aggregate: StopHook) -> None:
            aggregate.outcome = {
                "exit_code": self.exit_code,
                "signal": self.signal,
                "timed_out": self.timed_out,
                "duration_seconds": self.duration_seconds,
                "output_tail": self.output_tail,
                "error": self.error,
                "at": self.timestamp,
            }

    @staticmethod
    def create_id(session_id: str, **_: Any) -> UUID:
        return stop_hook_id(session_id)

    @event(Claimed)
    def __init__(self, *, session_id: str, command: str, host: str, claimed_by: dict[str, Any]) -> None:
        self.session_id = session_id
        self.command = command
        self.host = host
        self.claimed_by = claimed_by
        self.outcome: dict[str, Any] | None = None

    def finish(self, *, exit_code: int | None, signal: str | None, timed_out: bool, duration_seconds: float,
               output_tail: str, error: str | None = None) -> None:
        if self.outcome is not None:
            raise HookAlreadyFinished(f"the on-stop hook of session {self.session_id[:12]} already finished")
        self.trigger_event(self.Finished, exit_code=exit_code, signal=signal, timed_out=timed_out,
                           duration_seconds=duration_seconds, output_tail=output_tail, error=error)


def stop_hook_id(session_id: str) -> UUID:
    """The hook's id, from the session's id (hex): every claimant finds the same aggregate."""
    return uuid5(NAMESPACE_URL, f"agentledger:stop-hook:{UUID(session_id).hex}")
