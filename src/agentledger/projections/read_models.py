"""The read-model port (``application/ports.py: ReadModels``) over a store's read-model connection.

The queries are ``projections/queries.py``'s and the catch-up ``catchup.py``'s;
this binds them to one store, so the service layer asks ``store.read_models``
instead of importing the projections.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentledger.projections import archived, catchup, locks, queries

if TYPE_CHECKING:
    from agentledger.application.log import Applied
    from agentledger.application.ports import Row, Store, TableMismatch
    from agentledger.domain.reconciliation import SessionFacts


#: The read-model tables ``verify`` compares with a rebuild, and the order that makes two copies comparable.
COMPARED_TABLES = {"sessions": "id", "fuses": "session_id, set_version", "hosts": "host_id",
                   "locks": "lock_id, version", "session_documents": "session_id"}


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

    def current_locks(self, now: float) -> list[dict[str, Any]]:
        return locks.current_locks(self.store.db, now)

    def lock_claims_of(self, session_id: str, now: float) -> list[dict[str, Any]]:
        return locks.claims_of_session(self.store.db, session_id, now)

    def is_archived(self, session_id: str) -> bool:
        return archived.is_archived(self.store.db, session_id)

    def compare_with_rebuild(self) -> tuple[int, list[TableMismatch]]:
        """The tables as they are (one snapshot, with its position) against a rebuild of the log up to there."""
        from agentledger.application.ports import TableMismatch
        from agentledger.projections.as_of import Moment, read_models_as_of

        with self.store.read_transaction() as cursor:  # the rows and their position, as of one moment
            position = catchup.tracked_position(cursor)
            live = {table: [tuple(r) for r in cursor.execute(_keyed_rows(table, order))]
                    for table, order in COMPARED_TABLES.items()}
        fresh = read_models_as_of(self.store, Moment(position=position)).db
        found = []
        for table, order in COMPARED_TABLES.items():
            rebuilt = [tuple(r) for r in fresh.execute(_keyed_rows(table, order))]
            if live[table] != rebuilt:
                differing = sorted({str(r[0]) for r in set(live[table]) ^ set(rebuilt)})
                found.append(TableMismatch(table, len(live[table]), len(rebuilt), differing))
        return position, found


def _keyed_rows(table: str, order: str) -> str:
    """Every row of ``table`` in ``order``, led by its key (the order's first column), whatever the table's own
    first column is: what a mismatch names (``session_documents`` begins with its stop time)."""
    return f"SELECT {order.split(',')[0]}, * FROM {table} ORDER BY {order}"
