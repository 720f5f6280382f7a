"""One reconcile pass: judge every session of this host, append only what the rule decides.

1. Catch the read models up and read this host's sessions that are not stopped.
2. Judge each on the projection: a live fuse keeps it without looking further;
   otherwise its PID is probed and :func:`~agentledger.domain.reconciliation.decide`
   applied.
3. Screen the stops through the mass-stop guard (:mod:`agentledger.domain.stop_guard`).
4. For each session with something to append: load the aggregate, probe the
   PID *after* loading it, apply the same rule to the aggregate's own state,
   and save. The save is a compare-and-set on the version just loaded: if
   anything was appended since (a heartbeat, a fuse, a supervisor's stop) it
   fails, and the session is loaded and judged again from the new state. So a
   decision made on stale state never lands, however many reconcilers run.

The pass appends nothing with ``dry_run``, and stops between two sessions
(never between a decision and its append) once ``stopping`` is set.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from agentledger.application.clock import utc_now
from agentledger.application.errors import LedgerError, StoreError
from agentledger.application.spooled_exits import apply_spooled_exit, record_spooled_exits
from agentledger.domain.liveness import Liveness, PidProbe
from agentledger.domain.policy import DEFAULT_POLICY, ReconcilePolicy
from agentledger.domain.reconciliation import Action, Decision, SessionFacts, decide
from agentledger.domain.session import Session
from agentledger.domain.stop_guard import Screened, StopGuard, guard_id, screen_stops
from agentledger.domain.vocabulary import Component, FuseState, StopCause

if TYPE_CHECKING:
    from agentledger.application.ledger import Ledger
    from agentledger.application.ports import Machine, Store

#: Re-judging a session that keeps changing under the reconciler: give up for this pass after this many.
MAX_ATTEMPTS = 20


class Outcome:
    """What became of one session in a pass."""

    KEPT = "kept"
    STOPPED = "stopped"
    FUSE_EXPIRED = "fuse-expired"
    TERMINATING = "terminating"
    HELD = "held"  # a stop held back by the mass-stop guard
    WOULD = "would"  # --dry-run: what would have been appended
    NOT_REACHED = "not-reached"  # the pass was told to stop first
    FAILED = "failed"  # this session could not be judged; the others were (``error`` says why)
    FROM_SPOOL = "stopped-from-spool"  # about to stop it, found the exit its supervisor spooled: recorded that

    DONE = {Action.STOP: STOPPED, Action.EXPIRE_FUSE: FUSE_EXPIRED, Action.TERMINATE: TERMINATING}


class Judged(NamedTuple):
    decision: Decision
    outcome: str
    attempts: int = 1  # > 1: the session changed under the reconciler and was judged again
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        d = self.decision
        return {
            "session_id": d.session_id,
            "outcome": self.outcome,
            "action": d.action.value,
            "reason": d.reason.value if d.reason else None,
            "signal": d.signal,
            "certain": d.certain,
            "why": d.why,
            "attempts": self.attempts,
            "error": self.error,
            "evidence": None if d.evidence is None else d.evidence.as_dict(),
        }


@dataclass
class PassReport:
    host: str
    started_at: datetime
    finished_at: datetime | None = None
    dry_run: bool = False
    judged: list[Judged] = field(default_factory=list)
    guard: dict[str, Any] | None = None  # set when the mass-stop guard tripped or released
    next_due: datetime | None = None  # when a fuse, timeout or grace period runs out next
    from_spool: list[str] = field(default_factory=list)  # sessions stopped with an exit a supervisor spooled

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(j.outcome for j in self.judged))

    def as_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "dry_run": self.dry_run,
            "sessions": len(self.judged),
            "counts": self.counts,
            "guard": self.guard,
            "next_due": self.next_due,
            "from_spool": self.from_spool,
            "decisions": [j.as_json() for j in self.judged],
        }


class ObserverBroken(LedgerError):
    """The PID probe cannot see the reconciler's own process: its answers mean nothing."""


