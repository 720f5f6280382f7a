"""The raw log port (``application/ports.py: RawLog``): one store's stored events and snapshots, verbatim.

``db copy`` moves a ledger between backends without decoding a byte, so it
needs the event library's records themselves: its recorders (the log's and
the snapshots') for reading pages and inserting, and two counts in SQL on the
library's table that the recorders do not offer. Written once for both
backends: they differ only in the table's name and position column, which
each store says (``events_table``, ``position_column``).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from operator import itemgetter
from typing import TYPE_CHECKING, Any
from uuid import UUID

from agentledger.application.errors import AlreadyStored

if TYPE_CHECKING:
    from eventsourcing.persistence import Notification, StoredEvent

    from agentledger.application.ports import Store


class RecorderRawLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def _recorder(self) -> Any:
        return self.store.ledger.recorder

    def head(self) -> int:
        return self._recorder.max_notification_id() or 0

    def count_upto(self, position: int) -> int:
        row = self.store.db.execute(
            f"SELECT COUNT(*) FROM {self.store.events_table} WHERE {self.store.position_column} <= ?", (position,)
        ).fetchone()
        return int(row[0])

    def event_at(self, position: int) -> Notification:
        return self._first_from(position)

    def first_event(self) -> Notification:
        return self._first_from(None)

    def _first_from(self, position: int | None) -> Notification:
        [found] = self._recorder.select_notifications(start=position, limit=1)
        return found

    def page(self, *, after: int, upto: int, limit: int) -> list[Notification]:
        return self._recorder.select_notifications(start=after, limit=limit, stop=upto, inclusive_of_start=False)

    def append(self, events: Sequence[StoredEvent]) -> None:
        """Each as a plain stored event: a notification's position is the source's, not to be carried over."""
        from eventsourcing.persistence import IntegrityError

        try:
            self._recorder.insert_events([_verbatim(event) for event in events])
        except IntegrityError as error:
            raise AlreadyStored(str(error)) from error

    def originator_ids(self) -> list[UUID]:
        rows = self.store.db.execute(f"SELECT DISTINCT originator_id FROM {self.store.events_table}").fetchall()
        return [row[0] if isinstance(row[0], UUID) else UUID(row[0]) for row in rows]

    @property
    def keeps_snapshots(self) -> bool:
        return self.store.ledger.snapshots is not None

    def snapshots(self, originator_id: UUID) -> list[StoredEvent]:
        return self._snapshot_recorder.select_events(originator_id)

    def add_snapshots(self, snapshots: Sequence[StoredEvent]) -> None:
        self._snapshot_recorder.insert_events(list(snapshots))

    def streams(self, ids: Sequence[str]) -> dict[str, list[Any]]:
        """Whole streams by id (hex), in version order, as rows (``originator_version``, ``topic``, ``state``):
        one query for them all, on the read-model connection (no recorder, no UUID per row: ``db archive``)."""
        found: dict[str, list[Any]] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start:start + 500])
            rows = self.store.db.execute(
                f"SELECT originator_id, originator_version, topic, state FROM {self.store.events_table}"
                f" WHERE originator_id IN ({','.join('?' * len(chunk))}) ORDER BY originator_id, originator_version",
                chunk).fetchall()
            for stream, events in groupby(rows, key=itemgetter(0)):  # rows come stream by stream
                found[stream if isinstance(stream, str) else stream.hex] = list(events)
        return found

    @property
    def _snapshot_recorder(self) -> Any:
        snapshots = self.store.ledger.snapshots
        assert snapshots is not None, "a ledger that keeps snapshots (keeps_snapshots)"
        return snapshots.recorder


def _verbatim(event: StoredEvent) -> StoredEvent:
    from eventsourcing.persistence import StoredEvent

    return StoredEvent(originator_id=event.originator_id, originator_version=event.originator_version,
                       topic=event.topic, state=event.state)
