"""Processes as the ledger sees them: looking up a PID, signals, exit waiting.

What makes a process "the session's process" is decided in
:mod:`agentledger.domain.liveness`; this module only looks (through psutil)
and hands what it found to that judgement.
"""

from __future__ import annotations

import os
import resource
import select
import signal
import subprocess

import psutil

from agentledger.domain.liveness import FoundProcess, Liveness, PidProbe, ProcessIdentity, judge
from agentledger.infrastructure.host import boot_id, host_name


def identity_of(pid: int) -> ProcessIdentity:
    """The identity of a process we just started (it may already be a zombie)."""
    process = psutil.Process(pid)
    return ProcessIdentity(
        pid=pid, start_time=process.create_time(), boot_time=psutil.boot_time(), host=host_name(), boot_id=boot_id()
    )


def probe(identity: ProcessIdentity) -> PidProbe:
    """Is the process of ``identity`` still running? Looks only on its own host and boot."""
    here_host, here_boot = host_name(), boot_id()
    found, error = None, None
    if identity.pid is not None and identity.host == here_host and identity.boot_id == here_boot:
        found, error = _look(identity.pid)
    return judge(identity, here_host=here_host, here_boot_id=here_boot, found=found, error=error)


def _look(pid: int) -> tuple[FoundProcess | None, str | None]:
    """What has ``pid`` now: its start time and whether it is a zombie, or nothing."""
    try:
        process = psutil.Process(pid)
        start = process.create_time()
        zombie = process.status() == psutil.STATUS_ZOMBIE
        return FoundProcess(start_time=start, boot_time=psutil.boot_time(), zombie=zombie), None
    except psutil.NoSuchProcess:  # including ZombieProcess: either way the process has ended
        return None, None
    except (psutil.Error, OSError) as error:
        return None, f"{type(error).__name__}: {error}"


class ProcessWatch:
    """Probes for a reconciler that runs pass after pass: live processes are kept as pidfds.

    The first look at a process goes through :func:`probe` (psutil, start time
    checked). A pidfd is opened *before* that look, and kept if the look says
    alive: it then names that very process, never a later one that reuses the
    PID, and turns readable when the process ends. Later passes learn "still
    alive" from one ``poll()`` over all pidfds instead of reading ``/proc``
    once per PID; a process whose pidfd turned readable is looked at afresh.
    Where pidfds are unavailable (old kernels) or file descriptors run short,
    every probe is a fresh look.
    """

    #: File descriptors left for everything else (the store, logs, sockets).
    RESERVED_FDS = 256

    def __init__(self) -> None:
        self._watched: dict[ProcessIdentity, tuple[int, float | None]] = {}
        self._poller = select.poll()
        self._ended: set[int] = set()
        self._seen: set[ProcessIdentity] = set()
        self._capacity = max(0, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - self.RESERVED_FDS)

    def start_pass(self) -> None:
        self._ended = {fd for fd, _ in self._poller.poll(0)} if self._watched else set()
        self._seen = set()

    def probe(self, identity: ProcessIdentity) -> PidProbe:
        self._seen.add(identity)
        held = self._watched.get(identity)
        if held is not None:
            fd, found_start = held
            if fd not in self._ended:
                return PidProbe(
                    pid=identity.pid, expected_start_time=identity.start_time, found_start_time=found_start,
                    host=identity.host, boot_id=identity.boot_id, liveness=Liveness.ALIVE,
                )
            self._forget(identity)
        fd = self._open(identity)
        result = probe(identity)
        if fd is not None:
            if result.alive:
                self._watched[identity] = (fd, result.found_start_time)
                self._poller.register(fd, select.POLLIN)
            else:
                os.close(fd)
        return result

    def finish_pass(self) -> None:
        """Let go of processes no longer asked about (their sessions stopped or are watched)."""
        for identity in [i for i in self._watched if i not in self._seen]:
            self._forget(identity)

    def close(self) -> None:
        for identity in list(self._watched):
            self._forget(identity)

    def _open(self, identity: ProcessIdentity) -> int | None:
        if identity.pid is None or len(self._watched) >= self._capacity or identity.host != host_name():
            return None
        try:
            return os.pidfd_open(identity.pid)
        except (AttributeError, OSError):  # no such process, no pidfd support, no fds left
            return None

    def _forget(self, identity: ProcessIdentity) -> None:
        fd, _ = self._watched.pop(identity)
        self._poller.unregister(fd)
        os.close(fd)


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
