"""What went wrong with the store, whatever the driver: locked, unavailable, full, read-only, corrupt, I/O.

SQLite and PostgreSQL (through the eventsourcing library, which wraps each
driver's exception in its own) report the same few conditions in many
shapes. :func:`classify` reads the chain of causes once, here, so no caller
matches driver class names or message texts: SQLite's extended result code
(``sqlite_errorname``, Python 3.11+), PostgreSQL's SQLSTATE, and the
connection-level failures that have neither.

What each kind means to a writer that must not give up (a supervisor holding
an exit): every kind but ``corrupt`` can pass by itself (a lock released, a
server back, space freed, a file made writable again), so it is waited out.
"""

from __future__ import annotations

import sqlite3

from agentledger.application.errors import StoreFault

__all__ = ["StoreFault", "classify", "is_connection_error", "is_locked_error", "translate"]


_SQLITE = {
    "SQLITE_BUSY": StoreFault.LOCKED, "SQLITE_LOCKED": StoreFault.LOCKED,
    "SQLITE_FULL": StoreFault.FULL,
    "SQLITE_READONLY": StoreFault.READ_ONLY, "SQLITE_PERM": StoreFault.READ_ONLY,
    "SQLITE_CORRUPT": StoreFault.CORRUPT, "SQLITE_NOTADB": StoreFault.CORRUPT,
    "SQLITE_CANTOPEN": StoreFault.IO,  # a missing folder or a permission: not something to wait for
    "SQLITE_IOERR": StoreFault.IO,
}
#: SQLSTATE classes and codes (PostgreSQL's appendix A).
_SQLSTATE_CLASSES = {"08": StoreFault.UNAVAILABLE, "53": StoreFault.FULL, "57": StoreFault.UNAVAILABLE,
                     "58": StoreFault.IO, "XX": StoreFault.CORRUPT}
_SQLSTATES = {"25006": StoreFault.READ_ONLY, "55P03": StoreFault.LOCKED, "40P01": StoreFault.LOCKED,
              "57014": StoreFault.UNAVAILABLE,  # 57014: statement cancelled (lock_timeout, a restart)
              "25P03": StoreFault.UNAVAILABLE}  # the server ended a transaction left idle (postgres_store.py)
#: Exceptions of the PostgreSQL stack that mean "no connection", by the module they come from.
_UNAVAILABLE = {("psycopg", "OperationalError"), ("psycopg", "InterfaceError"), ("psycopg_pool", "PoolTimeout"),
                ("eventsourcing", "ConnectionUnavailableError"), ("eventsourcing", "PoolTimeoutError")}


def is_locked_error(error: BaseException) -> bool:
    return classify(error) is StoreFault.LOCKED


def is_connection_error(error: BaseException) -> bool:
    """The store's server could not be reached, or went away."""
    return classify(error) is StoreFault.UNAVAILABLE


def classify(error: BaseException) -> StoreFault | None:
    """The fault ``error`` (or one of its causes) reports, or None if it is not the store's (a bug, say)."""
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        fault = _one(link)
        if fault is not None:
            return fault
        link = link.__cause__ or link.__context__
    return None


def _one(error: BaseException) -> StoreFault | None:
    if isinstance(error, sqlite3.Error):
        name = getattr(error, "sqlite_errorname", None) or ""
        for prefix, fault in _SQLITE.items():
            if name == prefix or name.startswith(prefix + "_"):
                return fault
        return _sqlite_by_message(str(error))
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str) and len(sqlstate) == 5:
        return _SQLSTATES.get(sqlstate) or _SQLSTATE_CLASSES.get(sqlstate[:2])
    for kind in type(error).__mro__:
        if (kind.__module__.split(".")[0], kind.__name__) in _UNAVAILABLE:
            return StoreFault.UNAVAILABLE
    if isinstance(error, OSError) and error.errno is not None:
        import errno

        return {errno.ENOSPC: StoreFault.FULL, errno.EDQUOT: StoreFault.FULL, errno.EROFS: StoreFault.READ_ONLY,
                errno.EACCES: StoreFault.READ_ONLY, errno.EPERM: StoreFault.READ_ONLY,
                errno.EIO: StoreFault.IO}.get(error.errno)
    return None


def _sqlite_by_message(text: str) -> StoreFault | None:
    """For an error raised without a result code (older Pythons, wrapped copies): its standard message."""
    for words, fault in (("locked", StoreFault.LOCKED), ("disk is full", StoreFault.FULL),
                         ("readonly", StoreFault.READ_ONLY), ("malformed", StoreFault.CORRUPT),
                         ("not a database", StoreFault.CORRUPT), ("unable to open", StoreFault.IO),
                         ("disk i/o error", StoreFault.IO)):
        if words in text.lower():
            return fault
    return None


def translate(error: BaseException) -> BaseException:
    """``error`` in the one hierarchy (``domain/errors.py``) when it is a store's or a file's; else unchanged.

    What the entry points print: a file of the home's that cannot be written
    is named as that file (not as "the store is full"); a driver's error is a
    :class:`StoreError` saying which fault; anything else is left for the
    caller to report as a bug.
    """
    from agentledger.application.errors import LedgerError, StoreError

    if isinstance(error, LedgerError):
        return error
    if isinstance(error, OSError) and error.filename is not None:  # a file of the home's, not the store's
        return _caused(LedgerError(f"{error.strerror or error}: {error.filename}"), error)
    fault = classify(error)
    if fault is not None:
        return _caused(StoreError(fault.describe(error)), error)
    if isinstance(error, sqlite3.DatabaseError) or type(error).__module__.startswith("eventsourcing"):
        return _caused(StoreError(f"store error: {error}"), error)
    if isinstance(error, OSError):
        return _caused(LedgerError(str(error)), error)
    return error


def _caused(translated: BaseException, cause: BaseException) -> BaseException:
    translated.__cause__ = cause
    return translated
