"""Webhooks: the delivery outbox and each endpoint's position in the log.

Not read models: a delivery's state (attempts, delivered, dead) is not in the
log, so these tables are never emptied by ``agentledger db rebuild`` and
nothing is replayed into them. ``UNIQUE (endpoint, event_id, hook_type)``
makes re-enqueuing a stretch of the log a no-op.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),  # the delivery id users see
        sa.Column("endpoint", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("hook_type", sa.Text, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("session_id", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),  # JSON body without sent_at
        sa.Column("state", sa.Text, nullable=False),  # pending | delivered | dead
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("next_attempt_at", sa.Float),
        sa.Column("first_attempt_at", sa.Float),
        sa.Column("last_attempt_at", sa.Float),
        sa.Column("delivered_at", sa.Float),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.UniqueConstraint("endpoint", "event_id", "hook_type", name="webhook_deliveries_once"),
        sqlite_autoincrement=True,
    )
    op.create_index("webhook_deliveries_queue", "webhook_deliveries", ["endpoint", "state", "id"])
    op.create_table(
        "webhook_positions",
        sa.Column("endpoint", sa.Text, primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("webhook_positions")
    op.drop_index("webhook_deliveries_queue", "webhook_deliveries")
    op.drop_table("webhook_deliveries")
