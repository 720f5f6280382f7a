"""Errors the service layer reports to entry points, each with a sentence a user can act on."""

from __future__ import annotations


class LedgerError(Exception):
    """Something the user should be told in one line (exit status 1)."""

    exit_code = 1


class UsageError(LedgerError):
    """The command was given input it cannot use (exit status 2)."""

    exit_code = 2


class SessionNotFound(UsageError):
    pass


class AmbiguousSessionId(UsageError):
    pass


class StoreError(LedgerError):
    """The store cannot be opened or read (corrupt, unreadable, locked for too long)."""
