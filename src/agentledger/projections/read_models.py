"""The read-model port (``application/ports.py: ReadModels``) over a store's read-model connection.

The queries are ``projections/queries.py``'s and the catch-up ``catchup.py``'s;
this binds them to one store, so the service layer asks ``store.read_models``
instead of importing the projections.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentledger.projections import catchup, queries

if TYPE_CHECKING:
    from agentledger.application.log import Applied
    from agentledger.application.ports import Row, Store
    from agentledger.domain.reconciliation import SessionFacts


class StoreReadModels:
    def __init__(self, store: Store) -> None:
        self.store = store

    def catch_up(self) -> Applied:
        return catchup.catch_up(self.store)

    def position(self) -> int:
        return catchup.tracked_position(self.store.db)

    def session(self, session_id: str) -> Row:
        return queries.get_session(self.store.db, session_id)

    def facts_on_host(self, host: str) -> list[SessionFacts]:
        return [queries.session_facts(row) for row in queries.not_stopped_on_host(self.store.db, host)]

    def tracked_processes(self, host: str) -> list[Row]:
        return queries.tracked_processes(self.store.db, host)

    def agent_sessions_on_host(self, host: str) -> list[Row]:
        return queries.agent_sessions_on_host(self.store.db, host)

    def resumed_by(self, session_id: str) -> list[str]:
        return queries.resumed_by(self.store.db, session_id)

    def open_on_host(self, host: str) -> list[str]:
        return queries.open_on_host(self.store.db, host)

    def stopped_since(self, host: str, position: int) -> list[Row]:
        return queries.stopped_since(self.store.db, host, position)
