"""The DirectoryLock aggregate: who may run in a directory, as facts in the log, and the one rule that reads them.

agentctl kept its directory locks (and fuses) in a mutable state file keyed by
directory: a ``--force`` launch replaced the first session's fuse, the first
session was marked stopped while it still ran, and its stale-lock fixes were
heuristics. Here a lock is an aggregate of its own, one per directory (its id
is derived from the directory's real path, so every launcher finds the same
one), and it only ever records two facts:

* ``Taken``: a launch (``holder_session``: the session it is about to record)
  or a person (``manual``) took it; ``taker`` is the process that took it (the
  launching CLI: pid, start time, host, boot), ``forced`` and ``displaced``
  say whether it was taken over from someone still holding it;
* ``Released``: a person unlocked it, or a launch that failed before its
  supervisor recorded anything gave it back.

Whether it is *held* is never stored: :func:`lock_held` derives it from the
last ``Taken``/``Released`` and the holder's own record. A lock taken for a
session is released by that session's ``Stopped`` (the reconciler already
makes sure every dead session gets one), never by a timer or a guess; while
the holder's ``Launched`` is not in the log yet, the taker's process stands
for it (alive: held; gone: the launch died before recording anything).
Taking is saved with compare-and-set on the aggregate's version, so of two
launches racing for a free directory exactly one saves its ``Taken``; the
other reloads, finds it held, and is refused. Forcing records a new ``Taken``
over the old one and touches nothing of the displaced session (its fuse, its
process, its events are its own).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from agentledger.domain.errors import DomainError
from agentledger.domain.liveness import Liveness, PidProbe, ProcessIdentity
from agentledger.domain.vocabulary import SessionStatus


class LockNotHeld(DomainError):
    """Only a lock someone holds can be released."""


class Tenure(NamedTuple):
    """The last ``Taken`` of a lock, and its ``Released`` if one followed."""

    directory: str
    holder_session: str | None  # hex id of the session the launch records (None: a manual lock)
    taker: dict[str, Any]  # pid, start_time, boot_time, host, boot_id of the process that took it
    by: str  # the user
    reason: str | None
    manual: bool
    forced: bool
    displaced: str | None  # the session (hex) still holding it when it was forced
    taken_at: datetime
    version: int  # the Taken's version: a release names the tenure it ends
    released: dict[str, Any] | None = None  # by, reason, at

    @property
    def taker_identity(self) -> ProcessIdentity:
        return taker_identity(self.taker)


class DirectoryLock(Aggregate):
    class Opened(Aggregate.Created):
        """The first claim on ``directory`` (a real path) creates its lock; a ``Taken`` follows in the same save."""

        directory: str

    class Taken(Aggregate.Event):
        """A claim on the directory (repeated here, so that each ``Taken`` reads alone in ``events``)."""

        directory: str
        holder_session: str | None
        taker: dict[str, Any]
        by: str
        reason: str | None
        manual: bool
        forced: bool
        displaced: str | None

        def apply(self, aggregate: DirectoryLock) -> None:
            aggregate.tenure = Tenure(
                directory=aggregate.directory, holder_session=self.holder_session, taker=dict(self.taker),
                by=self.by, reason=self.reason, manual=self.manual, forced=self.forced, displaced=self.displaced,
                taken_at=self.timestamp, version=self.originator_version)

    class Released(Aggregate.Event):
        """The tenure taken at ``taken_version`` ends: ``by`` (a user) says why."""

        by: str
        reason: str
        taken_version: int

        def apply(self, aggregate: DirectoryLock) -> None:
            if aggregate.tenure is not None:
                aggregate.tenure = aggregate.tenure._replace(
                    released={"by": self.by, "reason": self.reason, "at": self.timestamp})

    @staticmethod
    def create_id(directory: str) -> UUID:
        return lock_id(directory)

    @event(Opened)
    def __init__(self, *, directory: str) -> None:
        self.directory = directory
        self.tenure: Tenure | None = None

    def take(self, *, holder_session: str | None, taker: dict[str, Any], by: str, reason: str | None,
             displaced: str | None, forced: bool) -> None:
        """Record a claim; the caller has judged (:func:`lock_held`) that it may, or that it forces one."""
        self.trigger_event(self.Taken, directory=self.directory, holder_session=holder_session, taker=taker, by=by, reason=reason,
                           manual=holder_session is None, forced=forced, displaced=displaced)

    def release(self, *, by: str, reason: str) -> None:
        if self.tenure is None or self.tenure.released is not None:
            raise LockNotHeld(f"{self.directory} is not locked")
        self.trigger_event(self.Released, by=by, reason=reason, taken_version=self.tenure.version)


def lock_id(directory: str) -> UUID:
    """The lock's id, from the directory's real path: every launcher into it finds the same aggregate."""
    return uuid5(NAMESPACE_URL, f"agentledger:directory-lock:{directory}")


def taker_identity(taker: dict[str, Any]) -> ProcessIdentity:
    return ProcessIdentity(pid=taker.get("pid"), start_time=taker.get("start_time"),
                           boot_time=taker.get("boot_time"), host=taker.get("host", ""),
                           boot_id=taker.get("boot_id", ""))


# -- the rule ------------------------------------------------------------------


class Holding(NamedTuple):
    """Whether a lock is held, and the fact that decides it (``why``: a few words people read)."""

    held: bool
    why: str


#: ``why`` when the lock is free, or held, for each case of the rule.
NEVER_TAKEN = "never taken"
RELEASED = "released"
MANUAL = "locked by hand"
HOLDER_STOPPED = "its session stopped"
HOLDER_LIVE = "its session is not stopped"
LAUNCHING = "its launch is still in progress"
LAUNCH_DIED = "its launch ended before recording the session"
ELSEWHERE = "its launch is on another host and not recorded yet"


def lock_held(tenure: Tenure | None, *, holder_status: str | None, taker_probe: PidProbe | None) -> Holding:
    """The rule, once: a lock is held iff it is manual and not released, or its holder session is recorded
    and not stopped, or its holder is not recorded yet and the process that took it is alive.

    ``holder_status`` is the holder session's recorded status (None: not in the
    log yet). ``taker_probe`` is a look at the taker's PID from its own host
    and boot (``liveness.judge``: PID and start time, a reboot makes it dead);
    None when the taker is on another host, which counts as alive: nobody
    here can tell, so the lock is conservatively held. A look that failed
    (``unknown``) counts as alive too. No timer ever frees a lock.
    """
    if tenure is None:
        return Holding(False, NEVER_TAKEN)
    if tenure.released is not None:
        return Holding(False, RELEASED)
    if tenure.manual:
        return Holding(True, MANUAL)
    if holder_status is not None:
        if holder_status == SessionStatus.STOPPED.value:
            return Holding(False, HOLDER_STOPPED)
        return Holding(True, HOLDER_LIVE)
    if taker_probe is None:
        return Holding(True, ELSEWHERE)
    if taker_probe.liveness is Liveness.UNKNOWN or taker_probe.alive:
        return Holding(True, LAUNCHING)
    return Holding(False, LAUNCH_DIED)
