"""Drop the index on ``fuses.state``: it made PostgreSQL's catch-up read every live fuse per heartbeat.

Each heartbeat the projection applies updates its session's fuse rows
``WHERE session_id = ? AND state IN ('set', 'expired')``. On a table
PostgreSQL has not yet analysed, the planner combined the primary key with
this index (a ``BitmapAnd``), and the state index matches every live fuse: at
100,000 sessions a catch-up took over a minute (``docs/BENCHMARKS.md``, the
scale simulation). Nothing needs the index: the one query by state
(``fuses``, and the live-fuse metric) returns or counts every live fuse, a scan
either way. ``tests/test_query_plans.py`` checks the updates' plans.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("fuses_state", "fuses")


def downgrade() -> None:
    op.create_index("fuses_state", "fuses", ["state"])
