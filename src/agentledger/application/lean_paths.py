"""The library's load and save, without what the hot path pays for on every event and never needs.

A profile of one heartbeat through ``Ledger.change`` on a tmpfs store (issue
20) found most of the time outside SQLite:

* **Protocol checks.** ``ProcessingEvent.collect_events`` and
  ``project_aggregate`` ask ``isinstance`` of runtime-checkable ``Protocol``s
  for every aggregate and event; on Python 3.11 each such check walks the
  protocol's attributes (``typing._get_protocol_attrs``), about 17 µs. Our
  aggregates and events are the library's own classes, so a plain class check
  (or none) says the same.
* **The copy handed out of the cache.** The repository deep-copies the cached
  aggregate for every command, so that a command which fails half-way cannot
  corrupt the cache. Our aggregates' events replace their attributes, never
  change a value in place (``Session.stop_requests`` gets a new list), so a
  copy of the attribute dictionary, with a list of its own for the pending
  events the library appends to, protects the cache as well. Checking each
  attribute's type for containers to copy, as this did before, was most of
  the copy's cost: 37 attributes, two copies a heartbeat.
  ``tests/test_lean_paths.py`` runs every command of every aggregate on a
  copy and checks the cached original is untouched.
* **A cache one save behind.** With fast-forward on, the library does not
  cache what it saved, so each load read back and replayed the event the
  last command had just written. ``Ledger.compare_and_set`` caches the
  aggregate it saved. ``Ledger.change`` goes further and decides on the cached
  aggregate itself, with no copy and no query (:meth:`LedgerRepository.take`),
  which its compare-and-set checks.
* **Snapshots by replay.** Every 200th version the library reloaded the
  aggregate from its last snapshot and replayed up to 200 events (a 10–20 ms
  spike). The aggregate just saved is that state already: the snapshot is
  taken from it, and on SQLite written in the events' own transaction
  (``Ledger.save``), so it adds a row, not a commit.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository
from eventsourcing.domain import BaseAggregate


def apply_events(aggregate: Any, events: Iterable[Any]) -> Any:
    """``project_aggregate`` without its per-event protocol assertion: each event mutates the aggregate."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


def copy_for_command(aggregate: Any) -> Any:
    """A copy a command may change without touching ``aggregate``: its attributes (which events replace, never
    change in place), and its own list of pending events."""
    copied = object.__new__(type(aggregate))
    copied.__dict__ = state = vars(aggregate).copy()
    state["_pending_events"] = list(state["_pending_events"])
    return copied


