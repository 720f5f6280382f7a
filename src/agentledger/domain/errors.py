"""The one error hierarchy: every error a user is told about, with the exit status it gives.

``LedgerError`` is the root: an entry point prints ``str(error)`` as one line
and exits with ``error.exit_code``; anything else that reaches it is a bug
(``internal error``). Layers add their own kinds below these (the service
layer's ``SessionNotFound`` and ``StoreError``, the configuration's
``ConfigError``), and the store translates driver errors into ``StoreError``
(``infrastructure/store_faults.translate``), so no entry point inspects a
driver's exception.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Something the user should be told in one line (exit status 1)."""

    exit_code = 1


class UsageError(LedgerError):
    """The command was given input it cannot use (exit status 2)."""

    exit_code = 2


class DomainError(LedgerError):
    """A command that the session's current state does not allow (exit status 1)."""


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
