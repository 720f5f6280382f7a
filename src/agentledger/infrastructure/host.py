"""Who and where we are: host name, boot id, OS user."""

from __future__ import annotations

import functools
import getpass
import os
import socket
import time


@functools.cache
def host_name() -> str:
    """This host's name in the ledger.

    ``AGENTLEDGER_HOST_ID`` overrides it, for tests only: it lets two daemons
    on one machine play two hosts sharing one ledger. (Both still see every
    local PID, so never set it on a real deployment.)
    """
    return os.environ.get("AGENTLEDGER_HOST_ID") or socket.gethostname()


@functools.cache
def boot_id() -> str:
    """An id that changes at every boot, so a PID from before a reboot reads as dead.

    Linux gives one directly; elsewhere the boot time stands in for it.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        import psutil

        return f"boot-{int(psutil.boot_time())}"


@functools.cache
def os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): fall back to the uid
        return str(os.getuid())


def actor(component: str) -> dict[str, object]:
    """The ``decided_by`` / ``by`` record: which component, on which host, as which process."""
    return {"component": component, "host": host_name(), "pid": os.getpid(), "user": os_user()}


def kernel_clock() -> float:
    """The host's wall clock as the kernel keeps it: boot time plus time since boot (epoch seconds).

    Read from ``/proc``, which a process's faked clock (libfaketime, a
    ``CLOCK_REALTIME`` namespace) does not change: the embedded store's clock.
    Accurate to about a second (the kernel gives the boot time in whole
    seconds). Elsewhere than Linux: this process's own clock.
    """
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            booted = next(int(line.split()[1]) for line in stat if line.startswith("btime "))
        with open("/proc/uptime", encoding="ascii") as uptime:
            since_boot = float(uptime.read().split()[0])
    except (OSError, StopIteration, ValueError):
        return time.time()
    return booted + since_boot
