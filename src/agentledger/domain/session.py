"""The Session aggregate: one agent run, from launch to its single, final stop.

Every change is a small, explicit domain event. Command methods (public) check
the rules and raise :class:`DomainError` subclasses; the ``@event`` methods
(private) and the events' own ``apply`` only apply facts, so replaying the log
never re-checks anything. Events that record their own time (a heartbeat, a
stop request, the stop) apply it in ``apply``, from ``self.timestamp``: while
an event applies, the aggregate's ``modified_on`` is still the previous
event's.
Time is passed in by the caller: the aggregate never reads a clock.

Fields added after the first release have defaults, on the events (for events
stored before them) and on the class (for snapshots taken before them).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from agentledger.domain.errors import FuseStillLive, NoFuse, SessionAlreadyStopped
from agentledger.domain.fuse import Fuse, extended_expiry
from agentledger.domain.liveness import ProcessIdentity
from agentledger.domain.vocabulary import FuseState, LaunchSource, SessionStatus, StopCause, StopReason

#: What an agent adapter may report (``AgentObserved``'s optional fields). ``tokens_in``, ``tokens_out`` and
#: ``cost`` are this run's (so summing sessions never counts a resumed conversation twice); the
#: ``conversation_*`` figures are the agent's conversation so far, earlier runs included.
AGENT_FACTS = ("native_session_id", "native_id_source", "model", "title", "tokens_in", "tokens_out", "cost",
               "conversation_tokens_in", "conversation_tokens_out", "conversation_cost", "last_activity_at")

#: The reason of the ``FuseCancelled`` that a stop appends when it finds a fuse still set.
STOP_CANCEL_REASON = "session stopped"
#: The values ``_arm`` writes on every heartbeat, as plain strings once (a StrEnum member's ``.value`` is a call).
_FUSE_SET, _UNWATCHED, _RUNNING = FuseState.SET.value, SessionStatus.UNWATCHED.value, SessionStatus.RUNNING.value


class Session(Aggregate):
    """A supervised process and what the log knows about its lifetime."""

    class Launched(Aggregate.Created):
        """A session exists. ``pid`` is None only when spawning failed.

        ``source`` is a :class:`LaunchSource`: an ``adopted`` session was started
        elsewhere and has no supervisor. ``resumed_from`` is the session whose
        agent conversation this one continues (``agentledger resume``).
        """

        argv: list[str]
        cwd: str
        adapter: str
        name: str | None
        model: str | None
        prompt: str | None
        group: str | None
        labels: dict[str, str]
        host: str
        boot_id: str
        pid: int | None
        pid_start_time: float | None
        boot_time: float | None
        supervisor_pid: int | None
        log_path: str | None
        launched_by: str
        timeout: float | None = None  # master timeout in seconds from launch, opt-in
        on_stop: str | None = None  # shell command run once after the stop (a StopHook records it)
        on_stop_timeout: float | None = None  # how long that command may run
        source: str = LaunchSource.LAUNCHED.value
        resumed_from: str | None = None  # a session id (hex)
        #: ``launch --worktree``: repository, worktree, branch, base_ref, base_commit, name, copied
        #: (``application/worktrees.py``); what became of it after the stop is the Workspace aggregate's.
        workspace: dict[str, Any] | None = None
        on_create: str | None = None  # shell command the supervisor ran in cwd before starting the agent
        check: str | None = None  # shell command run in the worktree after the stop (``compare``'s "tests passed")

    class FuseSet(Aggregate.Event):
        """A lease on the lifecycle: until ``expires_at`` someone watches the session.

        ``clock_offset``: the setter's clock minus the store's, in seconds, when
        it was off by more than the bound (``expires_at`` is on the store's
        clock either way); None otherwise.
        """

        ttl: float
        expires_at: datetime
        set_by: str
        clock_offset: float | None = None

    class Heartbeat(Aggregate.Event):
        """Evidence of life; ``fuse_expires_at`` is the fuse's new expiry, if a fuse was set.

        ``coalesced`` is 0 in the live log. In a session put back from an
        archive written with ``db archive --coalesce-heartbeats``, it counts the
        heartbeats just before this one that the archive left out (the middle
        of a run of heartbeats: its first and last are kept): their versions
        are this one's minus 1 to minus ``coalesced``, and this one follows on
        from the version before them. They changed nothing this one does not
        change again. The first heartbeat of such a run, kept, holds in
        ``window_expires_at`` the expiry those left out took the fuse to
        without a break (a run never holds a heartbeat that made a lapsed fuse
        live again: ``application/archive_format.py``), so that replaying what
        is kept finds the fuse live and lapsed when it was, not lapsed between
        the two kept ends.
        """

        source: str
        fuse_expires_at: datetime | None
        clock_offset: float | None = None  # the sender's clock minus the store's, when off by more than the bound
        #: Not a field: never passed, never stored by the live log (no heartbeat grows by it); only an archive's
        #: coalesced heartbeat holds it in its state, and reading that state sets it on the event.
        coalesced = 0
        #: Not a field either: only the first kept heartbeat of a coalesced run holds it (see above).
        window_expires_at = None  # not annotated: an annotation would make it one of the event's dataclass fields

        def mutate(self, aggregate: Session | None) -> Session | None:  # type: ignore[override]
            # The class's 0 on every heartbeat of the live log: a test of it spares them a call per event.
            passed_over = coalesced_before(self) if self.coalesced else 0
            if passed_over and aggregate is not None and self.originator_id == aggregate.id and (
                    self.originator_version == aggregate.version + 1 + passed_over):
                aggregate.version += passed_over  # the coalesced heartbeats' versions
            return super().mutate(aggregate)

        def apply(self, aggregate: Session) -> None:
            aggregate.last_heartbeat_at = self.timestamp
            aggregate.writer_clock_offset = self.clock_offset
            # the class's None on every heartbeat of the live log: a test of it spares them a call per event
            expiry = self.fuse_expires_at if self.window_expires_at is None else heartbeat_expiry(self)
            if expiry is not None:
                aggregate._arm(expiry)

    class FuseCancelled(Aggregate.Event):
        by: str
        reason: str

        @property
        def by_the_stop(self) -> bool:
            """Appended by ``record_stop`` just before its ``Stopped``: part of the stop, not a decision of its own."""
            return self.reason == STOP_CANCEL_REASON

    class StopRequested(Aggregate.Event):
        """Someone asked for the session to end and sent ``signal`` to its group."""

        requested_by: str
        signal: str
        grace: float
        note: str | None
        cause: str = StopCause.USER.value  # a StopCause: becomes the stop's reason

        def apply(self, aggregate: Session) -> None:
            aggregate.status = SessionStatus.STOPPING.value
            # a new list: an aggregate's attributes are replaced, never changed in place (copy_for_command)
            aggregate.stop_requests = [*aggregate.stop_requests, {
                "requested_by": self.requested_by,
                "signal": self.signal,
                "grace": self.grace,
                "note": self.note,
                "cause": self.cause,
                "at": self.timestamp,
            }]

    class FuseExpired(Aggregate.Event):
        """The reconciler saw the fuse lapse while the process lived: watching ended at ``expired_at``."""

        expired_at: datetime
        decided_by: dict[str, Any]
        evidence: dict[str, Any]

    class AgentObserved(Aggregate.Event):
        """Facts an agent adapter read in the agent's own storage; only the ones that changed (None: unchanged).

        ``native_id_source`` says how ``native_session_id`` was found (a
        :class:`~agentledger.domain.vocabulary.NativeIdSource`). ``tokens_*`` and
        ``cost`` are this run's, ``conversation_*`` the conversation's so far
        (they differ after ``resume``). ``heartbeat`` is true when the agent showed fresh activity: that counts
        as a heartbeat (``fuse_expires_at`` is then the fuse's new expiry, as
        for ``Heartbeat``). An adapter never stops a session.
        """

        source: str
        native_session_id: str | None = None
        model: str | None = None
        title: str | None = None
        tokens_in: int | None = None
        tokens_out: int | None = None
        cost: float | None = None
        last_activity_at: datetime | None = None
        heartbeat: bool = False
        fuse_expires_at: datetime | None = None
        native_id_source: str | None = None
        conversation_tokens_in: int | None = None
        conversation_tokens_out: int | None = None
        conversation_cost: float | None = None

        def apply(self, aggregate: Session) -> None:
            facts = dict(aggregate.agent_facts or {})
            for name in AGENT_FACTS:
                value = getattr(self, name)
                if value is not None:
                    facts[name] = value
            aggregate.agent_facts = facts
            if self.heartbeat:
                aggregate.last_heartbeat_at = self.timestamp
                if self.fuse_expires_at is not None:
                    aggregate._arm(self.fuse_expires_at)

    class Stopped(Aggregate.Event):
        """Final. ``decided_by`` says who appended it; ``evidence`` what it saw.

        ``exited_at`` is when the process was seen to end, where someone saw it
        (a supervisor): it can be well before the event's own time, when the
        store refused writes for a while.
        """

        reason: str
        exit_code: int | None
        signal: str | None
        decided_by: dict[str, Any]
        evidence: dict[str, Any]
        note: str | None
        exited_at: datetime | None = None

        def apply(self, aggregate: Session) -> None:
            aggregate.status = SessionStatus.STOPPED.value
            aggregate.stop = {
                "reason": self.reason,
                "exit_code": self.exit_code,
                "signal": self.signal,
                "decided_by": self.decided_by,
                "at": self.timestamp.isoformat(),
            }

    @event(Launched)
    def __init__(
        self,
        *,
        argv: list[str],
        cwd: str,
        adapter: str,
        name: str | None,
        model: str | None,
        prompt: str | None,
        group: str | None,
        labels: dict[str, str],
        host: str,
        boot_id: str,
        pid: int | None,
        pid_start_time: float | None,
        boot_time: float | None,
        supervisor_pid: int | None,
        log_path: str | None,
        launched_by: str,
        timeout: float | None = None,
        on_stop: str | None = None,
        on_stop_timeout: float | None = None,
        source: str = LaunchSource.LAUNCHED.value,
        resumed_from: str | None = None,
        workspace: dict[str, Any] | None = None,
        on_create: str | None = None,
        check: str | None = None,
    ) -> None:
        self.argv = argv
        self.cwd = cwd
        self.adapter = adapter
        self.name = name
        self.model = model
        self.prompt = prompt
        self.group = group
        self.labels = labels
        self.host = host
        self.boot_id = boot_id
        self.pid = pid
        self.pid_start_time = pid_start_time
        self.boot_time = boot_time
        self.supervisor_pid = supervisor_pid
        self.log_path = log_path
        self.launched_by = launched_by
        self.timeout = timeout
        self.on_stop = on_stop
        self.on_stop_timeout = on_stop_timeout
        self.source = LaunchSource(source).value
        self.resumed_from = resumed_from
        self.workspace = workspace
        self.on_create = on_create
        self.check = check
        self.status = SessionStatus.RUNNING.value
        self.fuse_state = FuseState.NONE.value
        self.fuse_ttl: float | None = None
        self.fuse_expires_at: datetime | None = None
        self.last_heartbeat_at: datetime | None = None
        self.stop_requests: list[dict[str, Any]] = []
        self.stop: dict[str, Any] | None = None

    @classmethod
    def launch(cls, *, session_id: UUID, **fields: Any) -> Session:
        """Create a session under an id chosen by the caller (the CLI prints it first)."""
        return cls._create(cls.Launched, id=session_id, **fields)

    #: Defaults for attributes newer than some stored snapshots.
    timeout: float | None = None
    on_stop: str | None = None
    on_stop_timeout: float | None = None
    agent_facts: dict[str, Any] | None = None  # the latest AgentObserved facts, merged
    source: str = LaunchSource.LAUNCHED.value
    resumed_from: str | None = None
    workspace: dict[str, Any] | None = None  # the session's own git worktree (``launch --worktree``)
    on_create: str | None = None
    check: str | None = None
    writer_clock_offset: float | None = None  # the last heartbeat's or fuse's sender's clock minus the store's

    # -- queries ---------------------------------------------------------------

    @property
    def is_stopped(self) -> bool:
        return self.stop is not None

    @property
    def stopped_by(self) -> str | None:
        """The component that recorded the stop (supervisor, reconciler, cli), or None while not stopped."""
        return None if self.stop is None else self.stop["decided_by"].get("component")

    @property
    def deadline(self) -> datetime | None:
        """When the master timeout passes, if one was asked for."""
        return self.created_on + timedelta(seconds=self.timeout) if self.timeout else None

    @property
    def identity(self) -> ProcessIdentity:
        return ProcessIdentity(
            pid=self.pid,
            start_time=self.pid_start_time,
            boot_time=self.boot_time,
            host=self.host,
            boot_id=self.boot_id,
        )

    @property
    def fuse(self) -> Fuse:
        return Fuse(self.fuse_state, self.fuse_expires_at, self.fuse_ttl)

    def fuse_is_live(self, now: datetime) -> bool:
        return self.fuse.live_at(now)

    # -- commands --------------------------------------------------------------

    def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None:
        """The library's ``trigger_event``, without what a session's events never need on every heartbeat: a
        copy of the arguments, the check for an explicit ``TOPIC`` (none is declared here), a ``timestamp``
        passed in (a command never passes one). The event is the next version, timestamped now; it changes the
        session and waits to be saved."""
        new_event = event_class(originator_id=self._id, originator_version=self._version + 1,
                                timestamp=event_class.create_timestamp(), **kwargs)
        new_event.mutate(self)
        self._pending_events.append(new_event)

    def set_fuse(self, *, ttl: float, set_by: str, now: datetime, clock_offset: float | None = None) -> None:
        """Arm a fuse until ``now`` + ``ttl``; ``now`` is on the store's clock (``clock_offset``: the setter's
        clock's difference from it, recorded when it is large)."""
        self._refuse_if_stopped()
        self._fuse_set(ttl=ttl, expires_at=now + timedelta(seconds=ttl), set_by=set_by, clock_offset=clock_offset)

    def heartbeat(self, *, source: str, now: datetime, clock_offset: float | None = None) -> None:
        """Record evidence of life; a set fuse is extended to ``now`` + its TTL.

        Expiry counts heartbeats: a fuse that had lapsed (or whose lapse the
        reconciler recorded) is live again after one, and the gap stays in the
        log as the time between the expiry and this event. A cancelled fuse is
        not revived: cancelling was on purpose; re-arming takes ``set_fuse``.
        """
        self._refuse_if_stopped()
        self.trigger_event(self.Heartbeat, source=source, clock_offset=clock_offset,
                           fuse_expires_at=extended_expiry(self.fuse_state, self.fuse_expires_at, self.fuse_ttl, now))

    def observe_agent(self, *, facts: dict[str, Any], heartbeat: bool, source: str, now: datetime) -> bool:
        """Record the adapter's facts that differ from those recorded; False (nothing appended) if none do.

        With ``heartbeat`` (the agent's storage shows activity since the last
        look) the event is also evidence of life and extends a set fuse as
        :meth:`heartbeat` does, so the supervisor need not append both.
        """
        self._refuse_if_stopped()
        unknown = set(facts) - set(AGENT_FACTS)
        if unknown:
            raise ValueError(f"not agent facts: {sorted(unknown)}")
        known = self.agent_facts or {}
        changed = {k: v for k, v in facts.items() if v is not None and known.get(k) != v}
        if not changed and not heartbeat:
            return False
        new_expiry = extended_expiry(self.fuse_state, self.fuse_expires_at, self.fuse_ttl, now) if heartbeat else None
        self.trigger_event(self.AgentObserved, source=source, heartbeat=heartbeat, fuse_expires_at=new_expiry,
                           **changed)
        return True

    def cancel_fuse(self, *, by: str, reason: str) -> None:
        self._refuse_if_stopped()
        if self.fuse_state != FuseState.SET.value:
            raise NoFuse(f"session {self.id.hex[:12]} has no fuse set")
        self._fuse_cancelled(by=by, reason=reason)

    def request_stop(
        self,
        *,
        requested_by: str,
        signal: str,
        grace: float,
        note: str | None,
        cause: StopCause = StopCause.USER,
    ) -> None:
        self._refuse_if_stopped()
        self.trigger_event(
            self.StopRequested,
            requested_by=requested_by, signal=signal, grace=grace, note=note, cause=StopCause(cause).value,
        )

    def record_fuse_expired(self, *, decided_by: dict[str, Any], evidence: dict[str, Any], now: datetime) -> None:
        """Record that the fuse lapsed (once per fuse): from its expiry, nobody watched."""
        self._refuse_if_stopped()
        if self.fuse_state != FuseState.SET.value:
            raise NoFuse(f"session {self.id.hex[:12]} has no set fuse to expire (fuse {self.fuse_state})")
        expires_at = self.fuse_expires_at
        if expires_at is None or self.fuse_is_live(now):
            raise FuseStillLive(f"session {self.id.hex[:12]}: fuse live until {expires_at}")
        self._fuse_expired(expired_at=expires_at, decided_by=decided_by, evidence=evidence)

    def record_stop(
        self,
        *,
        reason: StopReason,
        decided_by: dict[str, Any],
        evidence: dict[str, Any],
        exit_code: int | None = None,
        signal: str | None = None,
        note: str | None = None,
        exited_at: datetime | None = None,
    ) -> None:
        """Append the one and only ``Stopped``, cancelling a fuse still set first."""
        self._refuse_if_stopped()
        reason = StopReason(reason)  # refuses anything outside the closed set
        if self.fuse_state == FuseState.SET.value:
            self._fuse_cancelled(by=decided_by.get("component", "unknown"), reason=STOP_CANCEL_REASON)
        self.trigger_event(
            self.Stopped,
            reason=reason.value,
            exit_code=exit_code,
            signal=signal,
            decided_by=decided_by,
            evidence=evidence,
            note=note,
            exited_at=exited_at,
        )

    def _refuse_if_stopped(self) -> None:
        if self.stop is not None:
            raise SessionAlreadyStopped(self.id.hex, self.stop["reason"], self.stop["at"])

    # -- facts -----------------------------------------------------------------

    @event(FuseSet)
    def _fuse_set(self, *, ttl: float, expires_at: datetime, set_by: str, clock_offset: float | None = None) -> None:
        self.fuse_ttl = ttl
        self.writer_clock_offset = clock_offset
        self._arm(expires_at)

    def _arm(self, expires_at: datetime) -> None:
        self.fuse_state = _FUSE_SET  # every heartbeat's: the plain strings, where a member's .value is a call
        self.fuse_expires_at = expires_at
        if self.status == _UNWATCHED:
            self.status = _RUNNING

    @event(FuseExpired)
    def _fuse_expired(self, *, expired_at: datetime, decided_by: dict[str, Any], evidence: dict[str, Any]) -> None:
        self.fuse_state = FuseState.EXPIRED.value
        if self.status == SessionStatus.RUNNING.value:
            self.status = SessionStatus.UNWATCHED.value

    @event(FuseCancelled)
    def _fuse_cancelled(self, *, by: str, reason: str) -> None:
        self.fuse_state = FuseState.CANCELLED.value


def coalesced_before(event: Any) -> int:
    """How many versions just before ``event`` are absent by design: the heartbeats an archive coalesced
    (:attr:`Session.Heartbeat.coalesced`); 0 for any other event, and for every event of the live log."""
    return coalesced_count(event.coalesced) if type(event) is Session.Heartbeat else 0


def heartbeat_expiry(event: Session.Heartbeat) -> datetime | None:
    """Where a heartbeat took the fuse: its own ``fuse_expires_at``; for the first kept heartbeat of a run an
    archive coalesced, the later expiry the heartbeats left out after it took it to (``window_expires_at``;
    a damaged value, not a later time, is ignored). None: it extended no fuse."""
    own, window = event.fuse_expires_at, getattr(event, "window_expires_at", None)  # a datetime, read from a state
    if own is not None and type(window) is datetime and window > own:
        return window
    return own


def coalesced_count(value: Any) -> int:
    """A heartbeat's ``coalesced`` value as a count: a damaged state's value (not a whole number > 0) is none."""
    return value if type(value) is int and value > 0 else 0
