"""Recording the exits that supervisors spooled but could not append (``infrastructure/spool.py``).

Run by the reconciler at the start of each pass, before it judges anything,
so that a session whose supervisor saw the exit is stopped with that exit
code, never ``reconciled`` on a guess. A spooled exit whose supervisor still
runs is left to it: it is still trying, and it will remove the file. Then the
spool is cleaned: temporaries a failed write left, and the slots of sessions
that are over (their supervisor killed before it could remove them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from agentledger.application.errors import SessionNotFound
from agentledger.domain.errors import SessionAlreadyStopped
from agentledger.domain.evidence import FromSpool
from agentledger.domain.exits import ObservedExit

if TYPE_CHECKING:
    from agentledger.application.ports import Machine, Store


def record_spooled_exits(store: Store, spool: Any, *, recorded_by: dict[str, Any], machine: Machine) -> list[str]:
    """Append each spooled exit whose supervisor is gone; the sessions it stopped."""
    stopped = []
    for sid, record in spool.pending():
        supervisor = record.get("supervisor") or {}
        if machine.supervisor_alive(supervisor.get("pid"), sid):
            continue

        def stop(session: Any, record: dict[str, Any] = record) -> None:
            apply_spooled_exit(session, record, recorded_by=recorded_by)

        try:
            store.ledger.change(UUID(sid), stop)
            stopped.append(sid)
        except SessionAlreadyStopped:
            pass
        except SessionNotFound:
            continue  # a session of another ledger used with this home: not ours to record
        spool.take(sid)
    spool.clean(finished=lambda sid: _stopped(store, sid))
    return stopped


def _stopped(store: Store, session_id: str) -> bool:
    """Whether a slot's session is over (one the read models do not know yet may have just been launched)."""
    try:
        return bool(store.read_models.session(session_id)["status"] == "stopped")
    except SessionNotFound:
        return False


def apply_spooled_exit(session: Any, record: dict[str, Any], *, recorded_by: dict[str, Any]) -> None:
    """The ``Stopped`` a supervisor spooled, with its exact exit, decided by that supervisor."""
    from datetime import datetime

    from agentledger.application.exits import record_observed_exit

    observed = ObservedExit(record["returncode"], record.get("signal_name"))
    from_spool = FromSpool(spooled_at=record.get("observed_at"), recorded_by=recorded_by)
    try:
        exited_at = datetime.fromisoformat(record["observed_at"])
    except (KeyError, TypeError, ValueError):
        exited_at = None
    record_observed_exit(session, observed, pid=record.get("pid"), decided_by=record["supervisor"],
                         from_spool=from_spool, summary=record.get("summary"), exited_at=exited_at)
