"""What ``/metrics`` says about the ledger, read from the store at each scrape.

Counts that must equal the log (sessions by status, events by type, stops by
reason and decider, live fuses) are not counted by the daemon as it goes: they
are read from the store when Prometheus asks, so they are right after a daemon
restart, and whichever process (supervisor, CLI, another host) appended the
events. A scrape first measures how far the read models are behind the log
(the projection lag), then catches them up, then reads everything else in one
read transaction: sessions, stops and fuses from the read models, and the
events by type up to the read models' position, so one scrape describes one
state of the ledger (its ``Stopped`` events are its stops).

Webhook deliveries come from the ``webhook_deliveries`` table; a store whose
schema predates it reports none of those metrics rather than failing the scrape.

:class:`LedgerCollector` serves these figures to ``prometheus_client``
(imported only when a scrape runs: the CLI never pays for it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentledger.application.log import decode
from agentledger.domain.vocabulary import SessionStatus
from agentledger.infrastructure.spool import Spool
from agentledger.projections.catchup import catch_up, tracked_position
from agentledger.projections.export import event_type
from agentledger.projections.queries import current_status, list_sessions, live_fuse_sql

if TYPE_CHECKING:
    from agentledger.application.ports import Store

log = logging.getLogger("agentledger.daemon")

WEBHOOK_TABLE = "webhook_deliveries"


@dataclass(frozen=True)
class LedgerFigures:
    """The ledger's numbers at one scrape."""

    log_position: int  # the log's head
    read_models_position: int  # the events the read models (and the counts below) reflect
    lag_positions: int  # before this scrape caught the read models up
    lag_seconds: float  # age of the oldest event they had not applied then; 0 when current
    sessions: dict[str, int]  # by current status (every status, zeros included)
    events: dict[str, int]  # by event type, as ``agentledger events`` names them
    stops: dict[tuple[str, str], int]  # by (reason, component that decided)
    fuses_live: int
    spool_depth: int
    webhook_deliveries: dict[tuple[str, str], int] | None  # by (endpoint, state); None: no such table
    webhook_queue: dict[str, int] | None  # pending deliveries by endpoint


class EventTally:
    """Events by type up to a log position, advanced by counting only the events after the last count.

    A full count of a million-event log takes about a second; after the first
    scrape each one counts only what was appended since. The log is
    append-only and its positions become visible in order (SQLite has one
    writer, the library locks the PostgreSQL table for each insert), so
    nothing ever appears below a position already counted.
    """

    def __init__(self) -> None:
        self.position = 0
        self.counts: dict[str, int] = {}

    def advance(self, cursor: Any, table: str, column: str, position: int) -> dict[str, int]:
        if position < self.position:  # the store was replaced by an older copy: count it afresh
            self.position, self.counts = 0, {}
        if position > self.position:
            for topic, count in cursor.execute(
                f"SELECT topic, count(*) FROM {table} WHERE {column} > ? AND {column} <= ? GROUP BY topic",
                (self.position, position),
            ):
                name = event_type(topic)
                self.counts[name] = self.counts.get(name, 0) + count
            self.position = position
        return dict(self.counts)


def read_figures(store: Store, spool: Spool, now: float, tally: EventTally | None = None) -> LedgerFigures:
    """Measure the lag, catch up, and read the rest in one read transaction.

    ``tally``: the events counted by an earlier scrape of the same store (None: count them all).
    """
    head = store.log_head()
    behind = tracked_position(store.db)
    lag_seconds = _age_of_first_after(store, behind, now) if head > behind else 0.0
    catch_up(store)
    position_column = store.position_column
    with store.read_transaction() as cursor:
        tracked = tracked_position(cursor)
        log_position = cursor.execute(f"SELECT max({position_column}) FROM {store.events_table}").fetchone()[0] or 0
        events = (tally or EventTally()).advance(cursor, store.events_table, position_column, tracked)
        sessions = dict.fromkeys((s.value for s in SessionStatus), 0)
        sessions[SessionStatus.STOPPED.value] = cursor.execute(
            "SELECT count(*) FROM sessions WHERE status = ?", (SessionStatus.STOPPED.value,)).fetchone()[0]
        for row in list_sessions(cursor, include_stopped=False, status=None, now=now):
            sessions[current_status(row, now)] += 1
        stops = {
            (reason or "unknown", decider or "unknown"): count
            for reason, decider, count in cursor.execute(
                "SELECT stop_reason, stopped_by, count(*) FROM sessions WHERE status = ?"
                " GROUP BY stop_reason, stopped_by", (SessionStatus.STOPPED.value,))
        }
        fuses_live = cursor.execute(
            f"SELECT count(*) FROM fuses WHERE {live_fuse_sql('state', 'expires_at', '?')}", (now,)).fetchone()[0]
    deliveries, queue = _webhook_figures(store)
    return LedgerFigures(
        log_position=log_position, read_models_position=tracked, lag_positions=max(0, head - behind),
        lag_seconds=lag_seconds, sessions=sessions, events=events, stops=stops, fuses_live=fuses_live,
        spool_depth=spool_depth(spool), webhook_deliveries=deliveries, webhook_queue=queue,
    )


