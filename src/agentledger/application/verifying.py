"""``verify``: replay the whole log and check what must always hold.

* every event is readable by this version;
* each aggregate's versions run 1, 2, 3, ... with no gap (but for the heartbeats
  that a coalescing archive left out, which the heartbeat after them counts);
* at most one ``Stopped`` per session, and nothing after it;
* no reconciler stop whose evidence shows a live fuse or a live PID, and none
  made while the log itself shows a live fuse (the race of the seed bug:
  a stop decided on a signal that lagged the log);
* the read models equal a fresh rebuild from the same log.

Violations are collected, never raised: one bad event must not hide the next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID

from agentledger.application.log import LogEntry, read_log
from agentledger.domain.evidence import Evidence
from agentledger.domain.session import Session, coalesced_before
from agentledger.domain.vocabulary import Component, FuseState

if TYPE_CHECKING:
    from agentledger.application.ports import Store, TableMismatch

#: At most this many differing rows are named per table.
_SHOWN = 5


class Violation(NamedTuple):
    kind: str
    detail: str
    position: int | None = None
    session_id: str | None = None
    version: int | None = None


@dataclass
class VerifyReport:
    events: int = 0
    aggregates: int = 0
    sessions: int = 0
    stops: int = 0
    reconciler_stops: int = 0
    read_models_at: int | None = None
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "events": self.events, "aggregates": self.aggregates, "sessions": self.sessions,
            "stops": self.stops, "reconciler_stops": self.reconciler_stops, "read_models_at": self.read_models_at,
            "violations": [v._asdict() for v in self.violations],
        }


class _Seen:
    """What verify remembers of one aggregate while the log goes by."""

    __slots__ = ("version", "state", "stopped_at_version", "fuse_before_previous")

    def __init__(self) -> None:
        self.version = 0
        self.state: Any = None
        self.stopped_at_version: int | None = None
        #: The fuse (state, expiry) before the previous event, kept when that event was a stop's own
        #: ``FuseCancelled``: the fuse the stop was decided under.
        self.fuse_before_previous: tuple[str, Any] | None = None

    def fuse(self) -> tuple[str, Any] | None:
        state = self.state
        return (state.fuse_state, state.fuse_expires_at) if isinstance(state, Session) else None


def verify(store: Store, *, catch_up: bool = True) -> VerifyReport:
    """Check the log event by event, then the read models against a rebuild at the position they are at.

    ``catch_up=False``: the caller brought the read models as far as the store lets
    it (a read-only copy cannot be brought further); they are compared where they are.
    """
    report = VerifyReport()
    seen: dict[UUID, _Seen] = {}
    for entry in read_log(store.ledger):
        report.events += 1
        _check(entry, seen.setdefault(entry.originator_id, _Seen()), report)
    report.aggregates = len(seen)
    report.sessions = sum(1 for s in seen.values() if isinstance(s.state, Session))
    if catch_up:
        store.read_models.catch_up()
    report.read_models_at, mismatches = store.read_models.compare_with_rebuild()
    report.violations += [_mismatch(m) for m in mismatches]
    return report


def _check(entry: LogEntry, seen: _Seen, report: VerifyReport) -> None:
    sid = entry.originator_id.hex

    def violation(kind: str, detail: str) -> None:
        report.violations.append(Violation(kind, detail, entry.position, sid, entry.version))

    passed_over = 0 if entry.event is None else coalesced_before(entry.event)
    if entry.version != seen.version + 1 + passed_over:
        violation("version-gap", f"version {entry.version} follows version {seen.version}")
    seen.version = entry.version
    if entry.event is None:
        violation("unreadable-event", entry.describe_error())
        return
    if seen.stopped_at_version is not None:
        violation("event-after-stop",
                  f"{entry.type_name} after the Stopped at version {seen.stopped_at_version}")
    event = entry.event
    if isinstance(event, Session.Stopped):
        report.stops += 1
        if seen.stopped_at_version is not None:
            violation("second-stop", f"a second Stopped ({event.reason}); the first is at version "
                      f"{seen.stopped_at_version}")
        else:
            seen.stopped_at_version = entry.version
        if (event.decided_by or {}).get("component") == Component.RECONCILER:
            report.reconciler_stops += 1
            for kind, detail in _reconciler_stop_problems(event, seen.fuse_before_previous or seen.fuse()):
                violation(kind, detail)
    stop_cancel = isinstance(event, Session.FuseCancelled) and event.by_the_stop
    seen.fuse_before_previous = seen.fuse() if stop_cancel else None
    if seen.state is not None and entry.version != seen.state.version + 1 + passed_over:
        seen.state.version = entry.version - 1 - passed_over  # the gap is reported; apply what follows all the same
    try:
        seen.state = event.mutate(seen.state)
    except Exception as error:  # an event that does not fit the state before it
        violation("unappliable-event", f"{entry.type_name} could not be applied: {type(error).__name__}: {error}")


def _reconciler_stop_problems(event: Any, fuse: tuple[str, Any] | None) -> list[tuple[str, str]]:
    """``fuse``: the fuse as the log had it when the stop was decided (before the stop's own events)."""
    problems = []
    evidence = Evidence.from_dict(event.evidence or {})
    if evidence.fuse and evidence.fuse.get("live"):
        problems.append(("stop-on-live-fuse", "a reconciler stop whose own evidence shows a live fuse"))
    if evidence.pid_probe is not None and evidence.pid_probe.alive:
        problems.append(("stop-on-live-pid", "a reconciler stop whose own evidence shows the PID alive"))
    if fuse is not None and fuse[0] == FuseState.SET and fuse[1] is not None and fuse[1] > event.timestamp:
        problems.append(("stop-under-live-fuse",
                         f"a reconciler stop at {event.timestamp.isoformat()} while the log shows its fuse live "
                         f"until {fuse[1].isoformat()}"))
    return problems


def _mismatch(mismatch: TableMismatch) -> Violation:
    differing = mismatch.differing
    return Violation(
        "read-model-mismatch",
        f"{mismatch.table}: {mismatch.live_rows} rows live, {mismatch.rebuilt_rows} rebuilt; differing: "
        f"{', '.join(d[:12] for d in differing[:_SHOWN])}{' ...' if len(differing) > _SHOWN else ''}"
        " (agentledger db rebuild repairs the read models)",
    )
