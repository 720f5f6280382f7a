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
