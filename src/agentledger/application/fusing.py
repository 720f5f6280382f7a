"""Setting and cancelling a session's fuse by hand: ``agentledger fuse`` and the console's fuse form.

One place for what a hand-set fuse is (the floor on its TTL, who set it, the
writer's clock offset), so the two entry points cannot drift apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from agentledger.application.clock import reported_offset, utc_now
from agentledger.domain.fuse import check_ttl
from agentledger.domain.session import Session

if TYPE_CHECKING:
    from agentledger.application.ledger import Ledger


def set_fuse(ledger: Ledger, session_id: UUID, *, ttl: float, by: str, option: str = "--ttl") -> Session:
    """Set (or replace) the fuse: live for ``ttl`` from now, extended by each heartbeat; ``by`` is who, e.g. ``user:ann``."""
    check_ttl(ttl, option)

    def arm(session: Session) -> Session:
        session.set_fuse(ttl=ttl, set_by=by, now=utc_now(), clock_offset=reported_offset())
        return session

    return ledger.change(session_id, arm)


def cancel_fuse(ledger: Ledger, session_id: UUID, *, by: str, reason: str) -> Session:
    """Cancel the fuse: heartbeats no longer extend it, and the reconciler may stop the session once its PID is dead."""

    def cancel(session: Session) -> Session:
        session.cancel_fuse(by=by, reason=reason)
        return session

    return ledger.change(session_id, cancel)
