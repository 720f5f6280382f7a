"""The reconciler's policy settings: how it ends timeouts, when its mass-stop guard holds.

A module of its own, and a NamedTuple rather than a dataclass, because the
CLI needs the defaults to describe its options: importing them must cost
nothing at start-up.
"""

from __future__ import annotations

from typing import NamedTuple

#: Recorded with every decision; bump it when the rule changes, so replay can tell.
POLICY_VERSION = "2"  # 2: a dead PID whose supervisor lives is left to it for supervisor_patience
#: Ending a session for its timeout: SIGTERM, then SIGKILL this many seconds later.
DEFAULT_TERMINATION_GRACE = 10.0


class ReconcilePolicy(NamedTuple):
    #: When enforcing a timeout: SIGTERM, then SIGKILL once this many seconds pass.
    termination_grace: float = DEFAULT_TERMINATION_GRACE
    #: Mass-stop guard: hold uncertain stops when one pass would stop more than
    #: this share of the host's not-stopped sessions *and* more than ``mass_stop_min``.
    mass_stop_share: float = 0.5
    mass_stop_min: int = 5
    #: A session whose PID is dead but whose supervisor still runs is left to the supervisor (which
    #: has, or is about to have, the exact exit status) until its fuse has been over this long.
    supervisor_patience: float = 120.0
    version: str = POLICY_VERSION


DEFAULT_POLICY = ReconcilePolicy()
