"""Refusals raised by the aggregate when a command breaks a rule of the domain."""

from __future__ import annotations


class DomainError(Exception):
    """A command that the session's current state does not allow."""


class SessionAlreadyStopped(DomainError):
    """Stopped is final: nothing may be appended to a stopped session."""

    def __init__(self, session_id: str, reason: str, stopped_at: str) -> None:
        self.session_id = session_id
        self.reason = reason
        self.stopped_at = stopped_at
        super().__init__(
            f"session {session_id[:12]} is stopped ({reason} at {stopped_at}); "
            "a stopped session takes no further commands"
        )


class NoFuse(DomainError):
    """Cancelling needs a fuse that is set."""


class FuseStillLive(DomainError):
    """A fuse's lapse can be recorded only once it has lapsed."""
