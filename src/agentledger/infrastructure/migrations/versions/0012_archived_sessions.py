"""Archived sessions: which stopped sessions ``db archive`` moved out of the live store, and into which file.

Not a read model: the rows record an operation on the store (their events
were removed from the log), not a projection of the log, so ``db rebuild``
leaves the table alone (a rebuild cannot see the archived events) and
``db import`` deletes a session's row when it puts its events back. ``why``,
``history`` and ``status`` of an archived session read it to say where the
events went. A new, empty table: nothing needs replaying.

Revision ID: 0012
Revises: 0011
Create Date: 2027-01-10
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "archived_sessions",
        sa.Column("session_id", sa.String(32), primary_key=True),  # the Session aggregate's id (hex)
        sa.Column("name", sa.Text),  # launch --name, so that 'why NAME' still finds it
        sa.Column("archive_path", sa.Text, nullable=False),  # the archive file (absolute)
        sa.Column("archived_at", sa.Float, nullable=False),  # epoch seconds
        sa.Column("stopped_at", sa.Float),  # the session's Stopped, epoch seconds
        sa.Column("events", sa.Integer, nullable=False),  # its events in the archive, all its streams
        sa.Column("checksum", sa.Text, nullable=False),  # sha256 of its lines in the archive
    )
    op.create_index("archived_sessions_name", "archived_sessions", ["name"])


def downgrade() -> None:
    op.drop_index("archived_sessions_name", "archived_sessions")
    op.drop_table("archived_sessions")
