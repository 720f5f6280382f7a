"""Process groups by number: signalling one, and whether one exists. Only ``os``: a command that asks
this of a stopped session (``status``) need not load psutil when, as almost always, no group is left.

Whether a group by that number is still a session's is ``processes.group_is_still``'s question (it needs
psutil to read a PID's start time).
"""

from __future__ import annotations

import os


def signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to a process group; False if the group no longer exists."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True


def group_exists(pgid: int) -> bool:
    """Whether any process is in group ``pgid`` (one of another user's counts: it exists)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def has_running_member(pgid: int) -> bool:
    """Whether a process of group ``pgid`` has not ended: one look at each process's ``/proc/PID/stat``.

    An ended process (a zombie) stays in its group until its parent reaps it; an orphan's parent is init, and a
    container's init may reap on its own schedule, seconds later. ``stop`` waits for the processes to end, not
    for init. Where ``/proc`` cannot be listed, every member counts as running.
    """
    try:
        names = os.listdir("/proc")
    except OSError:
        return True
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                text = stat.read()
        except OSError:  # it has gone
            continue
        state, _ppid, group = text[text.rfind(b")") + 2:].split(b" ", 3)[:3]  # after "(comm)": state ppid pgrp
        if int(group) == pgid and state not in (b"Z", b"X"):
            return True
    return False
