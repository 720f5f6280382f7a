"""The one clock the service layer reads; the domain is handed its value.

It is the *store's* clock, not merely this process's: when a store is opened,
its reference clock is registered here (SQLite: the host's own clock, read
from the kernel, which a process's faked or skewed clock cannot change;
PostgreSQL: the server's ``clock_timestamp()``), and this process's readings
are corrected by the difference, measured then and again every
``RESYNC_SECONDS``. So a writer whose clock is off (``faketime``, a host
without NTP, a container with a skewed clock) still records fuse expiries as
``store now + TTL``: a heartbeat from a clock an hour ahead cannot keep a dead
session live past its TTL, and a daemon an hour behind still stops it in time.

Differences within ``TOLERANCE_SECONDS`` are noise (the kernel reports boot
time in whole seconds; a round trip to the server) and are not corrected. A
difference larger than ``skew_bound`` (``clock_skew_bound`` in the
configuration, 30 s) is *reported*: the events a writer appends say so
(``clock_offset``), and ``why``, ``daemon status`` and the metrics show it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone

#: Below this, a difference between this process's clock and the store's is not corrected.
TOLERANCE_SECONDS = 1.5
#: How often the difference is measured again.
RESYNC_SECONDS = 300.0
#: Above this, the difference is reported (set from ``clock_skew_bound`` where the configuration is read).
skew_bound = 30.0

_reference: Callable[[], float] | None = None
_offset = 0.0  # the store's clock minus this process's, when beyond the tolerance
_measured = 0.0  # the last measured difference, whatever its size
_synced_at = float("-inf")  # time.monotonic() of the last measurement


def use_reference(reference: Callable[[], float] | None) -> None:
    """Judge time by ``reference`` (epoch seconds on the store's clock) from now on; None: this process's.

    The first reading after this measures the difference (a command that never reads the clock pays nothing).
    """
    global _reference, _offset, _measured, _synced_at
    _reference = reference
    _offset = _measured = 0.0
    _synced_at = float("-inf")


def _sync() -> None:
    global _offset, _measured, _synced_at
    _synced_at = time.monotonic()
    if _reference is None:
        return
    try:
        _measured = _reference() - time.time()
    except Exception:  # the store is away: keep the last correction; measure again at the next resync
        return
    _offset = _measured if abs(_measured) > TOLERANCE_SECONDS else 0.0


def now_epoch() -> float:
    """Now, on the store's clock, in epoch seconds."""
    if _reference is not None and time.monotonic() - _synced_at > RESYNC_SECONDS:
        _sync()
    return time.time() + _offset


def utc_now() -> datetime:
    return datetime.fromtimestamp(now_epoch(), timezone.utc)


def offset() -> float:
    """The correction applied to this process's clock (0 when within the tolerance)."""
    now_epoch()  # measured, if it is time to
    return _offset


def reported_offset() -> float | None:
    """This process's clock minus the store's, rounded, when it is off by more than ``skew_bound``; else None."""
    correction = offset()
    return round(-correction, 1) if abs(correction) > skew_bound else None
