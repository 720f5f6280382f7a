"""Is a session's process alive? The judgement, apart from the looking.

A PID alone names nothing: PIDs are reused and reset at boot. A process is
identified by (host, boot id, pid, start time). It is alive only if a process
has the PID *and* started when the one recorded at launch did *and* the host
and boot are the ones recorded. Start times are compared as offsets from the
boot time read with them, because the kernel's boot time follows wall-clock
steps while the offset does not.

Infrastructure looks (``/proc`` through psutil) and hands what it found to
:func:`judge`; keeping the judgement pure lets replay re-run it on a recorded
probe and lets the tests walk every row of the truth table.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple

#: Half a clock tick (start times have 1/100 s resolution on Linux).
START_TIME_TOLERANCE = 0.005


class Liveness(StrEnum):
    ALIVE = "alive"
    NO_SUCH_PROCESS = "no such process"
    ZOMBIE = "zombie"  # it has ended; its parent has not collected its status yet
    PID_REUSED = "pid reused"  # another process, started at another time, has the PID
    REBOOTED = "rebooted"  # the host booted since the launch: every PID of then is gone
    NO_PID = "no pid"  # nothing was ever started
    UNKNOWN = "unknown"  # the look failed (permissions, resources): neither alive nor dead

    @property
    def dead(self) -> bool:
        return self not in (Liveness.ALIVE, Liveness.UNKNOWN)

    @property
    def certain(self) -> bool:
        """Dead beyond any glitch of the observer: no failed look can produce these."""
        return self in (Liveness.REBOOTED, Liveness.NO_PID)


# Value types are NamedTuples: a reconcile pass builds one per session, and they are
# several times cheaper to make than frozen dataclasses.


class ProcessIdentity(NamedTuple):
    pid: int | None
    start_time: float | None  # seconds since the epoch, as psutil reported it at launch
    boot_time: float | None  # the boot time psutil used for that figure
    host: str
    boot_id: str


class FoundProcess(NamedTuple):
    """What a look under the PID found: its start time (with the boot time read with it)."""

    start_time: float
    boot_time: float
    zombie: bool


class PidProbe(NamedTuple):
    """One judged look at a PID, in the shape recorded as evidence."""

    pid: int | None
    expected_start_time: float | None
    found_start_time: float | None
    host: str  # where the look was taken
    boot_id: str
    liveness: Liveness
    error: str | None = None

    @property
    def alive(self) -> bool:
        return self.liveness is Liveness.ALIVE

    @property
    def dead(self) -> bool:
        return self.liveness.dead

    def as_evidence(self) -> dict[str, Any]:
        evidence = {
            "pid": self.pid,
            "expected_start_time": self.expected_start_time,
            "found_start_time": self.found_start_time,
            "host": self.host,
            "boot_id": self.boot_id,
            "alive": self.alive,
            "detail": self.liveness.value,
        }
        if self.error:
            evidence["error"] = self.error
        return evidence

    @classmethod
    def from_evidence(cls, evidence: dict[str, Any]) -> PidProbe:
        """The probe a recorded decision saw, for re-running the rule on it.

        Only what it found (``detail``) is required: a partial record (an older
        or hand-written one) reads with the rest unknown (None, or empty names).
        """
        return cls(
            pid=evidence.get("pid"),
            expected_start_time=evidence.get("expected_start_time"),
            found_start_time=evidence.get("found_start_time"),
            host=evidence.get("host", ""),
            boot_id=evidence.get("boot_id", ""),
            liveness=Liveness(evidence["detail"]),
            error=evidence.get("error"),
        )


def judge(
    identity: ProcessIdentity,
    *,
    here_host: str,
    here_boot_id: str,
    found: FoundProcess | None,
    error: str | None = None,
) -> PidProbe:
    """Judge what was found under ``identity.pid`` on this host and boot.

    ``found`` is None when no process has the PID; ``error`` says the look
    itself failed. Never judges another host's PID: that host's own
    reconciler does.
    """
    if identity.host != here_host:
        raise ValueError(f"cannot judge a process of host {identity.host!r} from {here_host!r}")

    def probe(liveness: Liveness, found_start: float | None = None) -> PidProbe:
        return PidProbe(
            pid=identity.pid,
            expected_start_time=identity.start_time,
            found_start_time=found_start,
            host=here_host,
            boot_id=here_boot_id,
            liveness=liveness,
            error=error,
        )

    if identity.pid is None or identity.start_time is None or identity.boot_time is None:
        return probe(Liveness.NO_PID)
    if identity.boot_id != here_boot_id:
        return probe(Liveness.REBOOTED)
    if error is not None:
        return probe(Liveness.UNKNOWN)
    if found is None:
        return probe(Liveness.NO_SUCH_PROCESS)
    expected_offset = identity.start_time - identity.boot_time
    if abs((found.start_time - found.boot_time) - expected_offset) > START_TIME_TOLERANCE:
        return probe(Liveness.PID_REUSED, found.start_time)
    if found.zombie:
        return probe(Liveness.ZOMBIE, found.start_time)
    return probe(Liveness.ALIVE, found.start_time)
