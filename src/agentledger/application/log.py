"""Reading the log itself, one stored event at a time, surviving events it cannot read.

Every reader of the whole log (catch-up, ``verify``, ``events``, ``--as-of``,
``history``) goes through here, so that an event this version cannot decode
(a topic it does not know, a truncated or garbled payload) becomes a
:class:`LogEntry` with an ``error`` instead of an exception that ends the
command. The entry still says where it is (position, session, version), so
a person can be told exactly what was skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID

if TYPE_CHECKING:
    from agentledger.application.ledger import Ledger

PAGE_SIZE = 1000


class LogEntry(NamedTuple):
    position: int | None  # None only where the reader was not given positions
    originator_id: UUID
    version: int
    topic: str
    event: Any | None  # the domain event; None when it could not be decoded
    error: str | None = None  # why it could not be decoded

    @property
    def type_name(self) -> str:
        """``Heartbeat`` for ``agentledger.domain.session:Session.Heartbeat``."""
        return self.topic.rsplit(":", 1)[-1].rsplit(".", 1)[-1]

    @property
    def timestamp(self) -> datetime | None:
        return None if self.event is None else self.event.timestamp

    @property
    def readable(self) -> bool:
        return self.error is None

    def describe_error(self) -> str:
        return (f"unreadable event at position {self.position} (session {self.originator_id.hex[:12]}, "
                f"version {self.version}, topic {self.topic!r}): {self.error}")


class Applied(NamedTuple):
    """What one catch-up or rebuild did: events applied, and events skipped as unreadable."""

    applied: int
    skipped: list[LogEntry]


def decode(mapper: Any, stored: Any, position: int | None) -> LogEntry:
    """One stored event (a notification or a stored event record) as a :class:`LogEntry`."""
    originator_id = stored.originator_id if isinstance(stored.originator_id, UUID) else UUID(str(stored.originator_id))
    try:
        event = mapper.to_domain_event(stored)
    except Exception as error:  # any decoding failure: unknown topic, bad bytes, missing fields
        return LogEntry(position, originator_id, stored.originator_version, stored.topic, None,
                        _one_line(f"{type(error).__name__}: {error}"))
    return LogEntry(position, originator_id, stored.originator_version, stored.topic, event)


def _one_line(text: str) -> str:
    """An error about stored bytes quotes them: newlines and control characters as a repr writes them."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def read_log(ledger: Ledger, *, after: int = 0, upto: int | None = None) -> Iterator[LogEntry]:
    """The log in position order, from just after ``after`` to ``upto`` (inclusive) or its end."""
    recorder, mapper = ledger.recorder, ledger.mapper
    position = after
    while True:
        page = recorder.select_notifications(start=position, limit=PAGE_SIZE, inclusive_of_start=False, stop=upto)
        for notification in page:
            yield decode(mapper, notification, notification.id)
        if len(page) < PAGE_SIZE:
            return
        position = page[-1].id


def session_log(ledger: Ledger, session_id: UUID, positions: dict[int, int], *, upto_version: int | None = None,
                after_version: int | None = None) -> list[LogEntry]:
    """One session's events in version order (``positions`` maps version to log position), those after
    ``after_version`` only if given."""
    stored = ledger.recorder.select_events(session_id, gt=after_version, lte=upto_version)
    return [decode(ledger.mapper, s, positions.get(s.originator_version)) for s in stored]


def replay_state(entries: list[LogEntry]) -> Any | None:
    """The aggregate the readable events make, applied in order (None before a ``Launched``).

    Used where the repository cannot be (a version in the middle of a log that
    holds an unreadable event): unreadable events are skipped.
    """
    aggregate = None
    for entry in entries:
        aggregate = apply_readable(aggregate, entry)
    return aggregate


def apply_readable(aggregate: Any | None, entry: LogEntry) -> Any | None:
    """``entry``'s event applied to ``aggregate``; an unreadable one passed over, its version counted, so that
    the readable events after it apply (the library refuses an event whose version is not the next)."""
    if entry.event is not None:
        return entry.event.mutate(aggregate)
    if aggregate is not None and entry.version == aggregate.version + 1:
        aggregate.version = entry.version
    return aggregate
