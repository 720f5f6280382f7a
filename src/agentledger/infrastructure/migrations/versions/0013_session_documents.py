"""Stopped sessions' ``--json`` documents, kept ready (the ``session_documents`` read model).

A stopped session's document (``queries.session_json``) never changes again:
its status is final, it takes no further events, and the one field that
depends on the time, ``fuse.live``, is false for any fuse not ``set`` (a stop
cancels a set fuse first). So the catch-up that applies a stop writes the
document here (``queries.write_stopped_documents``), and ``list --all --json``
prints the text as read instead of building 45 fields per row. Sessions
stopped before this revision have none and are built as before (``db
rebuild`` makes theirs); ``verify`` compares the table with a rebuild.

A table of its own, not a column of ``sessions``: the queries that read
``sessions s.*`` (the table of ``list``, ``status``) would carry every document
along. Keyed by ``started_at`` first, without a rowid on SQLite, so that the
documents newest first are one ordered walk of the table, with no lookup per row.
The document is bytes (BLOB, ``bytea``), written out as read: no decoding
into text and encoding back per row.

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
        sa.Column("started_at", sa.Float, nullable=False),  # sessions.started_at: the order list prints
        sa.Column("session_id", sa.String(32), nullable=False, unique=True),  # sessions.id
        sa.Column("document", sa.LargeBinary, nullable=False),  # its --json line: session_json, UTF-8, a newline
        sa.PrimaryKeyConstraint("started_at", "session_id"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("session_documents")
