"""``why``: why a session is stopped, or what keeps it running, from the log's own record.

It reads the session through the repository (snapshots, so a session with
100,000 heartbeats loads in milliseconds), the last few stored events for the
``Stopped`` and its evidence, and the state the decider saw (the aggregate at
the version it decided on). It never scans the log.

:func:`explain` gathers the facts as a plain dict (what ``--json`` prints);
:func:`headline` turns them into the one plain-words answer people read first.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from agentledger.domain.durations import format_clock, format_duration
from agentledger.domain.evidence import Evidence
from agentledger.domain.session import Session
from agentledger.domain.vocabulary import Component, FuseState, StopReason

if TYPE_CHECKING:
    from agentledger.application.ledger import Ledger
    from agentledger.application.ports import Machine, Store

#: A stop appends at most these events (``FuseCancelled`` "session stopped", ``Stopped``).
_STOP_TAIL = 3


def explain(store: Store, session_id: str, now: datetime, machine: Machine) -> dict[str, Any]:
    """The facts that answer "why is this session stopped, or why is it still running?"."""
    ledger = store.ledger
    session: Session = ledger.session(UUID(session_id))
    facts: dict[str, Any] = {
        "session_id": session_id,
        "command": session.argv,
        "host": session.host,
        "pid": session.pid,
        "started_at": session.created_on,
        "version": session.version,
        "position": store.event_position(session_id, session.version),
        "source": session.source,
        "resumed_from": session.resumed_from,
        "resumed_by": store.read_models.resumed_by(session_id),
    }
    if session.stop is not None:
        facts["status"] = "stopped"
        facts["stop"] = _stop_facts(store, session)
    else:
        facts["status"] = _status_now(store, session, now)
        facts["running"] = _running_facts(session, facts["position"], now, machine)
    facts["on_stop"] = _hook_facts(ledger, session)
    facts["workspace"] = _workspace_facts(ledger, session)
    facts["locks"] = _lock_facts(store, session_id, now)
    facts["headline"] = headline(facts)
    return facts


def _status_now(store: Store, session: Session, now: datetime) -> str:
    """Its status as ``status`` and ``list`` say it now: ``running`` or ``unwatched`` by its fuse, ``stopping`` as
    recorded, ``host-silent`` if its host's daemon went quiet (the read models know the hosts)."""
    from agentledger.application.errors import SessionNotFound
    from agentledger.domain.fuse import session_status

    try:
        silent_from = store.read_models.session(session.id.hex)["host_silent_from"]
    except SessionNotFound:  # not in the read models yet: no host to call silent
        silent_from = None
    return session_status(session.status, session.fuse_state, session.fuse_expires_at, now,
                          host_silent=silent_from is not None and now.timestamp() > silent_from)


def _lock_facts(store: Store, session_id: str, now: datetime) -> list[dict[str, Any]]:
    """The directory locks it took, forced or lost (``application/locking.py``), oldest first."""
    from agentledger.application.locking import claim_facts

    facts = [fact for row in store.read_models.lock_claims_of(session_id, now.timestamp())
             for fact in claim_facts(row, session_id)]
    return sorted(facts, key=lambda fact: fact["at"])


def _workspace_facts(ledger: Ledger, session: Session) -> dict[str, Any] | None:
    """Its own git worktree (``launch --worktree``) and where its work went; None without one."""
    from agentledger.application.workspaces import workspace_facts

    return workspace_facts(ledger, session)


def _hook_facts(ledger: Ledger, session: Session) -> dict[str, Any] | None:
    """The on-stop command and what became of it; None if the session has none.

    ``state``: ``waiting`` (the session runs), ``not-run`` (stopped, nobody
    claimed it yet), ``claimed`` (running now, or its claimant died before
    recording an outcome), ``finished`` or ``timed-out``.
    """
    if not session.on_stop:
        return None
    hook = ledger.stop_hook(session.id)
    facts: dict[str, Any] = {"command": session.on_stop, "timeout": session.on_stop_timeout,
                             "claimed_by": None, "claimed_at": None, "outcome": None}
    if hook is None:
        facts["state"] = "not-run" if session.is_stopped else "waiting"
    else:
        outcome = hook.outcome
        facts.update(claimed_by=hook.claimed_by, claimed_at=hook.created_on, outcome=outcome)
        facts["state"] = "claimed" if outcome is None else "timed-out" if outcome["timed_out"] else "finished"
    facts["summary"] = hook_words(facts)
    return facts


def hook_words(hook: dict[str, Any]) -> str:
    """'on-stop hook `CMD`: exit 0 after 0.2s', '… not run yet', '… timed out: ended by SIGTERM after 1s'."""
    from agentledger.application.stop_hooks import outcome_words

    state = hook["state"]
    if state == "waiting":
        what = "runs when the session stops"
    elif state == "not-run":
        what = "not run yet (the supervisor, or the daemon of the session's host, runs it)"
    elif state == "claimed":
        who = hook["claimed_by"]
        what = (f"claimed by the {who.get('component')} on {who.get('host')} (pid {who.get('pid')}) at "
                f"{format_clock(hook['claimed_at'])} UTC; no outcome recorded yet")
    else:
        who = hook["claimed_by"]
        what = f"{outcome_words(hook['outcome'])} (run by the {who.get('component')} on {who.get('host')})"
    return f"on-stop hook `{hook['command']}`: {what}"


