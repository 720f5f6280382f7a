"""Copying a ledger's whole history into another store (``agentledger db copy``).

The log is the only source of truth, so moving a ledger (SQLite to a shared
PostgreSQL, say) is copying its stored events verbatim — topic, state bytes,
originator id and version — in the source's log order, then its snapshots;
the target's read models are then caught up from the copied log like any
others. Nothing is decoded, so events this version cannot read travel too.

Each batch is one atomic ``insert_events`` on the target's recorder, so an
interrupted copy leaves the target holding a prefix of the source's log. A
second run recognises that prefix (the target's last event is the source's
event at the same count, byte for byte) and resumes after it; a target
holding anything else is refused, never merged into. Log positions on the
target may be numbered differently (PostgreSQL's sequence skips numbers a
failed insert drew): order is kept, numbers are not.

The stored events are read and written through each store's ``RawLog`` port
(``application/ports.py``, implemented over the library's recorders by
``infrastructure/raw_log.py``); this module keeps only the procedure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID

from agentledger.application.errors import AlreadyStored, LedgerError, UsageError

if TYPE_CHECKING:
    from eventsourcing.persistence import Notification, StoredEvent

    from agentledger.application.ports import Location, RawLog, Store

DEFAULT_BATCH_SIZE = 1000


class CopyProgress(NamedTuple):
    """Where a copy stands after a batch: events copied by this run, of ``remaining`` to copy."""

    copied: int
    remaining: int
    batches: int
    elapsed: float

    @property
    def rate(self) -> float:
        """Events per second so far."""
        return self.copied / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class CopySummary:
    """What a copy did; ``as_json`` is the shape ``db copy --json`` prints."""

    source: str
    target: str
    events: int  # in the source, up to the head the copy started from
    already_present: int  # found on the target and kept (an earlier, interrupted copy)
    copied: int
    batches: int
    snapshots_copied: int
    snapshots_present: int
    copy_seconds: float  # copying the events
    seconds: float  # everything: checking the target, events, snapshots, catching up the read models
    target_log_head: int
    read_models_at: int
    skipped: list[Any] = field(default_factory=list)  # log entries the target's read models could not apply

    @property
    def rate(self) -> float:
        """Events copied per second of copying them."""
        return self.copied / self.copy_seconds if self.copy_seconds > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source, "target": self.target, "events": self.events,
            "already_present": self.already_present, "copied": self.copied, "batches": self.batches,
            "snapshots_copied": self.snapshots_copied, "snapshots_present": self.snapshots_present,
            "copy_seconds": round(self.copy_seconds, 3), "events_per_second": round(self.rate, 1),
            "seconds": round(self.seconds, 3),
            "target_log_head": self.target_log_head, "read_models_at": self.read_models_at,
            "unreadable_events": len(self.skipped),
        }


def same_store(a: Location, b: Location) -> bool:
    """Do two locations name one store? (A path through a symlink, or a URL with another password, still does.)"""
    return a.address == b.address


def copy_ledger(source: Store, target: Store, *, batch_size: int = DEFAULT_BATCH_SIZE,
                progress: Callable[[CopyProgress], None] | None = None) -> CopySummary:
    """Copy ``source``'s events (resuming after any already on ``target``), snapshots, then catch up ``target``.

    ``progress`` is called after every batch has been committed; an exception
    it raises ends the copy there, with the batches so far kept.
    """
    if batch_size < 1:
        raise UsageError(f"the batch size must be at least 1, not {batch_size}")
    if same_store(source.location, target.location):
        raise UsageError(f"the source and the target are the same store ({source.location.url})")
    started = time.perf_counter()
    mine, theirs = source.raw_log, target.raw_log
    after, present = resume_point(source, target)
    head = mine.head()  # events appended from here on wait for a re-run
    total = mine.count_upto(head)
    remaining = total - present
    copied = batches = 0
    copy_started = time.perf_counter()
    for page in _pages(mine, after, head, batch_size):
        try:
            theirs.append(page)
        except AlreadyStored:
            raise LedgerError(
                f"the target {target.location.url} already holds some of the events being copied: something else "
                "wrote to it during the copy (another copy?); run 'agentledger db copy' again to resume"
            ) from None
        copied += len(page)
        batches += 1
        if progress is not None:
            progress(CopyProgress(copied, remaining, batches, time.perf_counter() - copy_started))
    copy_seconds = time.perf_counter() - copy_started
    snapshots_copied, snapshots_present = _copy_snapshots(mine, theirs, batch_size)
    applied = target.read_models.catch_up()
    return CopySummary(
        source=source.location.url, target=target.location.url, events=total, already_present=present,
        copied=copied, batches=batches, snapshots_copied=snapshots_copied, snapshots_present=snapshots_present,
        copy_seconds=copy_seconds, seconds=time.perf_counter() - started,
        target_log_head=theirs.head(), read_models_at=target.read_models.position(), skipped=applied.skipped,
    )


def resume_point(source: Store, target: Store) -> tuple[int, int]:
    """(source position to copy after, events already on the target); refuses a target that is not a prefix.

    A prefix left by an interrupted copy ends with the source's event at the
    same count, identical to the byte, and begins with the source's first.
    """
    mine, theirs = source.raw_log, target.raw_log
    target_head = theirs.head()
    if not target_head:
        return 0, 0
    present = theirs.count_upto(target_head)
    last, first = theirs.event_at(target_head), theirs.first_event()
    refusal = (f"the target {target.location.url} holds {present} events that are not a copy of this ledger "
               f"({source.location.url}): {{}}; copy into an empty ledger")
    position = source.event_position(_hex(last.originator_id), last.originator_version)
    if position is None:
        raise LedgerError(refusal.format(
            f"its last event (aggregate {_hex(last.originator_id)[:12]}, version {last.originator_version}) "
            "is not in this ledger"))
    if not (_same_event(mine.event_at(position), last) and _same_event(mine.first_event(), first)):
        raise LedgerError(refusal.format("its events differ from this ledger's"))
    counted = mine.count_upto(position)
    if counted != present:
        raise LedgerError(refusal.format(
            f"this ledger has {counted} events up to the target's last one, not {present}"))
    return position, present


def _pages(log: RawLog, after: int, head: int, size: int) -> Iterator[list[Notification]]:
    """The log's stored events after ``after`` up to ``head``, ``size`` at a time, in log order."""
    position = after
    while position < head:
        page = log.page(after=position, upto=head, limit=size)
        if not page:
            return
        yield page
        position = page[-1].id


def _copy_snapshots(mine: RawLog, theirs: RawLog, batch_size: int) -> tuple[int, int]:
    """Copy every snapshot the target lacks: (copied, already there). Snapshots are per aggregate."""
    if not (mine.keeps_snapshots and theirs.keeps_snapshots):
        return 0, 0
    missing: list[StoredEvent] = []
    present = copied = 0
    for originator_id in mine.originator_ids():
        snapshots = mine.snapshots(originator_id)
        if not snapshots:
            continue
        have = {s.originator_version for s in theirs.snapshots(originator_id)}
        present += len(have)
        missing += [s for s in snapshots if s.originator_version not in have]
        if len(missing) >= batch_size:
            theirs.add_snapshots(missing)
            copied += len(missing)
            missing = []
    if missing:
        theirs.add_snapshots(missing)
        copied += len(missing)
    return copied, present


def _same_event(a: StoredEvent, b: StoredEvent) -> bool:
    return ((_hex(a.originator_id), a.originator_version, a.topic, bytes(a.state))
            == (_hex(b.originator_id), b.originator_version, b.topic, bytes(b.state)))


def _hex(originator_id: UUID | str) -> str:
    return originator_id.hex if isinstance(originator_id, UUID) else UUID(str(originator_id)).hex
