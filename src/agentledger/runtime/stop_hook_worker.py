"""The daemon's on-stop hooks: this host's stopped sessions whose hook nobody claimed, run on a thread of their own.

Stops that no supervisor recorded (the reconciler's, ``stop`` with no
supervisor left, a spooled exit, ``host forget``) leave their session's
on-stop command to the daemon of its host. After each pass the daemon pokes
:class:`PendingStopHooks`, which hands the sessions stopped since its last
look to a worker thread; the rule of what to run is
``application/stop_hooks.py``'s, so a slow hook never delays reconciling.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from agentledger.application.stop_hooks import outcome_words, run_unclaimed_hook, sessions_stopped_since
from agentledger.domain.vocabulary import Component

if TYPE_CHECKING:
    from agentledger.application.ports import HookRunner, Machine, Store

log = logging.getLogger("agentledger.stop_hooks")

#: How long a daemon that is stopping waits for a running hook (``daemon stop`` waits 30s in all).
SHUTDOWN_WAIT = 20.0


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
            stopped, self.after = sessions_stopped_since(self.store, self.host, self.after)
        except Exception as error:  # the next pass looks again
            log.error("could not look for on-stop hooks to run: %s", error)
            return
        sessions = [*self.again, *stopped]
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
                turn = run_unclaimed_hook(ledger, sid, claimed_by=self.claimed_by, machine=self.machine,
                                          runner=self.runner)
            except Exception as error:  # one session's failure must not keep the others' hooks from running
                log.error("on-stop hook of %s: %s", sid[:12], error)
                self.again.add(sid)
                continue
            if turn.later:
                self.again.add(sid)
            elif turn.hook is not None and turn.hook.outcome is not None:
                log.info("on-stop hook of %s ran: %s", sid[:12], outcome_words(turn.hook.outcome))
