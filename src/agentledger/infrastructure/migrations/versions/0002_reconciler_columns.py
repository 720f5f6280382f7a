"""What the reconciler reads from the projection: boot time, master timeout, the last stop request.

The new columns are derived from events already in the log, so the read
models are emptied and their tracking reset: the next catch-up replays the
whole log into them (as ``agentledger db rebuild`` would).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS = ("boot_time", "timeout_at", "stop_request_cause", "stop_request_signal", "stop_request_grace")


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("boot_time", sa.Float))
        batch.add_column(sa.Column("timeout_at", sa.Float))
        batch.add_column(sa.Column("stop_request_cause", sa.Text))
        batch.add_column(sa.Column("stop_request_signal", sa.Text))
        batch.add_column(sa.Column("stop_request_grace", sa.Float))
    op.create_index("sessions_host_status", "sessions", ["host", "status"])
    _replay_on_next_catch_up()


def downgrade() -> None:
    op.drop_index("sessions_host_status", "sessions")
    with op.batch_alter_table("sessions") as batch:
        for column in _COLUMNS:
            batch.drop_column(column)
    _replay_on_next_catch_up()


def _replay_on_next_catch_up() -> None:
    op.execute("DELETE FROM fuses")
    op.execute("DELETE FROM sessions")
    op.execute("DELETE FROM projection_tracking")
