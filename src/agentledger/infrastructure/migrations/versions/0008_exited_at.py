"""When a session's process was seen to end (``Stopped.exited_at``), beside when its stop was recorded.

A supervisor that saw the exit while the store refused writes records it
later; ``exited_at`` keeps the real time. It comes from ``Stopped`` events
already in the log (absent from older ones), so, as in 0005 to 0007, the read
models are emptied and their tracking reset: the next catch-up replays the
whole log into them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("exited_at", sa.Float))  # epoch seconds; null: nobody saw the exit
    _replay_on_next_catch_up()


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("exited_at")
    _replay_on_next_catch_up()


def _replay_on_next_catch_up() -> None:
    op.execute("DELETE FROM fuses")
    op.execute("DELETE FROM sessions")
    op.execute("DELETE FROM hosts")
    op.execute("DELETE FROM projection_tracking WHERE name = 'sessions'")
