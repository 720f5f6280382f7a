"""The daemon's after-stop work: the ``--check`` and on-stop commands of stops no supervisor followed.

Stops that no supervisor recorded (the reconciler's after the supervisor
died, ``stop`` with no supervisor left, a spooled exit, ``host forget``) leave
the session's check and on-stop command to the daemon of its host. After each
pass the daemon pokes :class:`AfterStopWork`, which hands the sessions stopped
since its last look to a worker thread, so a slow command never delays
reconciling. For each it runs the check first, then the hook (the
supervisor's order: a hook may remove the worktree); the rules of what to run
are ``application/checks.py``'s and ``application/stop_hooks.py``'s.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from agentledger.application.checks import run_missing_check
from agentledger.application.stop_hooks import outcome_words, run_unclaimed_hook, sessions_stopped_since
from agentledger.domain.vocabulary import Component
from agentledger.infrastructure.session_logs import append_note

if TYPE_CHECKING:
    from agentledger.application.ports import HookRunner, Machine, Store
    from agentledger.domain.session import Session

log = logging.getLogger("agentledger.after_stop")

#: How long a daemon that is stopping waits for a running command (``daemon stop`` waits 30s in all).
SHUTDOWN_WAIT = 20.0


class AfterStopWork:
    """The daemon's part: this host's stopped sessions whose check or hook is nobody's, run in the background.

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
            stopped, self.after = sessions_stopped_since(self.store, self.host, self.after)
        except Exception as error:  # the next pass looks again
            log.error("could not look for stopped sessions' checks and on-stop hooks: %s", error)
            return
        sessions = [*self.again, *stopped]
        self.again = set()
        if sessions:
            self.worker = threading.Thread(target=self._run, args=(sessions,), name="after-stop", daemon=True)
            self.worker.start()

    def close(self, wait: float = SHUTDOWN_WAIT) -> None:
        """Start no more commands; wait up to ``wait`` seconds for the one running to be recorded."""
        self.closing.set()
        if self.worker is not None:
            self.worker.join(wait)
            if self.worker.is_alive():
                log.warning("a check or an on-stop hook is still running; its outcome will not be recorded")

    def _run(self, sessions: list[str]) -> None:
        for sid in sessions:
            if self.closing.is_set():
                return
            if self._check(sid):
                self.again.add(sid)  # its supervisor still runs, and runs the check and the hook itself
                continue
            if not self.closing.is_set():
                self._hook(sid)

    def _check(self, sid: str) -> bool:
        """Run the session's check if it is the daemon's to run; True if its supervisor still runs.

        A check that fails to run or be recorded is tried again at the next look; the hook runs anyway, as in
        the supervisor (the stop is what matters; a check is a courtesy).
        """
        try:
            turn = run_missing_check(self.store.ledger, sid, machine=self.machine, runner=self.runner, note=_note)
        except Exception as error:  # one session's failure must not keep the others' from running
            log.error("check of %s: %s", sid[:12], error)
            self.again.add(sid)
            return False
        if turn.run is not None:
            log.info("check of %s ran: %s", sid[:12], outcome_words(turn.run._asdict()))
        return turn.later

    def _hook(self, sid: str) -> None:
        """Run the session's on-stop hook if nobody claimed it."""
        try:
            turn = run_unclaimed_hook(self.store.ledger, sid, claimed_by=self.claimed_by, machine=self.machine,
                                      runner=self.runner)
        except Exception as error:  # one session's failure must not keep the others' hooks from running
            log.error("on-stop hook of %s: %s", sid[:12], error)
            self.again.add(sid)
            return
        if turn.later:
            self.again.add(sid)
        elif turn.hook is not None and turn.hook.outcome is not None:
            log.info("on-stop hook of %s ran: %s", sid[:12], outcome_words(turn.hook.outcome))


def _note(session: Session, text: str) -> None:
    """A note of the daemon's in the session's output log, where the supervisor would have written it."""
    append_note(session.log_path, f"--- run by the daemon: the session's supervisor was gone ---\n{text}")
