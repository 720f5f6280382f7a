"""Webhooks as a durable outbox: which events yield which deliveries, and what an attempt's outcome records.

The enqueuer is a tracked consumer of the log, like the projections: it reads
the events after each endpoint's position, turns those that yield a hook into
deliveries, and has the outbox store them with the new positions in one write
transaction. Deliveries are unique by endpoint, event and hook, so reading a
stretch of the log twice (a crash, a second daemon on a shared PostgreSQL
ledger) never makes a second delivery.

This is the service layer only: the rows are the ``WebhookOutbox`` port's
(``application/ports.py``, SQL in ``infrastructure/webhook_outbox.py``), and
the threads that enqueue and deliver are the daemon's
(``runtime/webhook_dispatch.py``), each over a store of its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any
from uuid import UUID

from agentledger.application.errors import UsageError
from agentledger.application.log import PAGE_SIZE, LogEntry, read_log
from agentledger.application.ports import NewDelivery
from agentledger.domain import webhooks as hooks
from agentledger.domain.session import Session
from agentledger.domain.webhook_endpoint import WebhookEndpoint

if TYPE_CHECKING:
    from agentledger.application.ledger import Ledger
    from agentledger.application.ports import Attempt, Row, Store

log = logging.getLogger("agentledger.webhooks")

#: Log events read (and deliveries written) per enqueue transaction: one page of ``read_log``.
ENQUEUE_PAGE = PAGE_SIZE
#: Pending deliveries read at a time by a worker (never the whole queue: bodies add up).
WORKER_PAGE = 100
#: The longest last error a delivery keeps.
ERROR_CHARS = 500

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


class Outbox:
    """One store's outbox as the enqueuer and the workers use it: what to enqueue, and what each attempt records."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.rows = store.webhook_outbox

    # enqueueing

    def positions(self, endpoints: Sequence[WebhookEndpoint]) -> dict[str, int]:
        """Each endpoint's log position; a new endpoint starts at 0, or at the head with ``start = "now"``."""
        names = [e.name for e in endpoints]
        found = self.rows.positions(names)
        missing = [e for e in endpoints if e.name not in found]
        if missing:
            head = self.store.log_head()
            self.rows.add_positions({e.name: head if e.start == "now" else 0 for e in missing})
            found = self.rows.positions(names)
        return found

    def enqueue(self, endpoints: Sequence[WebhookEndpoint], *, limit: int = ENQUEUE_PAGE) -> tuple[int, bool]:
        """Read up to ``limit`` events after the lowest position into deliveries; (rows offered, more to read?).

        A delivery already there (the same endpoint, event and hook) is left as it is.

        Bodies are built before the write; the outbox writes them only if the
        positions are still those they were built from (else another enqueuer
        got there first, and this batch is dropped and read again).
        """
        if not endpoints:
            return 0, False
        before = self.positions(endpoints)
        low, head = min(before.values()), self.store.log_head()
        if low >= head:
            return 0, False
        entries = list(islice(read_log(self.store.ledger, after=low, upto=head), limit))
        if not entries:
            return 0, False
        deliveries = list(self._deliveries(entries, endpoints, before))
        last = entries[-1].position
        assert last is not None, "the log is read with positions"
        if not self.rows.add_deliveries(deliveries, read_at=before, upto=last):
            return 0, True
        return len(deliveries), last < head

    def _deliveries(self, entries: list[LogEntry], endpoints: Sequence[WebhookEndpoint], positions: dict[str, int]
                    ) -> Iterable[NewDelivery]:
        """Each hook of each session event, to every endpoint that wants it and has not read past the event."""
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
            state = states.after(entry, event)
            if state is None:
                continue
            assert entry.position is not None, "the log is read with positions"
            for hook_type in hooks.hook_types(event, state):
                wanted = [e.name for e in endpoints if hook_type in e.events and positions[e.name] < entry.position]
                if not wanted:
                    continue
                payload = orjson.dumps(hooks.body(hook_type, event, state, entry.position), default=str).decode()
                key = hooks.event_id(entry.originator_id, entry.version)
                for name in wanted:
                    yield NewDelivery(name, key, hook_type, entry.position, entry.originator_id.hex, payload, now)

    # delivering

    def claim(self, endpoint: str) -> bool:
        """On a shared PostgreSQL ledger, let one daemon at a time deliver an endpoint's queue (keeps it in order).

        The store's named lock, held for the connection's life (``Store.hold_lock``):
        the server releases it when the connection ends, so a dead daemon hands over.
        """
        return self.store.hold_lock(f"webhook:{endpoint}")

    def pending(self, endpoint: str, limit: int = WORKER_PAGE, due_at: float | None = None) -> list[Row]:
        """The oldest pending deliveries of ``endpoint``, in log order, with their bodies; with ``due_at``,
        only those due then and not behind an earlier one of their session that is not (order is per session)."""
        return self.rows.pending(endpoint, limit, due_at)

    def mark_delivered(self, done: list[Attempt]) -> None:
        self.rows.mark_delivered(done)

    def mark_failed(self, attempt: Attempt, decision: hooks.Decision) -> None:
        """A failed attempt: scheduled again at ``decision.retry_at``, or dead."""
        state = DEAD if decision.verdict == hooks.Verdict.DEAD else PENDING
        error = decision.why if state == DEAD else (attempt.outcome.error or decision.why)
        self.rows.mark_failed(attempt, state=state, retry_at=decision.retry_at, error=error[:ERROR_CHARS])


class _States:
    """Sessions at the version of each event, folded forward through a page of the log.

    A session launched in the page is built from its own events; one that
    began before is loaded once at the event's version (``repository.get``),
    then folded forward too. Either way a body shows the state at its event.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.known: dict[UUID, Any] = {}

    def after(self, entry: LogEntry, event: Session.Event) -> Session | None:
        """The session as of ``event``, the event of ``entry`` (None if it cannot be read)."""
        sid, state = entry.originator_id, self.known.get(entry.originator_id)
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


def list_deliveries(store: Store, *, failed: bool = False, endpoint: str | None = None, limit: int = 50
                    ) -> list[Row]:
    """The newest deliveries first (dead ones only with ``failed``), without their bodies."""
    return store.webhook_outbox.deliveries(dead_only=failed, endpoint=endpoint, limit=limit)


def requeue(store: Store, ids: Sequence[int], *, all_failed: bool = False, now: float | None = None) -> list[Row]:
    """Make dead deliveries pending again, as if never tried (attempts 0, give-up clock reset); the rows.

    Every id must name a dead delivery, or nothing is re-queued.
    """
    now = time.time() if now is None else now
    if all_failed:
        return store.webhook_outbox.requeue(None, now=now, check=lambda rows: None)
    wanted = list(dict.fromkeys(ids))
    return store.webhook_outbox.requeue(wanted, now=now, check=lambda rows: _refuse_unless_dead(wanted, rows))


def _refuse_unless_dead(wanted: list[int], rows: list[Row]) -> None:
    """A UsageError for the first id that names no delivery, or one that is not dead."""
    found = {r["id"]: r for r in rows}
    for delivery_id in wanted:
        if delivery_id not in found:
            raise UsageError(f"no webhook delivery {delivery_id} (see 'agentledger webhooks')")
        if found[delivery_id]["state"] != DEAD:
            raise UsageError(f"webhook delivery {delivery_id} is {found[delivery_id]['state']}, not dead: "
                             "only dead deliveries are re-queued")
