"""The Ledger application: every command on a session, as load, decide, save.

Each command loads the ``Session`` aggregate (in a process that has it cached,
the cached state, unchecked), calls one command method on it and saves the new
events. Saving is a compare-and-set on the aggregate's version (the store
refuses a second event at the same version), so two writers racing on one
session never both land, and a decision made on a cached state that turns out
old never lands: the loser reloads and decides again on the state that won.
Infrastructure (SQLite or PostgreSQL, the orjson transcoder) is chosen by the
environment handed in, as the eventsourcing library intends.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, Repository
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from agentledger.application.clock import reported_offset, utc_now
from agentledger.application.errors import FaultClassifier, SessionNotFound, StoreError, StoreFault
from agentledger.application.lean_paths import LedgerRepository, collect, put_back, snapshots_due
from agentledger.application.retry import retry_while_locked
from agentledger.domain.hosts import Host
from agentledger.domain.locks import DirectoryLock, lock_id
from agentledger.domain.session import Session
from agentledger.domain.stop_hooks import StopHook, stop_hook_id

T = TypeVar("T")
A = TypeVar("A", bound=Aggregate)

#: Attempts at a command whose save keeps losing races, before giving up loudly.
MAX_ATTEMPTS = 50


class Ledger(Application[UUID]):
    """The append-only log of session events, and the commands that append to it."""

    name = "agentledger"
    snapshotting_intervals = {Session: 200, Host: 200, StopHook: 200, DirectoryLock: 200}  # noqa: RUF012 - library's class-level setting

    def __init__(self, env: Mapping[str, str] | None = None, *, classify_fault: FaultClassifier | None = None) -> None:
        """``env``: the library's settings (which persistence); ``classify_fault``: the store's reading of its
        errors, so that a locked or briefly unreachable store is waited out (none: every error is final)."""
        self.classify_fault: FaultClassifier = classify_fault or _no_fault
        super().__init__(env=env)

    # -- the library's load and save, lean (lean_paths.py) ----------------------

    repository: LedgerRepository

    def construct_repository(self) -> Repository[UUID]:
        maxsize = self.env.get(self.AGGREGATE_CACHE_MAXSIZE)
        return LedgerRepository(event_store=self.events, snapshot_store=self.snapshots,
                                cache_maxsize=int(maxsize) if maxsize else None)

    def save(self, *objs: Any) -> None:  # type: ignore[override]  # no Recordings, no saved arguments: see below
        """Append the pending events of ``objs`` in one transaction (compare-and-set on each aggregate's version),
        with a snapshot of each aggregate that reached its interval, taken from the state in hand. If the events
        are not recorded, the aggregates keep them pending, as before the call (the library's ``save`` drops
        them): a retry saves the same events.

        A recorder that can (``records_snapshots``: both of ours) writes the
        snapshots in the events' own transaction, so a snapshot costs one more
        row, not one more commit and sync; otherwise they follow the save.

        The library's ``save`` also builds a ``Recording`` and a ``Notification`` per event for its
        ``_notify`` hook, which this application does not use: projections follow the log instead.
        """
        events, aggregates = collect(objs)
        due = snapshots_due(aggregates, events, self.snapshotting_intervals) if self.snapshots is not None else []
        to_stored = self.mapper.to_stored_event
        try:
            if due and getattr(self.recorder, "records_snapshots", False):
                self.recorder.insert_events([to_stored(event) for event in events],
                                            snapshots=[to_stored(_snapshot(a)) for a in due])
                return
            self.recorder.insert_events([to_stored(event) for event in events])
        except BaseException:
            put_back(aggregates, events)
            raise
        if due:
            self._put_snapshots(due)

    def _put_snapshots(self, aggregates: list[Any]) -> None:
        """Snapshot aggregates just saved, after their save.

        A snapshot only speeds loads up: one the store refuses for a passing
        fault (locked, unreachable) or already holds is skipped, the next
        interval takes another. Failing the save here would make a caller
        retry events already recorded.
        """
        for aggregate in aggregates:
            try:
                self.snapshots.put([_snapshot(aggregate)])  # type: ignore[union-attr]  # none due without a store
            except IntegrityError:
                continue
            except Exception as error:
                if self.classify_fault(error) is None:
                    raise

    # -- reading ---------------------------------------------------------------

    def session(self, session_id: UUID) -> Session:
        try:
            session: Session = self.repository.get(session_id)
        except AggregateNotFoundError:
            raise SessionNotFound(f"no session {session_id.hex}") from None
        return session

    def session_at(self, session_id: UUID, version: int) -> Session:
        """The session as it stood at ``version``: from the snapshot before it and the events after, not a replay
        of them all (``history --tail``)."""
        try:
            aggregate: Session = self.repository.get(session_id, version=version)
        except AggregateNotFoundError:
            raise SessionNotFound(f"no session {session_id.hex}") from None
        return aggregate

    def session_events(self, session_id: UUID) -> list[Any]:
        return list(self.events.get(session_id))

    def stop_hook(self, session_id: UUID) -> StopHook | None:
        """The session's on-stop hook, or None while nobody has claimed it."""
        try:
            hook: StopHook = self.repository.get(stop_hook_id(session_id.hex))
        except AggregateNotFoundError:
            return None
        return hook

    def directory_lock(self, directory: str) -> DirectoryLock | None:
        """The lock of ``directory`` (a real path), or None while nobody ever took it."""
        try:
            lock: DirectoryLock = self.repository.get(lock_id(directory))
        except AggregateNotFoundError:
            return None
        return lock

    # -- writing ---------------------------------------------------------------

    def launch(self, *, session_id: UUID, fuse_ttl: float | None, fuse_set_by: str, **fields: Any) -> Session:
        """Record ``Launched`` and, when a TTL is given, ``FuseSet`` in one atomic save.

        The session is cached as saved, like any compare-and-set's: its supervisor's first heartbeat then
        starts from it instead of loading it (a query, and on PostgreSQL a connection for the snapshots)."""
        session = Session.launch(session_id=session_id, **fields)
        if fuse_ttl is not None:
            session.set_fuse(ttl=fuse_ttl, set_by=fuse_set_by, now=utc_now(), clock_offset=reported_offset())
        self.save_retrying(session)
        self.repository.remember(session)
        return session

    def change(self, session_id: UUID, command: Callable[[Session], T]) -> T:
        """Apply ``command`` to the latest state of the session and save, retrying on races.

        ``command`` must decide from the aggregate it is given (never from a
        value read before) and change nothing outside it, because it may run
        more than once: on the session as this process last saved or loaded it
        (its cache), first, without asking the store what others appended
        since (that query was most of a supervisor's heartbeat on disk), and
        again on the state that won whenever that guess turns out old (see
        :meth:`compare_and_set`).
        """
        return self.compare_and_set(lambda: retry_while_locked(lambda: self.session(session_id), self.classify_fault),
                                    command, what=lambda: f"session {session_id.hex}",
                                    guess=lambda: self.repository.take(session_id))

    def compare_and_set(self, load: Callable[[], A], decide: Callable[[A], T], *, what: Callable[[], str],
                        guess: Callable[[], A | None] | None = None) -> T:
        """Load an aggregate, let ``decide`` judge it and call its commands, save: the one compare-and-set loop.

        Saving is refused if another writer appended at the same version first;
        then the aggregate is loaded again and ``decide`` judges the state that
        won, up to :data:`MAX_ATTEMPTS` times. Sessions, directory locks and
        worktrees' Workspace aggregates are all changed through here.

        ``guess``, if given, offers a state that may be old (the cached aggregate, taken out of the cache, or
        None) to try first. Its save lands only if nobody appended since (the same compare-and-set); anything
        else it leads to (a refused save, an error from ``decide``, nothing to save) may be an effect of its age,
        so the command is then decided again on the state loaded as usual. The guess goes back to the cache
        once saved, or as it was if ``decide`` appended nothing; one that holds a decision that did not land
        is dropped (the load then reads the session from its last snapshot).

        ``what`` names the aggregate for the error, called only if there is one (formatting the name on every
        call was about 10,000 instructions a heartbeat).
        """
        if guess is not None:
            guessed = guess()
            if guessed is not None:
                try:
                    result = decide(guessed)
                except Exception:  # noqa: BLE001 - perhaps only the old state's verdict: decided again below
                    decided = False
                else:
                    decided = True
                if not guessed._pending_events:  # noqa: SLF001 - unchanged (an aggregate changes by its events)
                    self.repository.keep(guessed)
                elif decided and self._saved(guessed, handed_out=result is guessed):
                    return result
        for _ in range(MAX_ATTEMPTS):
            aggregate = load()
            result = decide(aggregate)
            if self._saved(aggregate, handed_out=result is aggregate):
                return result
            time.sleep(random.uniform(0.001, 0.02))
        raise StoreError(f"gave up after {MAX_ATTEMPTS} concurrent changes to {what()}")

    def _saved(self, aggregate: Aggregate, *, handed_out: bool) -> bool:
        """Save with compare-and-set: False if another writer took the version first; cached if it lands.

        ``aggregate`` is the loop's own (a copy ``load`` handed out, or the cached one ``guess`` took out of the
        cache); unless ``decide`` ``handed_out`` it as its result, nobody else holds it, and the cache keeps it as
        it is, not a copy of it.
        """
        try:
            self.save_retrying(aggregate)
        except IntegrityError:
            return False
        if handed_out:
            self.repository.remember(aggregate)
        else:
            self.repository.keep(aggregate)
        return True

    def save_retrying(self, aggregate: Aggregate) -> None:
        """Save an aggregate's new events, waiting out a store locked past its busy timeout (or a PostgreSQL
        server briefly away). A save that records nothing keeps its events pending (:meth:`save`), so each
        attempt saves the same events."""
        retry_while_locked(lambda: self.save(aggregate), self.classify_fault)


def _snapshot(aggregate: Aggregate) -> Any:
    """A snapshot of ``aggregate`` as it stands (the library's ``Aggregate.Snapshot``)."""
    return type(aggregate).Snapshot.take(aggregate)


def _no_fault(error: BaseException) -> StoreFault | None:
    """The classifier of a ledger given none (in memory): no error is a passing fault of a store."""
    return None
