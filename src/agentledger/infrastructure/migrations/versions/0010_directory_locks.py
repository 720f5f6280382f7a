"""Directory locks: one row per claim on a directory (each ``DirectoryLock.Taken``), and how it ended.

A lock is *held* or free by a rule (``domain/locks.py: lock_held``) over the
directory's last claim and its holder session's status, so the table keeps
the facts, not the verdict: queries join ``sessions`` for the holder's status.
A row whose ``superseded_at`` is null is its directory's current claim.
A new table filled only by events this revision's code introduces
(``DirectoryLock.*``), so nothing needs replaying.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "locks",
        sa.Column("lock_id", sa.String(32), nullable=False),  # the DirectoryLock aggregate's id
        sa.Column("version", sa.Integer, nullable=False),  # the Taken's version in it
        sa.Column("directory", sa.Text, nullable=False),  # a real path
        sa.Column("holder_session", sa.String(32)),  # null: a manual lock
        sa.Column("manual", sa.Integer, nullable=False),  # 0 or 1
        sa.Column("forced", sa.Integer, nullable=False),  # 0 or 1: taken over from a holder
        sa.Column("displaced", sa.String(32)),  # the session still holding it when it was forced
        sa.Column("taken_at", sa.Float, nullable=False),  # epoch seconds
        sa.Column("taken_by", sa.Text, nullable=False),  # the user
        sa.Column("reason", sa.Text),
        sa.Column("taker_pid", sa.Integer),  # the process that took it (the launching CLI)
        sa.Column("taker_start_time", sa.Float),
        sa.Column("taker_boot_time", sa.Float),
        sa.Column("taker_host", sa.Text),
        sa.Column("taker_boot_id", sa.Text),
        sa.Column("released_at", sa.Float),  # a Released ended this claim
        sa.Column("released_by", sa.Text),
        sa.Column("release_reason", sa.Text),
        sa.Column("superseded_at", sa.Float),  # a later Taken followed it (null: the current claim)
        sa.Column("superseded_by", sa.String(32)),  # that Taken's holder session (null: a manual lock)
        sa.Column("superseded_forced", sa.Integer),  # 0 or 1: that Taken was forced
        sa.Column("position", sa.Integer, nullable=False),  # the Taken's log position
        sa.PrimaryKeyConstraint("lock_id", "version"),
    )
    op.create_index("locks_holder", "locks", ["holder_session"])
    op.create_index("locks_displaced", "locks", ["displaced"])
    op.create_index("locks_current", "locks", ["superseded_at"])


def downgrade() -> None:
    op.drop_table("locks")
