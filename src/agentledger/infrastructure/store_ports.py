"""What every backend's store hands the service layer besides its log: written once, for both backends.

``SqliteStore`` and ``PostgresStore`` inherit :class:`StorePorts`: the read
models' queries, the webhook outbox and the raw log are each one class over
any store (their SQL is written once, in SQLite's placeholder style, and the
PostgreSQL store rewrites it), so a new backend gets them by inheriting too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentledger.application import ports


class StorePorts:
    """The ``read_models``, ``webhook_outbox``, ``raw_log`` and ``retention`` of ``application/ports.py: Store``."""

    @property
    def read_models(self: ports.Store) -> ports.ReadModels:
        """The read models' queries and catch-up, for the service layer (``application/ports.py``)."""
        from agentledger.projections.read_models import StoreReadModels

        return StoreReadModels(self)

    @property
    def webhook_outbox(self: ports.Store) -> ports.WebhookOutbox:
        """The webhook outbox's tables, for the service layer (``application/webhooks.py``)."""
        from agentledger.infrastructure.webhook_outbox import SqlWebhookOutbox

        return SqlWebhookOutbox(self)

    @property
    def raw_log(self: ports.Store) -> ports.RawLog:
        """The stored events and snapshots verbatim, for copying a ledger (``application/copying.py``)."""
        from agentledger.infrastructure.raw_log import RecorderRawLog

        return RecorderRawLog(self)

    @property
    def retention(self: ports.Store) -> ports.Retention:
        """Removing archived sessions from the live store, and the record of them (``application/archiving.py``)."""
        from agentledger.infrastructure.retention import SqlRetention

        return SqlRetention(self)
