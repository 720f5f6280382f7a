"""Hosts: a daemon's signs of life, and forgetting a host that is gone for good.

A daemon records ``Host.DaemonAlive`` when it starts and every few seconds
after (``AGENTLEDGER_HOST_HEARTBEAT``, default 10 s), and ``DaemonStopped``
when it stops on purpose. Readers call a host *silent* once its daemon has
missed ``SILENT_AFTER_BEATS`` heartbeats (``projections/queries.py``): its
sessions show ``host-silent``, never ``stopped``.

``forget_host`` is the one way a host's sessions are stopped without anyone
looking at their processes: a person says the machine is gone, with a reason,
and each session still open there gets ``Stopped`` with reason ``host-lost``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from agentledger.application.errors import StoreError, UsageError
from agentledger.domain.errors import SessionAlreadyStopped
from agentledger.domain.evidence import DecidedOn, Evidence, Observation
from agentledger.domain.hosts import Host, host_id
from agentledger.domain.vocabulary import StopReason

if TYPE_CHECKING:
    from agentledger.application.ledger import Ledger
    from agentledger.application.ports import Store


def record_daemon_alive(ledger: Ledger, name: str, *, pid: int, version: str, boot_id: str, every: float) -> None:
    _change_host(ledger, name, lambda host: host.daemon_alive(pid=pid, version=version, boot_id=boot_id, every=every))


def record_daemon_stopped(ledger: Ledger, name: str, *, pid: int) -> None:
    _change_host(ledger, name, lambda host: host.daemon_stopped(pid=pid))


def forget_host(store: Store, name: str, *, here: str, by: dict[str, Any], reason: str, now: datetime,
                silent_from: float | None) -> list[str]:
    """Stop every session of ``name`` not stopped yet (reason ``host-lost``); their ids.

    Refused for this very host, and for a host whose daemon is still heard
    from (``silent_from`` in the future): a host that answers is not gone.
    """
    if name == here:
        raise UsageError(f"{name!r} is this host: it is not gone (stop its sessions with 'agentledger stop')")
    if silent_from is not None and now.timestamp() <= silent_from:
        raise UsageError(f"the daemon of {name!r} is still heard from: stop it first, or wait until the host is "
                         "silent ('agentledger hosts')")
    store.read_models.catch_up()
    open_ids = store.read_models.open_on_host(name)
    stopped = []
    for sid in open_ids:
        def stop(session: Any) -> None:
            session.record_stop(
                reason=StopReason.HOST_LOST, decided_by=by, note=reason,
                evidence=Evidence(Observation.HOST_GONE, decided_on=DecidedOn(session.version), host=name,
                                  reason=reason, host_silent_from=silent_from).as_dict(),
            )
        try:
            store.ledger.change(UUID(sid), stop)
        except SessionAlreadyStopped:
            continue
        stopped.append(sid)
    _change_host(store.ledger, name, lambda host: host.forget(by=by, reason=reason, stopped=stopped))
    return stopped


def _change_host(ledger: Ledger, name: str, command: Any) -> None:
    """Load (or register) the host, apply ``command``, save with compare-and-set; retried on a lost race."""
    from eventsourcing.persistence import IntegrityError

    for _ in range(20):
        try:
            host: Host = ledger.repository.get(host_id(name))
        except AggregateNotFoundError:
            host = Host(name=name)
        command(host)
        try:
            ledger.save_retrying(host)
            return
        except IntegrityError:
            continue
    raise StoreError(f"host {name!r} kept changing under this command; try again")
