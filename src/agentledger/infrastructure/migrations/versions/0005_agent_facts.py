"""Agent facts (``AgentObserved``) and the stop's note on the ``sessions`` read model; an index on the group.

``stop_note`` is derived from ``Stopped`` events already in the log, so, as in
0002, the read models are emptied and their tracking reset: the next catch-up
replays the whole log into them (as ``agentledger db rebuild`` would). The
``hosts`` table is a read model too (0003) and is refilled by the same replay.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("native_session_id", sa.Text),  # the agent's own session id
    ("agent_model", sa.Text),  # the model the agent reports using (``model`` is what was asked for)
    ("agent_title", sa.Text),
    ("tokens_in", sa.BigInteger),
    ("tokens_out", sa.BigInteger),
    ("cost", sa.Float),  # in the agent's currency, USD for all supported agents
    ("last_activity_at", sa.Float),  # epoch seconds of the agent's last recorded activity
    ("stop_note", sa.Text),  # the Stopped event's note: a reason given, or a failed run's first error line
)


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        for name, kind in _COLUMNS:
            batch.add_column(sa.Column(name, kind))
    op.create_index("sessions_group", "sessions", ["group_name"])
    _replay_on_next_catch_up()


def downgrade() -> None:
    op.drop_index("sessions_group", "sessions")
    with op.batch_alter_table("sessions") as batch:
        for name, _ in _COLUMNS:
            batch.drop_column(name)
    _replay_on_next_catch_up()


def _replay_on_next_catch_up() -> None:
    op.execute("DELETE FROM fuses")
    op.execute("DELETE FROM sessions")
    op.execute("DELETE FROM hosts")
    op.execute("DELETE FROM projection_tracking WHERE name = 'sessions'")
