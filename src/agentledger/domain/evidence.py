"""What a decider saw when it stopped a session or recorded its fuse lapsed, as one typed value.

``Stopped`` and ``FuseExpired`` keep their ``evidence`` as a plain dict: that
is the stored format, and old logs must read as they always have. Each
decider records its own shape of that dict (the reconciler's rule, a
supervisor that reaped its agent, the CLI finding the process gone, a host
declared gone, a spawn that failed), so :class:`Evidence` names which look
it was (:class:`Observation`) and :meth:`Evidence.as_dict` writes exactly that
shape, key for key and in order, while :meth:`Evidence.from_dict` reads any
of them, or an older or partial one, into typed attributes (a missing key
reads as None) so readers need no ``.get`` chains.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from agentledger.domain.liveness import Liveness, PidProbe


class Observation(StrEnum):
    """How the decider knew; it fixes the shape recorded.

    The values of the supervisor's and the CLI's looks are the ``observed``
    strings they have always recorded; the others are never written.
    """

    PROBE = "probe"  # the reconciler's rule: a fuse and a PID probe (domain/reconciliation.py)
    WAITPID = "waitpid"  # the supervisor reaped its agent (application/exits.py)
    PROCESS_GONE = "process gone, no supervisor left to record its exit"  # the CLI's stop (application/stopping.py)
    HOST_GONE = "host declared gone"  # a person forgot a silent host (application/hosting.py)
    SPAWN_FAILED = "spawn failed"  # the supervisor could not start the command (runtime/supervisor.py)
    SETUP_FAILED = "on-create failed"  # the launch's --on-create command failed, so the agent never started


class DecidedOn(NamedTuple):
    """The session's version a decision looked at; the rule also records its log position and time."""

    version: int | None
    position: int | None = None
    at: datetime | None = None


class FromSpool(NamedTuple):
    """An exit a supervisor spooled while the store was away: when it saw it, and who recorded it later."""

    spooled_at: str | None
    recorded_by: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Evidence:
    """What one decision saw. Which fields are set depends on ``observed`` (each field says for which)."""

    observed: Observation
    decided_on: DecidedOn | None = None  # all but SPAWN_FAILED
    # PROBE (the rule)
    supervisor_alive: bool | None = None
    stop_request: dict[str, Any] | None = None  # the last request as the rule saw it: cause, signal, grace, at
    policy_version: str | None = None
    deadline: datetime | None = None  # with TERMINATE: the master timeout that passed
    mass_stop_guard: dict[str, Any] | None = None  # a stop the guard held, confirmed: held since when, how
    # PROBE, PROCESS_GONE
    pid_probe: PidProbe | None = None
    # PROBE, WAITPID
    fuse: dict[str, Any] | None = None  # Fuse.as_evidence: state, ttl, expires_at, live
    last_heartbeat_at: datetime | None = None
    # WAITPID, PROCESS_GONE
    stop_requests: list[dict[str, Any]] | None = None  # the session's, as they stood
    # WAITPID
    pid: int | None = None
    returncode: int | None = None
    output_summary: str | None = None  # the final error message of a failed run's output
    from_spool: FromSpool | None = None
    forwarded_signal: str | None = None  # a signal the supervisor was sent itself and passed on to the group
    # HOST_GONE
    host: str | None = None
    reason: str | None = None
    host_silent_from: float | None = None
    # SETUP_FAILED: the command and how it ended (the HookRun's fields)
    setup: dict[str, Any] | None = None
    # SPAWN_FAILED
    error: str | None = None
    errno: int | None = None
    filename: str | None = None

    @property
    def decided_on_version(self) -> int | None:
        return None if self.decided_on is None else self.decided_on.version

    @property
    def decided_at(self) -> datetime | None:
        """When the rule decided (the other deciders' time is their event's)."""
        return None if self.decided_on is None else self.decided_on.at

    def as_dict(self) -> dict[str, Any]:
        """The dict the event records: exactly the keys, order and values this decider has always written."""
        return _SHAPES[self.observed](self)

    @classmethod
    def from_dict(cls, recorded: dict[str, Any]) -> Evidence:
        """Any recorded evidence, of any decider and age; what it does not record reads as None."""
        spooled_by = recorded.get("recorded_from_spool_by")
        return cls(
            observed=_observation(recorded),
            decided_on=_decided_on(recorded),
            supervisor_alive=recorded.get("supervisor_alive"),
            stop_request=recorded.get("stop_request"),
            policy_version=recorded.get("policy_version"),
            deadline=recorded.get("deadline"),
            mass_stop_guard=recorded.get("mass_stop_guard"),
            pid_probe=_pid_probe(recorded.get("pid_probe")),
            fuse=recorded.get("fuse"),
            last_heartbeat_at=recorded.get("last_heartbeat_at"),
            stop_requests=recorded.get("stop_requests"),
            pid=recorded.get("pid"),
            returncode=recorded.get("returncode"),
            output_summary=recorded.get("output_summary"),
            forwarded_signal=recorded.get("forwarded_signal"),
            from_spool=None if spooled_by is None else FromSpool(recorded.get("spooled_at"), spooled_by),
            host=recorded.get("host"),
            reason=recorded.get("reason"),
            host_silent_from=recorded.get("host_silent_from"),
            error=recorded.get("error"),
            errno=recorded.get("errno"),
            filename=recorded.get("filename"),
            setup=recorded.get("setup"),
        )


