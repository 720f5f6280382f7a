"""How each session came into the log: ``source`` (launched or adopted) and ``resumed_from``.

Both are fields of ``Launched`` events already in the log (absent from older
events, which read as ``launched`` and none), so, as in 0005, the read models
are emptied and their tracking reset: the next catch-up replays the whole log
into them (as ``agentledger db rebuild`` would).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("source", sa.Text),  # a LaunchSource: 'launched' or 'adopted'
    ("resumed_from", sa.Text),  # the session (hex id) whose agent conversation this one continues
)


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        for name, kind in _COLUMNS:
            batch.add_column(sa.Column(name, kind))
    op.create_index("sessions_resumed_from", "sessions", ["resumed_from"])
    _replay_on_next_catch_up()


def downgrade() -> None:
    op.drop_index("sessions_resumed_from", "sessions")
    with op.batch_alter_table("sessions") as batch:
        for name, _ in _COLUMNS:
            batch.drop_column(name)
    _replay_on_next_catch_up()


def _replay_on_next_catch_up() -> None:
    op.execute("DELETE FROM fuses")
    op.execute("DELETE FROM sessions")
    op.execute("DELETE FROM hosts")
    op.execute("DELETE FROM projection_tracking WHERE name = 'sessions'")
