"""Stopped sessions' ``--json`` documents, kept ready (the ``session_documents`` read model).

A stopped session's document (``queries.session_json``) no longer changes
with time once its fuse, if any, has lapsed. So the projection writes it when
the session stops, and again after any later event of the session, with the
``sessions.position`` it was made from. ``list --all --json`` then prints the
text as read instead of building 45 fields per row. A document counts only
while its position equals the row's; sessions stopped before this revision
have none and are printed as before (``db rebuild`` makes theirs).

A table of its own, not a column of ``sessions``: the queries that read
``sessions s.*`` (the table of ``list``, ``status``) would otherwise carry
every document along.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "session_documents",
        sa.Column("session_id", sa.String(32), primary_key=True),  # sessions.id
        sa.Column("position", sa.BigInteger, nullable=False),  # sessions.position it was made from
        sa.Column("document", sa.Text, nullable=False),  # session_json as if its fuse had lapsed
    )


def downgrade() -> None:
    op.drop_table("session_documents")