# -- writing: one shape per look ---------------------------------------------------------------------


def _probed(e: Evidence) -> dict[str, Any]:
    return {
        "supervisor_alive": e.supervisor_alive,
        "fuse": e.fuse,
        "last_heartbeat_at": e.last_heartbeat_at,
        "pid_probe": _probe_record(e.pid_probe),
        "stop_request": e.stop_request,
        "decided_on": None if e.decided_on is None else e.decided_on._asdict(),
        "policy_version": e.policy_version,
    } | _if_any(deadline=e.deadline, mass_stop_guard=e.mass_stop_guard)


def _reaped(e: Evidence) -> dict[str, Any]:
    spool = e.from_spool
    return {
        "observed": e.observed.value,
        "pid": e.pid,
        "returncode": e.returncode,
        "stop_requests": e.stop_requests,
        "fuse": e.fuse,
        "last_heartbeat_at": e.last_heartbeat_at,
        "decided_on_version": e.decided_on_version,
    } | _if_any(output_summary=e.output_summary, forwarded_signal=e.forwarded_signal) | (
        {} if spool is None else {"spooled_at": spool.spooled_at, "recorded_from_spool_by": spool.recorded_by}
    )


def _found_gone(e: Evidence) -> dict[str, Any]:
    return {"observed": e.observed.value, "pid_probe": _probe_record(e.pid_probe), "stop_requests": e.stop_requests,
            "decided_on_version": e.decided_on_version}


def _host_gone(e: Evidence) -> dict[str, Any]:
    return {"host": e.host, "reason": e.reason, "host_silent_from": e.host_silent_from,
            "decided_on_version": e.decided_on_version}


def _spawn_failed(e: Evidence) -> dict[str, Any]:
    return {"error": e.error, "errno": e.errno, "filename": e.filename}


def _setup_failed(e: Evidence) -> dict[str, Any]:
    return {"observed": e.observed.value, "setup": e.setup}


_SHAPES = {
    Observation.PROBE: _probed,
    Observation.WAITPID: _reaped,
    Observation.PROCESS_GONE: _found_gone,
    Observation.HOST_GONE: _host_gone,
    Observation.SPAWN_FAILED: _spawn_failed,
    Observation.SETUP_FAILED: _setup_failed,
}


def _if_any(**optional: Any) -> dict[str, Any]:
    """The keys a decider records only when they have a value (after its other keys, in this order)."""
    return {key: value for key, value in optional.items() if value is not None}


def _probe_record(probe: PidProbe | None) -> dict[str, Any] | None:
    return None if probe is None else probe.as_evidence()


# -- reading: any shape, any age ---------------------------------------------------------------------


def _observation(recorded: dict[str, Any]) -> Observation:
    """Which look recorded this: its ``observed`` string, else the keys only that look writes; else the rule's."""
    observed = recorded.get("observed")
    if observed == Observation.SETUP_FAILED:
        return Observation.SETUP_FAILED
    if observed is not None:
        return Observation.WAITPID if observed == Observation.WAITPID else Observation.PROCESS_GONE
    if "host_silent_from" in recorded:
        return Observation.HOST_GONE
    if "errno" in recorded:
        return Observation.SPAWN_FAILED
    return Observation.PROBE


def _decided_on(recorded: dict[str, Any]) -> DecidedOn | None:
    """The rule records ``decided_on`` (version, position, time); the other deciders ``decided_on_version``."""
    decided_on = recorded.get("decided_on")
    if isinstance(decided_on, dict):
        return DecidedOn(decided_on.get("version"), decided_on.get("position"), decided_on.get("at"))
    version = recorded.get("decided_on_version")
    return None if version is None else DecidedOn(version)


_LIVENESS = frozenset(liveness.value for liveness in Liveness)


def _pid_probe(recorded: Any) -> PidProbe | None:
    """The probe recorded; None when there is none, or none that says what it found."""
    if not isinstance(recorded, dict) or recorded.get("detail") not in _LIVENESS:
        return None
    return PidProbe.from_evidence(recorded)
