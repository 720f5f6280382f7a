"""The daemon's webhook threads: one enqueuer, and one worker per endpoint delivering its queue.

The enqueuer polls the head of the log and has the outbox turn new events
into deliveries (``application/webhooks.py: Outbox.enqueue``), waking the
workers when it added some.

Each endpoint's worker always works on its oldest pending delivery: the head
of the line waits out its backoff, so a receiver sees events in log order; a
dead-lettered delivery no longer blocks. Delivered rows are marked in batches
(one transaction per batch), so the queue drains at hundreds per second; a
crash before a batch is marked sends those again, which is the "at least
once" the idempotency key is for.

Every thread has a store connection of its own: the reconcile pass, the
enqueuer and each endpoint never wait on one another's transactions in Python,
and a receiver that hangs holds up only its own endpoint.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentledger.application.ports import Attempt
from agentledger.application.webhooks import Outbox
from agentledger.domain import webhooks as hooks
from agentledger.domain.webhook_endpoint import WebhookEndpoint

if TYPE_CHECKING:
    from agentledger.application.ports import Row, Store, WebhookPoster

log = logging.getLogger("agentledger.webhooks")

#: Delivered rows marked per transaction, and the longest a delivered row waits to be marked.
MARK_BATCH, MARK_EVERY = 100, 0.25
#: How often an idle worker looks for work it was not woken for (``webhooks retry`` from another process).
IDLE_POLL = 0.5
#: How often the enqueuer looks at the head of the log.
ENQUEUE_POLL = 0.25


@dataclass
class Counters:
    """One endpoint's deliveries since the daemon started (for its status file and metrics)."""

    delivered: int = 0
    failed_attempts: int = 0
    dead: int = 0
    last_delivered_at: float | None = None
    last_error: str | None = None
    in_flight_since: float | None = None  # a request waiting on the receiver since then

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Dispatcher:
    """The enqueuer thread and one delivery thread per endpoint; :meth:`stop` ends them.

    ``open_store`` opens a store (with its own connection) for each thread;
    ``make_sender`` makes each endpoint's poster (``infrastructure/webhook_sender.py``).
    """

    endpoints: Sequence[WebhookEndpoint]
    open_store: Callable[[], Store]
    make_sender: Callable[[WebhookEndpoint], WebhookPoster]
    stopping: threading.Event = field(default_factory=threading.Event)
    counters: dict[str, Counters] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._wake = {e.name: threading.Event() for e in self.endpoints}
        self.counters = {e.name: Counters() for e in self.endpoints}

    def start(self) -> None:
        self.threads = [threading.Thread(target=self._enqueue_loop, name="webhooks-enqueue", daemon=True)]
        self.threads += [threading.Thread(target=self._deliver_loop, args=(e,), name=f"webhooks-{e.name}", daemon=True)
                         for e in self.endpoints]
        for thread in self.threads:
            thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Ask every thread to end and wait up to ``timeout`` in all.

        A request still waiting on its receiver is abandoned (its thread is a
        daemon thread): the delivery stays pending and is sent again next time.
        """
        self.stopping.set()
        for wake in self._wake.values():
            wake.set()
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def status(self) -> dict[str, dict[str, Any]]:
        return {name: c.as_dict() for name, c in self.counters.items()}

    # threads

    def _open(self) -> Store | None:
        while not self.stopping.is_set():
            try:
                return self.open_store()
            except Exception as error:  # the store may be away for a while: keep trying
                log.error("webhooks: cannot open the store: %s", error)
                self.stopping.wait(2.0)
        return None

    def _enqueue_loop(self) -> None:
        store = self._open()
        if store is None:
            return
        outbox = Outbox(store)
        try:
            while not self.stopping.is_set():
                more = False
                try:
                    added, more = outbox.enqueue(self.endpoints)
                except Exception as error:  # the next poll tries again
                    log.error("webhooks: enqueue failed: %s", error, exc_info=log.isEnabledFor(logging.DEBUG))
                    self.stopping.wait(1.0)
                    continue
                if added:
                    for wake in self._wake.values():
                        wake.set()
                if not more:
                    self.stopping.wait(ENQUEUE_POLL)
        finally:
            store.close()

    def _deliver_loop(self, endpoint: WebhookEndpoint) -> None:
        store = self._open()
        if store is None:
            return
        worker = _Worker(endpoint, Outbox(store), self.make_sender(endpoint), self.counters[endpoint.name],
                         self.stopping, self._wake[endpoint.name])
        try:
            while not self.stopping.is_set():
                try:
                    worker.drain()
                except Exception as error:  # e.g. the store away: the rows are still there next time
                    log.error("webhooks %s: %s", endpoint.name, error, exc_info=log.isEnabledFor(logging.DEBUG))
                    self.stopping.wait(1.0)
        finally:
            worker.sender.close()
            store.close()


class _Worker:
    """Works one endpoint's queue from its oldest pending delivery."""

    def __init__(self, endpoint: WebhookEndpoint, outbox: Outbox, sender: WebhookPoster, counters: Counters,
                 stopping: threading.Event, wake: threading.Event) -> None:
        self.endpoint, self.outbox, self.sender, self.counters = endpoint, outbox, sender, counters
        self.stopping, self.wake = stopping, wake
        self.policy = hooks.RetryPolicy(endpoint.retry_initial, endpoint.retry_max, endpoint.give_up_after)
        self.random = random.Random()
        self.done: list[Attempt] = []
        self.unmarked_since = 0.0

    def drain(self) -> None:
        """One page of the queue, or one wait (for work, or for the earliest backoff).

        Order is kept per session, not across sessions: a delivery waiting out
        its backoff (or just failed) holds back the later deliveries of its own
        session only, so one session's failing hook never delays another's.
        """
        if not self.outbox.claim(self.endpoint.name):
            self.stopping.wait(IDLE_POLL)  # another daemon delivers this endpoint
            return
        self.wake.clear()
        rows = self.outbox.pending(self.endpoint.name, due_at=time.time())  # no session's behind one not due
        if not rows:
            self.wake.wait(IDLE_POLL)  # nothing due: new work wakes it; a backoff ends within this
            return
        held: set[str] = set()  # sessions whose delivery just failed: their later ones wait for its retry
        try:
            for row in rows:
                if self.stopping.is_set():
                    return
                if row["session_id"] not in held and not self._send(row):
                    held.add(row["session_id"])
        finally:
            self._mark()

    def _send(self, row: Row) -> bool:
        """One attempt; False when the queue must stop here (the head is to be retried later)."""
        started = time.time()
        attempt_number = row["attempts"] + 1
        sent_at = int(started)
        body = hooks.attempt_body(row["payload"], sent_at)
        self.counters.in_flight_since = started
        try:
            outcome = self.sender.post(body, delivery_id=row["id"], event_id=row["event_id"],
                                       hook_type=row["hook_type"], sent_at=sent_at, attempt=attempt_number)
        finally:
            self.counters.in_flight_since = None
        attempt = Attempt(row["id"], started, time.time(), outcome)
        decision = hooks.judge(outcome, attempts=attempt_number, first_attempt_at=row["first_attempt_at"] or started,
                               now=attempt.ended, policy=self.policy, random=self.random.random)
        if decision.verdict == hooks.Verdict.DELIVERED:
            if not self.done:
                self.unmarked_since = attempt.ended
            self.done.append(attempt)
            self.counters.delivered += 1
            self.counters.last_delivered_at = attempt.ended
            if len(self.done) >= MARK_BATCH or attempt.ended - self.unmarked_since >= MARK_EVERY:
                self._mark()
            return True
        self._mark()  # keep the marks in order: earlier deliveries first
        self.outbox.mark_failed(attempt, decision)
        self.counters.failed_attempts += 1
        self.counters.last_error = decision.why
        if decision.verdict == hooks.Verdict.DEAD:
            self.counters.dead += 1
            log.warning("webhook %s: delivery %d (%s) dead-lettered: %s", self.endpoint.name, row["id"],
                        row["hook_type"], decision.why)
            return True
        return False

    def _mark(self) -> None:
        if self.done:
            self.outbox.mark_delivered(self.done)
            self.done = []
