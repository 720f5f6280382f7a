"""Read models: sessions, fuses, and the tracking position they were built to.

Times are seconds since the epoch (UTC), so "is the fuse live" is one comparison.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.Text),
        sa.Column("adapter", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("argv", sa.Text, nullable=False),  # JSON array
        sa.Column("cwd", sa.Text, nullable=False),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("boot_id", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer),
        sa.Column("pid_start_time", sa.Float),
        sa.Column("supervisor_pid", sa.Integer),
        sa.Column("model", sa.Text),
        sa.Column("prompt", sa.Text),
        sa.Column("group_name", sa.Text),
        sa.Column("labels", sa.Text, nullable=False),  # JSON object
        sa.Column("log_path", sa.Text),
        sa.Column("launched_by", sa.Text),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("stop_requested_at", sa.Float),
        sa.Column("stopped_at", sa.Float),
        sa.Column("stop_reason", sa.Text),
        sa.Column("exit_code", sa.Integer),
        sa.Column("signal", sa.Text),
        sa.Column("stopped_by", sa.Text),
        sa.Column("fuse_state", sa.Text, nullable=False),
        sa.Column("fuse_ttl", sa.Float),
        sa.Column("fuse_expires_at", sa.Float),
        sa.Column("last_heartbeat_at", sa.Float),
        sa.Column("heartbeat_count", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
    )
    op.create_index("sessions_status_started", "sessions", ["status", "started_at"])
    op.create_index("sessions_started", "sessions", ["started_at"])
    op.create_table(
        "fuses",
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("set_version", sa.Integer, nullable=False),
        sa.Column("set_at", sa.Float, nullable=False),
        sa.Column("set_by", sa.Text, nullable=False),
        sa.Column("ttl", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("extensions", sa.Integer, nullable=False),
        sa.Column("state", sa.Text, nullable=False),  # set | cancelled | replaced
        sa.Column("ended_at", sa.Float),
        sa.Column("ended_by", sa.Text),
        sa.PrimaryKeyConstraint("session_id", "set_version"),
    )
    op.create_index("fuses_state", "fuses", ["state"])
    op.create_table(
        "projection_tracking",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("projection_tracking")
    op.drop_table("fuses")
    op.drop_table("sessions")