def _stop_facts(store: Store, session: Session) -> dict[str, Any]:
    from agentledger.application.log import decode

    ledger = store.ledger
    tail = [decode(ledger.mapper, s, None) for s in
            ledger.recorder.select_events(session.id, desc=True, limit=_STOP_TAIL)]
    stopped = next(e.event for e in tail if isinstance(e.event, Session.Stopped))
    recorded = stopped.evidence or {}
    evidence = Evidence.from_dict(recorded)
    decided_on = _decided_on_version(evidence, stopped, tail)
    seen: Session = ledger.repository.get(session.id, version=decided_on)
    at = stopped.timestamp
    fuse = seen.fuse.as_evidence(at)
    last_heartbeat = seen.last_heartbeat_at
    return {
        "reason": stopped.reason,
        "at": at,
        "ran_for": (at - session.created_on).total_seconds(),
        "decided_by": stopped.decided_by,
        "decider": _decider(stopped),
        "exit_code": stopped.exit_code,
        "signal": stopped.signal,
        "note": stopped.note,
        "version": stopped.originator_version,
        "position": store.event_position(session.id.hex, stopped.originator_version),
        "decided_on": {
            "version": decided_on,
            "position": store.event_position(session.id.hex, decided_on),
            "at": evidence.decided_at or at,
        },
        "fuse": fuse,
        "last_heartbeat_at": last_heartbeat,
        "last_heartbeat_age": (at - last_heartbeat).total_seconds() if last_heartbeat else None,
        "stop_requests": seen.stop_requests,
        "pid_probe": recorded.get("pid_probe"),  # as recorded, like the evidence
        "evidence": recorded,
    }


def _decided_on_version(evidence: Evidence, stopped: Any, tail: list[Any]) -> int:
    """The version the decider looked at: recorded in the evidence, else the one before its events."""
    if evidence.decided_on_version:
        return int(evidence.decided_on_version)
    version = stopped.originator_version - 1
    before = next((e.event for e in tail if e.version == version), None)
    if isinstance(before, Session.FuseCancelled) and before.by_the_stop:
        version -= 1
    return max(int(version), 1)


def _decider(stopped: Any) -> str:
    """supervisor / user / reconciler / timeout: who, in the product's words, ended it."""
    component = stopped.decided_by.get("component")
    if stopped.reason == StopReason.TIMEOUT:
        return "timeout"
    if stopped.reason == StopReason.USER:
        return "user"
    return component or "unknown"


def _running_facts(session: Session, position: int | None, now: datetime, machine: Machine) -> dict[str, Any]:
    from agentledger.application.reconciling import judge
    from agentledger.domain.policy import DEFAULT_POLICY

    probe: dict[str, Any] | None = None
    decided: dict[str, Any] | None = None  # only the session's own host can look at its PID, and judge it
    if session.host == machine.host:
        looked = machine.probe(session.identity)
        probe = looked.as_evidence()
        # the reconciler's own look and rule, so this is what `reconcile --dry-run` would decide now
        decision = judge(session, position, now, DEFAULT_POLICY, machine, looked)
        decided = {"action": decision.action.value, "why": decision.why, "reason": decision.reason,
                   "signal": decision.signal}
    return {
        "decision": decided,
        "now": now,
        "fuse": session.fuse.as_evidence(now),
        "last_heartbeat_at": session.last_heartbeat_at,
        "last_heartbeat_age": (now - session.last_heartbeat_at).total_seconds() if session.last_heartbeat_at else None,
        # the last heartbeat's (or fuse's) sender's clock minus the store's, when off by more than the bound
        "writer_clock_offset": session.writer_clock_offset,
        "deadline": session.deadline,
        "supervisor_pid": session.supervisor_pid,
        # None where it cannot be looked at: another host's, or no supervisor (adopted)
        "supervisor_alive": (machine.supervisor_alive(session.supervisor_pid, session.id.hex)
                             if session.host == machine.host and session.supervisor_pid is not None else None),
        "stop_requests": session.stop_requests,
        "pid_probe": probe,
    }


# -- plain words ---------------------------------------------------------------


def headline(facts: dict[str, Any]) -> str:
    """The answer in one or two sentences, from :func:`explain`'s facts alone."""
    if facts["status"] == "stopped":
        return _why_stopped(facts["stop"])
    return _why_running(facts["running"], facts["status"])


