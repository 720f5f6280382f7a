"""A session's processes as ``status`` shows them: a PID and its descendants, with memory and CPU time.

One look through psutil, no judgement: whether a PID is still the session's
process is decided in :mod:`agentledger.domain.liveness` (``Machine.probe``).
A process that ends while it is read is left out, never an error: the
picture is of one moment, and processes come and go.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class ProcessUse:
    """One process and what it uses; None where it cannot be read (another user's, or ending)."""

    pid: int
    ppid: int
    started_at: float  # epoch seconds, psutil's create_time (what Launched.pid_start_time records)
    rss: int | None  # resident memory, bytes
    cpu_seconds: float | None  # user + system, since it started
    cmdline: tuple[str, ...]  # empty for a zombie or a kernel thread: ``name`` stands in
    name: str
    zombie: bool
    stopped: bool = False  # stopped by a signal (SIGSTOP, Ctrl-Z) or a tracer: it runs again only on SIGCONT


#: psutil's states of a process that will not run until it gets SIGCONT (or its tracer lets it go).
_STOPPED = (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)


def look(pid: int) -> ProcessUse | None:
    """The process that has ``pid`` now, or None if none has."""
    try:
        return _use(psutil.Process(pid))
    except (psutil.Error, OSError):
        return None


def descendants(pid: int) -> list[ProcessUse]:
    """Every process under ``pid`` (children, theirs, ...), each once; none if ``pid`` is gone."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except (psutil.Error, OSError):
        return []
    found = (_use(child) for child in children)
    return [use for use in found if use is not None]


def group_members(pgid: int) -> list[ProcessUse]:
    """The processes of process group ``pgid`` now, zombies left out: one look at every PID's group.

    For a stopped session's group, whose leader has exited: what it left
    running has been handed to init, so its tree no longer leads to them.
    """
    found = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) != pgid:
                continue
        except OSError:  # it has gone
            continue
        use = look(pid)
        if use is not None and not use.zombie:
            found.append(use)
    return found


def _use(process: psutil.Process) -> ProcessUse | None:
    """What ``process`` uses; None once it has gone. A detail it may not read (another user's) is None."""
    try:
        with process.oneshot():
            started, ppid, name = process.create_time(), process.ppid(), process.name()
            state = process.status()
            return ProcessUse(pid=process.pid, ppid=ppid, started_at=started, rss=_rss(process),
                              cpu_seconds=_cpu_seconds(process), cmdline=_cmdline(process), name=name,
                              zombie=state == psutil.STATUS_ZOMBIE, stopped=state in _STOPPED)
    except (psutil.Error, OSError):  # it has gone (or not even its start can be read): left out
        return None


def _rss(process: psutil.Process) -> int | None:
    try:
        return int(process.memory_info().rss)
    except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return None


def _cpu_seconds(process: psutil.Process) -> float | None:
    try:
        times = process.cpu_times()
    except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return None
    return round(times.user + times.system, 2)  # clock ticks: hundredths, not float noise


def _cmdline(process: psutil.Process) -> tuple[str, ...]:
    try:
        return tuple(process.cmdline())
    except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return ()
