"""Directory locks as the service layer uses them: take for a launch, give back after a failed one, lock and
unlock by hand, list, and the lock facts ``why`` and ``history`` show.

Two launches into one directory are usually a mistake (two agents editing one
checkout), so a launch takes its directory's ``DirectoryLock`` first
(``domain/locks.py``) and is refused, in one line naming the holder, while
someone holds it. Every decision here loads the lock from the log, judges it
with the one rule (:func:`~agentledger.domain.locks.lock_held`: the holder
session's status from the log, the taking process probed on its own host),
and saves with compare-and-set on the lock's version: a writer that lost a
race reloads and judges again, so of two launches racing for a free
directory exactly one takes it. A lock taken for a session is freed by that
session's ``Stopped`` alone: nothing here ever appends to a session, its
fuse, or its process, not even when ``--force`` takes a lock over.

The listing reads the ``locks`` read model (``projections/locks.py``, joined
with the holder's session row) through the ``ReadModels`` port and applies the
same rule to each row.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar
from uuid import UUID

from agentledger.application.clock import utc_now
from agentledger.application.errors import LedgerError, SessionNotFound
from agentledger.application.retry import retry_while_locked
from agentledger.domain.durations import format_clock, format_duration
from agentledger.domain.locks import DirectoryLock, Holding, Tenure, lock_held, taker_identity
from agentledger.domain.vocabulary import SessionStatus

if TYPE_CHECKING:
    from agentledger.application.ports import Machine, Store
    from agentledger.domain.liveness import PidProbe
    from agentledger.domain.session import Session

T = TypeVar("T")

#: Attempts at a claim whose save keeps losing races, before giving up loudly.
MAX_ATTEMPTS = 50


class LockHeld(LedgerError):
    """The directory is locked by someone else (exit status 1): the message names the holder."""


class NotLocked(LedgerError):
    """``unlock`` of a directory nobody holds (exit status 1)."""


class LockView(NamedTuple):
    """A lock as judged now: its last claim, whether it is held and why, and its holder session (if recorded)."""

    directory: str
    tenure: Tenure | None
    holding: Holding
    holder: Session | None


def real_directory(path: str) -> str:
    """The directory a lock is keyed by: its real path (symlinks resolved), so every route to it is one lock."""
    return os.path.realpath(os.path.abspath(path))


class DirectoryLocks:
    """The directory-lock use cases over one store and this machine."""

    def __init__(self, store: Callable[[], Store], machine: Machine) -> None:
        """``store()`` opens (or hands back) the store: a launch opens it only when it gets this far."""
        self._store = store
        self.machine = machine

    @property
    def store(self) -> Store:
        return self._store()

    # -- judging -----------------------------------------------------------------

    def view(self, directory: str) -> LockView:
        """The lock of ``directory`` (a real path) as the rule judges it now, from the log."""
        return self._judge(directory, self.store.ledger.directory_lock(directory))

    def _judge(self, directory: str, lock: DirectoryLock | None) -> LockView:
        tenure = lock.tenure if lock is not None else None
        holder: Session | None = None
        probe: PidProbe | None = None
        archived = False  # the holder's events were archived (db archive): it stopped
        if tenure is not None and tenure.released is None and tenure.holder_session is not None:
            try:
                holder = self.store.ledger.session(UUID(tenure.holder_session))
            except SessionNotFound:
                archived = self.store.read_models.is_archived(tenure.holder_session)
                probe = None if archived else self._probe_taker(tenure.taker)
        status = holder.status if holder is not None else SessionStatus.STOPPED.value if archived else None
        return LockView(directory, tenure, lock_held(tenure, holder_status=status, taker_probe=probe), holder)

    def _probe_taker(self, taker: dict[str, Any]) -> PidProbe | None:
        """A look at the taking process, from its own host only (None elsewhere: nobody here can tell)."""
        identity = taker_identity(taker)
        return self.machine.probe(identity) if identity.host == self.machine.host else None

    # -- a launch ------------------------------------------------------------------

    def take_for_launch(self, directory: str, *, session_id: str, force: bool) -> Tenure:
        """Take ``directory``'s lock for the session about to be launched; refused while held, unless ``force``
        (then recorded as forced, naming the session it displaced, which is otherwise left alone)."""

        return self._take(directory, holder_session=session_id, reason=None, force=force,
                          hint="--force to launch anyway")

    def release_failed_launch(self, directory: str, *, session_id: str, error: str) -> bool:
        """Give back the lock a launch took when its supervisor recorded nothing: True if it was released.

        Once the session is in the log, its own ``Stopped`` frees the lock (a
        spawn failure records one at once), so nothing is appended then; nor
        when someone else has taken the lock since.
        """
        try:
            self.store.ledger.session(UUID(session_id))
            return False
        except SessionNotFound:
            pass

        def release(lock: DirectoryLock, view: LockView) -> bool:
            tenure = view.tenure
            if tenure is None or tenure.holder_session != session_id or tenure.released is not None:
                return False
            lock.release(by=self.machine.user(), reason=f"launch failed: {error}")
            return True

        return self._claim(directory, release, create=False) or False

    # -- by hand -----------------------------------------------------------------------

    def lock(self, directory: str, *, reason: str | None, force: bool) -> Tenure:
        """``lock DIR``: a lock no session holds, until ``unlock DIR``; refused while held, unless ``force``."""

        return self._take(directory, holder_session=None, reason=reason or None, force=force,
                          hint="--force to take it over")

    def unlock(self, directory: str, *, force: bool, reason: str | None = None) -> LockView:
        """``unlock DIR``: release a manual lock; a lock a live session holds only with ``force`` (it is
        released when that session stops). The lock as it was (its holder, if any, keeps running)."""

        def release(lock: DirectoryLock, view: LockView) -> LockView:
            if not view.holding.held:
                why = f" ({view.holding.why})" if view.tenure is not None else ""
                raise NotLocked(f"{directory} is not locked{why}")
            tenure = view.tenure
            assert tenure is not None
            if not tenure.manual and not force:
                raise LockHeld(f"{describe_holder(view, utc_now())}; it is released when that session stops "
                               f"(agentledger stop {tenure.holder_session[:12] if tenure.holder_session else ''}), "
                               "or --force to unlock it now, leaving the session running")
            what = "unlocked by hand" if tenure.manual else (
                f"unlocked by hand (--force) while session {(tenure.holder_session or '')[:12]} held it")
            lock.release(by=self.machine.user(), reason=reason or what)
            return view

        result = self._claim(directory, release, create=False)
        if result is None:
            raise NotLocked(f"{directory} is not locked (never locked)")
        return result

    # -- reading --------------------------------------------------------------------------

    def current(self, *, include_free: bool) -> list[dict[str, Any]]:
        """Each directory's last claim from the read models, judged by the rule now: held ones, or all.

        The caller brings the read models up to date (as far as the store lets it: a read-only copy cannot be).
        """
        store = self.store
        now = utc_now()
        out = []
        for row in store.read_models.current_locks(now.timestamp()):
            holding = self._judge_row(row)
            if holding.held or include_free:
                out.append({**row, "held": holding.held, "why": holding.why})
        return out

    def _judge_row(self, row: dict[str, Any]) -> Holding:
        tenure = tenure_of_row(row)
        recorded = row["holder_status"]
        probe = None
        if recorded is None and tenure.holder_session is not None and tenure.released is None:
            probe = self._probe_taker(tenure.taker)
        return lock_held(tenure, holder_status=recorded, taker_probe=probe)

    def facts_of_session(self, session_id: str) -> list[dict[str, Any]]:
        """The lock facts of one session, oldest first, each with a ``summary`` line (for ``why`` and ``history``):
        it took the lock on DIR (or forced it from X), was displaced by Y, gave it back. The caller catches up."""
        store = self.store
        now = utc_now()
        facts = []
        for row in store.read_models.lock_claims_of(session_id, now.timestamp()):
            facts.extend(claim_facts(row, session_id))
        facts.sort(key=lambda fact: fact["at"])
        return facts

    def _take(self, directory: str, *, holder_session: str | None, reason: str | None, force: bool,
              hint: str) -> Tenure:
        """Take the lock for a session (or by hand: no session); refused while held unless ``force``."""

        def take(lock: DirectoryLock, view: LockView) -> Tenure:
            if view.holding.held and not force:
                raise LockHeld(f"{describe_holder(view, utc_now())}; {hint}")
            lock.take(holder_session=holder_session, taker=self._taker(), by=self.machine.user(), reason=reason,
                      displaced=_displaced(view), forced=view.holding.held)
            assert lock.tenure is not None
            return lock.tenure

        tenure = self._claim(directory, take)
        assert tenure is not None  # it creates the lock if there is none
        return tenure

    # -- the compare-and-set loop ---------------------------------------------------------

    def _claim(self, directory: str, decide: Callable[[DirectoryLock, LockView], T], *,
               create: bool = True) -> T | None:
        """Load the lock (or open a new one), let ``decide`` judge and append, save; on a lost race, again.

        ``decide`` must judge the view it is given, never one from before: a
        lost race hands it the newer lock. None when there is no lock and
        ``create`` is off.
        """
        ledger = self.store.ledger

        def find() -> DirectoryLock | None:
            return retry_while_locked(lambda: ledger.directory_lock(directory), ledger.classify_fault)

        if not create and find() is None:
            return None
        return ledger.compare_and_set(lambda: find() or DirectoryLock(directory=directory),
                                      lambda lock: decide(lock, self._judge(directory, lock)),
                                      what=lambda: f"the lock of {directory}")

    def _taker(self) -> dict[str, Any]:
        """This process, as the rule will look for it: pid, start time (with its boot time), host, boot."""
        identity = self.machine.identity_of(os.getpid())
        return {"pid": identity.pid, "start_time": identity.start_time, "boot_time": identity.boot_time,
                "host": identity.host, "boot_id": identity.boot_id}


def _displaced(view: LockView) -> str | None:
    """The session a forced claim takes the lock from (None: it was free, or locked by hand)."""
    if not view.holding.held or view.tenure is None:
        return None
    return view.tenure.holder_session


def describe_holder(view: LockView, now: datetime) -> str:
    """One line naming who holds the lock: the session (short id, name), its agent and how long it has run;
    a launch still in progress; or the person who locked it by hand."""
    tenure = view.tenure
    assert tenure is not None
    directory = view.directory
    if tenure.manual:
        why = f": {tenure.reason}" if tenure.reason else ""
        return (f"{directory} is locked by hand by {tenure.by} since {format_clock(tenure.taken_at)} UTC"
                f" ({format_duration((now - tenure.taken_at).total_seconds())} ago){why}")
    short = (tenure.holder_session or "")[:12]
    holder = view.holder
    if holder is None:
        taker = tenure.taker
        return (f"{directory} is locked by session {short}, whose launch is in progress (by {tenure.by}, "
                f"pid {taker.get('pid')} on {taker.get('host')}, {format_duration((now - tenure.taken_at).total_seconds())}"
                " ago)")
    name = f" ({holder.name})" if holder.name else ""
    ran = format_duration(max(0.0, (now - holder.created_on).total_seconds()))
    return f"{directory} is locked by session {short}{name}, agent {holder.adapter}, {holder.status} for {ran}"


def tenure_of_row(row: dict[str, Any]) -> Tenure:
    """A claim as the read model keeps it, as the rule reads it."""
    from datetime import timezone

    released = None
    if row["released_at"] is not None:
        released = {"by": row["released_by"], "reason": row["release_reason"],
                    "at": datetime.fromtimestamp(row["released_at"], timezone.utc)}
    return Tenure(
        directory=row["directory"], holder_session=row["holder_session"],
        taker={"pid": row["taker_pid"], "start_time": row["taker_start_time"], "boot_time": row["taker_boot_time"],
               "host": row["taker_host"] or "", "boot_id": row["taker_boot_id"] or ""},
        by=row["taken_by"], reason=row["reason"], manual=row["manual"], forced=row["forced"],
        displaced=row["displaced"], taken_at=datetime.fromtimestamp(row["taken_at"], timezone.utc),
        version=row["version"], released=released)


def claim_facts(row: dict[str, Any], session_id: str) -> list[dict[str, Any]]:
    """What one claim says about ``session_id``: that it took (or forced) the lock, lost it, or gave it back."""
    from datetime import timezone

    def at(epoch: float) -> datetime:
        return datetime.fromtimestamp(epoch, timezone.utc)

    directory = row["directory"]
    facts: list[dict[str, Any]] = []
    if row["holder_session"] == session_id:
        if row["forced"]:
            source = f"session {row['displaced'][:12]}" if row["displaced"] else "a lock taken by hand"
            summary = f"forced the lock on {directory} from {source} (by {row['taken_by']})"
        else:
            summary = f"took the lock on {directory}"
        facts.append({"kind": "forced" if row["forced"] else "took", "directory": directory, "at": at(row["taken_at"]),
                      "by": row["taken_by"], "displaced": row["displaced"], "summary": summary})
        stopped, superseded = row["holder_stopped_at"], row["superseded_at"]
        if row["released_at"] is None and stopped is not None and (superseded is None or superseded >= stopped):
            facts.append({"kind": "freed", "directory": directory, "at": at(stopped), "by": None,
                          "summary": f"its stop freed the lock on {directory}"})
        if row["released_at"] is not None:
            facts.append({"kind": "released", "directory": directory, "at": at(row["released_at"]),
                          "by": row["released_by"],
                          "summary": f"lock on {directory} released by {row['released_by']}: {row['release_reason']}"})
    if row["displaced"] == session_id:
        taker = f"session {row['holder_session'][:12]}" if row["holder_session"] else f"a lock by hand of {row['taken_by']}"
        facts.append({"kind": "displaced", "directory": directory, "at": at(row["taken_at"]), "by": row["taken_by"],
                      "displaced_by": row["holder_session"],
                      "summary": f"displaced from the lock on {directory} by {taker} (--force by {row['taken_by']})"})
    return facts
