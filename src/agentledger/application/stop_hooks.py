"""Running a session's on-stop command once, after its stop, and recording how it ended.

``launch --on-stop CMD`` (or ``on_stop`` in the configuration) records CMD in
``Launched``. Once the session is stopped, :func:`run_stop_hook` claims the
hook by creating its ``StopHook`` aggregate (a compare-and-set on version 1:
exactly one claimant wins, however many race), runs CMD through ``/bin/sh -c``
in the session's cwd and its own process group (``infrastructure/hook_runner.py``,
the ``HookRunner`` port), with the session's facts in ``AGENTLEDGER_*``
variables, and records ``Finished``. A command that outlives its timeout gets
SIGTERM, then SIGKILL, on its whole group.

Two components call it. The supervisor does, right after it records the exit
it saw: the common case, with no daemon needed. For a stop appended by anyone
else (the reconciler after the supervisor died, ``stop`` with no supervisor
left, a spooled exit, ``host forget``), the daemon of the session's host runs
it: :class:`PendingStopHooks` looks for unclaimed hooks of stopped sessions
after each reconcile pass and runs them on a thread of its own, so a slow
hook never delays reconciling.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from agentledger.domain.durations import format_duration
from agentledger.domain.session import Session
from agentledger.domain.stop_hooks import StopHook
from agentledger.domain.vocabulary import Component

if TYPE_CHECKING:
    from agentledger.application.ledger import Ledger
    from agentledger.application.ports import HookRunner, Machine, Store

log = logging.getLogger("agentledger.stop_hooks")

#: Used only if a session recorded a command without a timeout (the CLI always records one).
DEFAULT_TIMEOUT = 60.0
#: How long a daemon that is stopping waits for a running hook (``daemon stop`` waits 30s in all).
SHUTDOWN_WAIT = 20.0


class HookRun(NamedTuple):
    """What one run of the command came to: the fields of ``StopHook.Finished``."""

    exit_code: int | None
    signal: str | None
    timed_out: bool
    duration_seconds: float
    output_tail: str
    error: str | None = None


def hook_environment(session: Session) -> dict[str, str]:
    """The variables that tell the command which session stopped, and how."""
    stop = session.stop or {}
    env = {
        "AGENTLEDGER_SESSION_ID": session.id.hex,
        "AGENTLEDGER_EXIT_CODE": "" if stop.get("exit_code") is None else str(stop["exit_code"]),
        "AGENTLEDGER_STOP_REASON": stop.get("reason") or "",
        "AGENTLEDGER_CWD": session.cwd,
        "AGENTLEDGER_ADAPTER": session.adapter,
    }
    if stop.get("signal"):
        env["AGENTLEDGER_SIGNAL"] = stop["signal"]
    return env


def run_stop_hook(ledger: Ledger, session_id: UUID, *, claimed_by: dict[str, Any], machine: Machine,
                  runner: HookRunner) -> StopHook | None:
    """Claim, run and record the session's on-stop command; the finished hook.

    None when there is nothing for this caller to run: no command, the session
    not stopped yet or of another host, or another claimant got there first.
    """
    session: Session = ledger.session(session_id)
    if not session.on_stop or not session.is_stopped or session.host != machine.host:
        return None
    hook = StopHook(session_id=session_id.hex, command=session.on_stop, host=session.host, claimed_by=claimed_by)
    try:
        ledger.save_retrying(hook)
    except IntegrityError:
        return None  # claimed already: it runs there (or ran), never here too
    run = runner.run(session.on_stop, cwd=session.cwd, env={**runner.inherited_environment(), **hook_environment(session)},
                     timeout=session.on_stop_timeout or DEFAULT_TIMEOUT)
    hook.finish(**run._asdict())
    ledger.save_retrying(hook)
    return hook


class PendingStopHooks:
    """The daemon's part: this host's stopped sessions whose hook nobody claimed, run in the background.

    :meth:`poke` runs on the reconcile pass's thread (it reads the read models,
    whose connection that thread owns) and hands the sessions stopped since the
    last look to a worker thread, which uses only the ledger. A session whose
    supervisor still runs is left to it and looked at again next time.
    """

    def __init__(self, store: Store, machine: Machine, runner: HookRunner) -> None:
        self.store = store
        self.machine, self.runner = machine, runner
        self.host = machine.host
        self.claimed_by = machine.actor(Component.RECONCILER.value)
        self.after = 0  # log position: stopped sessions up to here have been handed to a worker
        self.again: set[str] = set()  # sessions to look at again (supervisor still running, an error)
        self.closing = threading.Event()
        self.worker: threading.Thread | None = None

    def poke(self) -> None:
        """Start a worker on the sessions stopped since the last look, unless one is still busy."""
        if self.closing.is_set() or (self.worker is not None and self.worker.is_alive()):
            return
        try:
            self.store.read_models.catch_up()  # so that this very pass's stops are seen now
            rows = self.store.read_models.stopped_since(self.host, self.after)
        except Exception as error:  # the next pass looks again
            log.error("could not look for on-stop hooks to run: %s", error)
            return
        if rows:
            self.after = rows[-1][1]
        sessions = [*self.again, *(row[0] for row in rows)]
        self.again = set()
        if sessions:
            self.worker = threading.Thread(target=self._run, args=(sessions,), name="on-stop-hooks", daemon=True)
            self.worker.start()

    def close(self, wait: float = SHUTDOWN_WAIT) -> None:
        """Start no more hooks; wait up to ``wait`` seconds for the one running to be recorded."""
        self.closing.set()
        if self.worker is not None:
            self.worker.join(wait)
            if self.worker.is_alive():
                log.warning("an on-stop hook is still running; its outcome will not be recorded")

    def _run(self, sessions: list[str]) -> None:
        ledger = self.store.ledger
        for sid in sessions:
            if self.closing.is_set():
                return
            try:
                session = ledger.session(UUID(sid))
                if not session.on_stop or ledger.stop_hook(session.id) is not None:
                    continue
                if self.machine.supervisor_alive(session.supervisor_pid, sid):
                    self.again.add(sid)  # it runs the hook itself once it has recorded the exit
                    continue
                hook = run_stop_hook(ledger, session.id, claimed_by=self.claimed_by, machine=self.machine,
                                     runner=self.runner)
            except Exception as error:  # one session's failure must not keep the others' hooks from running
                log.error("on-stop hook of %s: %s", sid[:12], error)
                self.again.add(sid)
                continue
            if hook is not None and hook.outcome is not None:
                log.info("on-stop hook of %s ran: %s", sid[:12], outcome_words(hook.outcome))


def outcome_words(outcome: dict[str, Any]) -> str:
    """'exit 0 after 200ms', 'timed out: ended by SIGTERM after 1s', 'killed by SIGKILL after 3s',
    'could not start: …'.

    Used by ``why`` and the claimants' logs alike.
    """
    if outcome.get("error"):
        return f"could not start: {outcome['error']}"
    after = format_duration(outcome["duration_seconds"])
    if outcome["timed_out"]:
        ended = f"exit {outcome['exit_code']}" if outcome["exit_code"] is not None else outcome["signal"]
        return f"timed out: ended by {ended} after {after}"
    if outcome["exit_code"] is not None:
        return f"exit {outcome['exit_code']} after {after}"
    return f"killed by {outcome['signal']} after {after}"
