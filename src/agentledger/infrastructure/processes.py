"""Processes as the ledger sees them: looking up a PID, signals, exit waiting.

What makes a process "the session's process" is decided in
:mod:`agentledger.domain.liveness`; this module only looks (through psutil,
and ``/proc/PID/stat`` itself where a pass looks at every PID) and hands what
it found to that judgement.
"""

from __future__ import annotations

import os
import resource
import select
import subprocess

import psutil

from agentledger.domain.liveness import FoundProcess, Liveness, PidProbe, ProcessIdentity, judge
from agentledger.infrastructure.host import boot_id, host_name
from agentledger.infrastructure.process_groups import group_exists, has_running_member, signal_group


def identity_of(pid: int) -> ProcessIdentity:
    """The identity of a process we just started (it may already be a zombie)."""
    process = psutil.Process(pid)
    return ProcessIdentity(
        pid=pid, start_time=process.create_time(), boot_time=psutil.boot_time(), host=host_name(), boot_id=boot_id()
    )


def probe(identity: ProcessIdentity) -> PidProbe:
    """A fresh look: is the process of ``identity`` still running? Looks only on its own host and boot."""
    found, error = _look(identity.pid) if identity.pid is not None and _here(identity) else (None, None)
    return _judge(identity, found, error)


def _here(identity: ProcessIdentity) -> bool:
    return identity.pid is not None and identity.host == host_name() and identity.boot_id == boot_id()


def _judge(identity: ProcessIdentity, found: FoundProcess | None, error: str | None) -> PidProbe:
    return judge(identity, here_host=host_name(), here_boot_id=boot_id(), found=found, error=error)


#: ``/proc/PID/stat`` counts a process's start in these since boot (what psutil's ``create_time`` divides by too).
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _look(pid: int, *, pidfd: int | None = None, boot_time: float | None = None) -> tuple[FoundProcess | None, str | None]:
    """What has ``pid`` now: its start time and whether it has ended (a zombie), or nothing.

    One open and read of ``/proc/PID/stat`` (its start in clock ticks since
    boot, and its state), not a psutil ``Process``: a cold reconcile pass
    does this for every PID. The start time is psutil's own arithmetic
    (boot time + ticks / ``CLOCK_TICKS``), so it compares with the one
    :func:`identity_of` recorded. With a ``pidfd`` opened on the PID
    beforehand, "has it ended" is a poll of that descriptor; with a
    ``boot_time`` read once for a whole pass, no read of ``/proc/stat`` either.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except (FileNotFoundError, ProcessLookupError):
        return None, None
    except OSError as error:
        return None, f"{type(error).__name__}: {error}"
    fields = data[data.rindex(b")") + 2:].split()  # after "PID (COMM) ": COMM may hold spaces and parentheses
    state, start_ticks = fields[0], int(fields[19])  # the 3rd and 22nd fields (proc(5))
    zombie = _has_ended(pidfd) if pidfd is not None else state in (b"Z", b"X")
    boot = psutil.boot_time() if boot_time is None else boot_time
    return FoundProcess(boot + start_ticks / CLOCK_TICKS, boot, zombie), None


def _has_ended(pidfd: int) -> bool:
    """A pidfd turns readable when its process ends (zombie or reaped)."""
    poller = select.poll()  # not select(): descriptors past 1023 are common here
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(0))


class ProcessWatch:
    """Probes for a reconciler that runs pass after pass: live processes are kept as pidfds.

    The first look at a process opens a pidfd on its PID, then checks through
    psutil that the process there started when the session's did, and polls
    the pidfd to tell a zombie. If it is alive the pidfd is kept: it names that
    very process, never a later one that reuses the PID, and turns readable
    when the process ends. Later passes learn "still alive" from one ``poll()``
    over all the pidfds instead of reading ``/proc`` once per PID. Where pidfds
    are unavailable (old kernels) or file descriptors run short, every probe is
    a full psutil look.
    """

    #: File descriptors left for everything else (the store, logs, sockets).
    RESERVED_FDS = 256

    def __init__(self) -> None:
        self._watched: dict[ProcessIdentity, tuple[int, float | None]] = {}
        self._poller = select.poll()
        self._ended: set[int] = set()
        self._seen: set[ProcessIdentity] = set()
        self._boot_time: float | None = None
        self._capacity = max(0, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - self.RESERVED_FDS)

    def start_pass(self) -> None:
        self._ended = {fd for fd, _ in self._poller.poll(0)} if self._watched else set()
        self._seen = set()
        self._boot_time = psutil.boot_time()

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
        pid = identity.pid
        if pid is None or not _here(identity):
            return _judge(identity, None, None)
        try:
            pidfd = self._open(pid)
        except ProcessLookupError:
            return _judge(identity, None, None)
        found, error = _look(pid, pidfd=pidfd, boot_time=self._boot_time)
        result = _judge(identity, found, error)
        if result.liveness is Liveness.PID_REUSED:
            result = probe(identity)  # unless the wall clock stepped since this pass read the boot time
        if pidfd is not None:
            if result.alive:
                self._watched[identity] = (pidfd, result.found_start_time)
                self._poller.register(pidfd, select.POLLIN)
            else:
                os.close(pidfd)
        return result

    def finish_pass(self) -> None:
        """Let go of processes no longer asked about (their sessions stopped or are watched)."""
        for identity in [i for i in self._watched if i not in self._seen]:
            self._forget(identity)

    def close(self) -> None:
        for identity in list(self._watched):
            self._forget(identity)

    def _open(self, pid: int) -> int | None:
        """A pidfd on ``pid``, or None (no pidfd support, no descriptors to spare); raises if no such process."""
        if len(self._watched) >= self._capacity:
            return None
        try:
            return os.pidfd_open(pid)
        except ProcessLookupError:
            raise
        except (AttributeError, OSError):
            return None

    def _forget(self, identity: ProcessIdentity) -> None:
        fd, _ = self._watched.pop(identity)
        self._poller.unregister(fd)
        os.close(fd)


def group_is_still(identity: ProcessIdentity) -> bool:
    """May the process group numbered ``identity.pid`` still be the session's? Asked before each signal.

    A session's process leads its own group, so the group's number is its
    PID. While the leader lives, or has ended but is not yet reaped (a
    zombie), the number is the session's; when no process has that PID, only
    the group's remaining members can be holding it (the kernel does not reuse
    a PID still in use as a group id). But once another process has the PID
    (another start time), the group by that number may be the newcomer's:
    a stop must not signal it.
    """
    return probe(identity).liveness in (Liveness.ALIVE, Liveness.ZOMBIE, Liveness.NO_SUCH_PROCESS)


def signal_session_group(identity: ProcessIdentity, signum: int) -> bool:
    """``signal_group`` for a session's group, refused (False) once its PID belongs to another process."""
    assert identity.pid is not None
    return group_is_still(identity) and signal_group(identity.pid, signum)


def session_group_exists(identity: ProcessIdentity) -> bool:
    """Whether the session's process group still has members that have not ended (never counting a newcomer's
    group; a member ended but not yet reaped does not count: ``process_groups.has_running_member``)."""
    assert identity.pid is not None
    return group_is_still(identity) and group_exists(identity.pid) and has_running_member(identity.pid)


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
