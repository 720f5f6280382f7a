"""One thread follows the log for every open page: it catches the read models up and tells each listener.

A page that shows the present holds an ``EventSource`` on ``/events``; this
module's :class:`LogWatch` polls the log's head (one cheap query) every
``interval``, applies what is new to the read models (so that the page's next
request reads them current, without a catch-up of its own), and puts the new
position in every listener's queue. A hundred open pages cost one poller and
a hundred small queues, not a hundred pollers.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentledger.application.ports import Store

log = logging.getLogger("agentledger.console")

#: How often the log's head is looked at: a launch reaches an open page within about this plus one request.
POLL_INTERVAL = 0.1
#: A comment line this often keeps proxies and the browser from closing a quiet stream.
KEEPALIVE = 15.0


class LogWatch:
    def __init__(self, open_store: Callable[[], Store], interval: float = POLL_INTERVAL) -> None:
        self._open_store = open_store
        self.interval = interval
        self.position = 0
        self.error: str | None = None
        self._listeners: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[int]]] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the thread ----------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="console-log-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        store = None
        while not self._stopping.is_set():
            try:
                if store is None:
                    store = self._open_store()
                position = caught_up(store)
                self.error = None
            except Exception as error:  # noqa: BLE001 - the store went away: say so on the pages, try again
                self.error = f"{type(error).__name__}: {error}"
                log.warning("console: following the log: %s", self.error)
                _closed(store)
                store = None
                self._stopping.wait(1.0)
                continue
            if position != self.position:
                self.position = position
                self._tell(position)
            self._stopping.wait(self.interval)
        _closed(store)

    def _tell(self, position: int) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for loop, queue in listeners:
            loop.call_soon_threadsafe(_put_latest, queue, position)

    # -- the listeners -------------------------------------------------------------

    async def positions(self) -> AsyncIterator[int | None]:
        """The log's position each time it moves (the current one first); None every ``KEEPALIVE`` seconds."""
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        entry = (asyncio.get_running_loop(), queue)
        with self._lock:
            self._listeners.add(entry)
        try:
            yield self.position
            while True:
                try:
                    yield await asyncio.wait_for(queue.get(), KEEPALIVE)
                except asyncio.TimeoutError:
                    yield None
        finally:
            with self._lock:
                self._listeners.discard(entry)

    @property
    def listeners(self) -> int:
        with self._lock:
            return len(self._listeners)


def caught_up(store: Store) -> int:
    """Apply what is new to the read models; where they stand. A store that refuses writes (full, read-only) is
    still read: its read models as far as they got, and the log's head to wait on."""
    from agentledger.projections.catchup import catch_up_if_writable, tracked_position

    applied, _ = catch_up_if_writable(store)
    if applied is None:
        return int(store.ledger.recorder.max_notification_id() or 0)
    return tracked_position(store.db)


def _put_latest(queue: asyncio.Queue[int], position: int) -> None:
    """Only the newest position matters to a page: a slow one gets one wake-up, not a backlog."""
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(position)


def _closed(store: Store | None) -> None:
    if store is not None:
        try:
            store.close()
        except Exception:  # noqa: BLE001 - already broken
            pass
