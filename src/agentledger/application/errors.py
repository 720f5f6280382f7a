"""The service layer's errors, below the one hierarchy's root (``domain/errors.py``)."""

from __future__ import annotations

from agentledger.domain.errors import LedgerError, UsageError

__all__ = ["AmbiguousSessionId", "LedgerError", "SessionNotFound", "StoreError", "UsageError"]


class SessionNotFound(UsageError):
    pass


class AmbiguousSessionId(UsageError):
    pass


class StoreError(LedgerError):
    """The store cannot be opened, read or written (corrupt, unreadable, full, locked or away for too long)."""
