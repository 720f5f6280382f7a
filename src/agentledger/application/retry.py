"""Waiting out a store that is busy, so "database is locked" never reaches a user.

SQLite already waits up to its busy timeout (30 s) for the write lock; this is
the second line, for a lock held longer than that (a large ``db rebuild``, a
backup). A failed write left nothing behind, so trying again is safe.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from agentledger.application.errors import StoreError

T = TypeVar("T")

#: How long a command keeps retrying while another process holds the write lock.
LOCKED_PATIENCE_SECONDS = 120.0


def is_locked_error(error: BaseException) -> bool:
    return type(error).__name__ == "OperationalError" and "locked" in str(error)


def retry_while_locked(operation: Callable[[], T], patience: float = LOCKED_PATIENCE_SECONDS) -> T:
    deadline = time.monotonic() + patience
    while True:
        try:
            return operation()
        except Exception as error:
            if not is_locked_error(error):
                raise
            if time.monotonic() > deadline:
                raise StoreError(f"the store stayed locked for over {patience:.0f}s: {error}") from error
            time.sleep(random.uniform(0.05, 0.25))