class RecentCache:
    """The library's ``LRUCache`` (``get``, ``put``, ``clear``; the least recently used entry is dropped past
    ``maxsize``) on an ``OrderedDict``, whose reordering is one C call, where the library keeps a linked list in
    Python behind a lock, updated twice by every command decided on the cached session.

    Each operation is one or two C calls on the dictionary; two threads racing on one entry can at worst see it
    dropped, which the repository treats as not cached (the cache is only ever a guess: a compare-and-set checks
    every save made from it).
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.cache: OrderedDict[UUID, Any] = OrderedDict()

    def get(self, key: UUID, *, evict: bool = False) -> Any:
        if evict:
            return self.cache.pop(key)
        value = self.cache[key]
        try:
            self.cache.move_to_end(key)
        except KeyError:  # dropped by another thread meanwhile: still the value it had
            pass
        return value

    def put(self, key: UUID, value: Any) -> None:
        if value is None:
            return
        cache = self.cache
        cache[key] = value
        cache.move_to_end(key)
        if len(cache) > self.maxsize:
            try:
                cache.popitem(last=False)
            except KeyError:  # emptied by another thread meanwhile
                pass

    def clear(self) -> None:
        self.cache.clear()


class LedgerRepository(Repository[UUID]):
    """The library's repository (cache, snapshots), loading with :func:`apply_events` and handing out
    :func:`copy_for_command` copies of cached aggregates instead of deep copies.

    A cached aggregate is fast-forwarded on a copy (the events others appended since are applied to the copy,
    which then replaces the cached one), so no lock is needed: the library fast-forwards the shared cached
    object under a lock per aggregate, then deep-copies it.
    """

    def __init__(self, *, cache_maxsize: int | None = None, **kwargs: Any) -> None:
        super().__init__(cache_maxsize=cache_maxsize, **kwargs)
        if cache_maxsize is not None and cache_maxsize > 0:
            self.cache = RecentCache(cache_maxsize)  # type: ignore[assignment]  # the same three methods

    def get(self, aggregate_id: UUID, *, version: int | None = None, projector_func: Any = apply_events,
            fastforward_skipping: bool = False, deepcopy_from_cache: bool = True) -> Any:
        if self.cache is None or version is not None:
            return super().get(aggregate_id, version=version, projector_func=projector_func)
        try:
            cached = self.cache.get(aggregate_id)
        except KeyError:
            aggregate = self._reconstruct_aggregate(aggregate_id, None, projector_func)
            self.cache.put(aggregate_id, aggregate)
            return copy_for_command(aggregate)
        aggregate = copy_for_command(cached)
        newer = list(self.event_store.get(originator_id=aggregate_id, gt=aggregate.version))
        if newer:
            aggregate = projector_func(aggregate, newer)
            if aggregate is None:
                raise AggregateNotFoundError(aggregate_id)
            self.cache.put(aggregate_id, copy_for_command(aggregate))
        return aggregate

    def take(self, aggregate_id: UUID) -> Any | None:
        """The cached aggregate itself, taken out of the cache, not fast-forwarded (None if not cached):
        ``Ledger.compare_and_set``'s guess, which its compare-and-set checks, decided on without a copy.

        Out of the cache, nobody else sees it while a command changes it; it goes back (:meth:`keep`) once its
        save lands, or as it was if the command appended nothing (an aggregate changes only by its events).
        """
        if self.cache is None:
            return None
        try:
            return self.cache.get(aggregate_id, evict=True)
        except KeyError:
            return None

    def remember(self, aggregate: Any) -> None:
        """Cache a copy of an aggregate just saved: the next load fast-forwards from it (no event to replay
        unless another writer appended since), where the library leaves the cache one save behind."""
        self.keep(copy_for_command(aggregate))

    def keep(self, aggregate: Any) -> None:
        """Cache an aggregate as it is: for one nobody else holds (a copy :meth:`get` handed out, or one
        :meth:`take` took, saved or unchanged, and not handed on)."""
        if self.cache is not None:
            self.cache.put(aggregate.id, aggregate)


def collect(objs: Iterable[Any]) -> tuple[list[Any], list[Any]]:
    """The pending events of ``objs`` (aggregates, or events on their own, None skipped), gathered for one atomic
    save, and the aggregates among them.

    ``ProcessingEvent.collect_events`` with a class check in place of two protocol checks per object, and without
    the ``ProcessingEvent`` (its tracking and saved arguments, which nothing here passes).
    """
    events: list[Any] = []
    aggregates = []
    for obj in objs:
        if obj is None:
            continue
        if isinstance(obj, BaseAggregate):
            pending = obj._pending_events  # noqa: SLF001 - the library's collect_events pops them one by one
            events += pending
            pending.clear()
            aggregates.append(obj)
        else:
            events.append(obj)
    return events, aggregates


def put_back(aggregates: list[Any], events: list[Any]) -> None:
    """Undo :func:`collect` for a save that did not record ``events``: each aggregate's are pending again, in
    order, before any it gained since."""
    for aggregate in aggregates:
        aggregate._pending_events[:0] = [event for event in events if event.originator_id == aggregate.id]  # noqa: SLF001


def snapshots_due(aggregates: list[Any], events: list[Any], intervals: dict[type, int]) -> list[Any]:
    """The aggregates just saved that reached a snapshot interval in this save, as they stand now.

    A save that carries an aggregate across a multiple of its interval is snapshotted at its new version
    (a snapshot of any version serves loads from there on).
    """
    due = []
    for aggregate in aggregates:
        interval = intervals.get(type(aggregate))
        # Its events end at its version, so none can be at a multiple unless the last len(events) versions span one.
        if interval and aggregate.version % interval < len(events) and any(
                event.originator_id == aggregate.id and event.originator_version % interval == 0 for event in events):
            due.append(aggregate)
    return due
