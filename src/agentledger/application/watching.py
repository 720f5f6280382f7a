"""Keeping agent facts current for the sessions no supervisor watches: adopted ones, and orphans.

A launched session's supervisor reads its agent's native storage every
heartbeat interval and once more after the exit. An adopted session has no
supervisor, and a session whose supervisor died has none any more: without
this, their facts would stay as they were when they were last read (an
adopted agent's title "New session…" and 0 tokens, after it finished).
So whoever reconciles them watches them too: the daemon calls
:meth:`AgentWatch.observe` just before each pass (``agentledger reconcile``
once), and a session's last facts are recorded before the pass that stops it.

Facts recorded here are never a heartbeat (``heartbeat=False``): nobody
promised to watch these sessions, so activity in their storage must not
extend a fuse or keep the reconciler away; only the PID decides.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from uuid import UUID

from agentledger.application.clock import utc_now
from agentledger.application.errors import LedgerError
from agentledger.domain.errors import SessionAlreadyStopped
from agentledger.domain.liveness import ProcessIdentity

if TYPE_CHECKING:
    from agentledger.application.ports import Agents, Machine, Store
    from agentledger.domain.session import Session

log = logging.getLogger("agentledger.watching")


class AgentWatch:
    """One observer per unwatched agent session of this host, kept between passes (they hold read cursors)."""

    def __init__(self, store: Store, machine: Machine, agents: Agents) -> None:
        self.store = store
        self.machine, self.agents = machine, agents
        self.host = machine.host
        self.observers: dict[str, Any] = {}

    def observe(self) -> int:
        """Read each unwatched agent session's native storage; append what changed. How many were recorded."""
        self.store.read_models.catch_up()
        recorded = 0
        watched = set()
        for row in self.store.read_models.agent_sessions_on_host(self.host):
            if self.machine.supervisor_alive(row["supervisor_pid"], row["id"]):
                continue  # its supervisor reads the facts itself
            observer = self.observers.get(row["id"]) or self._observer(row)
            if observer is None:
                continue
            watched.add(row["id"])
            self.observers[row["id"]] = observer
            ended = self.machine.probe(_identity(row)).dead
            observation = observer.poll(final=ended)
            if observation.facts and self._record(row["id"], observer.adapter.name, observation.facts):
                recorded += 1
        for gone in set(self.observers) - watched:
            del self.observers[gone]
        return recorded

    def _observer(self, row: Any) -> Any:
        import orjson

        from agentledger.domain.vocabulary import NativeIdSource

        adapter = self.agents.for_session(row["adapter"])
        if adapter.binary is None or row["pid"] is None:
            return None
        source = row["native_id_source"] or NativeIdSource.STORAGE.value
        started = row["pid_start_time"] or row["started_at"]
        return self.agents.observer(adapter, cwd=row["cwd"], started_at=started, pid=row["pid"],
                                    hint=row["native_session_id"], hint_source=source, output_path=row["log_path"],
                                    argv=orjson.loads(row["argv"]), run_started_at=started)

    def _record(self, session_id: str, adapter: str, facts: dict[str, Any]) -> bool:
        def observe(session: Session) -> bool:
            return session.observe_agent(facts=facts, heartbeat=False, source=f"reconciler:adapter:{adapter}", now=utc_now())

        try:
            return bool(self.store.ledger.change(UUID(session_id), observe))
        except SessionAlreadyStopped:
            return False
        except LedgerError as error:  # the next pass reads again
            log.warning("agent facts of %s not recorded: %s", session_id[:12], error)
            return False


def _identity(row: Any) -> ProcessIdentity:
    return ProcessIdentity(pid=row["pid"], start_time=row["pid_start_time"], boot_time=row["boot_time"],
                           host=row["host"], boot_id=row["boot_id"])
