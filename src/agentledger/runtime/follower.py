"""Keeping the read models current from PostgreSQL's LISTEN/NOTIFY, as events are appended.

The daemon on a PostgreSQL ledger runs one :class:`LogFollower` thread: it
subscribes to the library's notification stream (``recorder.subscribe``,
LISTEN/NOTIFY underneath) from the tracked position, and catches the read
models up whenever an event beyond it arrives, so they never wait for the next
reconcile pass. It has its own store (its own connections): the pass thread's
transactions and its own never share one. CLI reads still catch up first, so
they see their own writes whether or not a daemon runs.

On SQLite there is nothing to listen to (the library does not implement
``subscribe`` there); each pass catches up instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentledger.application.ports import Store

log = logging.getLogger("agentledger.daemon")

#: After losing the server, wait this long before subscribing again.
RESUBSCRIBE_AFTER = 1.0


class LogFollower(threading.Thread):
    def __init__(self, open_store: Callable[[], Store]) -> None:
        super().__init__(name="log-follower", daemon=True)
        self.open_store = open_store  # a connection of its own (bootstrap.store_opener)
        self.stopping = threading.Event()
        self.caught_up_to = 0
        self._subscription: Any = None

    def run(self) -> None:
        store = None
        while not self.stopping.is_set():
            try:
                store = store or self.open_store()
                self._follow(store)
            except Exception as error:  # the server went away: subscribe again once it is back
                if self.stopping.is_set():
                    break
                log.error("following the log: %s; subscribing again in %gs", error, RESUBSCRIBE_AFTER)
                if store is not None:
                    store.close()
                    store = None
                self.stopping.wait(RESUBSCRIBE_AFTER)
        if store is not None:
            store.close()

    def _follow(self, store: Store) -> None:
        from agentledger.projections.catchup import catch_up, tracked_position

        catch_up(store)
        self.caught_up_to = tracked_position(store.db)
        with store.ledger.recorder.subscribe(gt=self.caught_up_to) as subscription:
            self._subscription = subscription
            if self.stopping.is_set():
                return
            for notification in subscription:
                if self.stopping.is_set():
                    return
                if notification.id > self.caught_up_to:
                    catch_up(store)
                    self.caught_up_to = tracked_position(store.db)

    def stop(self) -> None:
        self.stopping.set()
        if self._subscription is not None:
            self._subscription.stop()
