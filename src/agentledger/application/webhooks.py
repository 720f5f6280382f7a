"""Webhooks as a durable outbox: the log is read once into delivery rows, which are then worked off.

The enqueuer is a tracked consumer of the log, like the projections: it reads
the events after each endpoint's position, turns those that yield a hook into
``webhook_deliveries`` rows, and stores the new positions in the same write
transaction. The rows are keyed ``UNIQUE (endpoint, event_id, hook_type)``, so
reading a stretch of the log twice (a crash, a second daemon on a shared
PostgreSQL ledger) never makes a second delivery.

Each endpoint has a worker thread that always works on its oldest pending
delivery: the head of the line waits out its backoff, so a receiver sees
events in log order; a dead-lettered delivery no longer blocks. Delivered
rows are marked in batches (one transaction per batch), so the queue drains
at hundreds per second; a crash before a batch is marked sends those again,
which is the "at least once" the idempotency key is for.

Every thread has a store connection of its own: the reconcile pass, the
enqueuer and each endpoint never wait on one another's transactions in Python,
and a receiver that hangs holds up only its own endpoint.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

from agentledger.application.errors import UsageError
from agentledger.application.log import PAGE_SIZE
from agentledger.domain import webhooks as hooks
from agentledger.domain.session import Session
from agentledger.domain.webhook_endpoint import WebhookEndpoint

if TYPE_CHECKING:
    from agentledger.application.ledger import Ledger
    from agentledger.application.ports import Queryable, Store, WebhookPoster

log = logging.getLogger("agentledger.webhooks")

#: Log events read (and delivery rows written) per enqueue transaction: one page of ``read_log``.
ENQUEUE_PAGE = PAGE_SIZE
#: Pending deliveries read at a time by a worker (never the whole queue: bodies add up).
WORKER_PAGE = 100
#: Delivered rows marked per transaction, and the longest a delivered row waits to be marked.
MARK_BATCH, MARK_EVERY = 100, 0.25
#: How often an idle worker looks for work it was not woken for (``webhooks retry`` from another process).
IDLE_POLL = 0.5
#: How often the enqueuer looks at the head of the log.
ENQUEUE_POLL = 0.25

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
COLUMNS = ("id, endpoint, event_id, hook_type, position, session_id, state, attempts, created_at, next_attempt_at,"
           " first_attempt_at, last_attempt_at, delivered_at, last_status, last_error")


# -- the outbox: SQL on one store connection ----------------------------------------------------------


class Outbox:
    """The delivery rows and endpoint positions, through one store's read-model connection."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # enqueueing

    def positions(self, endpoints: Sequence[WebhookEndpoint]) -> dict[str, int]:
        """Each endpoint's log position; a new endpoint starts at 0, or at the head with ``start = "now"``."""
        names = [e.name for e in endpoints]
        found = self._positions(self.store.db, names)
        missing = [e for e in endpoints if e.name not in found]
        if missing:
            head = self.store.log_head()
            with self.store.write_transaction() as cursor:
                cursor.executemany(
                    "INSERT INTO webhook_positions (endpoint, position) VALUES (?, ?) ON CONFLICT (endpoint) DO NOTHING",
                    [(e.name, head if e.start == "now" else 0) for e in missing],
                )
            found = self._positions(self.store.db, names)
        return found

    @staticmethod
    def _positions(db: Queryable, names: list[str]) -> dict[str, int]:
        marks = ", ".join("?" * len(names))
        rows = db.execute(f"SELECT endpoint, position FROM webhook_positions WHERE endpoint IN ({marks})", names)
        return {r[0]: r[1] for r in rows.fetchall()}

    def enqueue(self, endpoints: Sequence[WebhookEndpoint], *, limit: int = ENQUEUE_PAGE) -> tuple[int, bool]:
        """Read up to ``limit`` events after the lowest position into deliveries; (rows offered, more to read?).

        A row already there (the same endpoint, event and hook) is left as it is.

        Bodies are built outside the write transaction; inside it, the positions
        are checked unchanged (else another enqueuer got there first, and this
        batch is dropped and read again) and written with the rows.
        """
        if not endpoints:
            return 0, False
        before = self.positions(endpoints)
        low, head = min(before.values()), self.store.log_head()
        if low >= head:
            return 0, False
        from agentledger.application.log import read_log

        entries = list(islice(read_log(self.store.ledger, after=low, upto=head), limit))
        if not entries:
            return 0, False
        rows = list(self._rows(entries, endpoints, before))
        last = entries[-1].position
        assert last is not None, "the log is read with positions"
        with self.store.write_transaction() as cursor:
            if self._positions(cursor, list(before)) != before:
                return 0, True
            cursor.executemany(
                "INSERT INTO webhook_deliveries (endpoint, event_id, hook_type, position, session_id, payload, state,"
                " attempts, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)"
                " ON CONFLICT (endpoint, event_id, hook_type) DO NOTHING",
                rows,
            )
            cursor.executemany(
                "UPDATE webhook_positions SET position = ? WHERE endpoint = ? AND position < ?",
                [(last, name, last) for name in before],
            )
        return len(rows), last < head

    def _rows(self, entries: list[Any], endpoints: Sequence[WebhookEndpoint], positions: dict[str, int]
              ) -> Iterable[tuple[Any, ...]]:
        import orjson

        now = time.time()
        states = _States(self.store.ledger)
        for entry in entries:
            event = entry.event
            if event is None:
                log.warning("webhooks: skipped %s", entry.describe_error())
                continue
            if not isinstance(event, Session.Event):
                continue
            state = states.after(entry)
            if state is None:
                continue
            for hook_type in hooks.hook_types(event, state):
                wanted = [e.name for e in endpoints if hook_type in e.events and positions[e.name] < entry.position]
                if not wanted:
                    continue
                payload = orjson.dumps(hooks.body(hook_type, event, state, entry.position), default=str).decode()
                key = hooks.event_id(entry.originator_id, entry.version)
                for name in wanted:
                    yield (name, key, hook_type, entry.position, entry.originator_id.hex, payload, now, now)

    # delivering

    def claim(self, endpoint: str) -> bool:
        """On a shared PostgreSQL ledger, let one daemon at a time deliver an endpoint's queue (keeps it in order).

        The store's named lock, held for the connection's life (``Store.hold_lock``):
        the server releases it when the connection ends, so a dead daemon hands over.
        """
        return self.store.hold_lock(f"webhook:{endpoint}")

    def pending(self, endpoint: str, limit: int = WORKER_PAGE) -> list[Any]:
        """The oldest pending deliveries of ``endpoint``, in log order, with their bodies."""
        return self.store.db.execute(
            "SELECT id, event_id, hook_type, payload, attempts, first_attempt_at, next_attempt_at"
            " FROM webhook_deliveries WHERE endpoint = ? AND state = 'pending' ORDER BY id LIMIT ?",
            (endpoint, limit),
        ).fetchall()

    def mark_delivered(self, done: list[Attempt]) -> None:
        if not done:
            return
        with self.store.write_transaction() as cursor:
            cursor.executemany(
                "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1,"
                " first_attempt_at = COALESCE(first_attempt_at, ?), last_attempt_at = ?, delivered_at = ?,"
                " last_status = ?, last_error = NULL, next_attempt_at = NULL WHERE id = ? AND state = 'pending'",
                [(a.started, a.started, a.ended, a.outcome.status, a.delivery_id) for a in done],
            )

    def mark_failed(self, attempt: Attempt, decision: hooks.Decision) -> None:
        """A failed attempt: scheduled again at ``decision.retry_at``, or dead."""
        state = DEAD if decision.verdict == hooks.Verdict.DEAD else PENDING
        error = decision.why if state == DEAD else (attempt.outcome.error or decision.why)
        with self.store.write_transaction() as cursor:
            cursor.execute(
                "UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1,"
                " first_attempt_at = COALESCE(first_attempt_at, ?), last_attempt_at = ?, next_attempt_at = ?,"
                " last_status = ?, last_error = ? WHERE id = ? AND state = 'pending'",
                (state, attempt.started, attempt.started, decision.retry_at, attempt.outcome.status, error[:500],
                 attempt.delivery_id),
            )