class Reconciler:
    """Runs reconcile passes over one store for this host; keep one per process (it caches pidfds)."""

    def __init__(
        self,
        store: Store,
        *,
        machine: Machine,
        policy: ReconcilePolicy = DEFAULT_POLICY,
        clock: Callable[[], datetime] = utc_now,
        before_append: Callable[[UUID, Decision], None] | None = None,
        spool: Any = None,
    ) -> None:
        self.store = store
        self.spool = spool  # supervisors' exits not appended yet: recorded first in every pass
        self.policy = policy
        self.clock = clock
        self.before_append = before_append  # a seam: runs between a decision and its append
        self.stopping = threading.Event()
        self.machine = machine  # this host's processes: the reconciler judges only its own host's
        self.host = machine.host
        self.decided_by = machine.actor(Component.RECONCILER.value)
        self.watch = machine.watch()
        self._self_identity = machine.identity_of(os.getpid())

    def close(self) -> None:
        self.watch.close()

    def run_pass(self, *, dry_run: bool = False, confirm: bool = False) -> PassReport:
        report = PassReport(host=self.host, started_at=self.clock(), dry_run=dry_run)
        self._check_observer()
        if self.spool is not None and not dry_run:
            report.from_spool = record_spooled_exits(self.store, self.spool, recorded_by=self.decided_by,
                                                     machine=self.machine)
        self.store.read_models.catch_up()
        facts = self.store.read_models.facts_on_host(self.host)
        now = self.clock()
        self.watch.start_pass()
        first_looks = [decide(f, None if f.fuse_live(now) else self.watch.probe(f.identity), now, self.policy)
                       for f in facts]
        self.watch.finish_pass()
        report.next_due = _next_due(facts, now)

        guard = self._guard()
        screened = screen_stops(
            [d for d in first_looks if d.action is Action.STOP],
            not_stopped=len(facts),
            policy=self.policy,
            previously_held=guard.holding if guard else frozenset(),
            confirm=confirm,
        )
        held = {d.session_id for d in screened.held}
        confirmation = _confirmation(guard, screened, confirm)
        for decision in first_looks:
            if decision.session_id in held:
                report.judged.append(Judged(decision, Outcome.HELD))
            elif not decision.appends:
                report.judged.append(Judged(decision, Outcome.KEPT))
            elif self.stopping.is_set():
                report.judged.append(Judged(decision, Outcome.NOT_REACHED))
            else:
                report.judged.append(self._act_on(decision, dry_run=dry_run, note=confirmation.get(decision.session_id)))
        if not dry_run:
            report.guard = self._record_guard(guard, screened, confirm)
        elif screened.held:
            report.guard = {"tripped": True, "held": sorted(held), "would_stop": screened.would_stop,
                            "limit": screened.limit, "recorded": False}
        report.finished_at = self.clock()
        return report

    # -- one session -------------------------------------------------------------

    def _act_on(self, first_look: Decision, *, dry_run: bool, note: dict[str, Any] | None) -> Judged:
        """One session's failure (an unreadable event, a store error) must not stop the others'."""
        try:
            return self._act(UUID(first_look.session_id), dry_run=dry_run, guard_note=note)
        except Exception as error:  # reported per session (and logged by the daemon), never swallowed
            return Judged(first_look, Outcome.FAILED, error=self._describe(error))

    def _describe(self, error: Exception) -> str:
        """One line: a store's fault in its words (read-only, full, locked, ...), else the error as it is."""
        fault = self.store.ledger.classify_fault(error)
        return f"{type(error).__name__}: {error}" if fault is None else fault.describe(error)

    def _act(self, session_id: UUID, *, dry_run: bool, guard_note: dict[str, Any] | None) -> Judged:
        """Load, probe after loading, decide, compare-and-set; on a lost race, judge again."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            session = self.store.ledger.session(session_id)
            now = self.clock()
            decision = judge(session, self.store.event_position(session_id.hex, session.version), now, self.policy,
                             self.machine)
            if not decision.appends:
                return Judged(decision, Outcome.KEPT, attempt)
            if dry_run:
                return Judged(decision, Outcome.WOULD, attempt)
            if guard_note and decision.action is Action.STOP and decision.evidence is not None:
                decision = decision._replace(evidence=replace(decision.evidence, mass_stop_guard=guard_note))
            spooled = self.spool.get(session_id.hex) if self.spool is not None and \
                decision.action is Action.STOP else None
            if spooled is not None:  # its supervisor saw the exit after this pass began: record that instead
                apply_spooled_exit(session, spooled, recorded_by=self.decided_by)
            else:
                self._apply(session, decision, now)
            if self.before_append is not None:
                self.before_append(session_id, decision)
            try:
                self.store.ledger.save_retrying(session)
            except IntegrityError:
                continue  # something was appended since this version: judge the new state
            if spooled is not None:
                self.spool.take(session_id.hex)
                return Judged(decision, Outcome.FROM_SPOOL, attempt)
            if decision.action is Action.TERMINATE:
                self._signal(session, decision.signal)
            return Judged(decision, Outcome.DONE[decision.action], attempt)
        raise StoreError(f"session {session_id.hex[:12]} kept changing; gave up after {MAX_ATTEMPTS} judgements")

    def _apply(self, session: Session, decision: Decision, now: datetime) -> None:
        assert decision.evidence is not None
        evidence = decision.evidence.as_dict()
        if decision.action is Action.STOP:
            assert decision.reason is not None
            session.record_stop(reason=decision.reason, decided_by=self.decided_by, evidence=evidence, note=decision.why)
        elif decision.action is Action.EXPIRE_FUSE:
            session.record_fuse_expired(decided_by=self.decided_by, evidence=evidence, now=now)
        else:
            assert decision.signal is not None  # TERMINATE always names its signal
            session.request_stop(
                requested_by=Component.RECONCILER.value,
                signal=decision.signal,
                grace=self.policy.termination_grace if decision.signal != "SIGKILL" else 0.0,
                note=decision.why,
                cause=StopCause.TIMEOUT,
            )

    def _signal(self, session: Session, name: str | None) -> None:
        # The probe that judged the process alive was taken after loading, moments ago.
        assert session.pid is not None and name is not None
        self.machine.signal_group(session.pid, signal.Signals[name])

    # -- the observer and the guard --------------------------------------------

    def _check_observer(self) -> None:
        seen = self.machine.probe(self._self_identity)
        if seen.liveness is not Liveness.ALIVE:
            raise ObserverBroken(
                f"the process probe cannot see this reconciler itself (pid {seen.pid}: {seen.liveness.value}"
                f"{', ' + seen.error if seen.error else ''}); judging nothing until it can"
            )

    def _guard(self) -> StopGuard | None:
        return load_guard(self.store.ledger, self.host)

    def _record_guard(self, guard: StopGuard | None, screened: Screened, confirm: bool) -> dict[str, Any] | None:
        """Record a trip or a release of the guard; another reconciler racing on it just wins."""
        held = sorted(d.session_id for d in screened.held)
        released = guard is not None and bool(guard.held) and guard.held != held
        if not held and not released:
            return None
        guard = guard or StopGuard(host=self.host)
        summary: dict[str, Any] = {}
        if released:
            how = "confirmed by hand" if confirm else "next pass"
            guard.release(how=how, confirmed=screened.confirmed, cleared=screened.cleared, decided_by=self.decided_by)
            summary["released"] = {"how": how, "confirmed": screened.confirmed, "cleared": screened.cleared}
        if held:
            guard.trip(
                boot_id=self.machine.boot_id,
                not_stopped=screened.not_stopped,
                would_stop=screened.would_stop,
                limit=screened.limit,
                held=held,
                decided_by=self.decided_by,
                policy_version=self.policy.version,
            )
            summary.update(tripped=True, held=held, would_stop=screened.would_stop, limit=screened.limit)
        try:
            self.store.ledger.save_retrying(guard)
        except IntegrityError:
            summary["recorded"] = False
        else:
            summary["recorded"] = True
        return summary


def judge(session: Session, position: int | None, now: datetime, policy: ReconcilePolicy, machine: Machine,
          probe: PidProbe | None = None) -> Decision:
    """What a pass decides for ``session`` (of this host) at ``now``: the look, then the rule.

    The PID is probed only without a live fuse, and the supervisor only for a
    dead PID, as :func:`~agentledger.domain.reconciliation.decide` needs. The
    reconciler acts on it; ``why`` shows it for a session still running (with
    the ``probe`` it took already, so that the PID is looked at once).
    """
    facts = SessionFacts.of_session(session, position)
    if facts.fuse_live(now):
        probe = None
    elif probe is None:
        probe = machine.probe(session.identity)
    supervisor = bool(probe and probe.dead and machine.supervisor_alive(session.supervisor_pid, session.id.hex))
    return decide(facts, probe, now, policy, supervisor_alive=supervisor)


def load_guard(ledger: Ledger, host: str) -> StopGuard | None:
    """The mass-stop guard of ``host``, or None if it never tripped there."""
    try:
        guard: StopGuard = ledger.repository.get(guard_id(host))
    except AggregateNotFoundError:
        return None
    return guard


def _confirmation(guard: StopGuard | None, screened: Screened, confirm: bool) -> dict[str, dict[str, Any]]:
    """The note a confirmed stop carries in its evidence: held since when, confirmed how."""
    if guard is None or not guard.held:
        return {}
    note = {"held_since": guard.tripped_at, "confirmed": "by hand" if confirm else "next pass"}
    return {sid: note for sid in screened.confirmed}


def _next_due(facts: list[SessionFacts], now: datetime) -> datetime | None:
    """The next moment a session's judgement can change with no new event: a fuse or timeout running out."""
    due = []
    for f in facts:
        if f.fuse_state == FuseState.SET:
            due.append(f.fuse_expires_at)
        due.append(f.deadline)
        request = f.last_stop_request
        if request is not None and request.cause == StopCause.TIMEOUT and request.signal != "SIGKILL":
            due.append(request.at + timedelta(seconds=request.grace))
    return min((d for d in due if d is not None and d > now), default=None)