def _why_stopped(stop: dict[str, Any]) -> str:
    who = stop["decided_by"]
    where = f"on {who.get('host')} (pid {who.get('pid')})"
    reason = stop["reason"]
    status = _exit_status(stop)
    if reason == StopReason.EXITED:
        return f"The process exited by itself with {status}; its supervisor {where} saw the exit and recorded it."
    if reason == StopReason.SIGNALLED:
        forwarded = Evidence.from_dict(stop["evidence"]).forwarded_signal
        if forwarded:
            return (f"The process was ended by {stop['signal'] or 'a signal'}: its supervisor {where} was sent "
                    f"{forwarded} from outside agentledger (a shutdown, a service manager, a kill), passed it on "
                    "to the process group, saw the process end and recorded it.")
        return (f"The process was killed by {stop['signal'] or 'a signal'}, which nobody here sent; "
                f"its supervisor {where} saw it end and recorded it.")
    if reason == StopReason.SPAWN_FAILED:
        error = Evidence.from_dict(stop["evidence"]).error or stop["note"]
        return f"The command could not be started ({error}); the supervisor {where} recorded that, and nothing ran."
    if reason == StopReason.SETUP_FAILED:
        return (f"Its --on-create command failed ({stop['note']}), so the agent was never started; the supervisor "
                f"{where} recorded that.")
    if reason == StopReason.USER:
        asked = _last_request(stop)
        recorder = "its supervisor" if who.get("component") == Component.SUPERVISOR else "the CLI"
        return (f"A user stopped it{asked}; it ended with {status}, recorded by {recorder} {where}.")
    if reason == StopReason.TIMEOUT:
        asked = _last_request(stop)
        return (f"Its master timeout passed{asked}: the process group was signalled and ended with {status}, "
                f"recorded by the {who.get('component')} {where}.")
    if reason == StopReason.RECONCILED:
        probe = stop.get("pid_probe") or {}
        return (f"Nobody was watching it ({_fuse_words(stop['fuse'], stop['at'])}) and its PID {probe.get('pid')} "
                f"was dead ({probe.get('detail', 'unknown')}), so the reconciler {where} stopped it. "
                "Its exit status is unknown: no supervisor was left to see it.")
    if reason == StopReason.HOST_LOST:
        return (f"Its host {Evidence.from_dict(stop['evidence']).host} was declared gone by {who.get('user')} ({stop['note']}): "
                f"its daemon had gone silent, so nobody could see the process. Recorded by the CLI {where}.")
    return f"It stopped with reason {reason!r}, recorded by {who.get('component')} {where}."


def _why_running(running: dict[str, Any], status: str) -> str:
    now = running["now"]
    probe = running["pid_probe"]
    pid = f"PID {probe['pid']} is {probe['detail']}" if probe else "its PID is on another host (not probed here)"
    fuse = running["fuse"]
    if fuse["live"]:
        keeping = (f"A live fuse keeps it running until {format_clock(fuse['expires_at'])} UTC (heartbeats extend "
                   f"it); {pid}")
        ends = ("if the heartbeats stop, the fuse lapses then, and the reconciler stops it at its next pass "
                "after the PID is dead")
    elif probe is not None and not probe.get("alive"):
        keeping = f"Nobody watches it ({_fuse_words(fuse, now)}) and its process is gone ({pid})"
        ends = ("the reconciler stops it at its next pass (a daemon runs passes; without one, "
                "`agentledger reconcile` does)")
    else:
        keeping = f"Nobody watches it ({_fuse_words(fuse, now)}); {pid}"
        ends = "the reconciler stops it at the first pass that finds its PID dead"
    parts = [f"{keeping}.", f"What would stop it: `agentledger stop`; {ends}"]
    if running["deadline"] is not None:
        parts[-1] += f"; its master timeout at {format_clock(running['deadline'])} UTC"
    parts[-1] += "."
    if status == "stopping":
        parts.insert(0, f"A stop was requested{_last_request(running)} and the process has not ended yet.")
    decision = running.get("decision")
    if decision is not None:
        parts.append(f"A reconcile pass now would {_decision_words(decision)}: {decision['why']}.")
    return " ".join(parts)


def _decision_words(decision: dict[str, Any]) -> str:
    action = decision["action"]
    if action == "stop":
        return f"stop it ({decision['reason']})"
    if action == "terminate":
        return f"send its process group {decision['signal']} (its master timeout passed)"
    if action == "expire-fuse":
        return "record that its fuse lapsed"
    return "keep it"


def _fuse_words(fuse: dict[str, Any], at: datetime) -> str:
    state = fuse["state"]
    if state == FuseState.NONE:
        return "no fuse was ever set"
    if state == FuseState.CANCELLED:
        return "its fuse was cancelled"
    expires = fuse["expires_at"]
    if fuse["live"]:
        return f"fuse live until {format_clock(expires)}"
    return f"its fuse expired at {format_clock(expires)} UTC, {format_duration((at - expires).total_seconds())} before"


def _exit_status(stop: dict[str, Any]) -> str:
    if stop["exit_code"] is not None:
        return f"exit code {stop['exit_code']}"
    if stop["signal"]:
        return f"signal {stop['signal']}"
    return "an unknown exit status"


def _last_request(facts: dict[str, Any]) -> str:
    requests = facts.get("stop_requests") or []
    if not requests:
        return ""
    request = requests[-1]
    at = request.get("at")
    when = f" at {format_clock(at)} UTC" if isinstance(at, datetime) else ""
    return f" ({request.get('requested_by')} sent {request.get('signal')}{when})"
