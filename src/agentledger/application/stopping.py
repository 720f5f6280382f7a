"""``agentledger stop``: end a session's process group and make sure the stop is recorded.

The normal path: append ``StopRequested`` (who asked, which signal), signal the
process group, and let the supervisor, which sees the exact exit status, append
``Stopped`` with reason ``user``. SIGTERM first; when the grace period ends and
the group still exists, SIGKILL (recorded as a second ``StopRequested``);
``--force`` sends SIGKILL at once. Only when no supervisor is left to do it
does the stop command append ``Stopped`` itself, after checking that the
process is gone. The PID's start time is checked before every signal and
every look at the group (the grace period is long enough for the PID to be
reused), so a reused PID, or the group of a process that took it, is never
signalled.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from uuid import UUID

from agentledger.application.errors import LedgerError
from agentledger.domain.errors import SessionAlreadyStopped
from agentledger.domain.evidence import DecidedOn, Evidence, Observation
from agentledger.domain.exits import signal_name
from agentledger.domain.liveness import PidProbe, ProcessIdentity
from agentledger.domain.session import Session
from agentledger.domain.vocabulary import Component, StopReason

if TYPE_CHECKING:
    from agentledger.application.ledger import Ledger
    from agentledger.application.ports import Machine

POLL_INTERVAL = 0.02
#: After SIGKILL, how long to wait for the supervisor to record the exit.
AFTER_KILL_WAIT = 5.0


@dataclass
class StopOutcome:
    session: Session
    already_stopped: bool = False
    signals_sent: list[str] = field(default_factory=list)
    recorded_by: str | None = None  # "supervisor" or "cli"


def stop_session(
    ledger: Ledger, session_id: UUID, *, machine: Machine, force: bool, grace: float, note: str | None
) -> StopOutcome:
    """Stop one session (the module's docstring says how); its stop is in the log when this returns."""
    [outcome] = stop_sessions(ledger, [session_id], machine=machine, force=force, grace=grace, note=note)
    if isinstance(outcome, LedgerError):
        raise outcome
    return outcome


def stop_sessions(
    ledger: Ledger, session_ids: list[UUID], *, machine: Machine, force: bool, grace: float, note: str | None
) -> list[StopOutcome | LedgerError]:
    """Stop several sessions together (``stop --group``): each is signalled, then all are waited for at once, so
    that N sessions that ignore SIGTERM take one grace period, not N. Each one's outcome, in order: its stop, or
    why it could not be made sure of. A session on another host is refused before anything is signalled."""
    stops = [_Stop(ledger, session_id, machine, force=force, grace=grace, note=note) for session_id in session_ids]
    for stop in stops:
        stop.begin()
    _wait_all(stops)
    for stop in stops:
        stop.escalate()
    _wait_all(stops)
    return [stop.finish() for stop in stops]


class _Stop:
    """One session's stop, in the steps :func:`stop_sessions` takes for all of them in turn."""

    def __init__(self, ledger: Ledger, session_id: UUID, machine: Machine, *, force: bool, grace: float,
                 note: str | None) -> None:
        self.ledger, self.session_id, self.machine = ledger, session_id, machine
        self.first = signal.SIGKILL if force else signal.SIGTERM
        self.grace, self.note = grace, note
        session = ledger.session(session_id)
        if not session.is_stopped and session.host != machine.host:
            raise LedgerError(f"session {session_id.hex[:12]} runs on host {session.host!r}; stop it from there")
        self.session, self.identity = session, session.identity
        self.outcome = StopOutcome(session=session, already_stopped=session.is_stopped)
        self.requester = machine.user()
        self.signalled = False
        self.deadline: float | None = None  # while waiting for the stop: until when

    def begin(self) -> None:
        """Signal the group (``first``), or, already stopped, end what it left running; then wait for the stop."""
        if self.outcome.already_stopped:
            if self.session.host == self.machine.host and self.session.pid is not None:
                _end_leftovers(self.machine, self.identity, self.first, self.grace, self.outcome)
            return
        if self.machine.probe(self.identity).alive:
            _request_and_signal(self.ledger, self.machine, self.session_id, self.identity, self.first, self.grace,
                                self.note, self.requester, self.outcome)
            self.signalled = True
            self.deadline = time.monotonic() + self.grace
        else:  # nothing to signal: a live supervisor is recording the exit right now
            self.deadline = time.monotonic() + 2.0

    def done(self) -> bool:
        """Waited for enough: the stop is in the log and the group gone, or no supervisor is left to record it
        (:func:`_stop_done`), or its time is up."""
        if self.deadline is None:
            return True
        if time.monotonic() >= self.deadline or _stop_done(self.ledger, self.machine, self.session_id, self.identity):
            self.deadline = None
        return self.deadline is None

    def escalate(self) -> None:
        """After the grace period: SIGKILL if the group outlived SIGTERM; then wait a little for the record."""
        if not self.signalled or _stop_done(self.ledger, self.machine, self.session_id, self.identity):
            return
        if self.machine.session_group_exists(self.identity) and self.first != signal.SIGKILL:
            _request_and_signal(self.ledger, self.machine, self.session_id, self.identity, signal.SIGKILL, 0.0,
                                f"{self.note} (grace period ended)" if self.note else "grace period ended",
                                self.requester, self.outcome)
        self.deadline = time.monotonic() + AFTER_KILL_WAIT

    def finish(self) -> StopOutcome | LedgerError:
        """The stop as recorded; recorded here if no supervisor is left to do it and the process is gone."""
        outcome = self.outcome
        if outcome.already_stopped:
            return outcome
        final = self.ledger.session(self.session_id)
        if not final.is_stopped:
            probe = self.machine.probe(self.identity)
            short = self.session_id.hex[:12]
            if probe.alive:
                return LedgerError(f"session {short}: process {self.identity.pid} survived SIGKILL")
            if self.machine.supervisor_alive(final.supervisor_pid, self.session_id.hex):
                return LedgerError(f"session {short}: the process is gone but its supervisor has not recorded the "
                                   "stop yet; check again with 'agentledger status'")
            _record_stop_without_supervisor(self.ledger, self.machine, self.session_id, probe, self.note, outcome)
            final = self.ledger.session(self.session_id)
        else:
            outcome.recorded_by = outcome.recorded_by or final.stopped_by
        outcome.session = final
        return outcome


def _wait_all(stops: list[_Stop]) -> None:
    """Poll every stop still waiting until each is done or out of time."""
    while not all([stop.done() for stop in stops]):  # a list: every one is asked each round
        time.sleep(POLL_INTERVAL)


def _request_and_signal(
    ledger: Ledger, machine: Machine, session_id: UUID, identity: ProcessIdentity, signum: int, grace: float,
    note: str | None, requester: str, outcome: StopOutcome,
) -> None:
    name = signal_name(signum)
    try:
        ledger.change(
            session_id,
            lambda s: s.request_stop(requested_by=requester, signal=name, grace=grace, note=note),
        )
    except SessionAlreadyStopped:
        return  # ended on its own meanwhile: nothing to signal
    if machine.signal_session_group(identity, signum):
        outcome.signals_sent.append(name)
        _continue(machine, identity, signum)


def _end_leftovers(machine: Machine, identity: ProcessIdentity, first: int, grace: float,
                   outcome: StopOutcome) -> None:
    """Signal what a stopped session's process group left running (its agent exited; a child it started in the
    background did not): ``first``, then SIGKILL if the group outlives the grace period.

    Nothing is appended: the session's stop is recorded already, and these are processes it left behind, not a
    stop of it. The group is signalled only while its number is not another process's PID (as for any stop).
    """
    if not machine.session_group_exists(identity) or not machine.signal_session_group(identity, first):
        return  # nothing left, or only processes that ended and wait for init to reap them
    outcome.signals_sent.append(signal_name(first))
    _continue(machine, identity, first)
    if _wait_until_group_gone(machine, identity, grace) or first == signal.SIGKILL:
        return
    if machine.signal_session_group(identity, signal.SIGKILL):
        outcome.signals_sent.append(signal_name(signal.SIGKILL))
        _wait_until_group_gone(machine, identity, AFTER_KILL_WAIT)


def _continue(machine: Machine, identity: ProcessIdentity, sent: int) -> None:
    """After SIGTERM, SIGCONT, as ``kill`` and systemd do: a stopped process (SIGSTOP, Ctrl-Z) acts on SIGTERM
    only once it runs again, and would otherwise wait out the grace period for SIGKILL."""
    if sent != signal.SIGKILL:
        machine.signal_session_group(identity, signal.SIGCONT)


def _wait_until_group_gone(machine: Machine, identity: ProcessIdentity, timeout: float) -> bool:
    return _wait(lambda: not machine.session_group_exists(identity), timeout)


def _stop_done(ledger: Ledger, machine: Machine, session_id: UUID, identity: ProcessIdentity) -> bool:
    """The whole process group is gone and ``Stopped`` is in the log, or no supervisor is left to record it
    (killed, or none: adopted), which the stop then does: a stop of a session whose supervisor died ends as soon
    as its processes have ended, not after the grace period."""
    if machine.session_group_exists(identity):
        return False
    session = ledger.session(session_id)
    return session.is_stopped or not machine.supervisor_alive(session.supervisor_pid, session_id.hex)


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL)
    return True


def _record_stop_without_supervisor(
    ledger: Ledger, machine: Machine, session_id: UUID, probe: PidProbe, note: str | None, outcome: StopOutcome
) -> None:
    def stop(session: Session) -> None:
        session.record_stop(
            reason=StopReason.USER,
            decided_by=machine.actor(Component.CLI.value),
            note=note,
            evidence=Evidence(
                Observation.PROCESS_GONE, decided_on=DecidedOn(session.version), pid_probe=probe,
                stop_requests=session.stop_requests,
            ).as_dict(),
        )

    try:
        ledger.change(session_id, stop)
        outcome.recorded_by = Component.CLI.value
    except SessionAlreadyStopped:  # the supervisor, or a reconciler, got there first
        outcome.recorded_by = ledger.session(session_id).stopped_by