def _age_of_first_after(store: Store, position: int, now: float) -> float:
    """How long ago the first event after ``position`` was appended (0 if it cannot be read)."""
    ledger = store.ledger
    page = ledger.recorder.select_notifications(start=position, limit=1, inclusive_of_start=False)
    if not page:
        return 0.0
    entry = decode(ledger.mapper, page[0], page[0].id)
    return 0.0 if entry.timestamp is None else max(0.0, now - entry.timestamp.timestamp())


def spool_depth(spool: Spool) -> int:
    """Exits spooled by supervisors and not yet in the log (a file each)."""
    if not spool.directory.is_dir():
        return 0
    return sum(1 for _ in spool.directory.glob("*.json"))


def _webhook_figures(store: Store) -> tuple[dict[tuple[str, str], int] | None, dict[str, int] | None]:
    """Deliveries by endpoint and state, and the pending ones by endpoint; (None, None) without the table.

    Read outside the read transaction: on PostgreSQL a failed statement would
    abort the transaction the other figures came from.
    """
    try:
        rows = store.db.execute(
            f"SELECT endpoint, state, count(*) FROM {WEBHOOK_TABLE} GROUP BY endpoint, state").fetchall()
    except Exception as error:
        if not _is_missing_table(error):
            raise
        return None, None
    deliveries = {(endpoint, state): count for endpoint, state, count in rows}
    queue = dict.fromkeys((endpoint for endpoint, _ in deliveries), 0)
    for (endpoint, state), count in deliveries.items():
        if state == "pending":
            queue[endpoint] = count
    return deliveries, queue


def _is_missing_table(error: Exception) -> bool:
    return type(error).__name__ == "UndefinedTable" or "no such table" in str(error)


class LedgerCollector:
    """A ``prometheus_client`` collector of :class:`LedgerFigures`, on a store connection of its own.

    The pass thread and the log follower have their own connections; scrapes
    share this one, one at a time. If the store cannot be read the scrape
    still succeeds, with ``agentledger_store_up 0`` and no ledger figures, and
    the daemon's own metrics; the error is logged once, not at every scrape.
    """

    def __init__(self, open_store: Callable[[], Store], home: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.open_store = open_store  # a connection of its own (bootstrap.store_opener)
        self.spool = Spool(home)
        self.clock = clock
        self._store: Store | None = None
        self._tally = EventTally()
        self._lock = threading.Lock()
        self._failing = False

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        with self._lock:
            try:
                if self._store is None:
                    self._store = self.open_store()
                figures = read_figures(self._store, self.spool, self.clock(), self._tally)
            except Exception as error:
                if not self._failing:
                    log.error("metrics: cannot read the store: %s", error)
                self._failing = True
                self._close_store()
                yield GaugeMetricFamily("agentledger_store_up", "1 if this scrape could read the store", value=0)
                return
            if self._failing:
                log.info("metrics: the store is readable again")
            self._failing = False
        yield GaugeMetricFamily("agentledger_store_up", "1 if this scrape could read the store", value=1)
        yield from families(figures)

    def close(self) -> None:
        with self._lock:
            self._close_store()

    def _close_store(self) -> None:
        if self._store is not None:
            try:
                self._store.close()
            except Exception:  # already broken: nothing left to release
                pass
            self._store = None


def families(figures: LedgerFigures) -> Iterator[Any]:
    """The Prometheus metric families of one scrape's figures."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    sessions = GaugeMetricFamily("agentledger_sessions", "Sessions by current status", labels=["status"])
    for status, count in sorted(figures.sessions.items()):
        sessions.add_metric([status], count)
    yield sessions
    events = CounterMetricFamily("agentledger_events", "Events in the log by type", labels=["type"])
    for name, count in sorted(figures.events.items()):
        events.add_metric([name], count)
    yield events
    stops = CounterMetricFamily("agentledger_stops", "Sessions stopped, by reason and deciding component",
                                labels=["reason", "decider"])
    for (reason, decider), count in sorted(figures.stops.items()):
        stops.add_metric([reason, decider], count)
    yield stops
    yield GaugeMetricFamily("agentledger_fuses_live", "Fuses set and not expired", value=figures.fuses_live)
    yield GaugeMetricFamily("agentledger_log_head_position", "The log's last position", value=figures.log_position)
    yield GaugeMetricFamily("agentledger_read_models_position", "The log position the read models reflect",
                            value=figures.read_models_position)
    yield GaugeMetricFamily("agentledger_projection_lag_positions",
                            "Log positions the read models were behind when scraped", value=figures.lag_positions)
    yield GaugeMetricFamily("agentledger_projection_lag_seconds",
                            "Age of the oldest event the read models had not applied when scraped (0: current)",
                            value=figures.lag_seconds)
    yield GaugeMetricFamily("agentledger_spool_depth", "Exits spooled by supervisors, not yet in the log",
                            value=figures.spool_depth)
    if figures.webhook_deliveries is not None:
        deliveries = GaugeMetricFamily("agentledger_webhook_deliveries", "Webhook deliveries by endpoint and state",
                                       labels=["endpoint", "state"])
        for (endpoint, state), count in sorted(figures.webhook_deliveries.items()):
            deliveries.add_metric([endpoint, state], count)
        yield deliveries
        queue = GaugeMetricFamily("agentledger_webhook_queue_depth", "Webhook deliveries pending, by endpoint",
                                  labels=["endpoint"])
        for endpoint, count in sorted((figures.webhook_queue or {}).items()):
            queue.add_metric([endpoint], count)
        yield queue
