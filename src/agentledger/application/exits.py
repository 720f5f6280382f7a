"""An exit a supervisor saw, as the ``Stopped`` it records: at once, or later from its spool.

The one place where an observed exit status becomes a stop: the reason
(``domain/exits.py: reason_for_exit``, a stop request's cause first), the exact
code or signal, the real exit time, and the evidence of what the session
looked like. The supervisor calls it when it reaps its agent
(``runtime/supervisor.py``); a reconcile pass, for an exit a supervisor
spooled while the store was away (``spooled_exits.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agentledger.application.clock import utc_now
from agentledger.domain.evidence import DecidedOn, Evidence, FromSpool, Observation
from agentledger.domain.exits import ObservedExit, reason_for_exit
from agentledger.domain.session import Session


def record_observed_exit(session: Session, observed: ObservedExit, *, pid: int | None, decided_by: dict[str, Any],
                         from_spool: FromSpool | None = None, summary: str | None = None,
                         exited_at: datetime | None = None, forwarded: str | None = None) -> None:
    """The ``Stopped`` for an exit a supervisor saw with ``waitpid``, with what the session looked like.

    ``summary`` (the final error message of a failed run's output) is the note,
    unless a stop request gave one; it is kept in the evidence either way.
    ``forwarded``: the signal the supervisor was sent and passed on to the
    group, if it was (``why`` then says who sent the signal that ended it).
    """
    now = utc_now()
    requests = session.stop_requests
    session.record_stop(
        reason=reason_for_exit(observed, stop_cause=requests[-1].get("cause", "user") if requests else None),
        decided_by=decided_by,
        exit_code=observed.exit_code,
        signal=observed.signal_name,
        note=(requests[-1]["note"] if requests else None) or summary,
        exited_at=exited_at,
        evidence=Evidence(
            Observation.WAITPID,
            decided_on=DecidedOn(session.version),
            fuse=session.fuse.as_evidence(now),
            last_heartbeat_at=session.last_heartbeat_at,
            stop_requests=requests,
            pid=pid,
            returncode=observed.returncode,
            output_summary=summary or None,
            from_spool=from_spool,
            forwarded_signal=forwarded,
        ).as_dict(),
    )
