"""Waiting out a store that is busy or briefly away, so neither reaches a user as a traceback.

SQLite already waits up to its busy timeout (30 s) for the write lock; this is
the second line, for a lock held longer than that (a large ``db rebuild``, a
backup). A PostgreSQL connection lost mid-operation (a restarted server, a
terminated backend) is retried on a fresh connection from the pool for a
while, then reported as one :class:`StoreError`.

Retrying never duplicates an append: a failed write either left nothing
behind, or it did commit and the retry's compare-and-set on the same version
is refused (``IntegrityError``), which callers already treat as "the session
changed: judge it again".
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from agentledger.application.errors import FaultClassifier, StoreError, StoreFault

T = TypeVar("T")

#: How long a command keeps retrying while another process holds the write lock.
LOCKED_PATIENCE_SECONDS = 120.0
#: How long a command keeps retrying while the PostgreSQL server cannot be reached.
UNREACHABLE_PATIENCE_SECONDS = 30.0


def retry_while_locked(operation: Callable[[], T], classify: FaultClassifier,
                       patience: float = LOCKED_PATIENCE_SECONDS) -> T:
    """Run ``operation``, again and again while the store is locked or unreachable, up to a patience.

    ``classify`` is the store's reading of its errors (``infrastructure/store_faults.classify``).
    """
    started = time.monotonic()
    while True:
        try:
            return operation()
        except Exception as error:
            waited = time.monotonic() - started
            fault = classify(error)
            if fault is StoreFault.LOCKED:
                if waited > patience:
                    raise StoreError(f"the store stayed locked for over {patience:.0f}s: {error}") from error
            elif fault is StoreFault.UNAVAILABLE:
                if waited > min(patience, UNREACHABLE_PATIENCE_SECONDS):
                    raise StoreError(f"the PostgreSQL ledger is unreachable: {_first_line(error)}") from error
            else:
                raise
            time.sleep(random.uniform(0.05, 0.25))


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
