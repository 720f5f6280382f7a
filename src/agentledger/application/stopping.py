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
    session = ledger.session(session_id)
    first = signal.SIGKILL if force else signal.SIGTERM
    if session.is_stopped:
        outcome = StopOutcome(session=session, already_stopped=True)
        if session.host == machine.host and session.pid is not None:
            _end_leftovers(machine, session.identity, first, grace, outcome)
        return outcome
    if session.host != machine.host:
        raise LedgerError(
            f"session {session_id.hex[:12]} runs on host {session.host!r}; stop it from there"
        )
    identity = session.identity
    outcome = StopOutcome(session=session)
    requester = machine.user()
    if machine.probe(identity).alive:
        _request_and_signal(ledger, machine, session_id, identity, first, grace, note, requester, outcome)
        if not _wait_until_done(ledger, machine, session_id, identity, grace):
            if machine.session_group_exists(identity) and first != signal.SIGKILL:
                _request_and_signal(
                    ledger, machine, session_id, identity, signal.SIGKILL, 0.0,
                    f"{note} (grace period ended)" if note else "grace period ended", requester, outcome,
                )
            _wait_until_done(ledger, machine, session_id, identity, AFTER_KILL_WAIT)
    else:
        # Nothing to signal. A live supervisor is recording the exit right now.
        _wait_until_done(ledger, machine, session_id, identity, 2.0)
    final = ledger.session(session_id)
    if not final.is_stopped:
        probe = machine.probe(identity)
        if probe.alive:
            raise LedgerError(f"session {session_id.hex[:12]}: process {identity.pid} survived SIGKILL")
        if machine.supervisor_alive(final.supervisor_pid, session_id.hex):
            raise LedgerError(
                f"session {session_id.hex[:12]}: the process is gone but its supervisor has not "
                "recorded the stop yet; check again with 'agentledger status'"
            )
        _record_stop_without_supervisor(ledger, machine, session_id, probe, note, outcome)
        final = ledger.session(session_id)
    else:
        outcome.recorded_by = outcome.recorded_by or final.stopped_by
    outcome.session = final
    return outcome


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


def _wait_until_done(ledger: Ledger, machine: Machine, session_id: UUID, identity: ProcessIdentity, timeout: float) -> bool:
    """Wait until the whole process group is gone and ``Stopped`` is in the log, or no supervisor is left to
    record it (killed, or none: adopted), which the caller then does: a stop of a session whose supervisor died
    returns as soon as its processes have ended, not after the grace period."""
    def done() -> bool:
        if machine.session_group_exists(identity):
            return False
        session = ledger.session(session_id)
        return session.is_stopped or not machine.supervisor_alive(session.supervisor_pid, session_id.hex)

    return _wait(done, timeout)


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
