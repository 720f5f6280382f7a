"""How the agent's session id was found, and the conversation's figures beside this run's.

``tokens_in``, ``tokens_out`` and ``cost`` are this run's from now on; the
``conversation_*`` columns hold the agent's conversation so far (they differ
after ``resume``). All come from ``AgentObserved`` events already in the log,
so, as in 0005 and 0006, the read models are emptied and their tracking reset:
the next catch-up replays the whole log into them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("native_id_source", sa.Text),  # a NativeIdSource: pinned, resumed, stream, storage or adopted
    ("conversation_tokens_in", sa.BigInteger),
    ("conversation_tokens_out", sa.BigInteger),
    ("conversation_cost", sa.Float),
)


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        for name, kind in _COLUMNS:
            batch.add_column(sa.Column(name, kind))
    _replay_on_next_catch_up()


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        for name, _ in _COLUMNS:
            batch.drop_column(name)
    _replay_on_next_catch_up()


def _replay_on_next_catch_up() -> None:
    op.execute("DELETE FROM fuses")
    op.execute("DELETE FROM sessions")
    op.execute("DELETE FROM hosts")
    op.execute("DELETE FROM projection_tracking WHERE name = 'sessions'")