class _States:
    """Sessions at the version of each event, folded forward through a page of the log.

    A session launched in the page is built from its own events; one that
    began before is loaded once at the event's version (``repository.get``),
    then folded forward too. Either way a body shows the state at its event.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.known: dict[Any, Any] = {}

    def after(self, entry: Any) -> Session | None:
        sid, event, state = entry.originator_id, entry.event, self.known.get(entry.originator_id)
        try:
            if isinstance(event, Session.Launched):
                state = event.mutate(None)
            elif state is not None and state.version == entry.version - 1:
                state = event.mutate(state)
            else:
                state = None
        except Exception:  # a state the events do not fold onto: load it instead
            state = None
        if state is None:
            try:
                state = self.ledger.repository.get(sid, version=entry.version)
            except Exception as error:  # a session that cannot be read yields no hooks, and says so
                log.warning("webhooks: cannot load session %s at version %d: %s", sid.hex[:12], entry.version, error)
                self.known.pop(sid, None)
                return None
        self.known[sid] = state
        return state if isinstance(state, Session) else None


# -- listing and re-queuing (the CLI) -----------------------------------------------------------------


def list_deliveries(db: Queryable, *, failed: bool = False, endpoint: str | None = None, limit: int = 50) -> list[Any]:
    """The newest deliveries first (dead ones only with ``failed``), without their bodies."""
    where, params = [], []
    if failed:
        where.append("state = 'dead'")
    if endpoint:
        where.append("endpoint = ?")
        params.append(endpoint)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return db.execute(f"SELECT {COLUMNS} FROM webhook_deliveries{clause} ORDER BY id DESC LIMIT ?",
                      (*params, limit)).fetchall()


def requeue(store: Store, ids: Sequence[int], *, all_failed: bool = False, now: float | None = None) -> list[Any]:
    """Make dead deliveries pending again, as if never tried (attempts 0, give-up clock reset); the rows.

    Every id must name a dead delivery, or nothing is re-queued.
    """
    now = time.time() if now is None else now
    with store.write_transaction() as cursor:
        if all_failed:
            rows = cursor.execute(f"SELECT {COLUMNS} FROM webhook_deliveries WHERE state = 'dead' ORDER BY id"
                                  ).fetchall()
        else:
            wanted = list(dict.fromkeys(ids))
            marks = ", ".join("?" * len(wanted))
            rows = cursor.execute(f"SELECT {COLUMNS} FROM webhook_deliveries WHERE id IN ({marks}) ORDER BY id",
                                  wanted).fetchall()
            found = {r["id"]: r for r in rows}
            for delivery_id in wanted:
                if delivery_id not in found:
                    raise UsageError(f"no webhook delivery {delivery_id} (see 'agentledger webhooks')")
                if found[delivery_id]["state"] != DEAD:
                    raise UsageError(f"webhook delivery {delivery_id} is {found[delivery_id]['state']}, not dead: "
                                     "only dead deliveries are re-queued")
        cursor.executemany(
            "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, first_attempt_at = NULL,"
            " next_attempt_at = ? WHERE id = ? AND state = 'dead'",
            [(now, r["id"]) for r in rows],
        )
    return rows


# -- the daemon's threads -----------------------------------------------------------------------------


@dataclass
class Attempt:
    delivery_id: int
    started: float
    ended: float
    outcome: hooks.HttpOutcome


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

    def _open(self) -> Any:
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
        """One page of the queue, or one wait (for work, or for the head's backoff)."""
        if not self.outbox.claim(self.endpoint.name):
            self.stopping.wait(IDLE_POLL)  # another daemon delivers this endpoint
            return
        self.wake.clear()
        rows = self.outbox.pending(self.endpoint.name)
        if not rows:
            self.wake.wait(IDLE_POLL)
            return
        try:
            for row in rows:
                if self.stopping.is_set():
                    return
                wait = (row["next_attempt_at"] or 0.0) - time.time()
                if wait > 0:  # the head of the line waits out its backoff; so does everything behind it
                    self._mark()
                    self.stopping.wait(min(wait, IDLE_POLL))
                    return
                if not self._send(row):
                    return
        finally:
            self._mark()

    def _send(self, row: Any) -> bool:
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
