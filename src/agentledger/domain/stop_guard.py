"""The mass-stop guard: a glitch of the observer must not become a mass kill.

If one reconcile pass would stop more than a share of its host's not-stopped
sessions (default: more than half, and more than 5), the stops whose only
evidence is a failed PID probe are held back, the anomaly is recorded in the
log (``StopGuard.Tripped``), and the next pass confirms them: those still
judged dead then are stopped, those seen alive again are cleared
(``StopGuard.Released``). ``agentledger reconcile --confirm`` confirms at
once. Certain evidence (the host rebooted) is never held back. Kubernetes
rate-limits evictions when many nodes go silent at once, for the same reason.

:func:`screen_stops` is the pure part; ``StopGuard`` is one aggregate per host
that keeps the held set in the log, so a pass in any process can confirm it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from agentledger.domain.policy import ReconcilePolicy
from agentledger.domain.reconciliation import Decision


@dataclass(frozen=True)
class Screened:
    proceed: list[Decision]  # stops to append now
    held: list[Decision]  # uncertain stops held back until confirmed
    confirmed: list[str]  # ids held by an earlier pass, now confirmed
    cleared: list[str]  # ids held by an earlier pass, no longer judged dead
    would_stop: int  # stops this pass would make without the guard (not counting confirmations)
    not_stopped: int  # the host's sessions that are not stopped
    limit: float  # trips when ``would_stop`` exceeds this

    @property
    def tripped(self) -> bool:
        return bool(self.held)


def screen_stops(
    stops: Sequence[Decision],
    *,
    not_stopped: int,
    policy: ReconcilePolicy,
    previously_held: frozenset[str],
    confirm: bool,
) -> Screened:
    """Split one pass's stop decisions into those to append now and those to hold."""
    confirmed = [d for d in stops if d.session_id in previously_held or confirm]
    fresh = [d for d in stops if not (d.session_id in previously_held or confirm)]
    limit = max(policy.mass_stop_share * not_stopped, float(policy.mass_stop_min))
    over = len(fresh) > limit
    held = [d for d in fresh if over and not d.certain]
    proceed = confirmed + [d for d in fresh if not (over and not d.certain)]
    dead_now = {d.session_id for d in stops}
    return Screened(
        proceed=proceed,
        held=held,
        confirmed=sorted(d.session_id for d in confirmed if d.session_id in previously_held),
        cleared=sorted(previously_held - dead_now),
        would_stop=len(fresh),
        not_stopped=not_stopped,
        limit=limit,
    )


class StopGuard(Aggregate):
    """One per host: the stops its reconcilers are holding back, if any."""

    class Created(Aggregate.Created):
        host: str

    class Tripped(Aggregate.Event):
        """A pass would have stopped ``would_stop`` of ``not_stopped`` sessions; ``held`` wait."""

        boot_id: str
        not_stopped: int
        would_stop: int
        limit: float
        held: list[str]
        decided_by: dict[str, Any]
        policy_version: str

        def apply(self, aggregate: StopGuard) -> None:
            aggregate.held = list(self.held)
            aggregate.tripped_at = self.timestamp  # the aggregate's modified_on is still the previous event's
            aggregate.would_stop = self.would_stop
            aggregate.not_stopped = self.not_stopped

    class Released(Aggregate.Event):
        """The hold ended: ``confirmed`` were stopped, ``cleared`` were seen alive again."""

        how: str  # "next pass" or "confirmed by hand"
        confirmed: list[str]
        cleared: list[str]
        decided_by: dict[str, Any]

    @staticmethod
    def create_id(host: str) -> UUID:
        return guard_id(host)

    @event(Created)
    def __init__(self, *, host: str) -> None:
        self.host = host
        self.held: list[str] = []
        self.tripped_at: datetime | None = None
        self.would_stop = 0
        self.not_stopped = 0

    @property
    def holding(self) -> frozenset[str]:
        return frozenset(self.held)

    def trip(
        self,
        *,
        boot_id: str,
        not_stopped: int,
        would_stop: int,
        limit: float,
        held: list[str],
        decided_by: dict[str, Any],
        policy_version: str,
    ) -> None:
        self.trigger_event(
            self.Tripped, boot_id=boot_id, not_stopped=not_stopped, would_stop=would_stop, limit=limit,
            held=list(held), decided_by=decided_by, policy_version=policy_version,
        )

    @event(Released)
    def release(self, *, how: str, confirmed: list[str], cleared: list[str], decided_by: dict[str, Any]) -> None:
        self.held = []
        self.tripped_at = None


def guard_id(host: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"agentledger:stop-guard:{host}")
