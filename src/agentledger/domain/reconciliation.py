"""The reconciler's rule: keep, record a lapsed fuse, terminate for a timeout, or stop.

One pure function, :func:`decide`, of what the log says about a session
(:class:`SessionFacts`, from the projection or from the aggregate itself), a
PID probe, the time and the policy. The reconciler calls it twice per
session (on the projection, then on the freshly loaded aggregate, before its
compare-and-set append), and replay calls it again on recorded history, so
all three agree by construction.

The rule, in one line: **a session is stopped only when no fuse is live and
its PID is dead.** A live fuse means someone (normally the supervisor, which
will record the exact exit) is watching; a live PID means the session runs,
whatever any other signal says. One exception defers a stop: while the
session's supervisor still runs (stalled behind a locked store, say, so its
fuse lapsed), it is left to record the exact exit itself, for up to the
policy's ``supervisor_patience`` after the fuse ended. ``docs/reconciler.md``
has the truth table.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple

from agentledger.domain.durations import format_clock, format_duration
from agentledger.domain.evidence import DecidedOn, Evidence, Observation
from agentledger.domain.fuse import Fuse
from agentledger.domain.liveness import Liveness, PidProbe, ProcessIdentity
from agentledger.domain.policy import DEFAULT_POLICY, ReconcilePolicy
from agentledger.domain.vocabulary import FuseState, SessionStatus, StopCause, StopReason

if TYPE_CHECKING:
    from agentledger.domain.session import Session


class StopRequestFacts(NamedTuple):
    cause: str  # a StopCause
    signal: str
    grace: float
    at: datetime


class SessionFacts(NamedTuple):
    """What the rule looks at, as of one version of the session.

    A NamedTuple, like the other values here: a pass makes one per session.
    """

    session_id: str
    status: str
    identity: ProcessIdentity
    fuse_state: str
    fuse_ttl: float | None
    fuse_expires_at: datetime | None
    last_heartbeat_at: datetime | None
    deadline: datetime | None  # master timeout, if any
    last_stop_request: StopRequestFacts | None
    version: int
    position: int | None  # log position of the event that made ``version``

    @property
    def fuse(self) -> Fuse:
        return Fuse(self.fuse_state, self.fuse_expires_at, self.fuse_ttl)

    def fuse_live(self, now: datetime) -> bool:
        return self.fuse.live_at(now)

    @classmethod
    def of_session(cls, session: Session, position: int | None) -> SessionFacts:
        request = session.stop_requests[-1] if session.stop_requests else None
        return cls(
            session_id=session.id.hex,
            status=session.status,
            identity=session.identity,
            fuse_state=session.fuse_state,
            fuse_ttl=session.fuse_ttl,
            fuse_expires_at=session.fuse_expires_at,
            last_heartbeat_at=session.last_heartbeat_at,
            deadline=session.deadline,
            last_stop_request=None if request is None else StopRequestFacts(
                cause=request.get("cause", StopCause.USER.value),
                signal=request["signal"],
                grace=request["grace"],
                at=request.get("at") or session.modified_on,
            ),
            version=session.version,
            position=position,
        )


class Action(StrEnum):
    KEEP = "keep"
    EXPIRE_FUSE = "expire-fuse"  # append FuseExpired: the fuse lapsed while the process lives
    TERMINATE = "terminate"  # timeout passed, process alive: StopRequested(timeout) + signal its group
    STOP = "stop"  # append Stopped: no live fuse, dead PID


class Decision(NamedTuple):
    session_id: str
    action: Action
    why: str  # one line for people
    reason: StopReason | None = None  # with STOP
    signal: str | None = None  # with TERMINATE
    certain: bool = False  # with STOP: evidence no glitch of the observer can produce
    evidence: Evidence | None = None  # with every action but KEEP: recorded in the event (as_dict)

    @property
    def appends(self) -> bool:
        return self.action is not Action.KEEP


def decide(
    facts: SessionFacts, probe: PidProbe | None, now: datetime, policy: ReconcilePolicy = DEFAULT_POLICY,
    *, supervisor_alive: bool = False,
) -> Decision:
    """Keep, expire the fuse, terminate for a timeout, or stop ``facts``'s session.

    ``probe`` may be None only while the fuse is live (then no probe is
    needed: someone else is watching). ``supervisor_alive``: the session's
    supervisor process still runs (looked at only when the PID is dead).
    """
    sid = facts.session_id

    def keep(why: str) -> Decision:
        return Decision(sid, Action.KEEP, why)

    if facts.status == SessionStatus.STOPPED:
        return keep("already stopped")
    if facts.fuse_live(now):
        assert facts.fuse_expires_at is not None
        return keep(f"fuse live until {format_clock(facts.fuse_expires_at)}")
    if probe is None:
        raise ValueError(f"session {sid}: no live fuse, so the rule needs a PID probe")
    pid = f"PID {probe.pid}"
    unwatched = _no_live_fuse(facts, now)
    if probe.liveness is Liveness.UNKNOWN:
        return keep(f"{unwatched}, but {pid} could not be checked ({probe.error}): not judged dead")
    if probe.dead and supervisor_alive and _within_patience(facts, now, policy):
        return keep(f"{unwatched} and {pid} is dead ({probe.liveness.value}), but its supervisor still runs: "
                    "left to record the exact exit")
    if probe.dead:
        request = facts.last_stop_request
        reason = StopReason(request.cause) if request else StopReason.RECONCILED
        return Decision(
            sid,
            Action.STOP,
            f"{unwatched} and {pid} is dead ({probe.liveness.value})",
            reason=reason,
            certain=probe.liveness.certain,
            evidence=_evidence(facts, probe, now, policy, supervisor_alive),
        )
    # The process is alive: it is never stopped, only ended for a timeout.
    if facts.deadline is not None and now >= facts.deadline:
        return _enforce_timeout(facts, probe, now, policy, unwatched)
    if facts.fuse_state == FuseState.SET:
        return Decision(
            sid,
            Action.EXPIRE_FUSE,
            f"{unwatched} while {pid} is alive: unwatched from then on",
            evidence=_evidence(facts, probe, now, policy),
        )
    return keep(f"unwatched ({unwatched}), {pid} alive")


def _enforce_timeout(
    facts: SessionFacts, probe: PidProbe, now: datetime, policy: ReconcilePolicy, unwatched: str
) -> Decision:
    assert facts.deadline is not None
    request = facts.last_stop_request
    passed = f"timeout passed at {format_clock(facts.deadline)}, {unwatched}, PID {probe.pid} alive"
    if request is None or request.cause != StopCause.TIMEOUT:
        signal = "SIGTERM"
    elif request.signal != "SIGKILL" and now >= request.at + timedelta(seconds=request.grace):
        signal = "SIGKILL"
    else:
        return Decision(facts.session_id, Action.KEEP, f"{passed}: {request.signal} sent at {format_clock(request.at)}, "
                        "waiting for the process group to end")
    evidence = replace(_evidence(facts, probe, now, policy), deadline=facts.deadline)
    return Decision(
        facts.session_id, Action.TERMINATE, f"{passed}: {signal} to its process group", signal=signal, evidence=evidence
    )


def _within_patience(facts: SessionFacts, now: datetime, policy: ReconcilePolicy) -> bool:
    ended = facts.fuse_expires_at
    return ended is None or now - ended < timedelta(seconds=policy.supervisor_patience)


def _evidence(facts: SessionFacts, probe: PidProbe, now: datetime, policy: ReconcilePolicy,
              supervisor_alive: bool = False) -> Evidence:
    """What the decision saw, recorded in the event it appends."""
    request = facts.last_stop_request
    return Evidence(
        Observation.PROBE,
        decided_on=DecidedOn(facts.version, facts.position, now),
        supervisor_alive=supervisor_alive,
        stop_request=None if request is None else request._asdict(),
        policy_version=policy.version,
        pid_probe=probe,
        fuse=facts.fuse.as_evidence(now),
        last_heartbeat_at=facts.last_heartbeat_at,
    )


def _no_live_fuse(facts: SessionFacts, now: datetime) -> str:
    if facts.fuse_state == FuseState.NONE:
        return "no fuse was ever set"
    if facts.fuse_state == FuseState.CANCELLED:
        return "fuse cancelled"
    assert facts.fuse_expires_at is not None
    return f"fuse expired at {format_clock(facts.fuse_expires_at)} ({_ago(facts.fuse_expires_at, now)})"


def _ago(at: datetime, now: datetime) -> str:
    seconds = (now - at).total_seconds()
    return "just now" if seconds < 0.001 else f"{format_duration(seconds)} ago"
