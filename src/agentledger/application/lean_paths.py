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
  last command had just written. ``Ledger.compare_and_set`` caches a copy of
  the aggregate it saved.
* **Snapshots by replay.** Every 200th version the library reloaded the
  aggregate from its last snapshot and replayed up to 200 events (a 10–20 ms
  spike). The aggregate just saved is that state already: the snapshot is
  taken from it, and on SQLite written in the events' own transaction
  (``Ledger.save``), so it adds a row, not a commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, ProcessingEvent, Repository
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


class LedgerRepository(Repository[UUID]):
    """The library's repository (cache, snapshots), loading with :func:`apply_events` and handing out
    :func:`copy_for_command` copies of cached aggregates instead of deep copies.

    A cached aggregate is fast-forwarded on a copy (the events others appended since are applied to the copy,
    which then replaces the cached one), so no lock is needed: the library fast-forwards the shared cached
    object under a lock per aggregate, then deep-copies it.
    """

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

    def cached_copy(self, aggregate_id: UUID) -> Any | None:
        """A :func:`copy_for_command` of the cached aggregate as it stands, not fast-forwarded (None if not
        cached): ``Ledger.compare_and_set``'s guess, which its compare-and-set checks."""
        if self.cache is None:
            return None
        try:
            return copy_for_command(self.cache.get(aggregate_id))
        except KeyError:
            return None

    def remember(self, aggregate: Any) -> None:
        """Cache a copy of an aggregate just saved: the next load fast-forwards from it (no event to replay
        unless another writer appended since), where the library leaves the cache one save behind."""
        if self.cache is not None:
            self.cache.put(aggregate.id, copy_for_command(aggregate))


def collect(*objs: Any, **kwargs: Any) -> ProcessingEvent[UUID]:
    """The pending events of ``objs`` (aggregates, or events on their own), gathered for one atomic save.

    ``ProcessingEvent.collect_events`` with a class check in place of two protocol checks per object.
    """
    processing_event: ProcessingEvent[UUID] = ProcessingEvent()
    for obj in objs:
        if obj is None:
            continue
        if isinstance(obj, BaseAggregate):
            processing_event.events.extend(obj.collect_events())
            processing_event.aggregates[obj.id] = obj
        else:
            processing_event.events.append(obj)
    processing_event.saved_kwargs.update(kwargs)
    return processing_event


def snapshots_due(processing_event: ProcessingEvent[UUID], intervals: dict[type, int]) -> list[Any]:
    """The aggregates just saved that reached a snapshot interval in this save, as they stand now.

    A save that carries an aggregate across a multiple of its interval is snapshotted at its new version
    (a snapshot of any version serves loads from there on).
    """
    due = []
    events = processing_event.events
    for aggregate_id, aggregate in processing_event.aggregates.items():
        interval = intervals.get(type(aggregate))
        # Its events end at its version, so none can be at a multiple unless the last len(events) versions span one.
        if interval and aggregate.version % interval < len(events) and any(
                event.originator_id == aggregate_id and event.originator_version % interval == 0 for event in events):
            due.append(aggregate)
    return due
