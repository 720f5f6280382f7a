"""Processes as the ledger sees them: identity, liveness probe, signals, exit waiting.

A PID alone names nothing: PIDs are reused and reset at boot. A process is
identified by (host, boot id, pid, start time). psutil reports start times as
clock ticks since boot plus the kernel's boot time, and the latter follows wall
clock steps, so identities compare the *offset since boot* (start time minus
the boot time read with it), exact to a clock tick.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from agentledger.infrastructure.host import boot_id, host_name

#: Half a clock tick (psutil start times have 1/100 s resolution on Linux).
START_TIME_TOLERANCE = 0.005


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    start_time: float  # seconds since the epoch, as psutil reported it at launch
    boot_time: float  # the boot time psutil used for that figure
    host: str
    boot_id: str


@dataclass(frozen=True)
class ProbeResult:
    """What a look at a PID found, in the shape recorded as evidence."""

    pid: int
    expected_start_time: float
    found_start_time: float | None
    host: str
    boot_id: str
    alive: bool
    detail: str  # "alive", "no such process", "zombie", "pid reused", "other host", "rebooted"

    def as_evidence(self) -> dict[str, Any]:
        return asdict(self)


def identity_of(pid: int) -> ProcessIdentity:
    """The identity of a process we just started (it may already be a zombie)."""
    start, boot = _start_and_boot(psutil.Process(pid))
    return ProcessIdentity(pid=pid, start_time=start, boot_time=boot, host=host_name(), boot_id=boot_id())


def probe(identity: ProcessIdentity) -> ProbeResult:
    """Is the process of ``identity`` still running on this host? Never judges another host."""
    here_host, here_boot = host_name(), boot_id()

    def result(alive: bool, detail: str, found: float | None = None) -> ProbeResult:
        return ProbeResult(
            pid=identity.pid,
            expected_start_time=identity.start_time,
            found_start_time=found,
            host=here_host,
            boot_id=here_boot,
            alive=alive,
            detail=detail,
        )

    if identity.host != here_host:
        raise ValueError(f"cannot probe a process of host {identity.host!r} from {here_host!r}")
    if identity.boot_id != here_boot:
        return result(False, "rebooted")
    try:
        process = psutil.Process(identity.pid)
        start, boot = _start_and_boot(process)
        if abs((start - boot) - (identity.start_time - identity.boot_time)) > START_TIME_TOLERANCE:
            return result(False, "pid reused", start)
        if process.status() == psutil.STATUS_ZOMBIE:
            return result(False, "zombie", start)
        return result(True, "alive", start)
    except psutil.NoSuchProcess:
        return result(False, "no such process")


def _start_and_boot(process: psutil.Process) -> tuple[float, float]:
    return process.create_time(), psutil.boot_time()


def signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to a process group; False if the group no longer exists."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"


class ExitWatcher:
    """Waits for a child to exit, waking the moment it does (a pidfd where Linux has one)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        try:
            self._pidfd: int | None = os.pidfd_open(process.pid)
        except (AttributeError, OSError):
            self._pidfd = None

    def wait(self, timeout: float) -> int | None:
        """The return code if the child ended within ``timeout`` seconds, else None."""
        if self._pidfd is not None:
            ready, _, _ = select.select([self._pidfd], [], [], max(0.0, timeout))
            return self.process.wait() if ready else None
        try:
            return self.process.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


def supervisor_alive(pid: int | None, session_id_hex: str) -> bool:
    """Is the supervisor of this session still running? (Its command line names the session.)"""
    if pid is None:
        return False
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and any(
            session_id_hex in part for part in process.cmdline()
        )
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
