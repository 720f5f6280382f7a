"""This host's process table, as ``discover`` and ``adopt`` need it: one psutil scan, no judgement.

Which of these processes are agents, and which the ledger already knows, is
decided in :mod:`agentledger.application.adopting`; this module only reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class ProcessInfo:
    """One process: enough to recognise an agent, place it (cwd) and identify it (PID and start time)."""

    pid: int
    ppid: int
    cmdline: tuple[str, ...]
    cwd: str | None  # None when it cannot be read (another user's process)
    started_at: float  # epoch seconds, psutil's create_time: what Launched.pid_start_time records
    user: str | None


def scan() -> dict[int, ProcessInfo]:
    """Every live process this user can see, by PID (zombies and vanished processes left out)."""
    table: dict[int, ProcessInfo] = {}
    for process in psutil.process_iter(["pid", "ppid", "cmdline", "create_time", "username", "status"]):
        info = process.info
        if info.get("status") == psutil.STATUS_ZOMBIE or info.get("create_time") is None:
            continue
        table[info["pid"]] = ProcessInfo(
            pid=info["pid"], ppid=info.get("ppid") or 0, cmdline=tuple(info.get("cmdline") or ()),
            cwd=None, started_at=info["create_time"], user=info.get("username"))
    return table


def with_cwd(process: ProcessInfo) -> ProcessInfo:
    """``process`` with its working directory read (only for the few candidates: it is a syscall each)."""
    try:
        cwd = psutil.Process(process.pid).cwd()
    except (psutil.Error, OSError):
        cwd = None
    return ProcessInfo(process.pid, process.ppid, process.cmdline, cwd, process.started_at, process.user)


def session_variable(pid: int) -> str | None:
    """The ``AGENTLEDGER_SESSION_ID`` a supervisor gave the process (and its children), if readable."""
    try:
        return psutil.Process(pid).environ().get("AGENTLEDGER_SESSION_ID")
    except (psutil.Error, OSError):
        return None


def current_user_owns(process: ProcessInfo) -> bool:
    """Whether ``process`` runs as this user (by uid): agents are adopted per user."""
    try:
        return psutil.Process(process.pid).uids().real == os.getuid()
    except (psutil.Error, OSError):
        return False
