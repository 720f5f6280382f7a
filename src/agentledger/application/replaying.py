"""``replay``: would today's rule make each recorded reconciler decision again?

Each ``Stopped`` and ``FuseExpired`` that a reconciler appended records what
it decided on: the session's version, the time, and the PID probe. Replay
rebuilds the session at that version from the log (not from the evidence, so
a decision that misread the state is caught), hands it with the recorded
probe and time to the same pure :func:`~agentledger.domain.reconciliation.decide`
the reconciler runs, and compares. It also checks that the decision landed on
the version it was made on: anything appended in between means it was made
on stale state, which the compare-and-set exists to prevent.

That is how a policy change is tried against real history (run the new code's
replay over an old log) and how a race is diagnosed.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID

from agentledger.application.log import LogEntry, read_log, replay_state, session_log
from agentledger.domain.evidence import DecidedOn, Evidence
from agentledger.domain.policy import DEFAULT_POLICY, ReconcilePolicy
from agentledger.domain.reconciliation import Action, SessionFacts, decide
from agentledger.domain.session import Session
from agentledger.domain.vocabulary import Component

if TYPE_CHECKING:
    from agentledger.application.ledger import Ledger
    from agentledger.application.ports import Store

_RECORDED_ACTION = {"FuseExpired": Action.EXPIRE_FUSE, "Stopped": Action.STOP}


class Verdict(NamedTuple):
    session_id: str
    position: int | None
    version: int
    event_type: str
    recorded: str  # "stop (reconciled)", "expire-fuse"
    replayed: str
    replayed_why: str
    differences: list[str]

    @property
    def agrees(self) -> bool:
        return not self.differences

    def as_json(self) -> dict[str, Any]:
        return {**self._asdict(), "agrees": self.agrees}


def is_reconciler_decision(entry: LogEntry) -> bool:
    event = entry.event
    return (entry.type_name in _RECORDED_ACTION and isinstance(event, (Session.Stopped, Session.FuseExpired))
            and (event.decided_by or {}).get("component") == Component.RECONCILER)


def replay_session(ledger: Ledger, session_id: UUID, positions: dict[int, int],
                   policy: ReconcilePolicy = DEFAULT_POLICY) -> list[Verdict]:
    """Re-decide every reconciler decision in one session's history."""
    entries = session_log(ledger, session_id, positions)
    return [replay_decision(entries, entry, policy) for entry in entries if is_reconciler_decision(entry)]


def replay_decision(entries: list[LogEntry], decision: LogEntry, policy: ReconcilePolicy = DEFAULT_POLICY) -> Verdict:
    """Re-run the rule on the state ``decision`` was made on; ``entries`` is its session's history."""
    event = decision.event
    assert event is not None, "a reconciler's decision is a readable event (is_reconciler_decision)"
    recorded_action = _RECORDED_ACTION[decision.type_name]
    recorded_reason = getattr(event, "reason", None)
    recorded = _describe(recorded_action, recorded_reason)
    evidence = Evidence.from_dict(event.evidence or {})
    differences: list[str] = []

    def verdict(replayed: str, why: str) -> Verdict:
        return Verdict(decision.originator_id.hex, decision.position, decision.version, decision.type_name,
                       recorded, replayed, why, differences)

    decided_on = evidence.decided_on or DecidedOn(None)
    version, at = decided_on.version, decided_on.at
    if not isinstance(version, int) or not isinstance(at, datetime):
        differences.append("the evidence does not record the version and time it decided on")
        return verdict("unknown", "nothing to replay")
    state = replay_state([e for e in entries if e.version <= version])
    if state is None:
        differences.append(f"the log has no session state at version {version}")
        return verdict("unknown", "nothing to replay")
    facts = SessionFacts.of_session(state, decided_on.position)
    probe = evidence.pid_probe
    if probe is None and not facts.fuse_live(at):
        differences.append("the evidence has no PID probe, but the log shows no live fuse: one was needed")
        return verdict("unknown", "no probe to replay with")
    replayed = decide(facts, probe, at, policy, supervisor_alive=evidence.supervisor_alive is True)
    replayed_text = _describe(replayed.action, replayed.reason)
    if replayed_text != recorded:
        differences.append(f"recorded {recorded}, the rule now decides {replayed_text}: {replayed.why}")
    differences += _stale(entries, decision, version)
    differences += _misread(evidence.fuse or {}, facts, at)
    return verdict(replayed_text, replayed.why)


def _describe(action: Action, reason: Any) -> str:
    return f"{action.value} ({reason})" if action is Action.STOP else action.value


def _stale(entries: list[LogEntry], decision: LogEntry, version: int) -> list[str]:
    """Events between the version decided on and the decision, other than the decision's own."""
    between = [e for e in entries if version < e.version < decision.version]
    own = [e for e in between if isinstance(e.event, Session.FuseCancelled) and e.event.by_the_stop
           and e.version == decision.version - 1]
    stale = [e for e in between if e not in own]
    if not stale:
        return []
    kinds = ", ".join(f"{e.type_name} v{e.version}" for e in stale)
    return [f"decided on version {version} but appended at version {decision.version}, after {kinds}: "
            "a decision on stale state"]


def _misread(fuse: dict[str, Any], facts: SessionFacts, at: datetime) -> list[str]:
    """Where the evidence's account of the fuse disagrees with the log at the version decided on."""
    found = []
    if fuse.get("state") not in (None, facts.fuse_state):
        found.append(f"evidence says fuse {fuse.get('state')}, the log says {facts.fuse_state}")
    if "expires_at" in fuse and fuse["expires_at"] != facts.fuse_expires_at:
        found.append(f"evidence says the fuse expires at {fuse['expires_at']}, the log says {facts.fuse_expires_at}")
    if fuse.get("live") is False and facts.fuse_live(at):
        found.append("evidence says the fuse was not live, but the log shows it live then")
    return found


def replay_log(store: Store, policy: ReconcilePolicy = DEFAULT_POLICY) -> list[Verdict]:
    """Re-decide every reconciler decision in the whole log, session by session in log order.

    One scan finds the sessions with decisions; each is then read on its own,
    so memory holds one session's history at a time, not the log.
    """
    sessions = list(dict.fromkeys(e.originator_id for e in read_log(store.ledger)
                                  if e.event is not None and is_reconciler_decision(e)))
    verdicts = [v for sid in sessions for v in replay_session(store.ledger, sid, store.event_positions(sid.hex), policy)]
    return sorted(verdicts, key=lambda v: v.position or 0)
