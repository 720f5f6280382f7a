"""A session's fuse, and the status it gives: the one place for "is the fuse live" and "running or unwatched".

The aggregate (``Session.fuse``), the reconciler's facts (``SessionFacts.fuse``)
and every report ask a :class:`Fuse`; the read models' rows, whose times are
epoch seconds, ask :func:`fuse_live` directly (the same rule, without building
a value per row of a long list). The read models' SQL filters say it once
more, in SQL, in ``projections/queries.py``. :func:`session_status` is the one
derivation of a session's status from what was recorded and the fuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from agentledger.domain.durations import format_duration
from agentledger.domain.errors import UsageError
from agentledger.domain.vocabulary import FuseState, SessionStatus

#: The shortest fuse anyone may ask for. Every fuse is kept alive by heartbeats appended to the log for good
#: (three per TTL): a typo of ``30ms`` for ``30m`` would append a hundred events a second, forever.
MIN_TTL = 0.25


def check_ttl(ttl: float, option: str = "--fuse-ttl") -> float:
    """``ttl``, unless it is below :data:`MIN_TTL` (refused, naming the floor and the likely typo)."""
    if ttl < MIN_TTL:
        raise UsageError(f"{option} {format_duration(ttl)} is below the {format_duration(MIN_TTL)} floor: heartbeats "
                         "would flood the append-only log (a typo of ms for m?)")
    return ttl

When = TypeVar("When", datetime, float)  # a moment: a datetime, or epoch seconds (read-model rows)

#: States in which evidence of life extends the fuse (a lapsed fuse is revived; a cancelled one is not).
_EXTENDABLE = (FuseState.SET.value, FuseState.EXPIRED.value)


# The values, looked up once: these run for every row of a long list.
_SET = FuseState.SET.value
_STOPPED, _HOST_SILENT = SessionStatus.STOPPED.value, SessionStatus.HOST_SILENT.value
_RUNNING, _UNWATCHED = SessionStatus.RUNNING.value, SessionStatus.UNWATCHED.value


def fuse_live(state: str | None, expires_at: When | None, now: When) -> bool:
    """Set, and not yet past its expiry: someone vouched for the session recently enough."""
    return state == _SET and expires_at is not None and expires_at > now


def extended_expiry(state: str | None, expires_at: datetime | None, ttl: float | None,
                    now: datetime) -> datetime | None:
    """The expiry evidence of life at ``now`` gives a fuse: ``now`` + the TTL, never earlier than the one it has.

    None when there is nothing to extend: no fuse, or one cancelled on purpose (re-arming takes a set). A
    function of the fields, so that a heartbeat, every few seconds of every session, builds no :class:`Fuse`.
    """
    if state not in _EXTENDABLE:
        return None
    assert ttl is not None and expires_at is not None
    return max(expires_at, now + timedelta(seconds=ttl))


def session_status(recorded: str, fuse_state: str | None, fuse_expires_at: When | None, now: When, *,
                   host_silent: bool = False) -> str:
    """``running`` while a fuse is live, ``unwatched`` once none is; ``stopping`` and ``stopped`` as recorded;
    ``host-silent`` for a session not stopped whose host's daemon went quiet."""
    if recorded == _STOPPED:
        return recorded
    if host_silent:
        return _HOST_SILENT
    if recorded == _RUNNING or recorded == _UNWATCHED:
        return _RUNNING if fuse_live(fuse_state, fuse_expires_at, now) else _UNWATCHED
    return recorded


@dataclass(frozen=True, slots=True)
class Fuse:
    """``state`` (a :class:`FuseState` value), the expiry it was armed or extended to, and its TTL in seconds."""

    state: str
    expires_at: datetime | None = None
    ttl: float | None = None

    def live_at(self, now: datetime) -> bool:
        return fuse_live(self.state, self.expires_at, now)

    def as_evidence(self, now: datetime) -> dict[str, Any]:
        """How decisions record the fuse they looked at (``evidence.fuse``)."""
        return {"state": self.state, "ttl": self.ttl, "expires_at": self.expires_at, "live": self.live_at(now)}
