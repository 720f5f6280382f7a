"""The service layer's errors, below the one hierarchy's root (``domain/errors.py``)."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from agentledger.domain.errors import LedgerError, UsageError

__all__ = ["AlreadyStored", "AmbiguousSessionId", "FaultClassifier", "LedgerError", "SessionArchived",
           "SessionNotFound", "StoreError", "StoreFault", "StreamsChanged", "UsageError"]


class SessionNotFound(UsageError):
    pass


class AmbiguousSessionId(UsageError):
    pass


class SessionArchived(SessionNotFound):
    """A session that was, but whose events ``db archive`` moved into a file: a fact, not a typo (exit status 1)."""

    exit_code = 1


class StreamsChanged(LedgerError):
    """An archived session's streams changed between reading and removing them: nothing was removed."""


class StoreError(LedgerError):
    """The store cannot be opened, read or written (corrupt, unreadable, full, locked or away for too long)."""


class AlreadyStored(LedgerError):
    """A verbatim append refused, none of it written: the log holds one of its events already (``RawLog.append``)."""


class StoreFault(StrEnum):
    LOCKED = "locked"  # another writer holds the lock past the busy timeout
    UNAVAILABLE = "unavailable"  # the server cannot be reached, or the file cannot be opened
    FULL = "full"  # no space left for the write
    READ_ONLY = "read-only"  # the file or the database refuses writes
    CORRUPT = "corrupt"  # not a database, or a damaged one
    IO = "io"  # an I/O error from the disk

    @property
    def state(self) -> str:
        """What follows "the store is" in a message: ``full``, ``read-only``, ``failing with I/O errors``."""
        return "failing with I/O errors" if self is StoreFault.IO else self.value

    def describe(self, error: BaseException) -> str:
        """The one line for ``error``, the store's, read as this fault: ``the store is read-only: attempt to
        write a readonly database`` (the driver's first line: its others are details)."""
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"the store is {self.state}: {first}"


#: Reads a store's error as one of the faults above, or None for an error that is not the store's (a bug);
#: the store's own (``infrastructure/store_faults.classify``) is handed to the service layer with the store.
FaultClassifier = Callable[[BaseException], StoreFault | None]
