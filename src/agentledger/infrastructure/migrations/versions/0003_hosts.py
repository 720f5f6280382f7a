"""Hosts: each host's daemon, when it was last heard from, and whether an operator forgot the host.

A new table filled only by events that this revision's code introduces
(``Host.*``), so nothing needs replaying.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hosts",
        sa.Column("host_id", sa.String(32), primary_key=True),  # the Host aggregate's id
        sa.Column("host_name", sa.Text, nullable=False, unique=True),
        sa.Column("daemon_pid", sa.Integer),  # null: no daemon running, as far as the log says
        sa.Column("daemon_version", sa.Text),
        sa.Column("daemon_boot_id", sa.Text),
        sa.Column("heartbeat_every", sa.Float),  # seconds between DaemonAlive events
        sa.Column("daemon_last_seen", sa.Float),  # epoch seconds of the last DaemonAlive
        sa.Column("forgotten_at", sa.Float),
        sa.Column("forgotten_by", sa.Text),
        sa.Column("forget_reason", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("hosts")
